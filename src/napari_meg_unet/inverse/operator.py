"""Making and writing MNE inverse operators."""

from __future__ import annotations

from pathlib import Path

import mne
from mne.minimum_norm import InverseOperator, make_inverse_operator, write_inverse_operator

from .._io import atomic_path, check_output_path
from .._logging import verbose as _verbose
from .._validation import check_number
from ._common import _check_inverse
from ._docs import fill_doc

_INV_SUFFIXES = ("-inv.fif", "-inv.fif.gz", "_inv.fif", "_inv.fif.gz")


def _forward_inputs(headmodel_or_fwd, info, noise_cov):
    """The forward, info and noise covariance of a head model or of a forward solution."""
    from ..headmodel import HeadModel

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
    return fwd, info, noise_cov


def _is_headmodel(obj) -> bool:
    from ..headmodel import HeadModel

    return isinstance(obj, HeadModel)


@fill_doc
@_verbose
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
        Noise-covariance rank, as in MNE. None with a head model: the head
        model's ``hm.noise_rank["mne"]`` (MNE's ``rank='info'`` for
        Maxwell-filtered data, else estimated from the covariance).
    %(verbose)s

    Returns
    -------
    inv : mne.minimum_norm.InverseOperator
        The (unprepared, ``nave=1``) inverse operator.
    """
    fwd, info, noise_cov = _forward_inputs(headmodel_or_fwd, info, noise_cov)
    if rank is None and _is_headmodel(headmodel_or_fwd):
        rank = headmodel_or_fwd.noise_rank["mne"]
    if not isinstance(loose, str | dict):
        check_number(loose, "loose", minimum=0.0, maximum=1.0, strict=False)
    if depth is not None and not isinstance(depth, dict):
        check_number(depth, "depth", minimum=0.0, strict=False)
    return make_inverse_operator(
        info, fwd, noise_cov, loose=loose, depth=depth, fixed=fixed, rank=rank, verbose=verbose
    )


@fill_doc
@_verbose
def write_operator(inv, path, *, overwrite=False, verbose=None) -> Path:
    """Write an inverse operator to ``path`` atomically.

    Parameters
    ----------
    inv : mne.minimum_norm.InverseOperator
        Operator (unprepared).
    path : path-like
        Must end in ``-inv.fif`` (or ``-inv.fif.gz``, ``_inv.fif``, ``_inv.fif.gz``),
        as MNE requires.
    %(overwrite)s
    %(verbose)s

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
