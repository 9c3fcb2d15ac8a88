"""``napari-meg-unet train`` and ``predict`` through ``napari_meg_unet.cli.main``."""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest
import torch

from napari_meg_unet.checkpoint import load_checkpoint
from napari_meg_unet.cli import main
from napari_meg_unet.cli._train import parse_overrides
from napari_meg_unet.train import loop as train_mod
from napari_meg_unet.train import predict
from test_train import make_set

TINY_ARGS = ["--device", "cpu", "--set", "root_features=4", "--set", "levels=2"]


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("sets")
    return {
        "train": make_set(root / "train", 16, 0),
        "val": make_set(root / "val", 4, 1, event_offset=16),
    }


def _train_args(sets, out, *extra):
    return ["train", "--train", str(sets["train"].path), "--val", str(sets["val"].path),
            "--out", str(out), "--batch-size", "8", *TINY_ARGS, *extra]  # fmt: skip


@pytest.fixture(scope="module")
def trained(sets, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(_train_args(sets, out, "--epochs", "1", "--lr", "1/50", "--no-progress")) == 0
    return out


def test_train_cli_json_and_resume(sets, trained, tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(_train_args(sets, out, "--epochs", "1", "--lr", "1/40", "--seed", "3", "--json"))
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    result = json.loads(captured.out)
    assert result["epochs_done"] == 1 and result["training"]["lr"] == pytest.approx(0.025)
    assert result["model_config"]["root_features"] == 4
    assert result["best_checkpoint"] == str(out / "best.pt")
    # The progress bar and the per-epoch line come from the BatchDone/Validated events.
    assert "epoch 1" in captured.err and "val loss" in captured.err
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt["seed"] == 3 and ckpt["training"]["lr"] == pytest.approx(0.025)

    rc = main(_train_args(sets, out, "--epochs", "2", "--resume", "--no-progress"))
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "best epoch" in captured.out and captured.out.count("\n") >= 4  # table + summary
    assert load_checkpoint(out / "last.pt")["epoch"] == 2
    # Starting over in the same directory needs --overwrite.
    assert main(_train_args(sets, out, "--epochs", "1", "--no-progress")) == 2
    assert "--resume" in capsys.readouterr().err


def test_train_cli_refusals(sets, tmp_path, capsys, monkeypatch):
    assert main(_train_args(sets, tmp_path / "a", "--batch-size", "64", "--no-progress")) == 2
    assert "fewer than one batch" in capsys.readouterr().err
    lh_val = make_set(tmp_path / "lh", 4, 2, hemi="lh")
    args = ["train", "--train", str(sets["train"].path), "--val", str(lh_val.path),
            "--out", str(tmp_path / "b"), *TINY_ARGS, "--no-progress"]  # fmt: skip
    assert main(args) == 2
    assert "hemi: 'rh'" in capsys.readouterr().err

    def oom(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(train_mod, "_train_step", oom)
    assert main(_train_args(sets, tmp_path / "c", "--no-progress")) == 2
    assert "smaller batch size" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(_train_args(sets, tmp_path / "d", "--lr", "fast"))
    assert "--lr must be a number such as 0.111, 1/9 or 1e-3" in capsys.readouterr().err


def test_train_cli_ctrl_c_keeps_last_checkpoint(sets, tmp_path, capsys, monkeypatch):
    """A first Ctrl-C stops after the batch; the CLI says what was kept and how to go on."""
    from napari_meg_unet.cli import _train as cli_train
    from napari_meg_unet.train import BatchDone

    original = cli_train.TrainingProgress.__call__

    def interrupt_after_first_batch(self, event):
        original(self, event)
        if isinstance(event, BatchDone) and (event.epoch, event.batch) == (1, 1):
            os.kill(os.getpid(), signal.SIGINT)  # the handler's request_stop sets its stop

    monkeypatch.setattr(cli_train.TrainingProgress, "__call__", interrupt_after_first_batch)
    out = tmp_path / "run"
    previous = signal.getsignal(signal.SIGINT)
    assert main(_train_args(sets, out, "--epochs", "2", "--no-progress")) == 130
    assert signal.getsignal(signal.SIGINT) is previous  # restored
    err = capsys.readouterr().err
    assert f"interrupted, kept {out / 'last.pt'} (continue with --resume)" in err
    ckpt = load_checkpoint(out / "last.pt")
    assert (ckpt["epoch"], ckpt["batch"]) == (0, 1)


def test_parse_overrides():
    assert parse_overrides(
        [
            "dropout=0",
            "optimizer=adamw",
            "class-weighting=none",
            "grad_clip_norm=null",
            "lr_decay=0.9",
        ]
    ) == {  # fmt: skip
        "dropout": 0,
        "optimizer": "adamw",
        "class_weighting": None,
        "grad_clip_norm": None,
        "lr_decay": 0.9,
    }
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_overrides(["dropout"])


def test_predict_cli(sets, trained, tmp_path, capsys):
    out = tmp_path / "pred"
    args = ["predict", "--checkpoint", str(trained), "--data", str(sets["val"].path),
            "--out", str(out), "--device", "cpu", "--json", "--no-progress"]  # fmt: skip
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    probs = np.load(out / "probabilities.npy")
    assert probs.shape == (4, 24, 16) and result["shape"] == [4, 24, 16]
    expected = predict(trained / "best.pt", sets["val"], device="cpu")
    np.testing.assert_array_equal(probs, expected)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["data_fingerprint"] == sets["val"].fingerprint
    assert meta["checkpoint"]["kind"] == "best"
    assert main(args) == 2 and "already exists" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0
    capsys.readouterr()

    other = make_set(tmp_path / "other", 3, 4, methods=["MNE", "dSPM", "eLORETA"])
    args = ["predict", "--checkpoint", str(trained / "best.pt"), "--data", str(other.path),
            "--out", str(tmp_path / "p2"), "--device", "cpu"]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "Refusing" in err and "methods" in err and "eLORETA" in err
    broken = tmp_path / "broken.pt"
    broken.write_bytes((trained / "best.pt").read_bytes()[:1000])
    args = ["predict", "--checkpoint", str(broken), "--data", str(sets["val"].path),
            "--out", str(tmp_path / "p3"), "--device", "cpu"]  # fmt: skip
    assert main(args) == 2
    assert "truncated, corrupt" in capsys.readouterr().err
    assert not (tmp_path / "p2").exists() and not (tmp_path / "p3").exists()
