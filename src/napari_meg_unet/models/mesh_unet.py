"""A mesh-aware U-Net: convolutions over the cortical triangulation, pooling along its hierarchy.

The thesis U-Net convolves vertex x time images as if neighbouring rows were
neighbouring sources; they are not (rows follow vertex numbers). This network
instead mixes each vertex only with its neighbours on the source-space mesh
(:class:`~napari_meg_unet.models.mesh.MeshHierarchy`), and time with 1-D
convolutions, i.e. separable space-time blocks::

    MeshConv (over rows) -> BatchNorm -> ReLU -> Conv (1 x k over time) -> BatchNorm
    -> ReLU -> Dropout

A :class:`MeshConv` is an isotropic polynomial filter of the neighbour-mean
operator ``M`` (``(M x)_v`` = mean of ``x`` over the mesh neighbours of ``v``)::

    y = W_0 x + W_1 M x + ... + W_K M^K x        (K = ``hops``)

evaluated as ``W_0 x + M (W_1 x + M (W_2 x ...))`` so that the channel mixing
happens once and ``M`` is applied to ``out_channels``-wide tensors. ``M`` is a
gather over a padded neighbour table (``index_select`` + multiply-add per
neighbour slot): plain dense kernels that run on CPU and CUDA, under bf16
autocast and :func:`torch.compile`, and are equivariant to any relabelling of
the vertices. The encoder pools each coarse vertex over its fine 1-ring (max
or mean), the decoder interpolates back from the coarse parents and
concatenates the skip connection as in a U-Net. Time is never pooled, so any
number of time samples works.
"""

from __future__ import annotations

import torch
from torch import nn

from ._validation import check_input, check_positive_int
from .mesh import MeshHierarchy

# trains on a laptop CPU in minutes
_SMALL = dict(
    root_features=16,
    levels=3,
    hops=1,
    time_kernel=5,
    convs_per_level=1,
    pool="max",
    dropout=0.1,
)

#: Hyper-parameter presets of :class:`MeshUNet`.
MESH_PRESETS = {
    "small": _SMALL,
    # the small network without dropout, for runs limited to minutes of CPU time; its
    # recipe (registry) also tempers the class weights (docs/benchmark.md)
    "cpu": dict(_SMALL, dropout=0.0),
    # the cpu network with a centre head: sources between grid vertices (models/centre.py)
    "cpu-centre": dict(_SMALL, dropout=0.0, centre_head=True),
    # forward FLOPs matched to the thesis U-Net "benchmark" preset (642 x 32 images)
    "benchmark": dict(
        root_features=64,
        levels=3,
        hops=2,
        time_kernel=5,
        convs_per_level=2,
        pool="max",
        dropout=0.1,
    ),
}

POOL_MODES = ("max", "mean")


