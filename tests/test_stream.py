"""The training stream: bit-exact with the float32 disk path, disjoint ranks, workers, resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_meg_unet.configs import InverseConfig, SimulationConfig, StreamConfig
from napari_meg_unet.dataset import StreamSpec, example_hashes, make_splits, split_seeds
from napari_meg_unet.progress import plain

#: Small images: realistic bursts over 12 samples, MNE and dSPM inputs.
SIM = SimulationConfig(design="multi", n_events=1, n_dipoles=(1, 3), timecourse="realistic",
                       snr=(0.5, 3.0), n_times=12)  # fmt: skip
INV = InverseConfig(methods=("MNE", "dSPM"))


@pytest.fixture(scope="module")
def spec(template_hm):
    stream = StreamConfig(examples_per_epoch=16, n_val=8, data_seed=7)
    return StreamSpec(template_hm, SIM, INV, stream)


def _stream_inputs(spec, n_batches, batch_size, **kwargs):
    parts = list(spec.stream_dataset(batch_size=batch_size, start=0, stop=n_batches, **kwargs))
    return (torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]),
            torch.cat([p[2] for p in parts]))  # fmt: skip


def test_stream_equals_the_float32_disk_set_bit_exactly(spec, tmp_path):
    """The first examples of the stream (one process) are the float32 set of the same seed
    built in blocks of the batch size: make_splits' training split and StreamSpec's own."""
    x, y, ids = _stream_inputs(spec, 3, 4)
    assert x.dtype == torch.float32 and x.shape == (12, 2, 642, 12) and y.dtype == torch.uint8
    assert ids.tolist() == list(range(12))
    own = plain(spec.iter_example_set)(tmp_path / "own", n=12, seed=spec.train_seed, chunk=4)
    assert torch.equal(x, torch.from_numpy(np.array(own.inputs)))
    assert torch.equal(y, torch.from_numpy(np.array(own.targets)))
    # the validation set is another seed: none of its examples is in the stream's first ones
    val = spec.make_val_set(tmp_path / "val", chunk=4)
    assert not set(example_hashes(np.array(val.inputs))) & set(example_hashes(x.numpy()))


@pytest.mark.slow
def test_make_splits_float32_training_split_is_the_stream(spec, tmp_path):
    x, _, _ = _stream_inputs(spec, 3, 4)
    # make_splits with the stream's master seed and chunk = batch size: its training split
    sets = make_splits(spec.headmodel, simulation=spec.simulation, inverse=spec.inverse,
                       n_train=12, n_val=4, n_test=4, seed=7, precision="float32", chunk=4,
                       out=tmp_path / "splits", verbose=False)  # fmt: skip
    assert split_seeds(7)["train"] == spec.train_seed
    assert torch.equal(x, torch.from_numpy(np.array(sets["train"].inputs)))
    assert sets["train"].meta["precision"] == "float32"


def test_ranks_never_share_examples(spec):
    """DDP: rank r's local batch of global batch g is drawn from (seed, g, r)."""
    hashes = []
    for rank in (0, 1):
        x, _, ids = _stream_inputs(spec, 4, 4, rank=rank, world=2)
        assert ids.tolist() == [(g * 2 + rank) * 4 + j for g in range(4) for j in range(4)]
        hashes.append(set(example_hashes(x.numpy())))
        assert len(hashes[-1]) == 16
    assert not hashes[0] & hashes[1]


@pytest.mark.slow
def test_workers_do_not_change_the_batches(spec):
    from torch.utils.data import DataLoader

    spec.core("cpu")
    stream = spec.stream_dataset(batch_size=4, start=2, stop=7)
    direct = [b[0] for b in stream]
    loaded = [b[0] for b in DataLoader(stream, batch_size=None, num_workers=2)]
    assert len(loaded) == 5 and all(torch.equal(a, b) for a, b in zip(direct, loaded, strict=True))


