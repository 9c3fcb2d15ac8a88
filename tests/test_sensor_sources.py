"""The several-source sensor network: input, set loss, training, checkpoints, its estimators."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_meg_unet import peers
from napari_meg_unet.accuracy.targets import compute_targets
from napari_meg_unet.configs import InverseConfig, SensorNetConfig, SimulationConfig
from napari_meg_unet.models.sensor_dipole import (
    SCALE,
    _channel_order,
    _draw,
    _validate,
    epoch_pattern,
    iter_train_sensor_dipole,
    load_sensor_dipole_net,
    make_sensor_dipole_net,
    save_sensor_dipole_net,
)
from napari_meg_unet.models.sensor_sources import SensorSourcesNet, assignment
from napari_meg_unet.peers import iter_run_peer
from napari_meg_unet.peers.learned import _TRAINED
from napari_meg_unet.progress import plain
from napari_meg_unet.simulate import simulate
from napari_meg_unet.simulate.torch_core import TorchCore

TINY = SensorNetConfig(lr=3e-3, block=64, n_blocks=30, val_events=128, val_every=10)
MULTI = dict(design="multi", hemi="rh", snr=3.0, timecourse="realistic", n_dipoles=(2, 3))


@pytest.fixture(autouse=True)
def _no_shared_networks():
    """Each test trains its own peers' networks (some tests rewrite a network's layers)."""
    _TRAINED.clear()
    yield
    _TRAINED.clear()


@pytest.fixture(scope="module")
def core(template_hm):
    return TorchCore(template_hm, SimulationConfig(n_events=1, **MULTI),
                     InverseConfig(hemi="rh"), inputs=False)  # fmt: skip


@pytest.fixture(scope="module")
def events(template_hm):
    return simulate(template_hm, n_events=12, seed=31, **MULTI)


def _slots_at(net, positions, logits):
    """``net`` made to answer the same slots for every input (its last layer a constant)."""
    out = torch.zeros(net.n_sources, 4)
    out[:, :3] = (torch.as_tensor(positions, dtype=torch.float32) - net.centre) / SCALE
    out[:, 3] = torch.as_tensor(logits, dtype=torch.float32)
    with torch.no_grad():
        net.mlp[-1].weight.zero_()
        net.mlp[-1].bias.copy_(out.reshape(-1))
    return net


def test_epoch_pattern_reads_several_sign_free_whitened_patterns():
    rng = np.random.default_rng(0)
    w = torch.tensor(rng.standard_normal((6, 8)), dtype=torch.float32)
    data = torch.tensor(rng.standard_normal((3, 8, 20)), dtype=torch.float32)
    x = epoch_pattern(w, data, 3)
    assert x.shape == (3, 3 * 6 + 3)
    torch.testing.assert_close(x[:, :6], epoch_pattern(w, data)[:, :6])  # the first: as before
    torch.testing.assert_close(x, epoch_pattern(w, -data, 3))
    u, s, _ = np.linalg.svd(np.einsum("rc,nct->nrt", w.numpy(), data.numpy()))
    second = u[:, :, 1] * np.sign(u[np.arange(3), np.abs(u[:, :, 1]).argmax(axis=1), 1])[:, None]
    np.testing.assert_allclose(x[:, 6:12].numpy(), second, atol=1e-4)
    np.testing.assert_allclose(x[:, -3:].numpy(), np.log(s[:, :3]), rtol=1e-4)
    with pytest.raises(ValueError, match="4 patterns need events of at least 4 samples"):
        epoch_pattern(w, data[:, :, :3], 4)


def test_assignment_matches_slots_to_sources_optimally():
    truth = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [np.nan] * 3]])
    slots = torch.tensor([[[1.1, 0, 0], [5, 5, 5], [0.1, 0, 0]]])
    event, source, slot = assignment(slots, truth)
    assert dict(zip(source.tolist(), slot.tolist(), strict=True)) == {0: 2, 1: 0}
    assert event.tolist() == [0, 0]
    # with logits, only the n most probable slots take part
    _, source, slot = assignment(slots, truth, logits=torch.tensor([[3.0, 2.0, -1.0]]))
    assert dict(zip(source.tolist(), slot.tolist(), strict=True)) == {0: 1, 1: 0}
    with pytest.raises(ValueError, match="3 sources, more than the network's 2 slots"):
        assignment(slots[:, :2], torch.zeros(1, 3, 3))


def test_the_permuted_assignment_pairs_as_linear_sum_assignment():
    from napari_meg_unet.models.sensor_sources import _host_assignment

    rng = np.random.default_rng(3)
    slots = torch.tensor(rng.standard_normal((300, 5, 3)))
    truth = torch.tensor(rng.standard_normal((300, 5, 3)))
    counts = rng.integers(1, 6, 300)
    for i, c in enumerate(counts):
        truth[i, c:] = float("nan")  # events of 1-5 sources, NaN-padded
    fast = assignment(slots, truth)
    host = _host_assignment(slots, truth, None)
    assert len(fast[0]) == counts.sum()
    def pairs(index_tensors):
        return sorted(zip(*(t.tolist() for t in index_tensors), strict=True))

    assert pairs(fast) == pairs(host)
    slots[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="not finite"):
        assignment(slots, truth)


def test_set_loss_and_validation_distance(template_hm):
    net = make_sensor_dipole_net(template_hm, template_hm.info, hidden=(8,), n_sources=3)
    assert isinstance(net, SensorSourcesNet) and net.n_sources == 3
    true = torch.as_tensor(template_hm.positions[[10, 50]], dtype=torch.float32)
    truth = torch.cat([true, torch.full((1, 3), torch.nan)])[None].expand(4, -1, -1)
    away = true[0] + torch.tensor([0.0, 0.0, 0.01])  # 10 mm off the first source
    _slots_at(net, torch.stack([true[1], away, true[0]]), [0.0, 5.0, -5.0])
    x = net.features(torch.randn(4, 306, 20))
    # the assignment takes the two exact slots; the cross-entropy is of (0 -> 1, 5 -> 0, -5 -> 1)
    bce = (np.log1p(np.exp(-0.0)) + np.log1p(np.exp(5.0)) + np.log1p(np.exp(5.0))) / 3
    assert net.loss(x, truth).item() == pytest.approx(bce, rel=1e-5)
    # validation reads the two most probable slots: the far one stands in for source 0
    assert _validate(net, x, truth) == pytest.approx(5.0, rel=1e-4)
    # ... and averages over events, not sources: an event of one source counts as much
    uneven = truth[:2].clone()
    uneven[1, 0] = true[1]
    uneven[1, 1] = torch.nan
    alone = float((away - true[1]).norm()) * 1000.0  # its one source gets the likeliest slot
    assert _validate(net, x[:2], uneven) == pytest.approx((5.0 + alone) / 2, rel=1e-4)
    positions, probabilities = net.predict_slots(torch.randn(2, 306, 20))
    assert positions.shape == (2, 3, 3) and np.all(np.diff(probabilities, axis=1) <= 0)
    np.testing.assert_allclose(positions[0], torch.stack([away, true[1], true[0]]), atol=1e-6)
    with pytest.raises(ValueError, match="n_sources must be at least 2"):
        SensorSourcesNet(net.whitener.numpy(), np.zeros(3), net.ch_names, n_sources=1)


def test_training_places_several_sources_and_round_trips(template_hm, core, tmp_path):
    torch.manual_seed(0)
    net = make_sensor_dipole_net(template_hm, template_hm.info, hidden=(64,), n_sources=3)
    picks = _channel_order(core, net.ch_names)
    val_x, val_y = _draw(core, 256, seed=50, index=0, picks=picks)
    val_x = net.features(val_x)
    untrained = _validate(net, val_x, val_y)
    history = plain(iter_train_sensor_dipole)(net, core, seed=3, recipe=TINY)
    assert [h["block"] for h in history] == [10, 20, 30]
    assert _validate(net, val_x, val_y) < 0.8 * untrained
    save_sensor_dipole_net(net, tmp_path / "multi.pt")
    loaded = load_sensor_dipole_net(tmp_path / "multi.pt")
    assert isinstance(loaded, SensorSourcesNet) and loaded.n_sources == 3
    data = torch.randn(3, 306, 20)
    for a, b in zip(loaded.predict_slots(data), net.eval().predict_slots(data), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_a_multi_simulation_makes_the_several_source_network(template_hm):
    from napari_meg_unet.models.sensor_dipole import iter_make_sensor_dipole_net

    recipe = SensorNetConfig(block=8, n_blocks=1, val_events=8, val_every=1)
    sim = SimulationConfig(n_events=1, **MULTI)
    net, _ = plain(iter_make_sensor_dipole_net)(template_hm, sim, recipe=recipe, hidden=(8,),
                                                device="cpu")  # fmt: skip
    assert isinstance(net, SensorSourcesNet) and net.n_sources == 3
    assert all(t.device.type == "cpu" for t in net.state_dict().values())  # where it predicts


def test_sensor_net_estimators_on_several_sources(template_hm, events, monkeypatch):
    from napari_meg_unet.models import sensor_dipole

    trainings = []
    real = sensor_dipole.iter_make_sensor_dipole_net

    def counted(*args, **kwargs):
        trainings.append(kwargs["recipe"])
        return real(*args, **kwargs)

    monkeypatch.setattr(sensor_dipole, "iter_make_sensor_dipole_net", counted)
    net_peer, fit_peer = peers.get_peer("sensor-net"), peers.get_peer("sensor-net-fit")
    assert fit_peer.learned and fit_peer.family == "hybrid" and "multi" in fit_peer.kinds
    params = {**net_peer.defaults, "n_blocks": 2, "block": 16}
    state = net_peer.prepare(template_hm, events.info, params=params, training=events)
    fit_params = {**fit_peer.defaults, "n_blocks": 2, "block": 16}
    fit_state = fit_peer.prepare(template_hm, events.info, params=fit_params, training=events)
    assert len(trainings) == 1  # one network for both estimators
    assert fit_state.parts["net"] is state.parts["net"]
    net = state.parts["net"]
    true = np.asarray(events.sources["position"])[events.event_sources(0)]
    # the network answers the two true sources, and a third slot below the threshold
    _slots_at(net, np.vstack([true[:2], true[0] + 0.03]), [4.0, 3.0, -4.0])
    run = plain(iter_run_peer)(net_peer, state, events, np.arange(3))
    assert [len(p) for p in run.estimates.positions] == [2, 2, 2]
    np.testing.assert_allclose(run.estimates.positions[0], true[:2], atol=1e-6)
    assert all((a > 0).all() for a in run.estimates.amplitudes)
    # every slot below the threshold: the most probable one is still a source
    _slots_at(net, np.vstack([true[:2], true[0] + 0.03]), [-4.0, -3.0, -5.0])
    assert len(net_peer.estimate(state, events.data[0]).positions) == 1
    # the fit moves proposals 5 mm off two sources back onto them (noise-free data)
    rows = template_hm.rows("rh")[[30, 400]]
    on_grid = template_hm.positions[rows]
    courses = 30e-9 * np.array([np.hanning(20), np.sin(np.linspace(0, np.pi * 2, 20))])
    data = template_hm.gain[:, rows] @ courses
    _slots_at(net, np.vstack([on_grid + [0.005, 0, 0], true[0] + 0.03]), [4.0, 3.0, -4.0])
    fit = fit_peer.estimate(fit_state, data)
    assert len(fit.positions) == 2
    order = np.argsort(np.linalg.norm(fit.positions[:, None] - on_grid[None], axis=-1), axis=1)
    assert sorted(order[:, 0]) == [0, 1]
    np.testing.assert_allclose(fit.positions[order[:, 0].argsort()], on_grid, atol=1e-3)


def test_targets_count_the_sensor_fit_as_learned_but_not_alone():
    def row(estimator, mean, **extra):
        return {"estimator": estimator, "protocol": "window",
                "dle_mm": {"mean": mean, "ci_low": mean - 0.5, "ci_high": mean + 0.5}, **extra}

    rows = [
        row("mesh U-Net", 7.0), row("dipole fit (BEM)", 2.5, peer="dipole-bem-window"),
        row("sensor network (this project)", 3.0, peer="sensor-net", learned=True,
            family="learned"),
        row("sensor network + dipole fit (this project)", 1.5, peer="sensor-net-fit",
            learned=True, family="hybrid"),
    ]  # fmt: skip
    cond = {"single-snr1": {"kind": "single", "snr": 1.0, "results": rows}}
    entry = compute_targets(cond, ["mesh U-Net"])["per_condition"]["single-snr1"]
    assert entry["best_learned"] == rows[3]["estimator"]
    assert entry["best_network_alone"] == rows[2]["estimator"]


def test_predict_dipole_gives_each_source_of_a_window(template_hm, seen_moment):
    import mne

    from napari_meg_unet.models.sensor_dipole import predict_dipole, predict_dipoles

    net = make_sensor_dipole_net(template_hm, template_hm.info, hidden=(8,), n_sources=3)
    rows = template_hm.rows("rh")[[30, 400]]
    on_grid = template_hm.positions[rows]
    _slots_at(net, np.vstack([on_grid, on_grid[0] + 0.03]), [4.0, 3.0, -4.0])
    t = np.arange(32)
    courses = np.array([20e-9 * np.exp(-((t - 10) / 3.0) ** 2),
                        -35e-9 * np.exp(-((t - 22) / 3.0) ** 2)])  # fmt: skip
    evoked = mne.EvokedArray(template_hm.gain[:, rows] @ courses, template_hm.info, tmin=-0.05)
    dip = predict_dipole(net, evoked, template_hm)
    assert len(dip) == 2  # the third slot is below the threshold
    np.testing.assert_allclose(dip.pos, on_grid, atol=1e-6)
    # the moments as mne.fit_dipole reports them: the weak, nearly radial orientation left out
    w = net.whitener.numpy()
    seen = np.array([seen_moment(w, template_hm, r, template_hm.normals[r] * c.max(axis=0)
                                 if c.max() > 0 else template_hm.normals[r] * c.min())
                     for r, c in zip(rows, courses, strict=True)])  # fmt: skip
    np.testing.assert_allclose(dip.amplitude, np.linalg.norm(seen, axis=1), rtol=1e-6)
    assert (dip.amplitude > [0.7 * 20e-9, 0.7 * 35e-9]).all()  # most of each moment is seen
    np.testing.assert_allclose(dip.times, evoked.times[[10, 22]])
    np.testing.assert_allclose(np.abs(np.sum(dip.ori * seen, axis=1)),
                               np.linalg.norm(seen, axis=1), rtol=1e-6)  # fmt: skip
    np.testing.assert_allclose(dip.gof, 100.0, atol=1e-6)
    assert len(predict_dipole(net, evoked, template_hm, threshold=0.01)) == 3
    net.trained_on = {"sfreq": evoked.info["sfreq"], "n_times": 16, "nave": 1}
    windows = predict_dipoles(net, evoked.data, template_hm, sfreq=evoked.info["sfreq"])
    assert len(windows) == 3 * 2  # three windows of 16 samples every 8, two sources each


def test_the_sensor_budget_reaches_every_candidate(template_hm, events):
    from napari_meg_unet import evaluation

    fit = peers.get_peer("sensor-net-fit")
    candidates = fit.candidates({"n_blocks": 7, "alpha": 1.0})  # alpha: not one of its params
    assert len(candidates) == 4 and all(c["n_blocks"] == 7 and "alpha" not in c
                                        for c in candidates)  # fmt: skip
    assert peers.get_peer("lcmv").candidates({"n_blocks": 7}) == peers.get_peer("lcmv").candidates()
    assert peers.fixed_params(None) == {} and peers.fixed_params(3) == {"n_blocks": 3}
    test = simulate(template_hm, n_events=3, seed=32, **MULTI)
    ev = evaluation.evaluate_peers(template_hm, test, validation=events, training=events,
                                   peers=("sensor-net",), peer_events=2, sensor_blocks=2,
                                   n_boot=20)  # fmt: skip
    assert ev.meta["peers"]["sensor-net"]["params"]["n_blocks"] == 2
    (key,) = _TRAINED
    assert key[3] == 2  # the network was trained for 2 blocks


def test_a_given_network_file_replaces_the_training(template_hm, events, tmp_path):
    from napari_meg_unet import evaluation
    from napari_meg_unet.models.sensor_dipole import save_sensor_dipole_net

    window = {"sfreq": float(events.sfreq), "n_times": int(events.data.shape[2]), "nave": 1}
    several = make_sensor_dipole_net(template_hm, template_hm.info, hidden=(8,), n_sources=3)
    several.trained_on = window
    save_sensor_dipole_net(several, tmp_path / "multi.pt")
    assert peers.fixed_params(None, tmp_path / "multi.pt") == {
        "network_file": str(tmp_path / "multi.pt")}  # fmt: skip
    test = simulate(template_hm, n_events=3, seed=33, **MULTI)
    ev = evaluation.evaluate_peers(template_hm, test, validation=events, training=events,
                                   peers=("sensor-net",), peer_events=2, n_boot=20,
                                   sensor_net_file=str(tmp_path / "multi.pt"))  # fmt: skip
    assert not _TRAINED  # nothing trained
    assert ev.meta["peers"]["sensor-net"]["params"]["network_file"] == str(tmp_path / "multi.pt")
    (row,) = [r for k, r in ev.summary.items() if k[0].startswith("sensor network")]
    assert row["n_events"] == 2
    # a file that does not fit the events is refused, naming what differs
    one = make_sensor_dipole_net(template_hm, template_hm.info, hidden=(8,))
    one.trained_on = window
    save_sensor_dipole_net(one, tmp_path / "one.pt")
    other_rate = make_sensor_dipole_net(template_hm, template_hm.info, hidden=(8,), n_sources=3)
    other_rate.trained_on = {**window, "sfreq": 500.0}
    save_sensor_dipole_net(other_rate, tmp_path / "rate.pt")
    (tmp_path / "text.pt").write_text("not a network")
    peer = peers.get_peer("sensor-net")
    for name, match in (("one.pt", "places 1 source"), ("rate.pt", "sfreq 500.0"),
                        ("text.pt", "not a sensor network")):  # fmt: skip
        with pytest.raises(ValueError, match=match):
            peer.prepare(template_hm, events.info, training=events,
                         params={**peer.defaults, "network_file": str(tmp_path / name)})


def test_targets_leave_ratios_to_a_perfect_peer_undefined():
    rows = [{"estimator": "sensor network (this project)", "protocol": "window", "peer": "s",
             "learned": True, "family": "learned",
             "dle_mm": {"mean": 1.0, "ci_low": 0.5, "ci_high": 1.5}},
            {"estimator": "dipole fit", "protocol": "window", "peer": "dipole-sphere-peak",
             "dle_mm": {"mean": 0.0, "ci_low": 0.0, "ci_high": 0.0}}]  # fmt: skip
    cond = {"single-snr3": {"kind": "single", "snr": 3.0, "results": rows}}
    targets = compute_targets(cond, [])
    entry = targets["per_condition"]["single-snr3"]
    assert "ratio_learned_vs_peer" not in entry and "ratio_network_vs_peer" not in entry
    assert entry["best_network_alone"] == rows[0]["estimator"] and not entry["learned_lowest"]
