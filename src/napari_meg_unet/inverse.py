"""Linear minimum-norm inverses: operators, imaging kernels and batched application.

MNE-Python (:mod:`mne.minimum_norm`) is the numerical reference. This module
builds the operator with :func:`mne.minimum_norm.make_inverse_operator`,
prepares it with :func:`mne.minimum_norm.prepare_inverse_operator` (which
also runs MNE's own eLORETA iteration) and folds everything that
:func:`mne.minimum_norm.apply_inverse` does per call into one imaging kernel
``K`` (projector, whitener, regularised inverter, source weighting and, for
dSPM/sLORETA, the noise normalisation). Applying ``K`` to many events at once
is then one matrix product (numpy or torch), with the per-location magnitude,
normal or head-xyz vector output of ``apply_inverse``.

Also here: the SVD spectrum of the whitened, weighted gain, explained variance
and residuals as ``apply_inverse`` computes them, the Brainstorm <-> MNE
regularisation mapping, kernel/operator export and the thesis-layout input
stacks (methods x vertices x time) fed to the U-Nets.

See ``inverse-math.md`` (§1, §2.6, §3, §5) for the equations.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import mne
import numpy as np
from mne.io.constants import FIFF
from mne.minimum_norm import (
    InverseOperator,
    compute_rank_inverse,
    make_inverse_operator,
    prepare_inverse_operator,
    write_inverse_operator,
)

from ._io import atomic_path, check_output_path, read_json, save_npy, write_json
from .progress import Progress, run

#: Inverse methods, spelled as in MNE-Python.
METHODS = ("MNE", "dSPM", "sLORETA", "eLORETA")
#: Methods whose estimate is the MNE estimate divided by a per-location noise level.
NOISE_NORMALISED = ("dSPM", "sLORETA")
#: Orientation outputs, as ``pick_ori`` in :func:`mne.minimum_norm.apply_inverse`.
PICK_ORIS = (None, "normal", "vector")
#: Normalisations of :func:`make_input_stack`.
NORMALISATIONS = ("column-max", "global-max", "none")
#: Array backends of :func:`apply_kernel`.
BACKENDS = ("numpy", "torch")
#: eLORETA options of MNE 1.13, always passed explicitly (``force_equal=None``
#: is documented as "True for loose" but treated as False by the code).
ELORETA_DEFAULTS = dict(eps=1e-6, max_iter=20, force_equal=False)


# --------------------------------------------------------------------------- validation
def _check_method(method) -> str:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}.")
    return method


def _check_methods(methods) -> tuple[str, ...]:
    if isinstance(methods, str):
        methods = (methods,)
    methods = tuple(methods)
    if not methods:
        raise ValueError(f"methods must name at least one of {METHODS}, got none.")
    for method in methods:
        _check_method(method)
    if len(set(methods)) != len(methods):
        raise ValueError(f"methods must not repeat a method, got {methods}.")
    return methods


def _check_lambda2(lambda2) -> float:
    if isinstance(lambda2, bool) or not isinstance(lambda2, int | float | np.number):
        raise ValueError(f"lambda2 must be a positive finite number, got {lambda2!r}.")
    lambda2 = float(lambda2)
    if not np.isfinite(lambda2) or lambda2 <= 0:
        raise ValueError(f"lambda2 must be a positive finite number, got {lambda2!r}.")
    return lambda2


def _check_nave(nave) -> int:
    if isinstance(nave, bool) or not isinstance(nave, int | float | np.number):
        raise ValueError(f"nave must be an integer >= 1, got {nave!r}.")
    if not np.isfinite(nave) or nave < 1 or float(nave) != int(nave):
        raise ValueError(f"nave must be an integer >= 1, got {nave!r}.")
    return int(nave)


def _check_pick_ori(pick_ori):
    if pick_ori not in PICK_ORIS:
        raise ValueError(f"pick_ori must be one of {PICK_ORIS}, got {pick_ori!r}.")
    return pick_ori


def _check_option(name, value, allowed):
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}.")
    return value


def _check_inverse(inv) -> InverseOperator:
    if not isinstance(inv, InverseOperator):
        raise ValueError(
            "inv must be an mne.minimum_norm.InverseOperator (see make_inverse), "
            f"got {type(inv).__name__}."
        )
    return inv


def _eloreta_params(method_params) -> dict:
    params = dict(ELORETA_DEFAULTS)
    if method_params is not None:
        unknown = set(method_params) - set(ELORETA_DEFAULTS)
        if unknown:
            raise ValueError(
                f"method_params keys must be among {sorted(ELORETA_DEFAULTS)}, "
                f"got unknown {sorted(unknown)}."
            )
        params.update(method_params)
    params["force_equal"] = bool(params["force_equal"])
    return params


def _is_free(inv) -> bool:
    return inv["source_ori"] == FIFF.FIFFV_MNE_FREE_ORI


def _inverse_ch_names(inv) -> list[str]:
    return list(inv["eigen_fields"]["col_names"])


def _check_eeg_reference(inv) -> None:
    """Refuse EEG without an average-reference projector, as apply_inverse does."""
    info = inv["info"]
    used = set(_inverse_ch_names(inv))
    has_eeg = any(ch["kind"] == FIFF.FIFFV_EEG_CH and ch["ch_name"] in used for ch in info["chs"])
    if not has_eeg:
        return
    for proj in inv["projs"]:
        if proj["kind"] == FIFF.FIFFV_PROJ_ITEM_EEG_AVREF or re.match(
            "^Average .* reference$", proj["desc"]
        ):
            return
    raise ValueError(
        "The inverse operator has EEG channels but no average-reference projector; "
        "MNE requires one for EEG inverse modelling (set_eeg_reference(projection=True) "
        "before making the operator)."
    )


def _as_data(data, n_channels_expected: int, what: str = "data"):
    """Return ``data`` as float64 (numpy or torch), checked for shape and finiteness."""
    if _is_tensor(data):
        import torch

        if data.ndim < 2:
            raise ValueError(
                f"{what} must have shape (..., n_channels, n_times), got {tuple(data.shape)}."
            )
        data = data.to(torch.float64)
        finite = bool(torch.isfinite(data).all())
    else:
        data = np.asarray(data)
        if data.dtype.kind not in "fiu":
            raise ValueError(f"{what} must be a real numeric array, got dtype {data.dtype}.")
        data = data.astype(np.float64, copy=False)
        if data.ndim < 2:
            raise ValueError(
                f"{what} must have shape (..., n_channels, n_times), got {data.shape}."
            )
        finite = bool(np.isfinite(data).all())
    if data.shape[-2] != n_channels_expected:
        raise ValueError(
            f"{what} has {data.shape[-2]} channels (axis -2 of shape {tuple(data.shape)}) "
            f"but the kernel has {n_channels_expected}; pass ch_names to pick the "
            "kernel's channels from the data."
        )
    if not finite:
        raise ValueError(f"{what} contains NaN or infinite values.")
    return data


def _pick_data_channels(data, data_ch_names, kernel_ch_names):
    """Select (and reorder) the kernel's channels from data with ``data_ch_names``."""
    data_ch_names = list(data_ch_names)
    if len(data_ch_names) != data.shape[-2]:
        raise ValueError(
            f"ch_names has {len(data_ch_names)} names but data has {data.shape[-2]} "
            f"channels (axis -2 of shape {tuple(data.shape)})."
        )
    index = {name: ii for ii, name in enumerate(data_ch_names)}
    missing = [name for name in kernel_ch_names if name not in index]
    if missing:
        raise ValueError(
            f"{len(missing)} channels of the kernel are missing from the data ch_names: "
            f"{missing[:10]}{' ...' if len(missing) > 10 else ''}."
        )
    sel = [index[name] for name in kernel_ch_names]
    if sel == list(range(len(data_ch_names))):
        return data
    if _is_tensor(data):
        import torch

        return data[..., torch.as_tensor(sel, device=data.device), :]
    return np.asarray(data)[..., sel, :]


