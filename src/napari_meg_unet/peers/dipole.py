"""Equivalent current dipole fitting with :func:`mne.fit_dipole` (sphere and BEM).

Two ways of turning an event (32 samples) into one dipole, neither told when
the source is active (the window protocol):

``peak``
    The dipole fitted at the sample of peak global field power (GFP, the norm
    of the noise-whitened data over channels) — what an MEG researcher does
    with an evoked response.
``window``
    The dipole fitted to the dominant spatial pattern of the whole epoch: the
    data projected on their first temporal singular vector in the
    noise-whitened space (``X v1``). For a fixed-position, fixed-orientation
    dipole this is the least-squares fit over every sample at once (its data
    are rank one), so it uses all samples instead of one.

Conductors: ``sphere`` — MNE's sphere model centred on the least-squares
sphere through the head model's inner skull (the head model's own sphere for
an EEG template); ``bem`` — the head model's BEM (``hm.bem``). Nothing is
searched: :func:`mne.fit_dipole` has no regularisation or source count (its
defaults are kept: 5 mm minimum distance to the inner skull, normal accuracy).
The fits are single-dipole estimators, run on single-dipole and extended
(patch) events. The dipole's moment time course is then fitted with its
position fixed (:func:`.field.dipole_moments`, the same conductor), as a
researcher reads it off a fit. They use MNE's ``accurate`` coil definitions, those of
:func:`mne.make_forward_solution` that made the head model's gain (and the
test data): with :func:`mne.fit_dipole`'s default ``normal`` the fits alone
would carry a sensor-model error the other estimators do not.
"""

from __future__ import annotations

import mne
import numpy as np

from .base import EventEstimate, Peer, evoked, whitener
from .field import DipoleField, dipole_moments

#: How one event becomes the data of one fit.
FIT_MODES = ("peak", "window")
#: Conductor models of the fit.
CONDUCTORS = ("sphere", "bem")


def fit_conductor(hm, conductor):
    """The conductor model (and ``trans``) a fit with ``conductor`` uses for ``hm``."""
    from ..headmodel.perturb import inner_skull_sphere

    if conductor == "bem":
        return hm.bem, hm.trans
    if hm.bem["is_sphere"]:
        return hm.bem, None
    return inner_skull_sphere(hm), None


def own_conductor(hm):
    """``hm``'s own conductor model and ``trans`` (None for a sphere model, in head coordinates)."""
    return fit_conductor(hm, "sphere" if hm.bem["is_sphere"] else "bem")


def _fit_data(state, data, mode) -> tuple[np.ndarray, float]:
    """The one sample fitted (n_channels,) and the factor from its moment to the mean |moment|."""
    w = whitener(state)
    if mode == "peak":
        gfp = np.linalg.norm(w @ data, axis=0)
        return data[:, int(np.argmax(gfp))], 1.0
    _, _, vt = np.linalg.svd(w @ data, full_matrices=False)
    v1 = vt[0]
    return data @ v1, float(np.mean(np.abs(v1)))


class DipoleFit(Peer):
    """:func:`mne.fit_dipole` at peak GFP or on the epoch's dominant pattern."""

    family = "dipole"
    output = "points"
    kinds = ("single", "extended")

    def __init__(self, conductor, mode):
        self.conductor, self.mode = conductor, mode
        self.name = f"dipole-{conductor}-{mode}"
        where = "peak GFP" if mode == "peak" else "epoch pattern"
        self.label = f"dipole fit ({'BEM' if conductor == 'bem' else 'sphere'}, {where})"
        self.slow = conductor == "bem"
        self.doc = __doc__

    def unavailable(self, hm):
        if hm.bem is None:
            return "the head model has no conductor model (hm.bem)"
        if self.conductor == "bem" and hm.bem["is_sphere"]:
            return "the head model's conductor is a sphere model, not a BEM"
        return None

    def _prepare(self, hm, info, params, training):
        bem, trans = fit_conductor(hm, self.conductor)
        return {"bem": bem, "trans": trans, "field": DipoleField(info, bem, trans)}

    def estimate(self, state, data, *, n_sources=None):
        sample, scale = _fit_data(state, np.asarray(data, np.float64), self.mode)
        ev = evoked(state, sample[:, np.newaxis])
        dip, _ = mne.fit_dipole(
            ev, state.hm.noise_cov, state.parts["bem"], trans=state.parts["trans"],
            accuracy="accurate", verbose=False,
        )  # fmt: skip
        if not np.isfinite(dip.pos).all():
            return EventEstimate.empty_points(np.shape(data)[1])
        positions = np.asarray(dip.pos, float)[:1]
        return EventEstimate(
            positions=positions, amplitudes=np.abs(np.asarray(dip.amplitude, float)[:1]) * scale,
            moments=dipole_moments(state.parts["field"], whitener(state), data, positions),
        )
