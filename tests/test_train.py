"""Training engine: events, checkpoints, exact resume, schedule, clipping, bad input, predict."""

from __future__ import annotations

import hashlib
import shutil
import threading

import numpy as np
import pytest
import torch

from napari_meg_unet.checkpoint import (
    CheckpointError,
    check_checkpoint_compatible,
    load_checkpoint,
    save_checkpoint,
)
from napari_meg_unet.dataset import IncompatibleDataError, write_dataset
from napari_meg_unet.models import build_model, l1_penalty, loss_fn
from napari_meg_unet.train import (
    BatchDone,
    CheckpointWritten,
    DeviceMemoryError,
    EpochStarted,
    Finished,
    NonFiniteLossError,
    Stopped,
    Validated,
    fit,
    load_model,
    predict,
    resolve_device,
    to_source_estimate,
    train,
)
from napari_meg_unet.train import loop as train_mod
from napari_meg_unet.train.settings import _amp_dtype

N_ROWS, N_TIMES = 24, 16
#: A tiny thesis U-Net: trains in well under a second per epoch on one core.
TINY = dict(model="thesis", preset="small", root_features=4, levels=2, device="cpu")


def make_set(path, n, seed, *, event_offset=0, **meta_changes):
    """Synthetic example set: one active row per example, visible in the inputs."""
    rng = np.random.default_rng(seed)
    positions = rng.standard_normal((N_ROWS, 3))
    positions *= 0.07 / np.linalg.norm(positions, axis=1, keepdims=True)
    inputs = rng.normal(scale=0.2, size=(n, 3, N_ROWS, N_TIMES)).astype(np.float32)
    targets = np.zeros((n, N_ROWS, N_TIMES), np.uint8)
    true_positions = np.full((n, 1, 3), np.nan)
    for i in range(n):
        row = rng.integers(N_ROWS)
        targets[i, row, 4:12] = 1
        inputs[i, :, row, 4:12] += 1.0
        true_positions[i, 0] = positions[row]
    meta = dict(
        headmodel_fingerprint="hm-synthetic", ch_names=["MEG 0111", "MEG 0112"], hemi="rh",
        methods=["MNE", "dSPM", "sLORETA"], lambda2=1.0 / 9.0, nave=1, loose=0.0, depth=0.8,
        normalisation="column-max", simulation={"seed": seed}, event_offset=event_offset,
        sfreq=100.0, tmin=0.0,
    )  # fmt: skip
    meta.update(meta_changes)
    return write_dataset(
        path, inputs=inputs, targets=targets, events=event_offset + np.arange(n),
        true_positions=true_positions, positions=positions, meta=meta,
    )  # fmt: skip


def collect(gen):
    """All events of a fit generator and its return value."""
    events = []
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            return events, stop.value


def params(path):
    return load_checkpoint(path)["model"]


def assert_same_weights(a, b, atol=0.0):
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=atol, msg=key)