def _is_tensor(obj) -> bool:
    torch = _torch_if_loaded()
    return torch is not None and isinstance(obj, torch.Tensor)


def _torch_if_loaded():
    import sys

    return sys.modules.get("torch")


# --------------------------------------------------------------------------- operator
def make_inverse(
    headmodel_or_fwd,
    *,
    info=None,
    noise_cov=None,
    loose=0.0,
    depth=0.8,
    fixed="auto",
    rank=None,
    verbose=None,
) -> InverseOperator:
    """Make an MNE inverse operator for a head model or a forward solution.

    Parameters
    ----------
    headmodel_or_fwd : HeadModel | mne.Forward
        A :class:`~napari_meg_unet.headmodel.HeadModel` (its free-orientation,
        surface-oriented ``fwd``, ``info`` and ``noise_cov`` are used) or a
        forward solution. With a fixed-orientation forward, ``depth`` must be
        None (MNE computes the depth prior from the 3-component gain).
    info : mne.Info | None
        Measurement info (channels, bads, projectors). Required with a
        forward; overrides ``hm.info`` with a head model.
    noise_cov : mne.Covariance | None
        Noise covariance. Required with a forward; overrides ``hm.noise_cov``.
    loose : float | 'auto' | dict
        Variance factor of the tangential source components (MNE's
        ``loose``): 0 gives a fixed-orientation operator (sources along the
        surface normals), 1 a free one.
    depth : float | None | dict
        Depth-weighting exponent (MNE default 0.8); None disables it.
    fixed : bool | 'auto'
        As in :func:`mne.minimum_norm.make_inverse_operator`.
    rank : None | 'info' | dict
        Noise-covariance rank, as in MNE (use ``'info'`` for SSS data).
    verbose : bool | str | int | None
        MNE log level.

    Returns
    -------
    inv : mne.minimum_norm.InverseOperator
        The (unprepared, ``nave=1``) inverse operator.
    """
    from .headmodel import HeadModel

    if isinstance(headmodel_or_fwd, HeadModel):
        hm = headmodel_or_fwd
        fwd = hm.fwd
        info = hm.info if info is None else info
        noise_cov = hm.noise_cov if noise_cov is None else noise_cov
    elif isinstance(headmodel_or_fwd, mne.Forward):
        fwd = headmodel_or_fwd
        if info is None or noise_cov is None:
            raise ValueError(
                "info and noise_cov are required when headmodel_or_fwd is an mne.Forward."
            )
    else:
        raise ValueError(
            "headmodel_or_fwd must be a HeadModel or an mne.Forward, "
            f"got {type(headmodel_or_fwd).__name__}."
        )
    if not isinstance(info, mne.Info):
        raise ValueError(f"info must be an mne.Info, got {type(info).__name__}.")
    if not isinstance(noise_cov, mne.Covariance):
        raise ValueError(f"noise_cov must be an mne.Covariance, got {type(noise_cov).__name__}.")
    if isinstance(loose, int | float | np.number) and not 0 <= float(loose) <= 1:
        raise ValueError(f"loose must be between 0 and 1, got {loose!r}.")
    if isinstance(depth, int | float | np.number) and (not np.isfinite(depth) or float(depth) < 0):
        raise ValueError(f"depth must be None or a non-negative number, got {depth!r}.")
    return make_inverse_operator(
        info, fwd, noise_cov, loose=loose, depth=depth, fixed=fixed, rank=rank, verbose=verbose
    )