def gather_mean(x: torch.Tensor, index: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Weighted sum over padded vertex lists: ``y[..., v, :] = sum_d w[v, d] x[..., idx[v, d], :]``.

    Parameters
    ----------
    x : Tensor, shape (batch, channels, n_in, n_times)
    index : LongTensor, shape (n_out, width)
    weight : Tensor, shape (n_out, width)

    Returns
    -------
    y : Tensor, shape (batch, channels, n_out, n_times)
    """
    weight = weight.to(x.dtype)
    out = None
    for d in range(index.shape[1]):
        term = x.index_select(2, index[:, d]) * weight[:, d].view(1, 1, -1, 1)
        out = term if out is None else out + term
    return out


def gather_max(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Maximum over padded vertex lists: ``y[..., v, :] = max_d x[..., idx[v, d], :]``."""
    out = x.index_select(2, index[:, 0])
    for d in range(1, index.shape[1]):
        out = torch.maximum(out, x.index_select(2, index[:, d]))
    return out


class VertexOperator(nn.Module):
    """A fixed sparse linear map between vertex sets, applied along the row axis.

    ``y[b, c, v, t] = sum_u A[v, u] x[b, c, u, t]`` with ``A`` given as padded
    index/weight tables (zero weights are padding).

    Two equivalent evaluations exist: ``"sparse"`` (one sparse-dense matrix product on
    a ``(n_in, batch * channels * n_times)`` view; fastest on CPU) and ``"gather"``
    (``index_select`` + multiply-add per table column: dense kernels that work under
    bf16 autocast and fuse under :func:`torch.compile`). ``backend="auto"`` (the
    default) uses ``"sparse"`` on CPU in eager mode and ``"gather"`` otherwise (CUDA,
    or while :func:`torch.compile` traces).
    """

    BACKENDS = ("auto", "sparse", "gather")

    def __init__(self, index, weight, n_in: int, *, backend: str = "auto"):
        super().__init__()
        index = torch.as_tensor(index, dtype=torch.long)
        weight = torch.as_tensor(weight, dtype=torch.float32)
        self.n_in = int(n_in)
        self.n_out = int(index.shape[0])
        self.backend = backend
        self.register_buffer("index", index, persistent=False)
        self.register_buffer("weight", weight, persistent=False)
        rows = torch.arange(self.n_out).repeat_interleave(index.shape[1])
        keep = weight.reshape(-1) != 0
        coo = torch.sparse_coo_tensor(
            torch.stack([rows[keep], index.reshape(-1)[keep]]),
            weight.reshape(-1)[keep],
            (self.n_out, self.n_in),
            check_invariants=False,
        ).coalesce()
        self.register_buffer("coo_indices", coo.indices(), persistent=False)
        self.register_buffer("coo_values", coo.values(), persistent=False)

    @property
    def backend(self) -> str:
        return self._backend

    @backend.setter
    def backend(self, value: str) -> None:
        if value not in self.BACKENDS:
            raise ValueError(f"backend must be one of {self.BACKENDS}, got {value!r}.")
        self._backend = value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        backend = self._backend
        if backend == "auto":
            cpu_eager = x.device.type == "cpu" and not torch.compiler.is_compiling()
            backend = "sparse" if cpu_eager else "gather"
        if backend == "gather":
            return gather_mean(x, self.index, self.weight)
        b, c, _, t = x.shape
        matrix = torch.sparse_coo_tensor(
            self.coo_indices,
            self.coo_values,
            (self.n_out, self.n_in),
            is_coalesced=True,
            check_invariants=False,
        )
        # sparse kernels have no bf16 CPU implementation (and their autocast backward
        # fails): compute in float32 with autocast off
        flat = x.permute(2, 0, 1, 3).reshape(self.n_in, b * c * t).float()
        with torch.autocast(device_type=x.device.type, enabled=False):
            y = torch.sparse.mm(matrix, flat).to(x.dtype)
        return y.reshape(self.n_out, b, c, t).permute(1, 2, 0, 3)


class MeshConv(nn.Module):
    """Isotropic mesh convolution ``y = sum_k W_k M^k x`` over one mesh level.

    Parameters
    ----------
    in_channels, out_channels : int
        Feature maps in and out.
    mesh : MeshHierarchy
        The hierarchy whose ``level`` graph defines the neighbour mean ``M``.
    level : int
        Which level of ``mesh``.
    hops : int
        Polynomial degree ``K`` (receptive field in mesh edges).
    bias : bool
        Whether the ``W_0`` term has a bias.
    """

    def __init__(self, in_channels, out_channels, *, mesh, level=0, hops=1, bias=True):
        super().__init__()
        if hops < 1:
            raise ValueError(f"hops must be >= 1, got {hops!r}.")
        self.hops = int(hops)
        self.out_channels = int(out_channels)
        self.n_vertices = mesh.n_vertices[level]
        self.linear = nn.Conv2d(in_channels, out_channels * (self.hops + 1), 1, bias=False)
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        index, weight = mesh.neighbour_table(level)
        self.neighbour_mean = VertexOperator(index, weight, self.n_vertices)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        terms = self.linear(x).split(self.out_channels, dim=1)
        y = terms[self.hops]
        for k in range(self.hops - 1, -1, -1):
            y = terms[k] + self.neighbour_mean(y)
        if self.bias is not None:
            y = y + self.bias.view(1, -1, 1, 1).to(y.dtype)
        return y


class MeshPool(nn.Module):
    """Pool level ``level`` onto ``level + 1`` (max or mean over each coarse vertex's ring)."""

    def __init__(self, mesh: MeshHierarchy, level: int, mode: str = "max"):
        super().__init__()
        if mode not in POOL_MODES:
            raise ValueError(f"pool must be one of {POOL_MODES}, got {mode!r}.")
        self.mode = mode
        index = mesh.pool_table(level)
        self.register_buffer("index", torch.as_tensor(index), persistent=False)
        self.mean = VertexOperator(index, mesh.pool_weights(level), mesh.n_vertices[level])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "max":
            return gather_max(x, self.index)
        return self.mean(x)


class MeshUnpool(VertexOperator):
    """Interpolate level ``level + 1`` back onto level ``level`` from the coarse parents."""

    def __init__(self, mesh: MeshHierarchy, level: int):
        index, weight = mesh.unpool_table(level)
        super().__init__(index, weight, mesh.n_vertices[level + 1])


class _SpaceTimeUnit(nn.Sequential):
    def __init__(self, c_in, c_out, *, mesh, level, hops, time_kernel, dropout):
        super().__init__(
            MeshConv(c_in, c_out, mesh=mesh, level=level, hops=hops, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, (1, time_kernel), padding=(0, time_kernel // 2), bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
        )


def _stage(c_in, c_out, n_units, **kwargs) -> nn.Sequential:
    return nn.Sequential(
        *(_SpaceTimeUnit(c_in if i == 0 else c_out, c_out, **kwargs) for i in range(n_units))
    )


def _check_arguments(
    *, in_channels, n_rows, n_times, mesh, root_features, levels, hops, time_kernel,
    convs_per_level, pool, dropout, mesh_fingerprint,
):  # fmt: skip
    """Refuse a MeshUNet configuration that does not fit its mesh, naming the argument."""
    if not isinstance(mesh, MeshHierarchy):
        raise ValueError(
            "The mesh model needs mesh=MeshHierarchy (e.g. "
            f"MeshHierarchy.from_headmodel(hm, hemi)), got {type(mesh).__name__}."
        )
    check_positive_int(
        in_channels=in_channels,
        n_rows=n_rows,
        n_times=n_times,
        root_features=root_features,
        levels=levels,
        hops=hops,
        time_kernel=time_kernel,
        convs_per_level=convs_per_level,
    )
    if time_kernel % 2 == 0:
        raise ValueError(f"time_kernel must be odd, got {time_kernel}.")
    if pool not in POOL_MODES:
        raise ValueError(f"pool must be one of {POOL_MODES}, got {pool!r}.")
    if not 0.0 <= float(dropout) < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}.")
    if n_rows != mesh.n_vertices[0]:
        raise ValueError(
            f"n_rows={n_rows} does not match the mesh's {mesh.n_vertices[0]} vertices "
            f"(hemi {mesh.hemi!r}); build the MeshHierarchy for the same hemisphere."
        )
    if levels > mesh.n_levels:
        raise ValueError(
            f"levels={levels} exceeds the mesh hierarchy's {mesh.n_levels} levels; build "
            f"it with MeshHierarchy.from_headmodel(..., levels={levels})."
        )
    if mesh_fingerprint is not None and mesh_fingerprint != mesh.fingerprint:
        raise ValueError(
            f"This model was built for mesh {mesh_fingerprint!r} but got mesh "
            f"{mesh.fingerprint!r}; rebuild the MeshHierarchy from the same head model."
        )


class MeshUNet(nn.Module):
    """Mesh-aware U-Net on ``(batch, channels, n_rows, n_times)`` source images.

    Parameters
    ----------
    in_channels : int
        Number of input channels (any number of inverse solutions).
    n_rows : int
        Number of vertex rows; must equal ``mesh.n_vertices[0]``.
    n_times : int
        Nominal number of time samples (recorded in :attr:`config`; any length works).
    mesh : MeshHierarchy
        Graph hierarchy of the rows (:meth:`MeshHierarchy.from_headmodel`).
    root_features : int
        Feature maps at the finest level; doubled at every coarser level.
    levels : int
        Resolution levels used (at most ``mesh.n_levels``).
    hops : int
        Polynomial degree of every :class:`MeshConv`.
    time_kernel : int
        Odd length of the temporal convolutions.
    convs_per_level : int
        Space-time units per encoder/decoder stage.
    pool : ``"max"`` | ``"mean"``
        Pooling over each coarse vertex's fine ring.
    dropout : float
        Drop probability after every unit.
    centre_head : bool
        Also output one centre logit per vertex and time, whose epoch mean places
        sources between grid vertices (:mod:`~napari_meg_unet.models.centre`).
    mesh_fingerprint : str | None
        When given (e.g. from a stored :attr:`config`), ``mesh.fingerprint`` must match.
    """

    name = "mesh"

    def __init__(
        self,
        *,
        in_channels: int,
        n_rows: int,
        n_times: int,
        mesh: MeshHierarchy,
        root_features: int = 16,
        levels: int = 3,
        hops: int = 1,
        time_kernel: int = 5,
        convs_per_level: int = 1,
        pool: str = "max",
        dropout: float = 0.1,
        centre_head: bool = False,
        mesh_fingerprint: str | None = None,
    ):
        super().__init__()
        _check_arguments(
            in_channels=in_channels, n_rows=n_rows, n_times=n_times, mesh=mesh,
            root_features=root_features, levels=levels, hops=hops, time_kernel=time_kernel,
            convs_per_level=convs_per_level, pool=pool, dropout=dropout,
            mesh_fingerprint=mesh_fingerprint,
        )  # fmt: skip
        self.in_channels, self.n_rows, self.n_times = int(in_channels), int(n_rows), int(n_times)
        self.levels = int(levels)
        features = [int(root_features) * 2**level for level in range(self.levels)]
        unit = dict(mesh=mesh, hops=hops, time_kernel=time_kernel, dropout=dropout)
        self.down = nn.ModuleList()
        self.pools = nn.ModuleList()
        c_in = self.in_channels
        for level, f in enumerate(features):
            self.down.append(_stage(c_in, f, convs_per_level, level=level, **unit))
            if level < self.levels - 1:
                self.pools.append(MeshPool(mesh, level, pool))
            c_in = f
        self.reduce = nn.ModuleList()
        self.unpools = nn.ModuleList()
        self.up = nn.ModuleList()
        for level in range(self.levels - 2, -1, -1):
            f = features[level]
            # 1x1 channel reduction commutes with the (linear) unpooling: apply it coarse
            self.reduce.append(nn.Conv2d(2 * f, f, 1))
            self.unpools.append(MeshUnpool(mesh, level))
            self.up.append(_stage(2 * f, f, convs_per_level, level=level, **unit))
        self.centre_head = bool(centre_head)
        self.head = nn.Conv2d(features[0], 3 if self.centre_head else 2, 1)
        self.config = {
            "name": self.name,
            "in_channels": self.in_channels,
            "n_rows": self.n_rows,
            "n_times": self.n_times,
            "root_features": int(root_features),
            "levels": self.levels,
            "hops": int(hops),
            "time_kernel": int(time_kernel),
            "convs_per_level": int(convs_per_level),
            "pool": pool,
            "dropout": float(dropout),
            "centre_head": self.centre_head,
            "mesh_fingerprint": mesh.fingerprint,
        }

    def l1_parameters(self) -> list[torch.Tensor]:
        """Convolution kernels (everything but biases and batch-norm parameters)."""
        return [p for name, p in self.named_parameters() if p.ndim > 1 and "weight" in name]

    def forward(self, x: torch.Tensor, *, centre: bool = False):
        """Logits ``(batch, 2, n_rows, n_times)`` for an input ``(batch, C, n_rows, n_times)``.

        With ``centre=True`` (a network with ``centre_head``), also the centre logits'
        epoch mean ``(batch, n_rows)``, as a tuple ``(logits, centre_logits)``.
        """
        if centre and not self.centre_head:
            raise ValueError("centre=True needs a network built with centre_head=True.")
        check_input(x, self.in_channels, self.n_rows)
        skips = []
        for level, stage in enumerate(self.down):
            x = stage(x)
            if level < self.levels - 1:
                skips.append(x)
                x = self.pools[level](x)
        for reduce, unpool, stage in zip(self.reduce, self.unpools, self.up, strict=True):
            x = unpool(reduce(x))
            x = stage(torch.cat([skips.pop(), x], dim=1))
        out = self.head(x)
        if centre:
            return out[:, :2], out[:, 2].mean(dim=-1)
        return out[:, :2] if self.centre_head else out
