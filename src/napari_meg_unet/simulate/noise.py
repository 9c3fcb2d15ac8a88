"""The noise model: the whitener that defines the SNR and the colourer that draws the noise."""

from __future__ import annotations

import mne
import numpy as np
from scipy import sparse


def _noise_model(hm, noise, *, verbose=None):
    """Whitener (r, n_ch) defining the SNR and colourer (n_ch, q) drawing the noise.

    The whitener and colourer of the noise covariance (``hm.noise_cov``, or
    the per-channel-type diagonal for ``noise="white"``) come from
    :func:`mne.cov.compute_whitener` (``pca=True``) and are embedded into all
    ``info`` channels (zero columns / rows for channels it excludes, e.g.
    bads). For ``"white"`` the colourer is ``diag(sigma)``: the i.i.d. noise
    is drawn in sensor space, projectors included.
    """
    info = hm.info
    n_ch = len(info["ch_names"])
    cov = hm.noise_cov.copy()
    # covariances read from FIF hold big-endian data, which MNE's eigh rejects
    cov["data"] = np.asarray(cov["data"], dtype=np.float64)
    sigma = None
    rank = hm.noise_rank["mne"]  # MNE's rank='info' for Maxwell-filtered data
    if noise == "white":
        sigma = _white_sigma(cov, info)
        cov = mne.Covariance(np.diag(sigma**2), list(info["ch_names"]), bads=[], projs=[], nfree=1)
        rank = None if rank is None else {"meg": _diagonal_meg_rank(cov, info)}
    whitener, ch_names, colorer = mne.cov.compute_whitener(
        cov, info, pca=True, return_colorer=True, rank=rank,
        verbose="WARNING" if verbose is None else verbose,
    )  # fmt: skip
    picks = np.array([info["ch_names"].index(ch) for ch in ch_names], int)
    full_w = np.zeros((whitener.shape[0], n_ch))
    full_w[:, picks] = whitener
    if noise == "white":
        return full_w, np.diag(sigma)
    full_c = np.zeros((n_ch, colorer.shape[1]))
    full_c[picks] = colorer
    return full_w, full_c


def _diagonal_meg_rank(cov, info) -> int:
    """MEG rank of the diagonal ``"white"`` model (its own, not the SSS rank of ``info``)."""
    cleared = info.copy()
    with cleared._unlock():
        cleared["proc_history"] = []
    ranks = mne.compute_rank(cov, rank=None, info=cleared, verbose=False)
    return int(sum(v for k, v in ranks.items() if k in ("meg", "mag", "grad")))


def _white_sigma(cov, info) -> np.ndarray:
    """Per-channel noise level: the root mean variance of the channel's type."""
    var = np.asarray(cov.data, float)
    var = var if var.ndim == 1 else np.diag(var)
    var = var[[cov.ch_names.index(ch) for ch in info["ch_names"]]]
    types = np.array(info.get_channel_types())
    sigma = np.empty(len(types))
    for kind in np.unique(types):
        sel = types == kind
        sigma[sel] = np.sqrt(var[sel].mean())
    return sigma


def _noise_colour(colorer, nave):
    """The float32 (q, n_ch) factor drawing noise as ``z @ colour`` with z ~ N(0, 1).

    The data are float32, so the colouring product need not be float64; a
    mostly-zero factor (e.g. of a diagonal covariance) is made sparse.
    """
    colour = (colorer.T / np.sqrt(nave)).astype(np.float32)
    if np.count_nonzero(colour) <= 0.05 * colour.size:
        colour = sparse.csr_matrix(colour)
    return colour