# --------------------------------------------------------------------------- kernels
@dataclass(eq=False)
class InverseKernel:
    """An imaging kernel: source estimates are ``K @ data`` (then combined per location).

    Attributes
    ----------
    K : ndarray, shape (n_components, n_channels)
        float64 kernel including the SSP projector, the whitener for ``nave``,
        the regularised inverter and the source weighting; for dSPM/sLORETA
        the noise normalisation is folded in (MNE's ``noise_norm * K``, one
        factor per location repeated over its components).
    method : str
        ``"MNE"``, ``"dSPM"``, ``"sLORETA"`` or ``"eLORETA"``.
    lambda2 : float
        Regularisation parameter.
    nave : int
        Number of averaged trials the kernel is made for (dSPM and sLORETA
        scale with ``sqrt(nave)``; MNE and eLORETA do not depend on it).
    n_orient : int
        Rows per source location: 1 (fixed operator or ``pick_ori='normal'``)
        or 3 (loose/free operator).
    ch_names : list of str
        The channels (columns of ``K``), in order.
    source_nn : ndarray, shape (n_components, 3)
        Orientation of each row in head coordinates (for 3-component kernels
        the rows of location ``i`` are the local frame ``(t1, t2, n)`` for
        surface-oriented operators, or x, y, z).
    vertno : list of ndarray
        Source vertex numbers per source space (lh, rh for surfaces).
    noise_norm : ndarray, shape (n_sources,) | None
        dSPM/sLORETA noise-normalisation factors per location (already in
        ``K``); None for MNE and eLORETA.
    pick_ori : None | 'normal' | 'vector'
        The ``pick_ori`` the kernel was computed for.
    frame : str
        ``"normal"`` (one row per location along ``source_nn``), ``"local"``
        (3 rows in the surface frame t1, t2, n) or ``"head"`` (3 rows x, y, z).
    method_params : dict
        eLORETA options used (empty for the other methods).
    fingerprint : str | None
        Fingerprint of the head model the kernel was made for, if known.
    """

    K: np.ndarray
    method: str
    lambda2: float
    nave: int
    n_orient: int
    ch_names: list
    source_nn: np.ndarray
    vertno: list
    noise_norm: np.ndarray | None = None
    pick_ori: str | None = None
    frame: str = "normal"
    method_params: dict = field(default_factory=dict)
    fingerprint: str | None = None

    @property
    def n_channels(self) -> int:
        return self.K.shape[1]

    @property
    def n_sources(self) -> int:
        return self.K.shape[0] // self.n_orient

    def vector_kernel(self) -> np.ndarray:
        """The kernel as head-xyz vectors, shape (n_sources, 3, n_channels).

        This is the linear kernel behind ``pick_ori='vector'``: the 3 rows of
        each location rotated by the transpose of its local frame (§1.10), or
        a fixed row times its orientation.
        """
        if self.n_orient == 1:
            return self.K[:, np.newaxis, :] * self.source_nn[:, :, np.newaxis]
        frames = self.source_nn.reshape(-1, 3, 3)
        return np.einsum("icd,icn->idn", frames, self.K.reshape(-1, 3, self.n_channels))

    def metadata(self) -> dict:
        """JSON-friendly description (everything except ``K``)."""
        return {
            "method": self.method,
            "lambda2": self.lambda2,
            "nave": self.nave,
            "n_orient": self.n_orient,
            "pick_ori": self.pick_ori,
            "frame": self.frame,
            "method_params": dict(self.method_params),
            "fingerprint": self.fingerprint,
            "shape": list(self.K.shape),
            "ch_names": list(self.ch_names),
            "vertno": [np.asarray(v).tolist() for v in self.vertno],
            "source_nn": np.asarray(self.source_nn).tolist(),
            "noise_norm": None if self.noise_norm is None else self.noise_norm.tolist(),
        }


def _surface_normals(src, use_cps=True) -> np.ndarray:
    """Per-source normals as MNE uses them to rotate a free operator (``_get_src_nn``)."""
    out = []
    for s in src:
        vertno = s["vertno"]
        if use_cps and s.get("patch_inds") is not None:
            patches = [s["pinfo"][s["patch_inds"][p]] for p in range(len(vertno))]
            nn = np.array([s["nn"][patch].sum(axis=0) for patch in patches])
            nn /= np.linalg.norm(nn, axis=-1, keepdims=True)
        else:
            nn = s["nn"][vertno]
        out.append(nn)
    return np.concatenate(out, axis=0)


def _prepare(inv, nave, lambda2, method, params, verbose):
    """MNE's prepare_inverse_operator (nave scaling, regularised inverter, whitener,
    noise normalisation or the eLORETA weights), without touching ``inv``."""
    try:
        return prepare_inverse_operator(
            inv, nave, lambda2, method, method_params=params or None, copy="non-src",
            verbose=verbose,
        )  # fmt: skip
    except ValueError as err:
        if method != "eLORETA" or "NaN" not in str(err):
            raise
        raise ValueError(
            f"The eLORETA weight fitting (method_params={params}) gave non-finite weights. "
            "With force_equal=True this happens when every source has an orientation the "
            "sensors cannot see (e.g. radial dipoles for MEG in a spherical head); use "
            "force_equal=False or a fixed-orientation operator."
        ) from err


