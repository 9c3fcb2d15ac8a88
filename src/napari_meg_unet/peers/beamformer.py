"""The LCMV beamformer with :func:`mne.beamformer.make_lcmv` / :func:`~mne.beamformer.apply_lcmv`.

The data covariance is the event's own (the sample covariance of its samples,
``mne.Covariance`` of the centred epoch; 32 samples of 306 channels are rank
deficient, so the regularisation ``reg`` — a fraction of the covariance's mean
eigenvalue added to its diagonal — is what makes the filters usable and is
searched). The filters use the head model's fixed-orientation forward and its
noise covariance (whitening), with MNE's unit-noise-gain-invariant weight
normalisation (a neural activity index); the filter output is scored as a map
on the image rows.
"""

from __future__ import annotations

import mne
import numpy as np

from .base import EventEstimate, Peer, evoked, stc_time_courses


def event_covariance(data, info) -> mne.Covariance:
    """The sample covariance of one event's data ``(n_channels, n_times)``."""
    data = np.asarray(data, np.float64)
    centred = data - data.mean(axis=1, keepdims=True)
    cov = centred @ centred.T / max(data.shape[1] - 1, 1)
    return mne.Covariance(cov, list(info["ch_names"]), bads=[], projs=list(info["projs"]),
                          nfree=max(data.shape[1] - 1, 1), verbose=False)  # fmt: skip


class Lcmv(Peer):
    """LCMV beamformer on the event's own data covariance."""

    name = "lcmv"
    label = "LCMV"
    family = "beamformer"
    grid = {"reg": (0.1, 0.5, 2.0, 5.0, 20.0)}
    defaults = {"reg": 2.0}
    doc = __doc__

    def estimate(self, state, data, *, n_sources=None):
        ev = evoked(state, data)
        filters = mne.beamformer.make_lcmv(
            state.info, state.hm.fwd_fixed, event_covariance(data, state.info),
            reg=state.params["reg"], noise_cov=state.hm.noise_cov,
            weight_norm="unit-noise-gain-invariant", verbose=False,
        )  # fmt: skip
        stc = mne.beamformer.apply_lcmv(ev, filters, verbose=False)
        return EventEstimate(time_courses=stc_time_courses(state.hm, stc))
