"""The centre head: rings, its loss, the network's output, training on sets and streams, the
``centre-head`` estimator."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_meg_unet.configs import InverseConfig, SimulationConfig, StreamConfig
from napari_meg_unet.dataset import StreamSpec
from napari_meg_unet.models import MeshHierarchy, build_model
from napari_meg_unet.models import centre as centre_mod
from napari_meg_unet.models.centre import (
    CentreTarget,
    centre_loss,
    centre_positions,
    ring_table,
)
from napari_meg_unet.progress import plain

SIM = SimulationConfig(design="multi", n_events=1, n_dipoles=(1, 2), timecourse="realistic",
                       snr=(1.0, 3.0), n_times=12, off_grid=True)  # fmt: skip
INV = InverseConfig(methods=("MNE", "dSPM"))
#: A tiny mesh U-Net with a centre head.
TINY = dict(model="mesh", preset="cpu-centre", root_features=4, levels=2, batch_size=4,
            device="cpu", deterministic=True, num_threads=1, seed=0)  # fmt: skip


@pytest.fixture(scope="module")
def mesh(template_hm):
    return MeshHierarchy.from_headmodel(template_hm, "rh")


@pytest.fixture(scope="module")
def rows(template_hm):
    return np.asarray(template_hm.positions[template_hm.rows("rh")])


def test_ring_table_holds_each_vertex_and_its_two_rings(mesh):
    table, mask = ring_table(mesh)
    index, weight = mesh.neighbour_table(0)
    assert table.shape == mask.shape and table.shape[0] == 642
    assert (table[:, 0] == np.arange(642)).all() and mask[:, 0].all()
    for v in (0, 17, 400):
        first = set(index[v, weight[v] > 0].tolist())
        second = {int(u) for w in first for u in index[w, weight[w] > 0]}
        assert set(table[v, mask[v]].tolist()) == {v} | first | second
        assert (table[v, ~mask[v]] == v).all()
    single, single_mask = ring_table(mesh, hops=0)
    assert single.shape == (642, 1) and single_mask.all()
    with pytest.raises(ValueError, match="hops"):
        ring_table(mesh, hops=-1)


def test_centre_loss_reaches_off_grid_points_and_ignores_the_rest(mesh, rows):
    target = CentreTarget(mesh, rows)
    rng = np.random.default_rng(0)
    picks = rng.choice(642, 3, replace=False)
    true = np.full((3, 2, 3), np.nan)
    index, _ = mesh.neighbour_table(0)
    true[:, 0] = 0.7 * rows[picks] + 0.3 * rows[index[picks, 0]]  # off the grid, on an edge
    true[2, 1] = [-0.07, 0.0, 0.02]  # the other hemisphere, far from every row: left out
    h = torch.zeros(3, 642, requires_grad=True)
    loss = centre_loss(h, torch.as_tensor(true), target)
    loss.backward()
    table, mask = ring_table(mesh)
    ring_rows = set(table[picks][mask[picks]].tolist())
    touched = set(np.flatnonzero(h.grad.abs().sum(0).numpy() > 0).tolist())
    assert touched and touched <= ring_rows  # only the rings of the sources' nearest rows
    optimiser = torch.optim.Adam([h], lr=0.5)
    for _ in range(300):
        optimiser.zero_grad()
        loss = centre_loss(h, torch.as_tensor(true), target)
        loss.backward()
        optimiser.step()
    assert loss.item() < 0.05  # cm: the ring mean reaches the off-grid points
    for e in range(3):
        placed = centre_positions(h[e].detach().numpy(), [picks[e]], rows, (table, mask))
        assert np.linalg.norm(placed[0] - true[e, 0]) < 1e-3
    # no source in the batch: zero, with a gradient; bad shapes are refused
    empty = torch.zeros(2, 642, requires_grad=True)
    zero = centre_loss(empty, torch.full((2, 1, 3), float("nan")), target)
    zero.backward()
    assert float(zero) == 0 and empty.grad is not None
    with pytest.raises(ValueError, match="true_positions must have shape"):
        centre_loss(h, torch.zeros(3, 3), target)
    with pytest.raises(ValueError, match=r"positions must have shape \(642, 3\)"):
        CentreTarget(mesh, rows[:10])


def test_centre_loss_also_centres_a_ring_on_the_maps_peak(mesh, rows):
    """With the network's map, the second ring is centred on the map's peak within the
    nearest vertex's ring, the way inference centres it; vertices outside are never picked."""
    target = CentreTarget(mesh, rows)
    table, mask = ring_table(mesh)
    index, weight = mesh.neighbour_table(0)
    v = 200
    u = int(index[v, 0])  # a neighbour: the map's peak near the source
    far = next(int(w) for w in range(642) if w not in set(table[v][mask[v]].tolist()))
    true = torch.as_tensor(0.8 * rows[v] + 0.2 * rows[u])[None, None]
    source_map = torch.zeros(1, 642)
    source_map[0, u], source_map[0, far] = 0.5, 0.9  # `far` is higher, but not near the source

    def touched(**kwargs):
        h = torch.zeros(1, 642, requires_grad=True)
        centre_loss(h, true, target, **kwargs).backward()
        return set(np.flatnonzero(h.grad[0].numpy() != 0).tolist())

    ring_v, ring_u = set(table[v][mask[v]].tolist()), set(table[u][mask[u]].tolist())
    assert touched() == ring_v
    assert touched(source_map=source_map) == ring_v | ring_u
    h = torch.zeros(1, 642, requires_grad=True)
    optimiser = torch.optim.Adam([h], lr=0.5)
    for _ in range(300):
        optimiser.zero_grad()
        loss = centre_loss(h, true, target, source_map=source_map)
        loss.backward()
        optimiser.step()
    assert loss.item() < 0.05  # cm: both rings' means reach the off-grid point
    for peak in (v, u):
        placed = centre_positions(h[0].detach().numpy(), [peak], rows, (table, mask))
        assert np.linalg.norm(placed[0] - true[0, 0].numpy()) < 1e-3
    with pytest.raises(ValueError, match=r"source_map must have shape \(1, 642\)"):
        centre_loss(h, true, target, source_map=source_map[:, :10])