def compute_kernel(
    inv,
    *,
    method,
    lambda2=1.0 / 9.0,
    nave=1,
    pick_ori=None,
    method_params=None,
    fingerprint=None,
    verbose=None,
) -> InverseKernel:
    """Compute the imaging kernel MNE's ``apply_inverse`` uses.

    Parameters
    ----------
    inv : mne.minimum_norm.InverseOperator
        An unprepared operator (e.g. from :func:`make_inverse`).
    method : str
        ``"MNE"``, ``"dSPM"``, ``"sLORETA"`` or ``"eLORETA"``.
    lambda2 : float
        Regularisation parameter (> 0), nominally ``1 / SNR**2``.
    nave : int
        Number of averages of the data the kernel will be applied to.
    pick_ori : None | 'normal' | 'vector'
        ``'normal'`` keeps only the normal component of a loose/free operator
        (one row per location, with the 3-component noise normalisation, as
        MNE). None and ``'vector'`` keep all components; the output form is
        chosen in :func:`apply_kernel`.
    method_params : dict | None
        eLORETA options; missing keys take :data:`ELORETA_DEFAULTS`
        (``force_equal`` is always passed explicitly to MNE).
    fingerprint : str | None
        Head-model fingerprint stored with the kernel.
    verbose : bool | str | int | None
        MNE log level.

    Returns
    -------
    kernel : InverseKernel
        The kernel with its metadata.
    """
    inv = _check_inverse(inv)
    method = _check_method(method)
    lambda2 = _check_lambda2(lambda2)
    nave = _check_nave(nave)
    pick_ori = _check_pick_ori(pick_ori)
    params = _eloreta_params(method_params) if method == "eLORETA" else {}
    free = _is_free(inv)
    src = inv["src"]
    n_sources = int(inv["nsource"])
    if pick_ori == "normal":
        if not free:
            raise ValueError(
                "pick_ori='normal' needs a loose or free (3-component) operator; this one "
                "has fixed orientations, whose kernel already points along the normals "
                "(use pick_ori=None)."
            )
        if not 0 < inv["orient_prior"]["data"][0] <= 1:
            raise ValueError("pick_ori='normal' needs an operator with an orientation prior.")
        if src.kind not in ("surface", "discrete"):
            raise ValueError(
                f"pick_ori='normal' is defined for surface or discrete sources, not {src.kind}."
            )
    _check_eeg_reference(inv)

    invp = _prepare(inv, nave, lambda2, method, params, verbose)
    trans = invp["eigen_fields"]["data"] @ (invp["whitener"] @ invp["proj"])
    trans *= invp["reginv"][:, np.newaxis]
    leads = np.asarray(invp["eigen_leads"]["data"], np.float64)
    if not invp["eigen_leads_weighted"]:
        leads = leads * np.sqrt(invp["source_cov"]["data"])[:, np.newaxis]
    K = leads @ trans
    source_nn = np.asarray(invp["source_nn"], np.float64)

    if free:
        frames = source_nn.reshape(n_sources, 3, 3)
        is_cartesian = np.allclose(frames, np.eye(3), atol=1e-6)
        frame = "head" if is_cartesian else "local"
        if pick_ori == "normal":
            if is_cartesian:
                if src.kind != "surface":
                    raise ValueError(
                        "pick_ori='normal' with a free operator in head xyz needs a surface "
                        "source space (to know the normals); make the operator with loose < 1."
                    )
                normals = _surface_normals(src)
                K = np.einsum("ic,icn->in", normals, K.reshape(n_sources, 3, -1))
            else:
                normals = frames[:, 2, :]
                K = K[2::3]
            source_nn = normals
            n_orient, frame = 1, "normal"
        else:
            n_orient = 3
    else:
        n_orient, frame = 1, "normal"

    noise_norm = None
    if method in ("dSPM", "sLORETA"):
        noise_norm = np.asarray(invp["noisenorm"], np.float64).ravel()
        K = K * np.repeat(noise_norm, n_orient)[:, np.newaxis]
    return InverseKernel(
        K=np.ascontiguousarray(K, dtype=np.float64),
        method=method,
        lambda2=lambda2,
        nave=nave,
        n_orient=n_orient,
        ch_names=_inverse_ch_names(invp),
        source_nn=source_nn,
        vertno=[np.asarray(s["vertno"]).copy() for s in src],
        noise_norm=noise_norm,
        pick_ori=pick_ori,
        frame=frame,
        method_params=params,
        fingerprint=fingerprint,
    )


# --------------------------------------------------------------------------- application
def resolve_device(device=None):
    """The torch device for ``device`` (None or ``'auto'``: CUDA when available, else CPU).

    An explicit CUDA device without CUDA available falls back to the CPU with
    a :class:`RuntimeWarning`.
    """
    import torch

    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        warnings.warn(
            f"device {str(device)!r} was requested but CUDA is not available; using the CPU.",
            RuntimeWarning,
            stacklevel=3,
        )
        return torch.device("cpu")
    return device


def _combine(xp, kernel, y, pick_ori):
    """Turn ``y = K @ data`` (..., n_components, n_times) into the ``pick_ori`` output."""
    n_sources = kernel.n_sources
    if kernel.n_orient == 1:
        if pick_ori == "vector":
            nn = _like(xp, kernel.source_nn, y)
            return y[..., :, None, :] * nn[:, :, None]
        return y
    y3 = y.reshape(*y.shape[:-2], n_sources, 3, y.shape[-1])
    if pick_ori is None:
        return xp.sqrt((y3 * y3).sum(-2))
    if pick_ori == "normal":
        if kernel.frame != "local":
            raise ValueError(
                "pick_ori='normal' needs a kernel in the surface frame; this kernel's rows are "
                "head x, y, z. Compute it with compute_kernel(..., pick_ori='normal')."
            )
        return y3[..., 2, :]
    frames = _like(xp, kernel.source_nn.reshape(n_sources, 3, 3), y)
    return xp.einsum("icd,...ict->...idt", frames, y3)


def _kernel_product(K, data):
    """``K @ data`` over any leading batch dimensions, as one large matrix product.

    ``np.matmul`` on a stack runs one small product per batch entry; folding
    the batch and time axes into one (B * n_times, n_channels) matrix is about
    twice as fast. The result is a strided view with the usual shape
    (..., n_components, n_times).
    """
    if data.ndim == 2:
        return K @ data
    *lead, n_channels, n_times = data.shape
    flat = np.swapaxes(data, -1, -2).reshape(-1, n_channels)
    y = flat @ K.T
    return np.swapaxes(y.reshape(*lead, n_times, K.shape[0]), -1, -2)


def _like(xp, array, ref):
    if xp is np:
        return array
    return xp.as_tensor(array, dtype=ref.dtype, device=ref.device)