def file_hash(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("sets")
    return {
        "train": make_set(root / "train", 24, 0),
        "val": make_set(root / "val", 6, 1, event_offset=24),
    }


@pytest.fixture(scope="module")
def reference(sets, tmp_path_factory):
    """An uninterrupted deterministic 2-epoch run (batch 8: 3 batches per epoch)."""
    out = tmp_path_factory.mktemp("reference")
    events, summary = collect(
        fit(train=sets["train"].path, val=sets["val"].path, out_dir=out, epochs=2,
            batch_size=8, seed=0, deterministic=True, **TINY)
    )  # fmt: skip
    return {"out": out, "events": events, "summary": summary}


def test_fit_events_checkpoints_and_history(reference, sets):
    events, summary, out = reference["events"], reference["summary"], reference["out"]
    kinds = [type(e).__name__ for e in events]
    per_epoch = ["EpochStarted"] + ["BatchDone"] * 3 + ["Validated", "CheckpointWritten"]
    assert kinds[: len(per_epoch)] == per_epoch
    assert kinds[-1] == "Finished"
    assert [e.epoch for e in events if isinstance(e, EpochStarted)] == [1, 2]
    batches = [e for e in events if isinstance(e, BatchDone)]
    assert [(e.epoch, e.batch, e.n_batches) for e in batches] == [
        (ep, b, 3) for ep in (1, 2) for b in (1, 2, 3)
    ]
    assert all(np.isfinite(e.loss) and e.samples_per_s > 0 for e in batches)
    # Thesis recipe: lr 0.02, x0.95 per epoch.
    assert batches[0].lr == pytest.approx(0.02) and batches[-1].lr == pytest.approx(0.019)
    validated = [e for e in events if isinstance(e, Validated)]
    assert [v.epoch for v in validated] == [1, 2]
    assert all(np.isfinite(v.dle_mm) and v.metrics["n_events"] == 6 for v in validated)
    written = [(e.kind, e.epoch) for e in events if isinstance(e, CheckpointWritten)]
    assert ("last", 1) in written and ("last", 2) in written and written.count(("best", 1)) == 1
    finished = events[-1]
    assert isinstance(finished, Finished)
    assert finished.checkpoint == str(out / "best.pt")
    assert finished.best_dle_mm == min(v.dle_mm for v in validated)
    assert summary["epochs_done"] == 2 and not summary["stopped"]
    assert [h["epoch"] for h in summary["history"]] == [1, 2]
    assert (out / "history.json").is_file()

    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt["kind"] == "last" and ckpt["epoch"] == 2 and ckpt["batch"] == 0
    assert ckpt["dataset_fingerprint"] == sets["train"].fingerprint
    assert ckpt["val_fingerprint"] == sets["val"].fingerprint
    assert ckpt["headmodel_fingerprint"] == "hm-synthetic"
    assert ckpt["inverse"]["methods"] == ["MNE", "dSPM", "sLORETA"]
    assert ckpt["normalisation"] == "column-max" and ckpt["hemi"] == "rh"
    assert ckpt["model_config"]["root_features"] == 4 and ckpt["preset"] == "small"
    assert ckpt["versions"]["torch"] == torch.__version__ and ckpt["seed"] == 0
    assert {"torch", "numpy", "python"} <= set(ckpt["rng"][0])
    assert {"optimizer", "scheduler", "history", "best", "training"} <= set(ckpt)
    best = load_checkpoint(out)  # a directory means its best.pt
    assert best["kind"] == "best" and best["epoch"] == finished.best_epoch
    # Restart refused without overwrite/resume.
    with pytest.raises(FileExistsError, match="resume=True"):
        collect(fit(train=sets["train"], val=sets["val"], out_dir=out, epochs=1, **TINY))


def test_resume_equals_uninterrupted(reference, sets, tmp_path):
    """1 epoch + resume 1 epoch gives exactly the weights of 2 uninterrupted epochs."""
    kw = dict(train=sets["train"], val=sets["val"], out_dir=tmp_path, batch_size=8, seed=0,
              deterministic=True, device="cpu")  # fmt: skip
    first = train(epochs=1, model="thesis", root_features=4, levels=2, **kw)
    assert first["epochs_done"] == 1
    # The run's seed is used on resume whatever seed is passed.
    events, summary = collect(fit(epochs=2, resume=True, **{**kw, "seed": 5}))
    assert [e.epoch for e in events if isinstance(e, EpochStarted)] == [2]
    assert_same_weights(params(tmp_path / "last.pt"), params(reference["out"] / "last.pt"))
    assert [h["train_loss"] for h in summary["history"]] == [
        h["train_loss"] for h in reference["summary"]["history"]
    ]
    ref_ckpt = load_checkpoint(reference["out"] / "last.pt")
    new_ckpt = load_checkpoint(tmp_path / "last.pt")
    assert new_ckpt["scheduler"] == ref_ckpt["scheduler"]
    torch.testing.assert_close(new_ckpt["rng"][0]["torch"], ref_ckpt["rng"][0]["torch"])


def test_resume_refuses_other_settings(reference, sets, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(reference["out"], run_dir)
    other = make_set(tmp_path / "other", 24, 5)
    kw = dict(val=sets["val"], out_dir=run_dir, resume=True, device="cpu")
    with pytest.raises(ValueError, match="training set"):
        collect(fit(train=other, **kw))
    with pytest.raises(ValueError, match="lr=0.5 but the run uses 0.02"):
        collect(fit(train=sets["train"], lr=0.5, **kw))
    with pytest.raises(ValueError, match="model='mesh'"):
        collect(fit(train=sets["train"], model="mesh", **kw))
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        collect(fit(train=sets["train"], val=sets["val"], out_dir=tmp_path / "new",
                    resume=True, device="cpu"))  # fmt: skip


def test_stop_mid_epoch_saves_and_resumes_exactly(reference, sets, tmp_path):
    stop = threading.Event()
    kw = dict(train=sets["train"], val=sets["val"], out_dir=tmp_path, batch_size=8, seed=0,
              deterministic=True, **TINY)  # fmt: skip
    gen = fit(epochs=2, stop=stop, **kw)
    events = []
    for event in gen:
        events.append(event)
        if isinstance(event, BatchDone) and (event.epoch, event.batch) == (2, 1):
            stop.set()
    stopped = events[-1]
    assert isinstance(stopped, Stopped) and (stopped.epoch, stopped.batch) == (2, 1)
    assert isinstance(events[-2], CheckpointWritten) and events[-2].kind == "last"
    ckpt = load_checkpoint(tmp_path / "last.pt")
    assert (ckpt["epoch"], ckpt["batch"]) == (1, 1)
    summary = train(epochs=2, resume=True, train=sets["train"], val=sets["val"],
                    out_dir=tmp_path, device="cpu", deterministic=True)  # fmt: skip
    assert summary["epochs_done"] == 2
    assert_same_weights(params(tmp_path / "last.pt"), params(reference["out"] / "last.pt"))
    assert summary["history"][1]["train_loss"] == pytest.approx(
        reference["summary"]["history"][1]["train_loss"], rel=1e-12
    )
    # A callable works too and is polled before the first batch.
    _, result = collect(fit(epochs=1, stop=lambda: True, overwrite=True, **kw))
    assert result["stopped"] and load_checkpoint(tmp_path / "last.pt")["batch"] == 0


def test_gradient_clipping_bounds_the_step(sets, tmp_path):
    """With SGD (no momentum) the update is lr x the clipped gradient: its norm is lr x clip."""
    kw = dict(train=sets["train"], val=sets["val"], batch_size=24, seed=0, optimizer="sgd",
              momentum=0.0, weight_decay=0.0, l1=0.0, lr=1.0, **TINY)  # fmt: skip
    for clip in (1e-3, 1e-2):
        out = tmp_path / f"clip{clip}"
        train(out_dir=out, epochs=1, stop=lambda: True, grad_clip_norm=clip, **kw)
        before = params(out / "last.pt")
        summary = train(out_dir=out, epochs=1, resume=True, train=sets["train"],
                        val=sets["val"], device="cpu")  # fmt: skip
        after = params(out / "last.pt")
        names = [n for n, _ in build_model("thesis", in_channels=3, n_rows=N_ROWS,
                                           n_times=N_TIMES, root_features=4,
                                           levels=2).named_parameters()]  # fmt: skip
        step = torch.sqrt(sum(((after[n] - before[n]) ** 2).sum() for n in names))
        assert float(step) == pytest.approx(clip, rel=1e-4)
        assert summary["history"][0]["grad_norm_mean"] > clip  # the raw gradient was larger


def test_l1_term_is_added_to_the_loss(sets, tmp_path):
    """The first batch's loss grows by exactly l1 x l1_penalty(initial weights)."""
    losses = {}
    for l1 in (0.0, 0.5):
        out = tmp_path / f"l1_{l1}"
        calls = {"n": 0}

        def stop(calls=calls):
            calls["n"] += 1
            return calls["n"] > 1

        events, _ = collect(fit(train=sets["train"], val=sets["val"], out_dir=out, epochs=1,
                                batch_size=8, seed=0, l1=l1, stop=stop, **TINY))  # fmt: skip
        losses[l1] = [e.loss for e in events if isinstance(e, BatchDone)][0]
    torch.manual_seed(0)
    initial = build_model("thesis", in_channels=3, n_rows=N_ROWS, n_times=N_TIMES,
                          root_features=4, levels=2)  # fmt: skip
    expected = 0.5 * float(l1_penalty(initial))
    assert losses[0.5] - losses[0.0] == pytest.approx(expected, rel=1e-4)


def test_early_stopping_on_validation_dle(sets, tmp_path, monkeypatch):
    """Stop once the validation DLE has not improved for `patience` epochs; best.pt follows it."""
    scripted = iter([10.0, 12.0, 9.0, 11.0, 9.0, 8.0, 7.0])

    def fake_validate(*args, **kwargs):
        return {"loss": 1.0, "dle_mm": next(scripted), "n_examples": 6, "n_events": 6}

    monkeypatch.setattr(train_mod, "_validate", fake_validate)
    events, summary = collect(
        fit(train=sets["train"], val=sets["val"], out_dir=tmp_path, epochs=7, batch_size=8,
            patience=2, **TINY)
    )  # fmt: skip
    assert summary["early_stopped"] and summary["epochs_done"] == 5
    assert (summary["best_epoch"], summary["best_dle_mm"]) == (3, 9.0)
    assert sum(isinstance(e, EpochStarted) for e in events) == 5
    best = [e.epoch for e in events if isinstance(e, CheckpointWritten) and e.kind == "best"]
    assert best == [1, 3] and load_checkpoint(tmp_path / "best.pt")["epoch"] == 3
    assert events[-1].best_epoch == 3
    scripted = iter([10.0, 12.0, 13.0])
    _, summary = collect(
        fit(train=sets["train"], val=sets["val"], out_dir=tmp_path, epochs=3, batch_size=8,
            patience=1, early_stopping=False, overwrite=True, **TINY)
    )  # fmt: skip
    assert not summary["early_stopped"] and summary["epochs_done"] == 3


# --------------------------------------------------------------------------- bad input
def test_too_small_or_incompatible_sets(sets, tmp_path):
    with pytest.raises(ValueError, match="fewer than one batch"):
        collect(fit(train=sets["train"], val=sets["val"], out_dir=tmp_path, batch_size=32,
                    **TINY))  # fmt: skip
    other_val = make_set(tmp_path / "val_lh", 4, 2, hemi="lh", normalisation="none")
    with pytest.raises(IncompatibleDataError, match="hemi: 'rh' .* != 'lh'"):
        collect(fit(train=sets["train"], val=other_val, out_dir=tmp_path, **TINY))
    with pytest.raises(ValueError, match="model='mesh' needs mesh="):
        collect(fit(train=sets["train"], val=sets["val"], out_dir=tmp_path, batch_size=8,
                    model="mesh", device="cpu"))  # fmt: skip
    with pytest.raises(ValueError, match="Unknown hyper-parameters"):
        collect(fit(train=sets["train"], val=sets["val"], out_dir=tmp_path, batch_size=8,
                    bogus=1, **TINY))  # fmt: skip
    with pytest.raises(ValueError, match="stop must be"):
        collect(fit(train=sets["train"], val=sets["val"], out_dir=tmp_path, stop=3, **TINY))
    assert not (tmp_path / "last.pt").exists()


def test_nan_loss_stops_and_keeps_last_good_checkpoint(sets, tmp_path):
    out = tmp_path / "run"
    kw = dict(val=sets["val"], out_dir=out, batch_size=8, seed=0, device="cpu")
    train(train=sets["train"], epochs=1, model="thesis", root_features=4, levels=2, **kw)
    good_last, good_best = file_hash(out / "last.pt"), file_hash(out / "best.pt")
    # The same set (same meta, so the run accepts it) with NaN in one example.
    poisoned = tmp_path / "poisoned"
    shutil.copytree(sets["train"].path, poisoned)
    inputs = np.load(poisoned / "inputs.npy", mmap_mode="r+")
    inputs[5, 1, 3, 2] = np.nan
    inputs.flush()
    del inputs
    with pytest.raises(NonFiniteLossError) as err:
        collect(fit(train=poisoned, epochs=2, resume=True, **kw))
    message = str(err.value)
    assert "epoch 2" in message and "loss became nan" in message
    assert "non-finite inputs (examples [5]" in message and "intact" in message
    assert file_hash(out / "last.pt") == good_last and file_hash(out / "best.pt") == good_best
    assert load_checkpoint(out / "last.pt")["epoch"] == 1
    # From scratch: nothing is written and the message says so.
    with pytest.raises(NonFiniteLossError, match="no checkpoint had been written"):
        collect(fit(train=poisoned, val=sets["val"], out_dir=tmp_path / "fresh", batch_size=24,
                    **TINY))  # fmt: skip
    assert not (tmp_path / "fresh" / "last.pt").exists()


def test_out_of_memory_gives_advice_and_caller_survives(sets, tmp_path, monkeypatch):
    def oom(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(train_mod, "_train_step", oom)
    gen = fit(train=sets["train"], val=sets["val"], out_dir=tmp_path, batch_size=8, **TINY)
    with pytest.raises(DeviceMemoryError) as err:
        collect(gen)
    message = str(err.value)
    assert "Out of memory" in message and "smaller batch size (e.g. batch_size=4" in message
    assert isinstance(err.value, RuntimeError)  # the CLI reports it as an error message


def test_corrupt_checkpoints_are_refused_clearly(reference, tmp_path):
    data = (reference["out"] / "last.pt").read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x80\x04definitely not a checkpoint" * 10)
    for path in (truncated, garbage):
        with pytest.raises(CheckpointError, match="truncated, corrupt or not a torch file"):
            load_checkpoint(path)
    plain = tmp_path / "plain.pt"
    torch.save({"weight": torch.zeros(2)}, plain)
    with pytest.raises(CheckpointError, match="not a napari-meg-unet checkpoint"):
        load_checkpoint(plain)
    unsafe = tmp_path / "unsafe.pt"
    torch.save({"format": "napari-meg-unet-checkpoint", "obj": threading.Lock}, unsafe)
    with pytest.raises(CheckpointError, match="WeightsUnpickler"):
        load_checkpoint(unsafe)
    incomplete = load_checkpoint(reference["out"] / "last.pt")
    del incomplete["model"]
    with pytest.raises(ValueError, match="required field"):
        save_checkpoint(tmp_path / "x.pt", incomplete)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")
    with pytest.raises(CheckpointError):
        predict(truncated, np.zeros((1, 3, N_ROWS, N_TIMES), np.float32), device="cpu")


# --------------------------------------------------------------------------- predict
def test_predict_probabilities(reference, sets):
    best = reference["out"] / "best.pt"
    probs = predict(best, sets["val"], device="cpu", batch_size=4)
    assert probs.shape == (6, N_ROWS, N_TIMES) and probs.dtype == np.float32
    assert probs.min() >= 0 and probs.max() <= 1
    model, _ = load_model(best)
    with torch.inference_mode():
        logits = model(torch.from_numpy(np.asarray(sets["val"].inputs)))
    np.testing.assert_allclose(probs, torch.softmax(logits, 1)[:, 1].numpy(), atol=1e-6)
    # The validation numbers stored with best.pt are those of its weights on the whole set:
    # the class-weighted pixel mean loss, and the DLE of the window-mean probability peak.
    ckpt = load_checkpoint(best)
    record = ckpt["history"][-1]
    targets = torch.from_numpy(np.asarray(sets["val"].targets)).long()
    full = loss_fn(logits, targets, class_weights=ckpt["class_weights"])
    assert record["val_loss"] == pytest.approx(float(full), rel=1e-5)
    dle = []
    for i in range(len(probs)):
        active = np.asarray(sets["val"].targets[i]).any(axis=0)
        peak = probs[i][:, active].mean(axis=1).argmax()
        true = sets["val"].true_positions[i, 0]
        dle.append(1000 * np.linalg.norm(sets["val"].positions[peak] - true))
    assert record["dle_mm"] == pytest.approx(np.mean(dle), rel=1e-6)
    # Arrays work as well (one example without the batch axis too).
    one = predict(best, np.asarray(sets["val"].inputs[2]), device="cpu")
    np.testing.assert_allclose(one[0], probs[2], atol=1e-6)


@pytest.mark.parametrize(
    "change, field",
    [
        (dict(headmodel_fingerprint="another-head"), "headmodel_fingerprint"),
        (dict(ch_names=["MEG 0111", "MEG 0113"]), "ch_names"),
        (dict(methods=["MNE", "dSPM", "eLORETA"]), "methods"),
        (dict(normalisation="global-max"), "normalisation"),
        (dict(lambda2=1.0), "lambda2"),
        (dict(hemi="lh"), "hemi"),
    ],
)
def test_predict_refuses_incompatible_data(reference, tmp_path, change, field):
    data = make_set(tmp_path / "data", 3, 9, **change)
    with pytest.raises(IncompatibleDataError, match=f"Refusing .*{field}") as err:
        predict(reference["out"] / "best.pt", data, device="cpu")
    assert repr(change[field]) in str(err.value)


def test_predict_refuses_bad_arrays_and_hemi(reference):
    best = reference["out"] / "best.pt"
    with pytest.raises(IncompatibleDataError, match=r"shape \(n, 3, 24, n_times\)"):
        predict(best, np.zeros((2, 2, N_ROWS, N_TIMES), np.float32), device="cpu")
    with pytest.raises(IncompatibleDataError, match="hemi='lh'"):
        predict(best, np.zeros((2, 3, N_ROWS, N_TIMES), np.float32), hemi="lh", device="cpu")
    bad = np.zeros((1, 3, N_ROWS, N_TIMES), np.float32)
    bad[0, 0, 0, 0] = np.inf
    with pytest.raises(ValueError, match="NaN or infinite"):
        predict(best, bad, device="cpu")
    ckpt = load_checkpoint(best)
    check_checkpoint_compatible(ckpt, {"hemi": "rh"})  # partial meta: only known keys
    with pytest.raises(IncompatibleDataError, match="hemi"):
        check_checkpoint_compatible(ckpt, {"hemi": "both"})


def test_to_source_estimate(template_hm):
    hm = template_hm
    rows = hm.rows("rh")
    probs = np.random.default_rng(0).random((len(rows), 5)).astype(np.float32)
    stc = to_source_estimate(probs, hm, "rh", tmin=0.1, sfreq=200.0)
    assert stc.data.shape == (hm.n_sources, 5)
    np.testing.assert_allclose(stc.rh_data, probs, rtol=1e-6)
    assert not stc.lh_data.any()
    assert stc.tmin == pytest.approx(0.1) and stc.tstep == pytest.approx(1 / 200)
    for got, want in zip(stc.vertices, hm.vertno, strict=True):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match="probs_i must have shape"):
        to_source_estimate(probs[1:], hm, "rh", tmin=0, sfreq=100.0)
    both = to_source_estimate(np.ones((hm.n_sources, 2)), hm, "both", tmin=0, sfreq=100.0)
    assert both.data.min() == 1


def test_resolve_device_and_amp():
    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert resolve_device("auto").type in ("cpu", "mps")
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda:1")
    with pytest.raises(ValueError, match="device must be"):
        resolve_device("quantum")
    cpu = torch.device("cpu")
    assert _amp_dtype("auto", cpu) is None
    assert _amp_dtype("bf16", cpu) is torch.bfloat16
    assert _amp_dtype("off", cpu) is None
    with pytest.raises(ValueError, match="amp must be"):
        _amp_dtype("fp8", cpu)


def test_bf16_autocast_on_cpu_trains(sets, tmp_path):
    _, summary = collect(fit(train=sets["train"], val=sets["val"], out_dir=tmp_path, epochs=1,
                             batch_size=8, amp="bf16", **TINY))  # fmt: skip
    assert np.isfinite(summary["history"][0]["train_loss"])
    # Thread count and determinism are restored after the run.
    assert not torch.are_deterministic_algorithms_enabled()


def test_dataloader_workers_give_the_same_training(sets, tmp_path):
    """Worker processes read the same batches in the same order as the main process."""
    kw = dict(train=sets["train"], val=sets["val"], epochs=1, batch_size=8, seed=0,
              deterministic=True, **TINY)  # fmt: skip
    train(out_dir=tmp_path / "main", num_workers=0, **kw)
    train(out_dir=tmp_path / "workers", num_workers=2, **kw)
    assert_same_weights(params(tmp_path / "main" / "last.pt"),
                        params(tmp_path / "workers" / "last.pt"))  # fmt: skip
