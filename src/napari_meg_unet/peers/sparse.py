"""Sparse solvers: gamma-MAP and MxNE / irMxNE from :mod:`mne.inverse_sparse`.

Both solve for a few active sources of the head model (fixed orientation,
``loose=0``, depth weighting 0.8 as the linear inverses) over the whole epoch;
their (sparse) time courses are scored as maps on the image rows, so DLE, SD,
OA and AUC are defined as for the linear inverses; their active sources, as
dipoles with those time courses (A·m along the normals), get the time-course
error of the dipole estimators.

``gamma-map``
    :func:`mne.inverse_sparse.gamma_map` (sparse Bayesian learning, Wipf &
    Nagarajan 2009); the regularisation ``alpha`` is searched.
``mxne`` / ``irmxne``
    :func:`mne.inverse_sparse.mixed_norm` (L21 mixed norm, Gramfort et al.
    2012), ``n_mxne_iter=1``, and its iteratively reweighted version
    (Strohmeier et al. 2016) with ``n_mxne_iter=10``; ``alpha`` (in % of the
    data's ``alpha_max``) is searched.
"""

from __future__ import annotations

import mne
import numpy as np

from .base import EventEstimate, Peer, evoked, stc_time_courses

#: Depth weighting of the sparse solvers (as the linear inverses').
DEPTH = 0.8


class GammaMap(Peer):
    """Gamma-MAP (sparse Bayesian learning)."""

    name = "gamma-map"
    label = "gamma-MAP"
    family = "sparse"
    sparse_sources = True
    slow = True
    grid = {"alpha": (0.2, 1.0, 4.0)}
    defaults = {"alpha": 1.0, "maxit": 1000, "tol": 1e-5}
    doc = __doc__

    def estimate(self, state, data, *, n_sources=None):
        p = state.params
        stc = mne.inverse_sparse.gamma_map(
            evoked(state, data), state.hm.fwd_fixed, state.hm.noise_cov, alpha=p["alpha"],
            loose=0.0, depth=DEPTH, maxit=p["maxit"], tol=p["tol"], verbose=False,
        )  # fmt: skip
        return _map_estimate(state, stc, data)


class MixedNorm(Peer):
    """MxNE (one iteration) or irMxNE (``n_mxne_iter`` reweightings)."""

    family = "sparse"
    sparse_sources = True

    def __init__(self, n_mxne_iter: int):
        self.n_mxne_iter = n_mxne_iter
        reweighted = n_mxne_iter > 1
        self.name = "irmxne" if reweighted else "mxne"
        self.label = "irMxNE" if reweighted else "MxNE"
        self.grid = {"alpha": (10.0, 25.0, 40.0, 55.0, 70.0)}
        self.defaults = {"alpha": 40.0}
        self.doc = __doc__

    def estimate(self, state, data, *, n_sources=None):
        stc = mne.inverse_sparse.mixed_norm(
            evoked(state, data), state.hm.fwd_fixed, state.hm.noise_cov,
            alpha=state.params["alpha"], loose=0.0, depth=DEPTH,
            n_mxne_iter=self.n_mxne_iter, verbose=False,
        )  # fmt: skip
        return _map_estimate(state, stc, data)


def _map_estimate(state, stc, data) -> EventEstimate:
    """Time courses on all sources; an empty solution is all zeros (NaN scores)."""
    if stc is None or stc.data.size == 0:
        return EventEstimate(time_courses=np.zeros((state.hm.n_sources, np.shape(data)[1])))
    return EventEstimate(time_courses=stc_time_courses(state.hm, stc))