def apply_kernel(kernel, data, *, pick_ori=None, ch_names=None, backend="numpy", device=None):
    """Apply an imaging kernel to a batch of sensor data.

    Parameters
    ----------
    kernel : InverseKernel
        From :func:`compute_kernel`.
    data : array-like | torch.Tensor, shape (..., n_channels, n_times)
        Sensor data in SI units, any leading batch dimensions (e.g. events).
    pick_ori : None | 'normal' | 'vector'
        Output per location, as :func:`mne.minimum_norm.apply_inverse`:
        None gives the signed value of a 1-component kernel and the magnitude
        over the 3 components otherwise; ``'normal'`` the signed normal
        component; ``'vector'`` the current vector in head x, y, z.
    ch_names : list of str | None
        Channel names of ``data`` (axis -2); when given, the kernel's channels
        are picked from it by name. Otherwise ``data`` must already have the
        kernel's channels in order.
    backend : 'numpy' | 'torch'
        Array library for the product. ``torch`` runs on ``device``.
    device : str | torch.device | None
        Torch device; None or ``'auto'`` picks CUDA when available, else CPU.

    Returns
    -------
    estimate : ndarray | torch.Tensor, shape (..., n_sources[, 3], n_times)
        float64 source estimates; a torch tensor (on ``device``) when
        ``data`` is a tensor, else a numpy array.
    """
    if not isinstance(kernel, InverseKernel):
        raise ValueError(f"kernel must be an InverseKernel, got {type(kernel).__name__}.")
    pick_ori = _check_pick_ori(pick_ori)
    _check_option("backend", backend, BACKENDS)
    if ch_names is not None:
        data = _pick_data_channels(data, ch_names, kernel.ch_names)
    is_tensor = _is_tensor(data)
    data = _as_data(data, kernel.n_channels)
    if backend == "numpy":
        if is_tensor:
            data = data.detach().cpu().numpy()
        out = _combine(np, kernel, _kernel_product(kernel.K, data), pick_ori)
        if is_tensor:
            import torch

            return torch.from_numpy(np.ascontiguousarray(out))
        return out
    import torch

    dev = resolve_device(device)
    x = data.to(dev) if is_tensor else torch.from_numpy(np.ascontiguousarray(data)).to(dev)
    K = torch.as_tensor(kernel.K, dtype=torch.float64, device=dev)
    out = _combine(torch, kernel, torch.matmul(K, x), pick_ori)
    return out if is_tensor else out.cpu().numpy()


def apply_inverse_batch(
    inv,
    data,
    *,
    methods=("MNE", "dSPM", "sLORETA"),
    lambda2=1.0 / 9.0,
    nave=1,
    pick_ori=None,
    ch_names=None,
    backend="numpy",
    device=None,
    method_params=None,
    verbose=None,
) -> dict:
    """Apply several inverse methods to a batch of data.

    Parameters
    ----------
    inv : mne.minimum_norm.InverseOperator
        Unprepared operator.
    data : array-like, shape (..., n_channels, n_times)
        Sensor data (see :func:`apply_kernel`).
    methods : sequence of str
        Methods among :data:`METHODS`, in output order.
    lambda2, nave, method_params, verbose
        See :func:`compute_kernel`.
    pick_ori, ch_names, backend, device
        See :func:`apply_kernel`.

    Returns
    -------
    estimates : dict
        ``{method: array (..., n_sources[, 3], n_times)}``.
    """
    methods = _check_methods(methods)
    kernels = {
        method: compute_kernel(
            inv,
            method=method,
            lambda2=lambda2,
            nave=nave,
            pick_ori="normal" if pick_ori == "normal" else None,
            method_params=method_params,
            verbose=verbose,
        )
        for method in dict.fromkeys(methods + ("MNE",))
    }
    out = {}
    # dSPM and sLORETA are the MNE estimate scaled per location by the noise
    # normalisation (§1.10, also after combining 3 components), so one kernel
    # product serves all three.
    family = [m for m in methods if m in NOISE_NORMALISED or m == "MNE"]
    if len(family) > 1:
        base = apply_kernel(
            kernels["MNE"], data, pick_ori=pick_ori, ch_names=ch_names, backend=backend,
            device=device,
        )  # fmt: skip
        n_trailing = 2 if pick_ori == "vector" else 1  # (..., n_sources[, 3], n_times)
        for method in family:
            norm = kernels[method].noise_norm
            if norm is None:
                out[method] = base
                continue
            norm = _like(_torch_if_loaded() if _is_tensor(base) else np, norm, base)
            out[method] = base * norm.reshape(norm.shape + (1,) * n_trailing)
    for method in methods:
        if method not in out:
            out[method] = apply_kernel(
                kernels[method], data, pick_ori=pick_ori, ch_names=ch_names, backend=backend,
                device=device,
            )  # fmt: skip
    return {method: out[method] for method in methods}


# --------------------------------------------------------------------------- diagnostics
def svd_spectrum(inv, *, lambda2=1.0 / 9.0) -> dict:
    """Singular-value spectrum of the whitened, weighted gain of an operator (§1.8).

    Parameters
    ----------
    inv : mne.minimum_norm.InverseOperator
        Operator from :func:`make_inverse` (its ``sing`` are the singular
        values of ``W G R^(1/2)``, trace-normalised so that their squares
        sum to the noise rank).
    lambda2 : float
        Regularisation parameter used for the markers.

    Returns
    -------
    spectrum : dict
        ``singular_values`` (all stored values, descending), ``rank`` (noise
        rank ``r``; values past it are numerical zeros), ``n_channels``,
        ``condition_number`` (``sigma_1 / sigma_r``), ``lambda2``,
        ``lambda2_marker`` (``sqrt(lambda2)``: the singular value whose Tikhonov
        filter factor is 1/2), ``n_above_marker`` (how many of the first ``r``
        exceed it), ``filter_factors`` (``sigma^2 / (sigma^2 + lambda2)`` for
        the first ``r``) and ``effective_dof`` (their sum).
    """
    inv = _check_inverse(inv)
    lambda2 = _check_lambda2(lambda2)
    sing = np.asarray(inv["sing"], np.float64)
    rank = int(compute_rank_inverse(inv))
    kept = sing[:rank]
    kept = kept[kept > 0]
    filt = kept**2 / (kept**2 + lambda2)
    marker = math.sqrt(lambda2)
    return {
        "singular_values": sing,
        "rank": rank,
        "n_channels": len(_inverse_ch_names(inv)),
        "condition_number": float(kept[0] / kept[-1]) if len(kept) else float("inf"),
        "lambda2": lambda2,
        "lambda2_marker": marker,
        "n_above_marker": int((kept > marker).sum()),
        "filter_factors": filt,
        "effective_dof": float(filt.sum()),
    }


