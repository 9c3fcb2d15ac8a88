"""Training in other processes: SIGKILL mid-epoch then resume, and 2-process DDP (gloo, CPU)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading

import pytest
import torch

from napari_meg_unet.checkpoint import load_checkpoint
from napari_meg_unet.models import build_model
from napari_meg_unet.train import train
from test_train import N_ROWS, N_TIMES, assert_same_weights, make_set, params

pytestmark = pytest.mark.slow

#: Settings shared by the child processes and the in-process references.
CHILD_SETTINGS = dict(root_features=4, levels=2, batch_size=8, seed=0, deterministic=True,
                      device="cpu", num_threads=1)  # fmt: skip


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("WORLD_SIZE", None)
    return env


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("sets")
    return {
        "train": make_set(root / "train", 24, 0),
        "val": make_set(root / "val", 6, 1, event_offset=24),
    }


KILL_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from napari_meg_unet.train import BatchDone, CheckpointWritten, fit

    train, val, out = sys.argv[1:4]
    for event in fit(train=train, val=val, out_dir=out, epochs=3, **{settings}):
        if isinstance(event, CheckpointWritten):
            print("checkpoint", event.kind, event.epoch, flush=True)
        if isinstance(event, BatchDone):
            print("batch", event.epoch, event.batch, flush=True)
            time.sleep(0.3)  # slow enough to be killed in the middle of an epoch
    print("finished", flush=True)
    """
)


def test_sigkill_mid_epoch_loses_at_most_that_epoch(sets, tmp_path):
    script = tmp_path / "child.py"
    script.write_text(KILL_SCRIPT.replace("{settings}", repr(CHILD_SETTINGS)))
    out = tmp_path / "run"
    child = subprocess.Popen(
        [sys.executable, str(script), str(sets["train"].path), str(sets["val"].path), str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    lines = []
    watchdog = threading.Timer(180, child.kill)  # never hang the test suite
    watchdog.start()
    try:
        for line in child.stdout:
            lines.append(line.strip())
            if lines[-1] == "batch 2 2" and (out / "last.pt").is_file():
                child.send_signal(signal.SIGKILL)
                break
        child.wait(timeout=120)
    finally:
        watchdog.cancel()
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL, (lines, child.stderr.read()[-2000:])
    assert "checkpoint last 1" in lines and "finished" not in lines
    # The last checkpoint is whole and holds the end of epoch 1; no temporary file remains.
    ckpt = load_checkpoint(out / "last.pt")
    assert (ckpt["epoch"], ckpt["batch"]) == (1, 0)
    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "history.json", "last.pt"]

    # Same thread count as the child and the reference: CPU reductions with another
    # number of threads are not bit-identical.
    summary = train(train=sets["train"], val=sets["val"], out_dir=out, resume=True,
                    device="cpu", deterministic=True, num_threads=1)  # fmt: skip
    assert summary["epochs_done"] == 3 and len(summary["history"]) == 3
    reference = tmp_path / "reference"
    train(train=sets["train"], val=sets["val"], out_dir=reference, epochs=3, **CHILD_SETTINGS)
    assert_same_weights(params(out / "last.pt"), params(reference / "last.pt"))


DDP_SCRIPT = textwrap.dedent(
    """
    import os, sys
    from napari_meg_unet.train import fit

    train, val, out = sys.argv[1:4]
    events = list(fit(train=train, val=val, out_dir=out, epochs=1, dropout=0.0, **{settings}))
    # one write(2) per rank: the two ranks share the pipe and print() may split a line
    os.write(1, f"rank {os.environ['RANK']} events {len(events)}\\n".encode())
    """
)


def test_ddp_two_processes_equal_single_process(sets, tmp_path):
    """torchrun --nproc_per_node=2 (gloo, CPU) gives the weights of one process, same batch.

    batch_size is the global batch (4 examples per rank); batch norm is synchronised over
    the ranks (gloo-capable all-reduce batch norm), the class-weighted loss is normalised
    over the global batch, dropout is off. Only float summation order differs.
    """
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT.replace("{settings}", repr(CHILD_SETTINGS)))
    out = tmp_path / "ddp"
    result = subprocess.run(
        [
            sys.executable, "-m", "torch.distributed.run", "--standalone",
            "--nproc_per_node=2", str(script), str(sets["train"].path), str(sets["val"].path),
            str(out),
        ],
        capture_output=True, text=True, env=_env(), timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "rank 0 events" in result.stdout and "rank 1 events 0" in result.stdout
    ddp = load_checkpoint(out / "last.pt")
    assert ddp["world_size"] == 2 and ddp["epoch"] == 1
    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "history.json", "last.pt"]

    single_dir = tmp_path / "single"
    train(train=sets["train"], val=sets["val"], out_dir=single_dir, epochs=1, dropout=0.0,
          **CHILD_SETTINGS)  # fmt: skip
    single = load_checkpoint(single_dir / "last.pt")
    assert_same_weights(single["model"], ddp["model"], atol=1e-6)
    # Not vacuous: the weights moved far more than the tolerance during the epoch.
    torch.manual_seed(0)
    initial = build_model("thesis", in_channels=3, n_rows=N_ROWS, n_times=N_TIMES,
                          root_features=4, levels=2, dropout=0.0).state_dict()  # fmt: skip
    moved = max(float((single["model"][k] - initial[k]).abs().max()) for k in initial)
    assert moved > 1e-3
    h_single, h_ddp = single["history"][0], ddp["history"][0]
    assert h_ddp["train_loss"] == pytest.approx(h_single["train_loss"], rel=1e-6)
    assert h_ddp["dle_mm"] == pytest.approx(h_single["dle_mm"], abs=1e-6)
    assert h_ddp["val"]["n_examples"] == len(sets["val"])
    assert torch.equal(ddp["class_weights"], single["class_weights"])
