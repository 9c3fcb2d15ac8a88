"""Peers as estimators: every peer on tiny data, accuracy on noiseless dipoles, the search."""

from __future__ import annotations

import numpy as np
import pytest

from napari_meg_unet import peers
from napari_meg_unet.configs import PEERS
from napari_meg_unet.metrics import PointEstimates
from napari_meg_unet.peers import iter_run_peer, iter_search, validation_dle
from napari_meg_unet.peers.base import EventEstimate, Peer
from napari_meg_unet.progress import plain
from napari_meg_unet.simulate import simulate

run_peer = plain(iter_run_peer)
search = plain(iter_search)
#: Peers quick enough for the not-slow suite (one event: about a second each).
FAST = ("dipole-sphere-peak", "dipole-sphere-window", "rap-music", "rap-music-fixed", "mxne",
        "irmxne", "lcmv")  # fmt: skip


@pytest.fixture(scope="module")
def clean(template_hm):
    """Noiseless on-grid single dipoles (realistic time courses)."""
    return simulate(template_hm, design="sweep", hemi="rh", noise=None, snr=1.0, seed=4,
                    timecourse="realistic")  # fmt: skip


@pytest.fixture(scope="module")
def noisy(template_hm):
    return simulate(template_hm, design="multi", n_events=6, n_dipoles=(1, 2), hemi="rh",
                    snr=3.0, seed=5, timecourse="realistic")  # fmt: skip


def _run(name, hm, sim, events, params=None, training=None):
    peer = peers.get_peer(name)
    state = peer.prepare(hm, sim.info, params=params or peer.defaults, training=training)
    return peer, run_peer(peer, state, sim, np.asarray(events))


def test_registry_matches_the_declared_names(template_hm):
    assert tuple(peers.PEERS) == PEERS
    listed = peers.list_peers(template_hm)
    assert [p["name"] for p in listed] == list(PEERS)
    for entry in listed:
        assert entry["output"] in ("map", "points") and entry["label"]
        assert entry["available"] == (entry["reason"] is None)
    assert {p.name for p in peers.PEERS.values() if p.slow} == {
        "dipole-bem-peak", "dipole-bem-window", "gamma-map"}  # fmt: skip
    with pytest.raises(ValueError, match="peer must be one of"):
        peers.get_peer("music")


def test_bem_fits_need_a_bem(template_hm_megeeg):
    assert "sphere model" in peers.get_peer("dipole-bem-peak").unavailable(template_hm_megeeg)
    assert peers.get_peer("dipole-sphere-peak").unavailable(template_hm_megeeg) is None


@pytest.mark.parametrize("name", FAST)
def test_fast_peer_runs_on_tiny_data(name, template_hm, noisy):
    peer, run = _run(name, template_hm, noisy, [0, 1])
    assert run.peer == name and list(run.events) == [0, 1]
    assert run.seconds.shape == (2,) and (run.seconds > 0).all()
    if peer.output == "points":
        assert isinstance(run.estimates, PointEstimates) and len(run.estimates) == 2
        for pos in run.estimates.positions:
            assert pos.shape[1] == 3 and np.abs(pos).max() < 0.15  # inside the head
    else:
        assert run.estimates.shape == (2, len(noisy.rows))
    dle = validation_dle(run, noisy, template_hm)
    assert dle.shape == (2,)
    assert np.isfinite(dle).all() and (dle < 120).all()


@pytest.mark.parametrize("name", ["dipole-sphere-peak", "dipole-sphere-window", "rap-music"])
def test_noiseless_single_dipole_is_found(name, template_hm, clean):
    # on-grid, noise-free: RAP-MUSIC scans the very grid (exact); a sphere fit has the
    # sphere-versus-BEM model error only
    _, run = _run(name, template_hm, clean, np.arange(3))
    dle = validation_dle(run, clean, template_hm)
    limit = 1e-6 if name == "rap-music" else 10.0
    assert (dle <= limit).all(), dle


@pytest.mark.slow
@pytest.mark.parametrize("name", ["dipole-bem-peak", "dipole-bem-window"])
def test_noiseless_single_dipole_bem_fit_within_a_few_mm(name, template_hm, clean):
    # the data were made with this very BEM: the fit is limited by its numerics only
    _, run = _run(name, template_hm, clean, np.arange(2))
    dle = validation_dle(run, clean, template_hm)
    assert (dle < 3.0).all(), dle