def _data_operators(inv, *, lambda2, nave, method, method_params, verbose):
    """Whitening (``W P``) and data-fit (``x -> x_hat``) matrices of apply_inverse."""
    inv = _check_inverse(inv)
    method = _check_method(method)
    lambda2 = _check_lambda2(lambda2)
    nave = _check_nave(nave)
    params = _eloreta_params(method_params) if method == "eLORETA" else {}
    invp = _prepare(inv, nave, lambda2, method, params, verbose)
    white = invp["whitener"] @ invp["proj"]
    Ut = invp["eigen_fields"]["data"]
    Pi = invp["sing"] * invp["reginv"]
    fit = invp["colorer"] @ (Ut.T * Pi) @ Ut @ white
    return _inverse_ch_names(invp), white, fit


def residual(
    inv,
    data,
    *,
    lambda2=1.0 / 9.0,
    nave=1,
    method="MNE",
    ch_names=None,
    method_params=None,
    verbose=None,
) -> np.ndarray:
    """Data minus the data predicted by the inverse (``return_residual=True`` of MNE).

    The prediction is ``x_hat = C^(1/2) U Pi U^T W P x`` (§1.10); it depends on
    ``lambda2`` and, for eLORETA (which changes the SVD), on the method.

    Parameters
    ----------
    inv : mne.minimum_norm.InverseOperator
        Unprepared operator.
    data : array-like, shape (..., n_channels, n_times)
        Sensor data.
    lambda2, nave, method, method_params, verbose
        See :func:`compute_kernel`.
    ch_names : list of str | None
        Channel names of ``data``; see :func:`apply_kernel`.

    Returns
    -------
    residual : ndarray, shape (..., n_channels, n_times)
        Residual on the operator's channels (in their order).
    """
    names, _, fit = _data_operators(
        inv,
        lambda2=lambda2,
        nave=nave,
        method=method,
        method_params=method_params,
        verbose=verbose,
    )
    if ch_names is not None:
        data = _pick_data_channels(np.asarray(data), ch_names, names)
    x = _as_data(np.asarray(data), len(names))
    return x - np.matmul(fit, x)


def explained_variance(
    inv,
    data,
    *,
    lambda2=1.0 / 9.0,
    nave=1,
    method="MNE",
    ch_names=None,
    method_params=None,
    verbose=None,
):
    """Fraction of the whitened data variance explained by the inverse (§1.10).

    ``1 - ||w - w_hat||^2 / ||w||^2`` with ``w = W P x`` and ``w_hat`` its
    whitened prediction, summed over channels and times of each sample. This
    is the value ``apply_inverse`` logs (as a percentage).

    Parameters
    ----------
    inv, data, lambda2, nave, method, ch_names, method_params, verbose
        See :func:`residual`.

    Returns
    -------
    explained : float | ndarray, shape data.shape[:-2]
        One value per sample (a float for 2-D data).
    """
    names, white, fit = _data_operators(
        inv,
        lambda2=lambda2,
        nave=nave,
        method=method,
        method_params=method_params,
        verbose=verbose,
    )
    if ch_names is not None:
        data = _pick_data_channels(np.asarray(data), ch_names, names)
    x = _as_data(np.asarray(data), len(names))
    w = np.matmul(white, x)
    res = w - np.matmul(white @ fit, x)
    power = (w * w).sum(axis=(-2, -1))
    if np.any(power == 0):
        raise ValueError("data has zero whitened power in at least one sample.")
    out = 1.0 - (res * res).sum(axis=(-2, -1)) / power
    return float(out) if np.ndim(out) == 0 else out


# --------------------------------------------------------------------------- Brainstorm
def _check_rank_n(rank, n_channels):
    if isinstance(rank, bool) or isinstance(n_channels, bool):
        raise ValueError("rank and n_channels must be integers.")
    if int(n_channels) != n_channels or n_channels < 1:
        raise ValueError(f"n_channels must be a positive integer, got {n_channels!r}.")
    if int(rank) != rank or not 1 <= rank <= n_channels:
        raise ValueError(
            f"rank must be an integer between 1 and n_channels={n_channels}, got {rank!r}."
        )
    return int(rank), int(n_channels)


def brainstorm_snr_to_lambda2(snr, *, rank, n_channels) -> float:
    """MNE ``lambda2`` equivalent to Brainstorm's ``SnrFixed`` (§2.6).

    Brainstorm scales its regulariser with ``trace(L L^T) / n`` and MNE with
    ``trace(L L^T) / r``, so for the same prior, covariance and whitening the
    kernels agree when ``lambda2 = (r / n) / snr**2``.

    Parameters
    ----------
    snr : float
        Brainstorm's amplitude SNR (``SnrFixed``, default 3).
    rank : int
        Noise rank ``r`` (e.g. ``compute_rank_inverse(inv)``).
    n_channels : int
        Number of channels ``n`` used by the inverse.

    Returns
    -------
    lambda2 : float
    """
    rank, n_channels = _check_rank_n(rank, n_channels)
    snr = float(snr)
    if not np.isfinite(snr) or snr <= 0:
        raise ValueError(f"snr must be a positive finite number, got {snr!r}.")
    return (rank / n_channels) / snr**2


def lambda2_to_brainstorm_snr(lambda2, *, rank, n_channels) -> float:
    """Brainstorm ``SnrFixed`` equivalent to MNE's ``lambda2`` (inverse of
    :func:`brainstorm_snr_to_lambda2`)."""
    rank, n_channels = _check_rank_n(rank, n_channels)
    lambda2 = _check_lambda2(lambda2)
    return math.sqrt(rank / (n_channels * lambda2))


