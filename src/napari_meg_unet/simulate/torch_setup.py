"""What the float32 torch core computes once, on the host: field tables, pools, noise.

Everything here is float64 numpy (the reference path's own helpers: the dense
pools of :mod:`.layout`, the patches, the noise model of :mod:`.noise`); the
core (:mod:`.torch_core`) moves it to the device in its compute dtype. The
alternative "true" forward models of model-error augmentation are
:class:`TrueModel` objects.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..fingerprint import array_fingerprint
from ..headmodel import HeadModel
from .layout import _dense_pools, _grow_patches
from .noise import _noise_model


@dataclass(eq=False)
class TrueModel:
    """A forward model that makes the *signal* of some events (model-error augmentation).

    The inverse kernels stay the nominal head model's; only the simulated
    fields come from here. It shares the nominal head model's channels (same
    order) and sources (same vertices), e.g. a head model with perturbed
    sensor positions (coregistration error) or another conductor model.

    Attributes
    ----------
    gain : ndarray, shape (n_channels, n_sources)
        Fixed-orientation gain on the nominal sources.
    dense_gain : ndarray, shape (n_channels, n_dense) | None
        Gain on the nominal dense (off-grid) sources; needed for ``off_grid``.
    name : str
        A label (kept in the stream's description).
    """

    gain: np.ndarray
    dense_gain: np.ndarray | None = None
    name: str = ""

    @property
    def fingerprint(self) -> str:
        dense = None if self.dense_gain is None else np.asarray(self.dense_gain, np.float32)
        return array_fingerprint(
            kind="true-model", gain=np.asarray(self.gain, np.float32), dense=dense, name=self.name
        )


def true_model(model, nominal: HeadModel, *, dense=None, dense_spacing=None, name=None,
               verbose=None) -> TrueModel:  # fmt: skip
    """A :class:`TrueModel` from a head model sharing ``nominal``'s channels and sources.

    Parameters
    ----------
    model : HeadModel | TrueModel
        The alternative ("true") head model, e.g. from
        ``napari_meg_unet.headmodel.perturb``; a TrueModel is checked and returned.
    nominal : HeadModel
        The head model the inverse kernels are made from.
    dense : DenseSources | None
        The nominal dense sources (off-grid simulation): the alternative's
        dense gain is computed on the same vertices.
    dense_spacing : str | None
        Their spacing (``dense.spacing`` when None).
    name : str | None
        Label (default: the model's subject and fingerprint).

    Returns
    -------
    model : TrueModel
    """
    n_ch, n_src = len(nominal.ch_names), nominal.n_sources
    if isinstance(model, TrueModel):
        tm = model
    elif isinstance(model, HeadModel):
        _check_same_space(model, nominal)
        dense_gain = None
        if dense is not None:
            dense_gain = _alternative_dense_gain(model, dense, dense_spacing, verbose)
        tm = TrueModel(
            gain=np.asarray(model.gain, np.float64), dense_gain=dense_gain,
            name=name or f"{model.subject}-{model.fingerprint}",
        )  # fmt: skip
    else:
        raise TypeError(
            "model_error entries must be HeadModel or TrueModel objects, got "
            f"{type(model).__name__}."
        )
    if tm.gain.shape != (n_ch, n_src):
        raise ValueError(
            f"model_error {tm.name!r}: gain has shape {tm.gain.shape}, expected ({n_ch}, {n_src}) "
            "(the nominal head model's channels x sources)."
        )
    if dense is not None:
        if tm.dense_gain is None or tm.dense_gain.shape != (n_ch, dense.n_dense):
            got = None if tm.dense_gain is None else tm.dense_gain.shape
            raise ValueError(
                f"model_error {tm.name!r}: off-grid simulation needs a dense gain of shape "
                f"({n_ch}, {dense.n_dense}) on the nominal dense sources, got {got}."
            )
    if not np.isfinite(tm.gain).all():
        raise ValueError(f"model_error {tm.name!r}: the gain holds NaN/Inf values.")
    return tm


def _check_same_space(model: HeadModel, nominal: HeadModel) -> None:
    if model.ch_names != nominal.ch_names:
        raise ValueError(
            "model_error head models must have the nominal head model's channels in the same "
            f"order ({len(model.ch_names)} vs {len(nominal.ch_names)} channels)."
        )
    same = len(model.vertno) == len(nominal.vertno) and all(
        np.array_equal(a, b) for a, b in zip(model.vertno, nominal.vertno, strict=True)
    )
    if not same:
        raise ValueError(
            "model_error head models must share the nominal head model's sources (the same "
            "vertices); the inverse images are indexed by them."
        )


#: Perturbations that keep every source where the nominal head model has it.
_SAME_POSITIONS = ("coreg", "conductor", "skull")


def _gain_at_nominal_sources(model: HeadModel, dense) -> np.ndarray:
    """``model``'s fixed-orientation gain at the nominal dense positions and normals."""
    from ..peers.dipole import own_conductor
    from ..peers.field import DipoleField

    free = DipoleField(model.info, *own_conductor(model)).gain(dense.positions)
    free = free.reshape(len(model.ch_names), -1, 3)
    return np.einsum("cdk,dk->cd", free, np.asarray(dense.normals, np.float64))


def _alternative_dense_gain(model: HeadModel, dense, spacing, verbose) -> np.ndarray:
    """The alternative model's gain on the nominal dense sources.

    A coregistration or conductor error keeps the sources where they are: its
    forward is computed at the nominal dense positions (this also serves a
    perturbed template, which has no FreeSurfer subject to make dense sources
    from); other models make their own dense sources, which must be the nominal
    vertices.
    """
    from ..headmodel import make_dense_sources

    kind = (model.provenance.get("perturbation") or {}).get("kind")
    if kind in _SAME_POSITIONS and model.bem is not None:
        return _gain_at_nominal_sources(model, dense)
    alt = make_dense_sources(model, spacing=spacing or dense.spacing, verbose=verbose)
    same = all(np.array_equal(a, b) for a, b in zip(alt.vertno, dense.vertno, strict=True))
    if not same:
        raise ValueError(
            "The dense sources of a model_error head model differ from the nominal ones; pass "
            "a TrueModel with the dense gain on the nominal dense vertices."
        )
    return np.asarray(alt.gain, np.float64)


# --------------------------------------------------------------------------- host tables
@dataclass(eq=False)
class HostTables:
    """The float64 host arrays the core moves to its device.

    ``fields[a, key]`` is the sensor field per A·m of location ``key`` under
    model ``a`` (0: the nominal head model); a key is a head-model row
    (on-grid dipoles, patch seeds) or a dense-source index (off-grid).
    """

    candidates: np.ndarray  # rows events are drawn from
    image_rows: np.ndarray  # rows of the images (inverse hemi)
    image_index: np.ndarray  # (n_sources,) position in image_rows, -1 outside
    fields: np.ndarray  # (n_models, n_keys, n_channels)
    w_fields: np.ndarray  # (n_models, n_keys, rank): whitened by the nominal whitener
    key_positions: np.ndarray  # (n_keys, 3)
    key_normals: np.ndarray  # (n_keys, 3)
    key_vertex: np.ndarray  # (n_keys,) surface vertex numbers
    pool: dict | None  # off-grid: dense vertices by nearest row (order, start, count)
    members: np.ndarray  # (n_sources, m_max) member rows of each key row's patch, -1 padded
    colour: np.ndarray | None  # (q, n_channels) noise factor / sqrt(nave), None: noise-free
    rank: int


def host_tables(hm, simulation, inverse, *, dense, true_models) -> HostTables:
    """Build the :class:`HostTables` of a simulation and inverse config."""
    image_rows = hm.rows(inverse.hemi)
    image_index = np.full(hm.n_sources, -1, np.int64)
    image_index[image_rows] = np.arange(len(image_rows))
    rows = hm.rows(simulation.hemi)
    outside = rows[image_index[rows] < 0]
    if len(outside):
        raise ValueError(
            f"The simulation draws sources from hemi={simulation.hemi!r} but the images show "
            f"hemi={inverse.hemi!r}; use the same hemisphere (or inverse hemi='both')."
        )
    whitener, colorer = _noise_model(hm, simulation.noise)
    gains = [np.asarray(hm.gain, np.float64)] + [m.gain for m in true_models]
    members = _dipole_members(hm.n_sources)
    pool = None
    if dense is not None:
        pool = _dense_pools(hm, dense, rows)
        candidates = rows[pool["count"][rows] > 0]
        if simulation.design == "sweep" and len(candidates) < len(rows):
            empty = rows[pool["count"][rows] == 0]
            raise ValueError(
                f"{len(empty)} row(s) of hemi={simulation.hemi!r} (first {empty[:5].tolist()}) "
                "have no dense vertex nearest to them, so an off-grid sweep cannot cover them; "
                "use a finer dense_spacing."
            )
        dense_gains = [np.asarray(dense.gain, np.float64)] + [m.dense_gain for m in true_models]
        fields = np.stack([g.T for g in dense_gains])
        positions, normals = np.asarray(dense.positions), np.asarray(dense.normals)
        vertex = np.concatenate(dense.vertno)
    elif simulation.design == "extended":
        candidates = rows
        patches = _grow_patches(hm, simulation.hemi, rows, simulation.extent_mm / 1000.0)
        members = _patch_members(hm.n_sources, rows, patches)
        fields = np.stack([_patch_fields(g, rows, patches) for g in gains])
        positions, normals = hm.positions, hm.normals
        vertex = np.concatenate(hm.vertno)
    else:
        candidates = rows
        fields = np.stack([g.T for g in gains])
        positions, normals = hm.positions, hm.normals
        vertex = np.concatenate(hm.vertno)
    colour = None
    if simulation.noise is not None:
        colour = colorer.T / np.sqrt(simulation.nave)
    return HostTables(
        candidates=np.asarray(candidates, np.int64), image_rows=image_rows,
        image_index=image_index, fields=fields, w_fields=fields @ whitener.T,
        key_positions=np.asarray(positions, np.float64),
        key_normals=np.asarray(normals, np.float64), key_vertex=np.asarray(vertex, np.int64),
        pool=pool, members=members, colour=colour, rank=int(whitener.shape[0]),
    )  # fmt: skip


def _dipole_members(n_sources: int) -> np.ndarray:
    return np.arange(n_sources, dtype=np.int64)[:, None]


def _patch_members(n_sources: int, seeds, patches) -> np.ndarray:
    m_max = max(len(p) for p in patches)
    members = np.full((n_sources, m_max), -1, np.int64)
    for seed, patch in zip(seeds, patches, strict=True):
        members[seed, : len(patch)] = patch
    return members


def _patch_fields(gain, seeds, patches) -> np.ndarray:
    """(n_sources, n_channels): the summed gain of each seed's patch (zero for other rows)."""
    out = np.zeros((gain.shape[1], gain.shape[0]))
    for seed, patch in zip(seeds, patches, strict=True):
        out[seed] = gain[:, patch].sum(axis=1)
    return out
