"""``bench throughput``: examples per second of the training stream, of training, of both.

On the ``benchmark`` conditions (template ico3, right hemisphere, off-grid single dipoles,
realistic time courses, whitened SNR log-uniform in [0.5, 3], MNE/dSPM/sLORETA images):

- *generator alone*: the stream's batches (float32 torch core) made and discarded;
- *training alone*: :func:`~napari_meg_unet.train.fit` on a disk set of the same examples
  (memory-mapped, in the page cache);
- *together*: :func:`~napari_meg_unet.train.fit` on the stream (made in the training
  process, on the training device);

for each network at its CPU preset (thesis U-Net ``small``, mesh U-Net ``cpu``), at the
recipe's batch size. Training rates are taken from the wall time between consecutive
batches (data loading included), the epoch's first batch and validation excluded. Then the
inference latency of each network per event (ms), at batch 1 and batched.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from .._machine import machine_description
from .._validation import check_int
from ..configs import InverseConfig, SimulationConfig, StreamConfig
from ..progress import Progress

#: The ``benchmark`` training conditions (single dipoles).
SIMULATION = SimulationConfig(off_grid=True, timecourse="realistic", snr=(0.5, 3.0))
#: Networks at their CPU presets.
NETWORKS = (("thesis", "small"), ("mesh", "cpu"))
#: Batch sizes of the inference latency.
LATENCY_BATCHES = (1, 16, 64)


def _generator_rate(spec, *, batch_size, n_batches) -> float:
    stream = spec.stream_dataset(batch_size=batch_size, start=0, stop=n_batches + 1)
    batches = iter(stream)
    next(batches)  # warm-up (first-touch allocations)
    t0 = time.perf_counter()
    for _ in batches:
        pass
    return n_batches * batch_size / (time.perf_counter() - t0)


def _fit_rate(train, val, *, model, preset, hm, batch_size, out, num_threads) -> float:
    """Examples/s from the wall time between consecutive batches of one epoch."""
    from ..train import BatchDone, fit

    stamps = []
    for event in fit(train=train, val=val, out_dir=out, model=model, preset=preset,
                     mesh=hm if model == "mesh" else None, epochs=1, batch_size=batch_size,
                     device="cpu", num_threads=num_threads, overwrite=True):  # fmt: skip
        if isinstance(event, BatchDone):
            stamps.append(time.perf_counter())
    gaps = np.diff(stamps)  # from the end of batch k to the end of batch k + 1
    return float(batch_size / np.median(gaps))


def _latency(checkpoint, inputs, *, hm, num_threads, batches=LATENCY_BATCHES) -> dict:
    """ms per event of the network's forward pass (inference mode), per batch size."""
    import torch

    from ..train import load_model

    model, _ = load_model(checkpoint, mesh=hm, device="cpu")
    out = {}
    previous = torch.get_num_threads()
    if num_threads:
        torch.set_num_threads(num_threads)
    try:
        with torch.inference_mode():
            for b in batches:
                x = inputs[:b]
                model(x)  # warm-up
                reps = max(3, 64 // b)
                t0 = time.perf_counter()
                for _ in range(reps):
                    model(x)
                out[f"batch_{b}_ms_per_event"] = 1e3 * (time.perf_counter() - t0) / (reps * b)
    finally:
        torch.set_num_threads(previous)
    return out


def iter_bench_throughput(*, spacing="ico3", n_batches=12, networks=NETWORKS, seed=0,
                          num_threads=None, work_dir=None, batch_size=None,
                          latency_batches=LATENCY_BATCHES):  # fmt: skip
    """Run the throughput benchmark (generator of Progress; returns the result dict).

    ``batch_size`` None uses each network's recipe batch size.
    """
    import torch

    from ..dataset import StreamSpec
    from ..headmodel import make_template_headmodel
    from ..models import training_defaults

    check_int(n_batches, "n_batches", minimum=2)
    yield Progress("bench throughput", 0, 1, "head model, kernels, sets")
    hm = make_template_headmodel(spacing=spacing, modality="meg", verbose=False)
    work = Path(tempfile.mkdtemp(prefix="bench-throughput-", dir=work_dir))
    rows = []
    try:
        for k, (model, preset) in enumerate(networks):
            batch = int(batch_size or training_defaults(model, preset)["batch_size"])
            n = (n_batches + 1) * batch
            spec = StreamSpec(hm, SIMULATION, InverseConfig(),
                              StreamConfig(examples_per_epoch=n, n_val=batch, data_seed=seed))
            val = spec.make_val_set(work / f"val-{k}", n=batch, chunk=batch)
            disk = _drive_set(spec, work / f"train-{k}", n=n, chunk=batch)
            yield Progress("bench throughput", k, len(networks), f"{model} {preset}")
            row = dict(model=model, preset=preset, batch_size=batch)
            row["generator_examples_per_s"] = _generator_rate(spec, batch_size=batch,
                                                              n_batches=n_batches)
            common = dict(model=model, preset=preset, hm=hm, batch_size=batch,
                          num_threads=num_threads)  # fmt: skip
            row["training_examples_per_s"] = _fit_rate(disk, val, out=work / f"disk-{k}",
                                                       **common)  # fmt: skip
            row["together_examples_per_s"] = _fit_rate(spec, val, out=work / f"stream-{k}",
                                                       **common)  # fmt: skip
            row["generator_share"] = (row["training_examples_per_s"]
                                      / row["generator_examples_per_s"])  # fmt: skip
            inputs = torch.from_numpy(np.array(val.inputs))
            inputs = inputs.repeat(-(-max(latency_batches) // len(inputs)), 1, 1, 1)
            row["latency"] = _latency(work / f"disk-{k}" / "last.pt", inputs, hm=hm,
                                      num_threads=num_threads, batches=latency_batches)
            rows.append(row)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    yield Progress("bench throughput", len(networks), len(networks))
    return {
        "benchmark": "throughput",
        "machine": machine_description(),
        "torch_threads": num_threads or torch.get_num_threads(),
        "conditions": f"template {spacing} rh, off-grid single dipoles, realistic, SNR 0.5-3",
        "n_batches": n_batches,
        "latency_batches": list(latency_batches),
        "networks": rows,
    }


def _drive_set(spec, out, *, n, chunk):
    """The disk set of the stream's first ``n`` examples (float32 path, same seed)."""
    gen = spec.iter_example_set(out, n=n, seed=spec.train_seed, chunk=chunk)
    while True:
        try:
            next(gen)
        except StopIteration as done:
            return done.value


def format_table(result: dict) -> str:
    m = result["machine"]
    lines = [
        f"bench throughput — {result['conditions']}; {m['cpu']} ({m['cores']} cores), "
        f"{result['torch_threads']} torch threads",
        "",
        "| network | batch | generator alone (ex/s) | training alone (ex/s) | together (ex/s) "
        "| generator time / training time |",
        "|---|---|---|---|---|---|",
    ]
    for r in result["networks"]:
        lines.append(
            f"| {r['model']} U-Net `{r['preset']}` | {r['batch_size']} | "
            f"{r['generator_examples_per_s']:.0f} | {r['training_examples_per_s']:.1f} | "
            f"{r['together_examples_per_s']:.1f} | {r['generator_share']:.2f} |"
        )
    batches = result.get("latency_batches", LATENCY_BATCHES)
    lines += ["", "| network | " + " | ".join(f"batch {b} (ms/event)" for b in batches)
              + " |", "|---|" + "---|" * len(batches)]  # fmt: skip
    for r in result["networks"]:
        lat = r["latency"]
        lines.append(f"| {r['model']} U-Net `{r['preset']}` | " + " | ".join(
            f"{lat[f'batch_{b}_ms_per_event']:.2f}" for b in batches) + " |")  # fmt: skip
    return "\n".join(lines)