# --------------------------------------------------------------------------- export
def _kernel_paths(path) -> tuple[Path, Path]:
    path = Path(path)
    stem = path.with_suffix("") if path.suffix == ".npy" else path
    return stem.with_name(stem.name + ".npy"), stem.with_name(stem.name + ".json")


def save_kernel(kernel, path, *, overwrite=False) -> Path:
    """Save a kernel as ``<path>.npy`` (float64 ``K``) plus a ``<path>.json`` sidecar.

    Parameters
    ----------
    kernel : InverseKernel
        The kernel.
    path : path-like
        Output path, with or without the ``.npy`` suffix.
    overwrite : bool
        Replace existing files.

    Returns
    -------
    path : Path
        The ``.npy`` path. The sidecar holds :meth:`InverseKernel.metadata`
        (method, lambda2, nave, ch_names, vertno, source_nn, noise_norm,
        fingerprint if known).
    """
    if not isinstance(kernel, InverseKernel):
        raise ValueError(f"kernel must be an InverseKernel, got {type(kernel).__name__}.")
    npy, sidecar = _kernel_paths(path)
    check_output_path(npy, overwrite=overwrite, what="kernel")
    check_output_path(sidecar, overwrite=overwrite, what="kernel sidecar")
    save_npy(npy, kernel.K)
    write_json(sidecar, kernel.metadata())
    return npy


def load_kernel(path, *, mmap_mode=None) -> InverseKernel:
    """Read a kernel written by :func:`save_kernel`."""
    npy, sidecar = _kernel_paths(path)
    if not npy.is_file():
        raise FileNotFoundError(f"Expected a kernel file at {str(npy)!r}; it does not exist.")
    meta = read_json(sidecar)
    K = np.load(npy, mmap_mode=mmap_mode, allow_pickle=False)
    if list(K.shape) != meta["shape"]:
        raise ValueError(
            f"{str(npy)!r} has shape {K.shape} but its sidecar says {tuple(meta['shape'])}."
        )
    return InverseKernel(
        K=K,
        method=meta["method"],
        lambda2=float(meta["lambda2"]),
        nave=int(meta["nave"]),
        n_orient=int(meta["n_orient"]),
        ch_names=list(meta["ch_names"]),
        source_nn=np.asarray(meta["source_nn"], np.float64),
        vertno=[np.asarray(v, int) for v in meta["vertno"]],
        noise_norm=None if meta["noise_norm"] is None else np.asarray(meta["noise_norm"]),
        pick_ori=meta["pick_ori"],
        frame=meta["frame"],
        method_params=dict(meta["method_params"]),
        fingerprint=meta["fingerprint"],
    )


_INV_SUFFIXES = ("-inv.fif", "-inv.fif.gz", "_inv.fif", "_inv.fif.gz")


def write_operator(inv, path, *, overwrite=False, verbose=None) -> Path:
    """Write an inverse operator to ``path`` atomically.

    Parameters
    ----------
    inv : mne.minimum_norm.InverseOperator
        Operator (unprepared).
    path : path-like
        Must end in ``-inv.fif`` (or ``-inv.fif.gz``, ``_inv.fif``, ``_inv.fif.gz``),
        as MNE requires.
    overwrite : bool
        Replace an existing file.
    verbose : bool | str | int | None
        MNE log level.

    Returns
    -------
    path : Path
    """
    inv = _check_inverse(inv)
    path = Path(path)
    suffix = next((s for s in _INV_SUFFIXES if path.name.endswith(s)), None)
    if suffix is None:
        raise ValueError(
            f"The inverse-operator path {str(path)!r} must end in one of {_INV_SUFFIXES} "
            "(MNE naming convention)."
        )
    check_output_path(path, overwrite=overwrite, what="inverse operator")
    with atomic_path(path, suffix=suffix) as tmp:
        write_inverse_operator(tmp, inv, overwrite=True, verbose=verbose)
    return path


# --------------------------------------------------------------------------- input stacks
def _normalise(block, normalisation):
    """Normalise (n_samples, n_rows, n_times) estimates of one method in place."""
    if normalisation == "none":
        return block
    if normalisation == "column-max":
        scale = np.abs(block).max(axis=-2, keepdims=True)
    else:
        scale = np.abs(block).max(axis=(-2, -1), keepdims=True)
    scale[scale == 0] = 1.0
    block /= scale
    return block