@pytest.mark.slow
def test_gamma_map_runs_and_finds_a_noiseless_dipole(template_hm, clean):
    _, run = _run("gamma-map", template_hm, clean, [0], params={**peers.get_peer(
        "gamma-map").defaults, "alpha": 4.0})  # fmt: skip
    assert validation_dle(run, clean, template_hm)[0] < 15.0


def test_sparse_and_lcmv_find_a_noiseless_dipole(template_hm, clean):
    for name in ("mxne", "lcmv"):
        _, run = _run(name, template_hm, clean, np.arange(2))
        assert (validation_dle(run, clean, template_hm) < 15.0).all(), name


# =========================================================================== search
class _SpyLcmv(peers.Lcmv):
    """LCMV recording every event it is asked to estimate."""

    grid = {"reg": (0.5, 5.0)}

    def __init__(self):
        self.seen = []

    def estimate(self, state, data, *, n_sources=None):
        self.seen.append(np.array(data))
        return super().estimate(state, data, n_sources=n_sources)


def _matches(data, sim, events):
    return any(np.array_equal(data, np.asarray(sim.data[i], np.float64)) for i in events)


def test_search_sees_validation_data_only(template_hm):
    val = simulate(template_hm, design="multi", n_events=5, n_dipoles=1, hemi="rh", snr=2.0,
                   seed=10, timecourse="realistic")  # fmt: skip
    test = simulate(template_hm, design="multi", n_events=5, n_dipoles=1, hemi="rh", snr=2.0,
                    seed=11, timecourse="realistic")  # fmt: skip
    spy = _SpyLcmv()
    result = search(spy, template_hm, val, max_events=3)
    # every event the search estimated is one of the first 3 validation events, none a test one
    assert len(spy.seen) == 2 * 3
    assert all(_matches(d, val, range(3)) for d in spy.seen)
    assert not any(_matches(d, test, range(len(test))) for d in spy.seen)
    assert result.validation == [{"simulation": val.fingerprint, "n_events": 3}]
    assert [c["params"]["reg"] for c in result.candidates] == [0.5, 5.0]
    assert peers.check_disjoint_from(result, [test.fingerprint])["disjoint"]
    with pytest.raises(ValueError, match="used test simulation"):
        peers.check_disjoint_from(result, [val.fingerprint])


class _FakePeer(Peer):
    """Puts its one dipole ``offset`` metres from the truth (needs the data's simulation)."""

    name, label, output = "fake", "fake", "points"
    grid = {"offset": (0.02, 0.005, 0.01)}

    def __init__(self, sim, empty_at=None):
        self.sim, self.empty_at = sim, empty_at

    def estimate(self, state, data, *, n_sources=None):
        i = next(k for k in range(len(self.sim)) if np.array_equal(data, self.sim.data[k]))
        if state.params["offset"] == self.empty_at and i == 0:
            return EventEstimate.empty_points()
        truth = self.sim.sources["position"][self.sim.event_sources(i)][0]
        pos = truth + np.array([state.params["offset"], 0.0, 0.0])
        return EventEstimate(positions=pos[np.newaxis], amplitudes=np.ones(1))


def test_search_picks_the_lowest_validation_dle_and_penalises_empty_estimates(template_hm):
    val = simulate(template_hm, design="multi", n_events=4, n_dipoles=1, hemi="rh", seed=12)
    result = search(_FakePeer(val), template_hm, val, max_events=4)
    assert result.params["offset"] == 0.005
    assert [round(c["dle_mm"], 6) for c in result.candidates] == [20.0, 5.0, 10.0]
    # a candidate leaving an event without estimate loses even with a lower mean DLE
    result = search(_FakePeer(val, empty_at=0.005), template_hm, val, max_events=4)
    assert result.params["offset"] == 0.01
    assert result.candidates[1]["n_empty"] == 1


def test_nothing_to_search_keeps_the_defaults(template_hm, noisy):
    result = search(peers.get_peer("rap-music"), template_hm, noisy, max_events=2)
    assert result.params == {} and result.candidates == [] and result.validation == []
    assert "nothing to search" in result.criterion


