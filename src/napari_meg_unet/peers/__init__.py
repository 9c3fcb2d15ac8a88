"""Peers: the methods an MEG researcher would use instead, as first-class estimators.

Every peer is MNE-Python's own implementation (or the ``cmne`` package's),
wrapped in the estimator interface of :mod:`.base` so that it is tuned,
run, timed and scored like the linear inverses and the networks:

==================== ======== ===================================================
name                 output   method (module)
==================== ======== ===================================================
dipole-sphere-peak   points   :func:`mne.fit_dipole`, sphere model, peak GFP (dipole)
dipole-sphere-window points   the same on the epoch's dominant pattern (dipole)
dipole-bem-peak      points   :func:`mne.fit_dipole`, the head model's BEM (dipole)
dipole-bem-window    points   the same on the epoch's dominant pattern (dipole)
rap-music            points   :func:`mne.beamformer.rap_music`, n given (music)
rap-music-fixed      points   the same, n chosen on validation (music)
gamma-map            map      :func:`mne.inverse_sparse.gamma_map` (sparse)
mxne                 map      :func:`mne.inverse_sparse.mixed_norm` (sparse)
irmxne               map      the same with 10 reweightings (sparse)
lcmv                 map      :func:`mne.beamformer.make_lcmv` (beamformer)
cmne                 map      ``cmne`` (optional package; trained) (cmne)
sensor-net           points   this project's sensor network (trained) (learned)
sensor-net-fit       points   its sources refined by a multi-dipole fit (learned)
sensor-net-fit-mne   points   the same, MNE's orientation rule (learned)
==================== ======== ===================================================

The estimators built on a trained network (its peaks moved to their centre
of mass, and its peaks refined by a multi-dipole fit) are peers too, but need
the networks: they are in :mod:`napari_meg_unet.accuracy.hybrids`, on the
parts here: :mod:`.peaks` (peak proposals on a map, centres of mass) and
:mod:`.field` (the forward at continuous positions, the multi-dipole
least-squares refinement).

Hyper-parameters are chosen on validation simulations only by the grid
search of :mod:`.search`; :mod:`.run` runs a prepared peer over events,
timing each. The names are declared once, in
:data:`napari_meg_unet.configs.PEERS`.
"""

from __future__ import annotations

from ..configs import PEERS as PEER_NAMES
from .base import DESIGN_KINDS, OUTPUTS, EventEstimate, Peer, PeerState, blas_threads
from .beamformer import Lcmv
from .cmne import Cmne, cmne_installed
from .dipole import CONDUCTORS, FIT_MODES, DipoleFit
from .field import CandidateScan, DipoleField, refine_dipoles
from .learned import SensorNet, SensorNetFit, SensorNetFitMNE, fixed_params
from .music import RapMusic
from .peaks import centre_of_mass, propose_peaks
from .run import PeerRun, event_n_sources, iter_run_peer
from .search import CRITERION, SearchResult, check_disjoint_from, iter_search, validation_dle
from .sparse import GammaMap, MixedNorm

#: The peers by name.
PEERS = {
    p.name: p
    for p in (
        DipoleFit("sphere", "peak"), DipoleFit("sphere", "window"),
        DipoleFit("bem", "peak"), DipoleFit("bem", "window"),
        RapMusic(given=True), RapMusic(given=False),
        GammaMap(), MixedNorm(1), MixedNorm(10), Lcmv(), Cmne(), SensorNet(), SensorNetFit(),
        SensorNetFitMNE(),
    )
}  # fmt: skip
if tuple(PEERS) != PEER_NAMES:  # pragma: no cover - a declaration out of step
    raise RuntimeError(f"configs.PEERS {PEER_NAMES} differs from the registry {tuple(PEERS)}.")


def get_peer(name: str) -> Peer:
    """The peer called ``name`` (see :data:`PEERS`)."""
    from .._validation import check_choice

    return PEERS[check_choice(name, "peer", tuple(PEERS))]


def list_peers(hm=None) -> list[dict]:
    """Every peer with its description and, given a head model, whether it can run on it.

    Returns a list of :meth:`Peer.describe` dicts with ``available`` (bool) and
    ``reason`` (why not, else None); for the Evaluate widget and ``--peers``.
    """
    out = []
    for peer in PEERS.values():
        reason = _reason(peer, hm)
        out.append({**peer.describe(), "available": reason is None, "reason": reason})
    return out


def _reason(peer, hm):
    if hm is not None:
        return peer.unavailable(hm)
    if peer.name == "cmne" and not cmne_installed():
        return peer.unavailable(None)
    return None


__all__ = [
    "CONDUCTORS",
    "CRITERION",
    "DESIGN_KINDS",
    "FIT_MODES",
    "OUTPUTS",
    "PEERS",
    "Cmne",
    "CandidateScan",
    "DipoleField",
    "DipoleFit",
    "EventEstimate",
    "GammaMap",
    "Lcmv",
    "MixedNorm",
    "Peer",
    "PeerRun",
    "PeerState",
    "RapMusic",
    "SearchResult",
    "SensorNet",
    "SensorNetFit",
    "SensorNetFitMNE",
    "blas_threads",
    "check_disjoint_from",
    "centre_of_mass",
    "cmne_installed",
    "event_n_sources",
    "fixed_params",
    "get_peer",
    "iter_run_peer",
    "iter_search",
    "list_peers",
    "propose_peaks",
    "refine_dipoles",
    "validation_dle",
]
