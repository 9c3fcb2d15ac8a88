"""The sensor network: its input, training, checkpoints, and its peer-interface estimator."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest
import torch

from napari_meg_unet import peers
from napari_meg_unet.accuracy.targets import compute_targets
from napari_meg_unet.configs import InverseConfig, SensorNetConfig, SimulationConfig
from napari_meg_unet.models.sensor_dipole import (
    SensorDipoleNet,
    _validate,
    epoch_pattern,
    iter_train_sensor_dipole,
    load_sensor_dipole_net,
    make_sensor_dipole_net,
    save_sensor_dipole_net,
)
from napari_meg_unet.peers import iter_run_peer
from napari_meg_unet.progress import Progress, plain
from napari_meg_unet.simulate import simulate
from napari_meg_unet.simulate.torch_core import TorchCore

TINY = SensorNetConfig(lr=3e-3, block=64, n_blocks=30, val_events=128, val_every=10)


@pytest.fixture(scope="module")
def core(template_hm):
    config = SimulationConfig(design="sweep", hemi="rh", snr=3.0, timecourse="realistic")
    return TorchCore(template_hm, config, InverseConfig(hemi="rh"), inputs=False)


@pytest.fixture(scope="module")
def events(template_hm):
    return simulate(template_hm, design="sweep", hemi="rh", snr=3.0, seed=21,
                    timecourse="realistic")  # fmt: skip


def test_epoch_pattern_is_the_sign_free_whitened_dominant_pattern():
    rng = np.random.default_rng(0)
    w = torch.tensor(rng.standard_normal((5, 7)), dtype=torch.float32)
    pattern, course = rng.standard_normal(7), np.sin(np.linspace(0, 3, 16))
    data = torch.tensor(np.outer(pattern, course)[None], dtype=torch.float32)
    x = epoch_pattern(w, data)
    assert x.shape == (1, 6)
    torch.testing.assert_close(x, epoch_pattern(w, -data))  # a dipole and its opposite
    many = epoch_pattern(w, torch.tensor(rng.standard_normal((20, 7, 16)), dtype=torch.float32))
    largest = many[:, :5].abs().argmax(dim=1)
    assert (many[torch.arange(20), largest] > 0).all()
    whitened = w.numpy() @ pattern
    expected = whitened / np.linalg.norm(whitened)
    expected *= np.sign(expected[np.argmax(np.abs(expected))])
    np.testing.assert_allclose(x[0, :5].numpy(), expected, atol=1e-5)
    s1 = np.linalg.norm(whitened) * np.linalg.norm(course)
    assert x[0, 5].item() == pytest.approx(np.log(s1), rel=1e-5)


def test_epoch_pattern_from_the_gram_matrix_is_the_svds():
    rng = np.random.default_rng(1)
    w = torch.tensor(rng.standard_normal((40, 50)), dtype=torch.float32)
    data = torch.tensor(rng.standard_normal((30, 50, 32)), dtype=torch.float32)
    got = epoch_pattern(w, data, 3)
    u, s, _ = torch.linalg.svd(torch.einsum("rc,nct->nrt", w.double(), data.double()),
                               full_matrices=False)  # fmt: skip
    u = u[:, :, :3] * torch.sign(u[:, :, :3].gather(1, u[:, :, :3].abs().argmax(1, keepdim=True)))
    expected = torch.cat([u.transpose(1, 2).reshape(30, -1), s[:, :3].log()], dim=1)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), expected, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="at least 3 samples"):
        epoch_pattern(w, data[:, :, :2], 3)


def test_network_checks_its_inputs(template_hm):
    with pytest.raises(ValueError, match=r"whitener must be \(rank, 3\)"):
        SensorDipoleNet(np.ones((2, 4)), np.zeros(3), ["a", "b", "c"])
    net = make_sensor_dipole_net(template_hm, template_hm.info, hidden=(8,))
    with pytest.raises(ValueError, match="n_events, 306 channels"):
        net.predict(np.zeros((2, 5, 10)))
    positions, strength = net.predict(np.random.default_rng(1).standard_normal((306, 12)))
    assert positions.shape == (1, 3) and strength.shape == (1,) and strength[0] > 0
    with pytest.raises(ValueError, match="n_blocks"):
        SensorNetConfig(n_blocks=0)


def test_training_learns_positions_and_keeps_the_best_state(template_hm, core, events):
    torch.manual_seed(0)
    net = make_sensor_dipole_net(template_hm, template_hm.info, hidden=(64,))
    true = events.sources["position"]

    def mean_mm(model):
        return np.linalg.norm(model.predict(events.data)[0] - true, axis=1).mean() * 1000

    untrained = mean_mm(net)
    gen = iter_train_sensor_dipole(net, core, seed=3, recipe=TINY)
    steps = []
    try:
        while True:
            steps.append(next(gen))
    except StopIteration as stop:
        history = stop.value
    assert all(isinstance(s, Progress) for s in steps)
    assert [h["block"] for h in history] == [10, 20, 30] and steps[-1].done == TINY.n_blocks
    assert 0 < history[0]["seconds"] <= history[-1]["seconds"]
    # the kept state is a validated one, and it places fresh events far better
    from napari_meg_unet.models.sensor_dipole import _channel_order, _draw

    val_x, val_y = _draw(core, TINY.val_events, seed=4, index=0,
                         picks=_channel_order(core, net.ch_names))  # fmt: skip
    assert _validate(net, epoch_pattern(net.whitener, val_x), val_y) == pytest.approx(
        min(h["val_mm"] for h in history), rel=1e-5)
    assert mean_mm(net) < 0.6 * untrained


def test_training_ends_with_the_best_validated_state(template_hm, core, monkeypatch):
    import copy

    from napari_meg_unet.models import sensor_dipole

    states, scores = [], iter([5.0, 1.0, 9.0])

    def fake_validate(net, x, y):
        states.append(copy.deepcopy(net.state_dict()))
        return next(scores)

    monkeypatch.setattr(sensor_dipole, "_validate", fake_validate)
    net = make_sensor_dipole_net(template_hm, template_hm.info, hidden=(8,))
    history = plain(iter_train_sensor_dipole)(net, core, seed=3, recipe=TINY)
    assert [h["val_mm"] for h in history] == [5.0, 1.0, 9.0]
    for name, value in net.state_dict().items():
        torch.testing.assert_close(value, states[1][name])
    assert not torch.equal(states[1]["mlp.0.weight"], states[2]["mlp.0.weight"])


def test_checkpoint_round_trip_is_atomic_and_respects_umask(template_hm, tmp_path, events):
    net = make_sensor_dipole_net(template_hm, template_hm.info, hidden=(16, 8))
    fname = tmp_path / "sensor.pt"
    old = os.umask(0o077)
    try:
        save_sensor_dipole_net(net, fname)
    finally:
        os.umask(old)
    assert stat.S_IMODE(fname.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sensor.pt"]
    loaded = load_sensor_dipole_net(fname)
    assert loaded.ch_names == net.ch_names and loaded.hidden == (16, 8)
    assert loaded.trained_on is None
    net.trained_on = {"sfreq": 250.0, "n_times": 32, "nave": 1}
    save_sensor_dipole_net(net, fname)
    assert load_sensor_dipole_net(fname).trained_on == net.trained_on
    np.testing.assert_allclose(loaded.predict(events.data[:4])[0],
                               net.eval().predict(events.data[:4])[0], rtol=1e-6)  # fmt: skip


def test_training_data_follow_the_network_channel_order(template_hm, core):
    from napari_meg_unet.models.sensor_dipole import _channel_order, _draw

    order = np.random.default_rng(2).permutation(len(template_hm.ch_names))
    names = [template_hm.ch_names[i] for i in order]
    picks = _channel_order(core, names)
    assert [template_hm.ch_names[i] for i in picks] == names
    data, positions = _draw(core, 4, seed=1, index=0, picks=picks)
    full = core.draw(4, seed=1, index=0, with_inputs=False)
    torch.testing.assert_close(data, full.data.transpose(1, 2)[:, order])
    torch.testing.assert_close(positions, full.true_positions.float())


def test_sensor_net_estimator_trains_runs_and_reuses_its_checkpoint(template_hm, events,
                                                                    tmp_path):  # fmt: skip
    peer = peers.get_peer("sensor-net")
    assert peer.learned and peer.trainable and peer.output == "points"
    assert "multi" in peer.kinds  # with the several-source network (test_sensor_sources)
    params = {**peer.defaults, "n_blocks": 3, "block": 32, "checkpoint": str(tmp_path / "s.pt")}
    with pytest.raises(ValueError, match="training simulation"):
        peer.prepare(template_hm, events.info, params=params)
    state = peer.prepare(template_hm, events.info, params=params, training=events)
    assert [h["block"] for h in state.parts["history"]] == [3]
    run = plain(iter_run_peer)(peer, state, events, np.arange(5))
    assert [len(p) for p in run.estimates.positions] == [1] * 5
    assert all(a[0] > 0 for a in run.estimates.amplitudes)
    # the checkpoint now exists: a second prepare loads it, no training simulation needed
    again = peer.prepare(template_hm, events.info, params=params)
    assert again.parts["history"] is None
    rerun = plain(iter_run_peer)(peer, again, events, np.arange(5))
    np.testing.assert_allclose(np.concatenate(rerun.estimates.positions),
                               np.concatenate(run.estimates.positions), rtol=1e-6)  # fmt: skip


def _row(estimator, mean, **extra):
    return {"estimator": estimator, "protocol": "window",
            "dle_mm": {"mean": mean, "ci_low": mean - 0.5, "ci_high": mean + 0.5}, **extra}


def test_targets_count_a_learned_peer_row_as_the_network_alone():
    rows = [
        _row("mesh U-Net", 7.0), _row("dipole fit (BEM)", 2.5, peer="dipole-bem-window"),
        _row("sensor network (this project)", 2.0, peer="sensor-net", learned=True),
    ]
    cond = {"single-snr1": {"kind": "single", "snr": 1.0, "results": rows}}
    entry = compute_targets(cond, ["mesh U-Net"])["per_condition"]["single-snr1"]
    assert entry["best_learned"] == entry["best_network_alone"] == rows[2]["estimator"]
    assert entry["best_peer"] == "dipole fit (BEM)"
    assert entry["ratio_network_vs_peer"] == pytest.approx(0.8)
    rows[2].pop("learned")  # the same row as a peer: the network alone is the mesh U-Net
    entry = compute_targets(cond, ["mesh U-Net"])["per_condition"]["single-snr1"]
    assert entry["best_peer"] == rows[2]["estimator"]
    assert entry["best_network_alone"] == "mesh U-Net"


def _pointing_at(net, position):
    """``net`` made to answer ``position`` for every input (its last layer a constant)."""
    from napari_meg_unet.models.sensor_dipole import SCALE

    last = net.mlp[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_((torch.as_tensor(position, dtype=torch.float32) - net.centre) / SCALE)
    return net


def test_predict_dipole_returns_the_source_as_an_mne_dipole(template_hm, seen_moment):
    import mne

    from napari_meg_unet.models.sensor_dipole import predict_dipole

    i = int(template_hm.rows("rh")[40])
    net = _pointing_at(make_sensor_dipole_net(template_hm, template_hm.info, hidden=(8,)),
                       template_hm.positions[i])  # fmt: skip
    course = 20e-9 * np.hanning(32)  # A·m, peak at the middle samples
    evoked = mne.EvokedArray(np.outer(template_hm.gain[:, i], course), template_hm.info,
                             tmin=-0.05)  # fmt: skip
    dip = predict_dipole(net, evoked, template_hm)
    assert isinstance(dip, mne.Dipole) and len(dip) == 1
    np.testing.assert_allclose(dip.pos[0], template_hm.positions[i], atol=1e-6)
    # the moment at the peak as the fits report it: the weak, nearly radial orientation left out
    seen = seen_moment(net.whitener.numpy(), template_hm, i, template_hm.normals[i] * course.max())
    np.testing.assert_allclose(dip.amplitude[0] * dip.ori[0], seen, rtol=1e-6)
    assert np.linalg.norm(seen) < course.max()
    assert dip.gof[0] == pytest.approx(100.0, abs=1e-6)
    assert dip.times[0] == pytest.approx(evoked.times[np.argmax(course)])
    with pytest.raises(ValueError, match="evoked lacks the network's channels"):
        predict_dipole(net, evoked.copy().pick(evoked.ch_names[:10]), template_hm)


def test_bench_summary_records_the_validation_curve_of_trained_peers():
    from types import SimpleNamespace

    from napari_meg_unet.accuracy.peers import PeerSetup
    from napari_meg_unet.accuracy.run import _peers_summary
    from napari_meg_unet.peers.base import PeerState
    from napari_meg_unet.peers.search import SearchResult

    history = [{"block": 20, "val_mm": 3.0, "seconds": 1.5}]
    search = SearchResult("sensor-net", {}, validation=[], training=None, criterion="none")

    def setup(name, parts):
        return PeerSetup(peers.get_peer(name), PeerState(None, None, 1, {}, parts), search)

    run = SimpleNamespace(peers_skipped={}, peer_setups={"single": {
        "sensor-net": setup("sensor-net", {"history": history}),
        "rap-music": setup("rap-music", {}),
    }})  # fmt: skip
    summary = _peers_summary(run)
    assert summary["training"] == {"single": {"sensor-net": history}}


def test_predict_dipole_holds_a_recording_to_the_training_window_and_nave(template_hm):
    import mne

    from napari_meg_unet.models.sensor_dipole import iter_make_sensor_dipole_net, predict_dipole

    sim = SimulationConfig(design="sweep", hemi="rh", snr=3.0, timecourse="realistic", nave=4)
    recipe = SensorNetConfig(block=16, n_blocks=2, val_events=16, val_every=1)
    net, history = plain(iter_make_sensor_dipole_net)(template_hm, sim, recipe=recipe,
                                                      hidden=(16,), seed=1)  # fmt: skip
    assert net.trained_on == {"sfreq": 250.0, "n_times": 32, "nave": 4} and len(history) == 2
    data = np.random.default_rng(3).standard_normal((306, 32)) * 1e-12
    info = template_hm.info.copy()
    with info._unlock():
        info["sfreq"], info["lowpass"] = 250.0, 125.0
    evoked = mne.EvokedArray(data, info, nave=4)
    # another nave: the data reach the network at the noise level it was trained on
    quarter = mne.EvokedArray(data * 2.0, info, nave=1)
    np.testing.assert_allclose(predict_dipole(net, quarter, template_hm).pos,
                               predict_dipole(net, evoked, template_hm).pos, rtol=1e-5)  # fmt: skip
    with pytest.raises(ValueError, match="sampled at 500 Hz.*trained at 250 Hz"):
        predict_dipole(net, mne.EvokedArray(data, mne.create_info(
            template_hm.ch_names, 500.0, "grad")), template_hm)  # fmt: skip
    with pytest.raises(ValueError, match="has 20 samples.*windows of 32"):
        predict_dipole(net, evoked.copy().crop(0, 19 / 250.0), template_hm)


def test_predict_dipoles_slides_over_a_recording(template_hm, seen_moment):
    from napari_meg_unet.models.sensor_dipole import predict_dipoles

    i = int(template_hm.rows("rh")[7])
    net = _pointing_at(make_sensor_dipole_net(template_hm, template_hm.info, hidden=(8,)),
                       template_hm.positions[i])  # fmt: skip
    with pytest.raises(ValueError, match="untrained"):
        predict_dipoles(net, np.zeros((306, 64)), template_hm, sfreq=250.0)
    net.trained_on = {"sfreq": 250.0, "n_times": 32, "nave": 1}
    course = np.zeros(100)
    course[40:60] = 10e-9 * np.hanning(20)
    data = np.outer(template_hm.gain[:, i], course)
    dip = predict_dipoles(net, data, template_hm, sfreq=250.0, tmin=-0.1)
    assert len(dip) == (100 - 32) // 16 + 1  # windows every half window
    np.testing.assert_allclose(dip.pos, np.tile(template_hm.positions[i], (len(dip), 1)))
    assert dip.times[0] == pytest.approx(-0.1 + np.argmax(np.abs(course[:32])) / 250.0)
    # the windows holding the whole source explain it
    holding = [k for k in range(len(dip)) if 16 * k <= 40 and 16 * k + 32 >= 60]
    assert holding and all(dip.gof[k] == pytest.approx(100.0, abs=1e-6) for k in holding)
    seen = seen_moment(net.whitener.numpy(), template_hm, i, template_hm.normals[i] * course.max())
    assert dip.amplitude[holding[0]] == pytest.approx(np.linalg.norm(seen), rel=1e-6)
    # the windows without the source explain nothing (no NaN)
    empty = [k for k in range(len(dip)) if 16 * k + 32 <= 40]
    assert empty and all(dip.gof[k] == 0.0 for k in empty)
    with pytest.raises(ValueError, match="fewer than the network's window of 32"):
        predict_dipoles(net, data[:, :20], template_hm, sfreq=250.0)
    with pytest.raises(ValueError, match="sampled at 500 Hz"):
        predict_dipoles(net, data, template_hm, sfreq=500.0)


def test_sensor_network_files_are_told_from_other_files(template_hm, tmp_path):
    from napari_meg_unet.models.sensor_dipole import is_sensor_dipole_file

    net = make_sensor_dipole_net(template_hm, template_hm.info, hidden=(8,))
    save_sensor_dipole_net(net, tmp_path / "renamed.pt")
    torch.save({"model": {"w": torch.zeros(2)}}, tmp_path / "other.pt")
    (tmp_path / "text.pt").write_text("not torch")
    assert is_sensor_dipole_file(tmp_path / "renamed.pt")
    assert not any(is_sensor_dipole_file(tmp_path / n) for n in ("other.pt", "text.pt", "nope"))