def test_mesh_unet_centre_head(mesh):
    net = build_model("mesh", in_channels=2, n_rows=642, n_times=12, preset="cpu-centre",
                      mesh=mesh, root_features=4, levels=2)  # fmt: skip
    x = torch.randn(3, 2, 642, 12)
    logits, centre = net(x, centre=True)
    assert logits.shape == (3, 2, 642, 12) and centre.shape == (3, 642)
    torch.testing.assert_close(net(x), logits)
    assert net.config["centre_head"] is True
    rebuilt = build_model(**net.config, mesh=mesh)
    assert rebuilt.centre_head and rebuilt.head.out_channels == 3
    plain_net = build_model("mesh", in_channels=2, n_rows=642, n_times=12, preset="cpu",
                            mesh=mesh, root_features=4, levels=2)  # fmt: skip
    assert plain_net.head.out_channels == 2 and plain_net.config["centre_head"] is False
    with pytest.raises(ValueError, match="centre_head=True"):
        plain_net(x, centre=True)


@pytest.fixture(scope="module")
def spec(template_hm):
    return StreamSpec(template_hm, SIM, INV,
                      StreamConfig(examples_per_epoch=8, n_val=8, data_seed=3))  # fmt: skip


@pytest.fixture(scope="module")
def val_set(spec, tmp_path_factory):
    return spec.make_val_set(tmp_path_factory.mktemp("val") / "val", chunk=4)


@pytest.fixture(scope="module")
def train_set(spec, tmp_path_factory):
    out = tmp_path_factory.mktemp("train") / "train"
    return plain(spec.iter_example_set)(out, n=8, seed=11, chunk=4)


@pytest.fixture(scope="module")
def trained(spec, train_set, val_set, tmp_path_factory, template_hm):
    """A centre-head network trained on a stream and on a set; the true positions each
    batch's centre loss saw."""
    from napari_meg_unet.train import train

    seen, original = {}, centre_mod.centre_loss

    def recording(h, true_positions, target, *, source_map=None):
        seen.setdefault(key, []).append(np.asarray(torch.as_tensor(true_positions)))
        assert source_map is not None and source_map.shape == h.shape
        assert not source_map.requires_grad and 0 <= float(source_map.min()) <= 1
        return original(h, true_positions, target, source_map=source_map)

    out = tmp_path_factory.mktemp("centre")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(centre_mod, "centre_loss", recording)
        for key, data in (("stream", spec), ("set", train_set)):
            train(train=data, val=val_set, out_dir=out / key, epochs=1, mesh=template_hm,
                  **TINY)  # fmt: skip
    return {"out": out, "seen": seen}


def test_training_feeds_the_centre_loss_the_true_positions(trained, train_set):
    from napari_meg_unet.checkpoint import load_checkpoint

    seen = trained["seen"]
    assert len(seen["stream"]) == 2 and len(seen["set"]) == 2  # 8 examples, batch 4
    for batch in seen["stream"]:
        assert batch.shape[0] == 4 and np.isfinite(batch[:, 0]).all()
    # the set's batches carry the set's own true positions (shuffled, every one once)
    got = np.concatenate(seen["set"])[:, 0]
    want = np.asarray(train_set.true_positions)[:, 0]
    assert sorted(map(tuple, got.round(9))) == sorted(map(tuple, want.round(9)))
    ckpt = load_checkpoint(trained["out"] / "set" / "best.pt")
    assert ckpt["model_config"]["centre_head"] is True


def test_centre_head_estimator(trained, template_hm, val_set):
    from napari_meg_unet.accuracy.hybrids import NetworkCentreHead, make_hybrid
    from napari_meg_unet.peers import iter_run_peer, validation_dle
    from napari_meg_unet.simulate import simulate
    from napari_meg_unet.train.pretrained import pretrained_checkpoint

    plain_net = make_hybrid("centre-head", pretrained_checkpoint(), "mesh U-Net")
    assert "no centre head" in plain_net.unavailable(template_hm)
    peer = make_hybrid("centre-head", trained["out"] / "set" / "best.pt", "mesh U-Net")
    assert isinstance(peer, NetworkCentreHead) and peer.unavailable(template_hm) is None
    assert peer.label == "mesh U-Net + centre head"
    sim = simulate(template_hm, **{**SIM.to_dict(), "n_events": 3, "snr": 3.0, "seed": 5,
                                   "hemi": "rh"}, verbose=False)  # fmt: skip
    state = peer.prepare(template_hm, sim.info, params=peer.defaults)
    run = plain(iter_run_peer)(peer, state, sim, np.arange(3))
    assert run.n_empty == 0
    assert np.isfinite(validation_dle(run, sim, template_hm)).all()
    # the estimates leave the grid, and stay within the peak's 2-ring (about 2 cm)
    rows = np.asarray(template_hm.positions[template_hm.rows("rh")])
    for positions in run.estimates.positions:
        nearest = np.linalg.norm(rows[None] - np.asarray(positions)[:, None], axis=-1).min(-1)
        assert (nearest > 1e-6).all() and (nearest < 0.03).all()
