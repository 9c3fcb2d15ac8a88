"""Diagnostics of an operator: SVD spectrum, residuals and explained variance."""

from __future__ import annotations

import math

import numpy as np
from mne.minimum_norm import compute_rank_inverse

from .._logging import verbose as _verbose
from .._validation import check_number
from ._common import _check_inverse, _eloreta_params, _inverse_ch_names
from ._data import _as_data, _pick_data_channels
from ._docs import fill_doc
from .kernels import _check_options, _prepare


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
    lambda2 = check_number(lambda2, "lambda2", minimum=0.0)
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
    method, lambda2, nave = _check_options(method, lambda2, nave)
    params = _eloreta_params(method_params) if method == "eLORETA" else {}
    invp = _prepare(inv, nave, lambda2, method, params, verbose)
    white = invp["whitener"] @ invp["proj"]
    Ut = invp["eigen_fields"]["data"]
    Pi = invp["sing"] * invp["reginv"]
    fit = invp["colorer"] @ (Ut.T * Pi) @ Ut @ white
    return _inverse_ch_names(invp), white, fit


def _fit_data(inv, data, ch_names, **options):
    """``(x, white, fit)``: the data on the operator's channels and its two matrices."""
    names, white, fit = _data_operators(inv, **options)
    if ch_names is not None:
        data = _pick_data_channels(np.asarray(data), ch_names, names)
    return _as_data(np.asarray(data), len(names)), white, fit


@fill_doc
@_verbose
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
    %(inv_operator)s
    data : array-like, shape (..., n_channels, n_times)
        Sensor data.
    %(lambda2)s
    %(nave)s
    method : str
        ``"MNE"``, ``"dSPM"``, ``"sLORETA"`` or ``"eLORETA"``.
    %(data_ch_names)s
    %(method_params)s
    %(verbose)s

    Returns
    -------
    residual : ndarray, shape (..., n_channels, n_times)
        Residual on the operator's channels (in their order).
    """
    x, _, fit = _fit_data(
        inv, data, ch_names, lambda2=lambda2, nave=nave, method=method,
        method_params=method_params, verbose=verbose,
    )  # fmt: skip
    return x - np.matmul(fit, x)


@fill_doc
@_verbose
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
    %(inv_operator)s
    data : array-like, shape (..., n_channels, n_times)
        Sensor data.
    %(lambda2)s
    %(nave)s
    method : str
        ``"MNE"``, ``"dSPM"``, ``"sLORETA"`` or ``"eLORETA"``.
    %(data_ch_names)s
    %(method_params)s
    %(verbose)s

    Returns
    -------
    explained : float | ndarray, shape data.shape[:-2]
        One value per sample (a float for 2-D data).
    """
    x, white, fit = _fit_data(
        inv, data, ch_names, lambda2=lambda2, nave=nave, method=method,
        method_params=method_params, verbose=verbose,
    )  # fmt: skip
    w = np.matmul(white, x)
    res = w - np.matmul(white @ fit, x)
    power = (w * w).sum(axis=(-2, -1))
    if np.any(power == 0):
        raise ValueError("data has zero whitened power in at least one sample.")
    out = 1.0 - (res * res).sum(axis=(-2, -1)) / power
    return float(out) if np.ndim(out) == 0 else out
