"""Estimators built on a trained network: its peaks off the grid, and network-initialised fits.

Both run the network on the event's sensor data as the accuracy protocol does
(:class:`.network.NetworkMaps`, the window map: mean probability over the
epoch) and read the sources off its map with :func:`.network.propose_peaks`:
the local maxima over the mesh adjacency that reach ``threshold`` times the
map's maximum, at most ``max_sources`` (5, the most sources of the benchmark's
multi-dipole sets). The number of sources is therefore the network's (not
given); ``threshold`` is chosen on the validation sets only (the peers'
search, :mod:`.search`). Both return dipoles at continuous positions, scored
like the dipole fits (the strongest ``n`` of them against the ``n`` true
sources).

``centre-of-mass`` (label ``"<network> + centre of mass"``)
    Each peak moves to the probability-weighted centre of mass of the peak
    vertex and its mesh neighbours (:func:`.network.centre_of_mass`), so the
    estimate can fall between grid vertices; its amplitude is the peak's
    probability. Against the network's own row ("argmax on the grid", the
    same peaks) this is the sub-grid ablation.
``dipole-fit`` (label ``"<network> + dipole fit"``)
    The peaks' vertex positions start a multi-dipole nonlinear least-squares
    fit (:func:`.field.refine_dipoles`: free orientations, moments solved
    linearly at each step, positions within 20 mm of the start, at most 30
    residual evaluations) with the head model's forward at continuous
    positions (:class:`.field.DipoleField`, the conductor of the BEM dipole
    peer, :func:`.dipole.fit_conductor`) on the data whitened as the other
    peers' (:func:`.base.whitener`); the data fitted are the epoch's ``m``
    dominant whitened components for ``m`` dipoles (for one dipole, the data
    of the dipole peer's ``window`` mode). Amplitude: the fitted mean
    ``|moment|`` (A·m).

The hybrids are made per trained network (:func:`make_hybrid`) and scored in
``bench accuracy`` when the preset lists them (``hybrids``, ``--hybrids``).
Their runtime per event includes the network's inference.
"""

from __future__ import annotations

import numpy as np

from ..configs import HYBRIDS
from .base import EventEstimate, Peer, whitener
from .dipole import fit_conductor
from .field import DipoleField, refine_dipoles
from .network import NetworkMaps, centre_of_mass, propose_peaks

#: The thresholds (fraction of the map's maximum) of the peak proposals searched.
THRESHOLDS = (0.2, 0.4, 0.6, 0.8)


class NetworkPeer(Peer):
    """Base of the hybrids: a network's peaks as proposals (see the module docstring).

    Parameters
    ----------
    checkpoint : path-like
        The trained network.
    network : str
        Its estimator label (e.g. ``"mesh U-Net"``).
    device : str
        Torch device of its inference.
    """

    family = "hybrid"
    output = "points"
    grid = {"threshold": THRESHOLDS}
    defaults = {"threshold": 0.6, "max_sources": 5}
    method = ""
    suffix = ""

    def __init__(self, checkpoint, network, *, device="cpu"):
        if checkpoint is None:
            raise ValueError(f"{self.method} needs a trained network's checkpoint.")
        self.checkpoint, self.network, self.device = checkpoint, network, device
        self.name = f"{network.split()[0]}-{self.method}"
        self.label = f"{network} + {self.suffix}"
        self.doc = __doc__
        self._cache = {}

    def describe(self) -> dict:
        return {**super().describe(), "network": self.network}

    def _shared(self, hm, info):
        """The parts every candidate shares (the network and its kernels; the field), cached."""
        key = (hm.fingerprint, tuple(info["ch_names"]))
        if key not in self._cache:
            self._cache = {key: self._make_shared(hm, info)}
        return self._cache[key]

    def _make_shared(self, hm, info) -> dict:
        return {"maps": NetworkMaps(self.checkpoint, hm, info, device=self.device)}

    def _prepare(self, hm, info, params, training):
        shared = self._shared(hm, info)
        hemi = shared["maps"].inverse.hemi
        return {**shared, "adjacency": hm.adjacency(hemi).tocsr(),
                "positions": np.asarray(hm.positions[shared["maps"].rows])}  # fmt: skip

    def estimate(self, state, data, *, n_sources=None):
        return self.estimate_batch(state, np.asarray(data)[np.newaxis])[0]

    def estimate_batch(self, state, data, *, n_sources=None):
        maps = state.parts["maps"].window_maps(data)
        return [self._points(state, amplitude, d) for amplitude, d in zip(maps, data, strict=True)]

    def _proposals(self, state, amplitude):
        p = state.params
        return propose_peaks(amplitude, state.parts["adjacency"], threshold=p["threshold"],
                             max_sources=int(p["max_sources"]))  # fmt: skip

    def _points(self, state, amplitude, data) -> EventEstimate:
        raise NotImplementedError


class NetworkCentreOfMass(NetworkPeer):
    """The network's peaks moved to their neighbourhood's centre of mass."""

    method = "centre-of-mass"
    suffix = "centre of mass"

    def _points(self, state, amplitude, data):
        peaks = self._proposals(state, amplitude)
        if len(peaks) == 0:
            return EventEstimate.empty_points()
        positions = centre_of_mass(amplitude, peaks, state.parts["adjacency"],
                                   state.parts["positions"])  # fmt: skip
        return EventEstimate(positions=positions, amplitudes=amplitude[peaks])


class NetworkDipoleFit(NetworkPeer):
    """The network's peaks refined by a multi-dipole least-squares fit."""

    method = "dipole-fit"
    suffix = "dipole fit"
    defaults = {**NetworkPeer.defaults, "max_shift_mm": 20.0, "max_nfev": 30}

    def unavailable(self, hm):
        if hm.bem is None:
            return "the head model has no conductor model (hm.bem)"
        return None

    def _make_shared(self, hm, info):
        bem, trans = fit_conductor(hm, "sphere" if hm.bem["is_sphere"] else "bem")
        return {**super()._make_shared(hm, info), "field": DipoleField(info, bem, trans)}

    def _points(self, state, amplitude, data):
        peaks = self._proposals(state, amplitude)
        if len(peaks) == 0:
            return EventEstimate.empty_points()
        p = state.params
        fit = refine_dipoles(
            state.parts["field"], whitener(state), data, state.parts["positions"][peaks],
            max_shift_mm=float(p["max_shift_mm"]), max_nfev=int(p["max_nfev"]),
        )  # fmt: skip
        return EventEstimate(positions=fit.positions, amplitudes=fit.amplitudes)


def make_hybrid(name, checkpoint, network, *, device="cpu") -> NetworkPeer:
    """The hybrid ``name`` (:data:`~napari_meg_unet.configs.HYBRIDS`) of a trained network."""
    from .._validation import check_choice

    check_choice(name, "hybrid", HYBRIDS)
    cls = NetworkCentreOfMass if name == "centre-of-mass" else NetworkDipoleFit
    return cls(checkpoint, network, device=device)
