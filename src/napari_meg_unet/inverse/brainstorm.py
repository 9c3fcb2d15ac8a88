"""Brainstorm <-> MNE regularisation mapping (§2.6)."""

from __future__ import annotations

import math

from .._validation import check_int, check_number


def _check_rank_n(rank, n_channels) -> tuple[int, int]:
    n_channels = check_int(n_channels, "n_channels", minimum=1)
    rank = check_int(rank, "rank", minimum=1, maximum=n_channels)
    return rank, n_channels


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
    snr = check_number(snr, "snr", minimum=0.0)
    return (rank / n_channels) / snr**2


def lambda2_to_brainstorm_snr(lambda2, *, rank, n_channels) -> float:
    """Brainstorm ``SnrFixed`` equivalent to MNE's ``lambda2`` (inverse of
    :func:`brainstorm_snr_to_lambda2`)."""
    rank, n_channels = _check_rank_n(rank, n_channels)
    lambda2 = check_number(lambda2, "lambda2", minimum=0.0)
    return math.sqrt(rank / (n_channels * lambda2))