def test_rap_music_is_given_the_true_number_of_sources(template_hm, noisy):
    counts = peers.event_n_sources(noisy, np.arange(len(noisy)))
    _, run = _run("rap-music", template_hm, noisy, np.arange(len(noisy)))
    assert [len(p) for p in run.estimates.positions] == list(counts)
    with pytest.raises(ValueError, match="true number of sources"):
        peers.get_peer("rap-music").estimate(
            peers.get_peer("rap-music").prepare(template_hm, noisy.info, params={}),
            noisy.data[0],
        )


# =========================================================================== CMNE
def test_cmne_is_skipped_with_a_reason_without_its_package(template_hm, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "cmne" else real(name, *a))  # fmt: skip
    why = peers.get_peer("cmne").unavailable(template_hm)
    assert "cmne" in why and "pip install" in why
    entry = next(p for p in peers.list_peers(template_hm) if p["name"] == "cmne")
    assert not entry["available"] and entry["reason"] == why


@pytest.mark.slow
def test_cmne_trains_and_estimates(template_hm, noisy):
    pytest.importorskip("cmne", reason="the optional peer CMNE needs 'pip install cmne'")
    training = simulate(template_hm, design="multi", n_events=20, n_dipoles=1, hemi="rh",
                        seed=13, timecourse="realistic")  # fmt: skip
    params = {**peers.get_peer("cmne").defaults, "n_steps": 2, "num_units": 8, "look_back": 4}
    peer, run = _run("cmne", template_hm, noisy, [0, 1, 2], params=params, training=training)
    assert run.estimates.shape == (3, len(noisy.rows)) and np.isfinite(run.estimates).all()
    with pytest.raises(ValueError, match="training simulation"):
        peer.prepare(template_hm, noisy.info, params=params)


class _OracleMap(Peer):
    """A network-like estimator: one map per event (one-hot at the true row)."""

    name, label, output = "oracle-map", "oracle map", "map"

    def __init__(self, sim):
        self.sim = sim

    def estimate(self, state, data, *, n_sources=None):
        i = next(k for k in range(len(self.sim)) if np.array_equal(data, self.sim.data[k]))
        out = np.zeros(state.hm.n_sources)
        out[self.sim.sources["row"][self.sim.event_sources(i)]] = 1.0
        return EventEstimate(map=out)


def test_a_map_estimator_runs_and_scores_like_a_peer(template_hm, noisy):
    peer = _OracleMap(noisy)
    run = run_peer(peer, peer.prepare(template_hm, noisy.info, params={}), noisy, np.arange(3))
    assert run.estimates.shape == (3, len(noisy.rows)) and run.n_empty == 0
    assert (validation_dle(run, noisy, template_hm) == 0).all()
    with pytest.raises(ValueError, match="no map"):
        EventEstimate.empty_points().window_map(np.arange(3))


class _SeesSensors(Peer):
    """Records the sensor geometry and sampling rate each estimate is given."""

    name = label = "sees-sensors"
    output = "points"

    def __init__(self):
        self.seen = []

    def estimate(self, state, data, *, n_sources=None):
        self.seen.append((state.info["dev_head_t"]["trans"].copy(), state.info["sfreq"]))
        return EventEstimate.empty_points()


def test_peers_never_see_the_true_sensors_of_a_coregistration_error(template_hm, noisy):
    """Data simulated with moved sensors are estimated with the nominal ones (their sfreq kept)."""
    import copy

    from napari_meg_unet.headmodel.perturb import _move_sensors, random_rigid_transform

    moved = copy.copy(noisy)
    mat = random_rigid_transform(translation_mm=5.0, rotation_deg=3.0, seed=0)
    moved.info = _move_sensors(noisy.info, mat)
    with moved.info._unlock():
        moved.info["sfreq"] = 2 * noisy.info["sfreq"]
    peer = _SeesSensors()
    state = peer.prepare(template_hm, template_hm.info, params={})
    run_peer(peer, state, moved, np.arange(2))
    nominal = template_hm.info["dev_head_t"]["trans"]
    assert not np.allclose(moved.info["dev_head_t"]["trans"], nominal)
    for trans, sfreq in peer.seen:
        np.testing.assert_array_equal(trans, nominal)
        assert sfreq == moved.info["sfreq"]