def make_input_stack(
    kernels_or_dict,
    data,
    *,
    rows,
    normalisation="column-max",
    pick_ori=None,
    ch_names=None,
    backend="numpy",
    device=None,
) -> np.ndarray:
    """Source images in the thesis layout: (n_samples, n_methods, n_rows, n_times).

    Each method is one image channel, in the given order; rows are sources
    (``rows`` indexes the kernel's source order, e.g. ``HeadModel.rows(hemi)``)
    and columns are time samples.

    Parameters
    ----------
    kernels_or_dict : sequence of InverseKernel | dict
        Kernels (channel order = sequence order, or dict insertion order).
    data : array-like, shape (n_samples, n_channels, n_times) | (n_channels, n_times)
        Sensor data (2-D data is one sample).
    rows : array-like of int
        Source indices forming the image rows, in order.
    normalisation : 'column-max' | 'global-max' | 'none'
        How each (sample, method) image is scaled:

        ``'column-max'``
            The thesis's choice: every time column is divided by its maximum
            of ``|value|`` over the rows, so each column peaks at 1 and the
            time course of the amplitude is discarded.
        ``'global-max'``
            The whole image is divided by its maximum ``|value|`` over rows
            and times, which keeps relative amplitudes across time.
        ``'none'``
            Raw estimates (A·m for MNE/eLORETA, unitless for dSPM/sLORETA).

        All-zero columns/images stay zero.
    pick_ori : None | 'normal'
        Per-location output (see :func:`apply_kernel`); None gives signed
        values for fixed kernels and magnitudes for loose ones.
    ch_names, backend, device
        See :func:`apply_kernel`.

    Returns
    -------
    stack : ndarray of float32, shape (n_samples, n_methods, n_rows, n_times)
    """
    _check_option("normalisation", normalisation, NORMALISATIONS)
    if pick_ori == "vector":
        raise ValueError("pick_ori must be None or 'normal' for input stacks, got 'vector'.")
    _check_pick_ori(pick_ori)
    if isinstance(kernels_or_dict, Mapping):
        kernels = list(kernels_or_dict.values())
    elif isinstance(kernels_or_dict, InverseKernel):
        kernels = [kernels_or_dict]
    elif isinstance(kernels_or_dict, Sequence):
        kernels = list(kernels_or_dict)
    else:
        raise ValueError(
            "kernels_or_dict must be an InverseKernel, a sequence of them or a dict, "
            f"got {type(kernels_or_dict).__name__}."
        )
    if not kernels:
        raise ValueError("kernels_or_dict is empty; give at least one kernel.")
    for kernel in kernels:
        if not isinstance(kernel, InverseKernel):
            raise ValueError(
                f"kernels_or_dict must hold InverseKernel objects, got {type(kernel).__name__}."
            )
    n_sources = kernels[0].n_sources
    if any(k.n_sources != n_sources for k in kernels):
        raise ValueError(
            f"All kernels must have the same sources, got {[k.n_sources for k in kernels]} sources."
        )
    rows = np.asarray(rows)
    if rows.ndim != 1 or rows.dtype.kind not in "iu" or len(rows) == 0:
        raise ValueError(f"rows must be a non-empty 1-D integer array, got {rows!r}.")
    if rows.min() < 0 or rows.max() >= n_sources:
        raise ValueError(
            f"rows must index the {n_sources} sources, got range [{rows.min()}, {rows.max()}]."
        )
    data = np.asarray(data) if not _is_tensor(data) else data
    if data.ndim == 2:
        data = data[np.newaxis]
    if data.ndim != 3:
        raise ValueError(
            "data must have shape (n_samples, n_channels, n_times) or (n_channels, n_times), "
            f"got {tuple(data.shape)}."
        )
    n_samples, _, n_times = data.shape
    stack = np.empty((n_samples, len(kernels), len(rows), n_times), np.float32)
    for mi, kernel in enumerate(kernels):
        est = apply_kernel(
            kernel, data, pick_ori=pick_ori, ch_names=ch_names, backend=backend, device=device
        )
        if _is_tensor(est):
            est = est.cpu().numpy()
        stack[:, mi] = _normalise(est[:, rows], normalisation)
    return stack


def iter_inverse_stack(
    hm,
    data,
    *,
    methods=("MNE", "dSPM", "sLORETA"),
    lambda2=1.0 / 9.0,
    nave=1,
    hemi="rh",
    normalisation="column-max",
    loose=0.0,
    depth=0.8,
    method_params=None,
    ch_names=None,
    backend="numpy",
    device=None,
    verbose=None,
):
    """Generator form of :func:`inverse_stack`, yielding one Progress per method."""
    from .headmodel import check_hemi

    methods = _check_methods(methods)
    lambda2 = _check_lambda2(lambda2)
    nave = _check_nave(nave)
    check_hemi(hemi)
    _check_option("normalisation", normalisation, NORMALISATIONS)
    total = len(methods) + 2
    yield Progress("inverse", 0, total, "operator")
    inv = make_inverse(hm, loose=loose, depth=depth, verbose=verbose)
    kernels = {}
    for ii, method in enumerate(methods):
        yield Progress("inverse", ii + 1, total, method)
        kernels[method] = compute_kernel(
            inv,
            method=method,
            lambda2=lambda2,
            nave=nave,
            method_params=method_params,
            fingerprint=hm.fingerprint,
            verbose=verbose,
        )
    yield Progress("inverse", total - 1, total, "stack")
    stack = make_input_stack(
        kernels,
        data,
        rows=hm.rows(hemi),
        normalisation=normalisation,
        ch_names=ch_names,
        backend=backend,
        device=device,
    )
    yield Progress("inverse", total, total, "done")
    return stack


def inverse_stack(
    hm,
    data,
    *,
    methods=("MNE", "dSPM", "sLORETA"),
    lambda2=1.0 / 9.0,
    nave=1,
    hemi="rh",
    normalisation="column-max",
    loose=0.0,
    depth=0.8,
    method_params=None,
    ch_names=None,
    backend="numpy",
    device=None,
    verbose=None,
) -> np.ndarray:
    """Thesis-layout input stack for a head model and sensor data in one call.

    Makes the operator (:func:`make_inverse` with ``loose``/``depth``), the
    kernels of ``methods`` and returns :func:`make_input_stack` on the rows
    ``hm.rows(hemi)``.

    Parameters
    ----------
    hm : HeadModel
        Head model (its ``info`` channels are the data channels unless
        ``ch_names`` is given).
    data : array-like, shape (n_samples, n_channels, n_times)
        Sensor data.
    methods : sequence of str
        Methods = image channels, in order (thesis: MNE, dSPM, sLORETA).
    lambda2, nave, method_params
        See :func:`compute_kernel`.
    hemi : 'lh' | 'rh' | 'both'
        Rows of the image (thesis: right hemisphere).
    normalisation : str
        See :func:`make_input_stack`.
    loose, depth
        See :func:`make_inverse` (thesis: fixed orientation, depth 0.8).
    ch_names, backend, device
        See :func:`apply_kernel`.
    verbose : bool | str | int | None
        MNE log level.

    Returns
    -------
    stack : ndarray of float32, shape (n_samples, n_methods, n_rows, n_times)
    """
    return run(
        iter_inverse_stack(
            hm,
            data,
            methods=methods,
            lambda2=lambda2,
            nave=nave,
            hemi=hemi,
            normalisation=normalisation,
            loose=loose,
            depth=depth,
            method_params=method_params,
            ch_names=ch_names,
            backend=backend,
            device=device,
            verbose=verbose,
        )
    )
