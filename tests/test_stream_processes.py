"""The streaming fit under torchrun: 2 CPU processes (gloo), each rank on its own examples."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from napari_meg_unet.checkpoint import load_checkpoint
from test_stream import INV, SIM

pytestmark = pytest.mark.slow

DDP_SCRIPT = textwrap.dedent(
    """
    import os, sys
    from napari_meg_unet.configs import InverseConfig, SimulationConfig, StreamConfig
    from napari_meg_unet.dataset import StreamSpec, example_hashes
    from napari_meg_unet.headmodel import make_template_headmodel
    from napari_meg_unet.train import fit

    val, out = sys.argv[1:3]
    hm = make_template_headmodel(spacing="ico3", modality="meg", verbose=False)
    spec = StreamSpec(hm, {sim!r}, {inv!r}, StreamConfig(examples_per_epoch=16, data_seed=7))
    events = list(fit(train=spec, val=val, out_dir=out, epochs=2, model="thesis",
                      root_features=4, levels=2, dropout=0.0, batch_size=8, device="cpu",
                      num_threads=1, deterministic=True))
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    # what this rank trained on: local batches of 4 of global batches 0..3
    stream = spec.stream_dataset(batch_size=4, rank=rank, world=world, start=0, stop=4)
    hashes = [h for x, *_ in stream for h in example_hashes(x.numpy())]
    os.write(1, f"rank {{rank}} events {{len(events)}} hashes {{' '.join(hashes)}}\\n".encode())
    """
)


def test_ddp_streaming_fit_two_processes(template_hm, tmp_path):
    from napari_meg_unet.configs import StreamConfig
    from napari_meg_unet.dataset import StreamSpec

    spec = StreamSpec(template_hm, SIM, INV, StreamConfig(examples_per_epoch=16, data_seed=7))
    val = spec.make_val_set(tmp_path / "val", n=8, chunk=4)
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT.format(sim=spec.simulation, inv=spec.inverse))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("WORLD_SIZE", None)
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(script), str(val.path), str(tmp_path / "ddp")],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout.splitlines()
    lines = {line.split()[1]: line for line in out if line.startswith("rank")}
    assert "events 0" in lines["1"] and "events 0" not in lines["0"]  # only rank 0 reports
    hashes = {r: set(line.split("hashes ")[1].split()) for r, line in lines.items()}
    assert len(hashes["0"]) == len(hashes["1"]) == 16
    assert not hashes["0"] & hashes["1"]  # the ranks never share an example
    ckpt = load_checkpoint(tmp_path / "ddp" / "last.pt")
    assert ckpt["world_size"] == 2 and ckpt["epoch"] == 2
    assert ckpt["stream_position"] == 4  # 2 epochs x 16 examples / global batch 8
    assert ckpt["dataset_fingerprint"] == spec.fingerprint
