"""Imaging kernels: everything ``apply_inverse`` does per call, folded into one matrix."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from mne.minimum_norm import prepare_inverse_operator

from .._logging import verbose as _verbose
from .._validation import check_choice, check_int, check_number
from ..configs import METHODS
from ._common import (
    NOISE_NORMALISED,
    PICK_ORIS,
    _check_eeg_reference,
    _check_inverse,
    _eloreta_params,
    _inverse_ch_names,
    _is_free,
)
from ._docs import fill_doc


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


def _check_options(method, lambda2, nave):
    """Validated ``method``, ``lambda2`` and ``nave`` of a kernel."""
    method = check_choice(method, "method", METHODS)
    lambda2 = check_number(lambda2, "lambda2", minimum=0.0)
    nave = check_int(nave, "nave", minimum=1)
    return method, lambda2, nave


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


def _check_normal_pick(inv, free: bool) -> None:
    """``pick_ori='normal'`` needs a loose/free operator with an orientation prior on a surface."""
    if not free:
        raise ValueError(
            "pick_ori='normal' needs a loose or free (3-component) operator; this one "
            "has fixed orientations, whose kernel already points along the normals "
            "(use pick_ori=None)."
        )
    if not 0 < inv["orient_prior"]["data"][0] <= 1:
        raise ValueError("pick_ori='normal' needs an operator with an orientation prior.")
    if inv["src"].kind not in ("surface", "discrete"):
        raise ValueError(
            f"pick_ori='normal' is defined for surface or discrete sources, not {inv['src'].kind}."
        )


def _mne_kernel(invp) -> np.ndarray:
    """``R^(1/2) V Pi U^T W P`` of a prepared operator (MNE's ``_assemble_kernel``)."""
    trans = invp["eigen_fields"]["data"] @ (invp["whitener"] @ invp["proj"])
    trans *= invp["reginv"][:, np.newaxis]
    leads = np.asarray(invp["eigen_leads"]["data"], np.float64)
    if not invp["eigen_leads_weighted"]:
        leads = leads * np.sqrt(invp["source_cov"]["data"])[:, np.newaxis]
    return leads @ trans


def _orient(K, source_nn, src, *, free: bool, pick_ori):
    """Rows per location: ``(K, source_nn, n_orient, frame)`` for ``pick_ori``."""
    if not free:
        return K, source_nn, 1, "normal"
    n_sources = len(source_nn) // 3
    frames = source_nn.reshape(n_sources, 3, 3)
    is_cartesian = np.allclose(frames, np.eye(3), atol=1e-6)
    if pick_ori != "normal":
        return K, source_nn, 3, "head" if is_cartesian else "local"
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
    return K, normals, 1, "normal"


@fill_doc
@_verbose
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
    %(inv_operator)s
    method : str
        ``"MNE"``, ``"dSPM"``, ``"sLORETA"`` or ``"eLORETA"``.
    %(lambda2)s
    %(nave)s
    pick_ori : None | 'normal' | 'vector'
        ``'normal'`` keeps only the normal component of a loose/free operator
        (one row per location, with the 3-component noise normalisation, as
        MNE). None and ``'vector'`` keep all components; the output form is
        chosen in :func:`apply_kernel`.
    %(method_params)s
    fingerprint : str | None
        Head-model fingerprint stored with the kernel.
    %(verbose)s

    Returns
    -------
    kernel : InverseKernel
        The kernel with its metadata.
    """
    inv = _check_inverse(inv)
    method, lambda2, nave = _check_options(method, lambda2, nave)
    pick_ori = check_choice(pick_ori, "pick_ori", PICK_ORIS)
    params = _eloreta_params(method_params) if method == "eLORETA" else {}
    free = _is_free(inv)
    if pick_ori == "normal":
        _check_normal_pick(inv, free)
    _check_eeg_reference(inv)

    invp = _prepare(inv, nave, lambda2, method, params, verbose)
    K, source_nn, n_orient, frame = _orient(
        _mne_kernel(invp),
        np.asarray(invp["source_nn"], np.float64),
        inv["src"],
        free=free,
        pick_ori=pick_ori,
    )
    noise_norm = None
    if method in NOISE_NORMALISED:
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
        vertno=[np.asarray(s["vertno"]).copy() for s in inv["src"]],
        noise_norm=noise_norm,
        pick_ori=pick_ori,
        frame=frame,
        method_params=params,
        fingerprint=fingerprint,
    )