def test_fingerprint_and_meta(spec, template_hm):
    other = StreamSpec(template_hm, SIM.replace(snr=1.0), INV, spec.stream)
    assert other.fingerprint != spec.fingerprint
    same = StreamSpec(template_hm, SIM.replace(seed=99), INV, spec.stream)  # sim seed unused
    assert same.fingerprint == spec.fingerprint
    meta = spec.meta
    assert (meta["n_rows"], meta["n_times"], meta["in_channels"]) == (642, 12, 2)
    assert meta["headmodel_fingerprint"] == template_hm.fingerprint
    assert meta["fingerprint"] == spec.fingerprint and meta["precision"] == "float32"


# --------------------------------------------------------------------------- training
TINY = dict(model="thesis", preset="small", root_features=4, levels=2, dropout=0.0,
            batch_size=4, seed=0, device="cpu", deterministic=True, num_threads=1)  # fmt: skip


@pytest.fixture(scope="module")
def val_set(spec, tmp_path_factory):
    return spec.make_val_set(tmp_path_factory.mktemp("val") / "val", chunk=4)


@pytest.mark.slow
def test_resume_mid_stream_sees_the_uninterrupted_batches(spec, val_set, tmp_path):
    """Stop after k batches, resume: the weights equal those of an uninterrupted run."""
    from napari_meg_unet.checkpoint import load_checkpoint
    from napari_meg_unet.train import fit, train

    stops = {"n": 0}

    def stop():
        stops["n"] += 1
        return stops["n"] > 6  # epoch 1 has 4 batches: stop in epoch 2 after 2 batches

    out = tmp_path / "run"
    events = list(fit(train=spec, val=val_set, out_dir=out, epochs=3, stop=stop, **TINY))
    assert type(events[-1]).__name__ == "Stopped"
    ckpt = load_checkpoint(out / "last.pt")
    assert (ckpt["epoch"], ckpt["batch"], ckpt["stream_position"]) == (1, 2, 6)
    assert ckpt["dataset_fingerprint"] == spec.fingerprint
    train(train=spec, val=val_set, out_dir=out, resume=True, device="cpu", deterministic=True,
          num_threads=1)  # fmt: skip
    ref = tmp_path / "ref"
    train(train=spec, val=val_set, out_dir=ref, epochs=3, **TINY)
    a, b = load_checkpoint(out / "last.pt"), load_checkpoint(ref / "last.pt")
    assert a["stream_position"] == b["stream_position"] == 12
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    # not vacuous: a run on another stream position ends elsewhere
    other = StreamSpec(spec.headmodel, spec.simulation, spec.inverse,
                       spec.stream.replace(data_seed=8))  # fmt: skip
    train(train=other, val=val_set, out_dir=tmp_path / "other", epochs=3, **TINY)
    c = load_checkpoint(tmp_path / "other" / "last.pt")
    assert any(not torch.equal(a["model"][k], c["model"][k]) for k in a["model"])
    # resuming with another stream is refused
    with pytest.raises(ValueError, match="training stream"):
        train(train=other, val=val_set, out_dir=out, resume=True, epochs=4)


@pytest.mark.slow
def test_fit_on_a_stream_learns_and_records_it(spec, val_set, tmp_path):
    from napari_meg_unet.checkpoint import load_checkpoint
    from napari_meg_unet.train import train

    summary = train(train=spec, val=val_set, out_dir=tmp_path / "run", epochs=2,
                    **{**TINY, "class_weighting": "inverse-frequency"})  # fmt: skip
    assert summary["epochs_done"] == 2
    ckpt = load_checkpoint(tmp_path / "run" / "best.pt")
    assert ckpt["dataset_meta"]["kind"] == "stream" and ckpt["class_weights"][1] > 1
    # the network predicts on the disk validation set like any other
    from napari_meg_unet.train import predict

    probs = predict(tmp_path / "run" / "best.pt", val_set, device="cpu")
    assert probs.shape == (len(val_set), 642, 12)
