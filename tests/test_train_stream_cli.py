"""``napari-meg-unet train`` without ``--train``: the stream, its validation set in OUT, resume."""

from __future__ import annotations

import pytest

from napari_meg_unet.checkpoint import load_checkpoint
from napari_meg_unet.cli import main

pytestmark = pytest.mark.slow

STREAM_ARGS = [
    "--device", "cpu", "--num-threads", "1", "--model", "thesis", "--set", "root_features=4",
    "--set", "levels=2", "--batch-size", "4", "--examples-per-epoch", "8", "--n-val", "4",
    "--design", "multi", "--n-dipoles", "1", "2", "--n-times", "12", "--methods", "MNE", "dSPM",
    "--no-progress",
]  # fmt: skip


def test_train_cli_trains_on_the_stream_and_resumes(cache_dir, tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--epochs", "1", *STREAM_ARGS]) == 0
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt["dataset_meta"]["kind"] == "stream" and ckpt["stream_position"] == 2
    assert ckpt["dataset_meta"]["methods"] == ["MNE", "dSPM"]
    assert (out / "val" / "meta.json").is_file()  # the validation set, simulated into OUT
    # resume without the stream options: the stream is rebuilt from the checkpoint
    assert main(["train", "--out", str(out), "--resume", "--epochs", "2", "--no-progress",
                 "--device", "cpu"]) == 0  # fmt: skip
    resumed = load_checkpoint(out / "last.pt")
    assert resumed["stream_position"] == 4 and resumed["epoch"] == 2
    assert resumed["dataset_fingerprint"] == ckpt["dataset_fingerprint"]
    # a new run in OUT reuses OUT/val only when asked to overwrite the run itself
    assert main(["train", "--out", str(out), "--epochs", "1", *STREAM_ARGS]) != 0
    # --train without --val is refused with a clear message
    assert main(["train", "--out", str(tmp_path / "x"), "--train", str(out / "val"),
                 "--no-progress"]) != 0  # fmt: skip
