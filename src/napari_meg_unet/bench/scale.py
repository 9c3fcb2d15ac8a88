"""``bench scale``: how each step's cost grows with the number of sources (ico3/ico4, rh/both).

For each template source space (``spacing`` x image ``hemi``), in a fresh process (so that
the peak resident memory, ``ru_maxrss``, is the configuration's own):

- *simulate*: ``n_events`` single-dipole events, float64 numpy path;
- *kernels*: the operator and the MNE, dSPM and sLORETA kernels (float64, once per head model);
- *stacks float64*: :func:`~napari_meg_unet.inverse.make_input_stack` of those events;
- *core float32*: the torch core's simulate + stacks of the same number of events;
- *train step*: one optimisation step of each network (thesis U-Net ``small``, mesh U-Net
  ``small``) at ``batch_size`` (median of a few after a warm-up);
- *predict*: the forward pass per event in inference mode, batched.

The growth of each step is the exponent ``k`` of ``time ~ n_rows^k`` between the smallest
and the largest configuration of the same hemisphere setting.
"""

from __future__ import annotations

import math
import multiprocessing
import resource
import time

import numpy as np

from .._machine import machine_description
from ..progress import Progress

#: (spacing, image hemi) configurations, smallest first.
CONFIGS = (("ico3", "rh"), ("ico3", "both"), ("ico4", "rh"), ("ico4", "both"))
#: Networks trained one step (at their ``small`` size).
NETWORKS = (("thesis", "small"), ("mesh", "small"))
STEPS = ("simulate", "kernels", "stacks_float64", "core_float32")


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _timed(record, name, func):
    t0 = time.perf_counter()
    out = func()
    record[f"{name}_s"] = time.perf_counter() - t0
    record[f"{name}_peak_mb"] = _peak_mb()
    return out


def _median_time(func, repeats=3) -> float:
    func()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        func()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _network_costs(record, hm, hemi, stacks, *, batch_size, num_threads, networks=NETWORKS):
    import torch

    from ..models import MeshHierarchy, build_model, class_weights_from_targets, loss_fn

    torch.set_num_threads(num_threads or torch.get_num_threads())
    x = torch.from_numpy(stacks[:batch_size])
    y = torch.zeros((len(x), x.shape[2], x.shape[3]), dtype=torch.long)
    y[:, x.shape[2] // 2, 4:12] = 1
    weights = class_weights_from_targets(y)
    for model, preset in networks:
        kwargs = dict(in_channels=x.shape[1], n_rows=x.shape[2], n_times=x.shape[3], preset=preset)
        if model == "mesh":
            kwargs["mesh"] = MeshHierarchy.from_headmodel(hm, hemi)
        torch.manual_seed(0)
        net = build_model(model, **kwargs)
        opt = torch.optim.AdamW(net.parameters(), lr=1e-3)

        def step(net=net, opt=opt):
            net.train()
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(net(x), y, class_weights=weights)
            loss.backward()
            opt.step()

        def predict(net=net):
            net.eval()
            with torch.inference_mode():
                net(x)

        record[f"train_step_{model}_s"] = _median_time(step)
        record[f"train_step_{model}_peak_mb"] = _peak_mb()
        record[f"predict_{model}_ms_per_event"] = 1e3 * _median_time(predict) / len(x)
        record[f"predict_{model}_peak_mb"] = _peak_mb()
        record[f"parameters_{model}"] = int(sum(p.numel() for p in net.parameters()))


def measure(spacing, hemi, *, n_events=256, batch_size=8, num_threads=None, seed=0,
            networks=NETWORKS) -> dict:
    """Every step of one configuration, in this process (see the module docstring)."""
    import torch

    from ..configs import InverseConfig, SimulationConfig
    from ..headmodel import make_template_headmodel
    from ..inverse.torch_stack import KernelStack
    from ..simulate import simulate
    from ..simulate.torch_core import TorchCore, compute_kernels

    if num_threads:
        torch.set_num_threads(num_threads)
    record = {"spacing": spacing, "hemi": hemi, "n_events": n_events, "batch_size": batch_size}
    hm = _timed(record, "headmodel", lambda: make_template_headmodel(
        spacing=spacing, modality="meg", verbose=False))  # fmt: skip
    rows = hm.rows(hemi)
    record.update(n_rows=len(rows), n_channels=len(hm.ch_names))
    sim_cfg = SimulationConfig(design="multi", n_events=n_events, n_dipoles=1, hemi=hemi,
                               timecourse="realistic", seed=seed)  # fmt: skip
    inverse = InverseConfig(hemi=hemi, nave=1)
    sim = _timed(record, "simulate", lambda: simulate(hm, config=sim_cfg, verbose=False))
    kernels = _timed(record, "kernels", lambda: compute_kernels(hm, inverse, verbose=False))
    stack = KernelStack(kernels, inverse.methods, rows, hm.ch_names, normalisation="column-max")
    ordered = [kernels[m] for m in inverse.methods]

    def stacks64():
        from ..inverse import make_input_stack

        return make_input_stack(ordered, sim.data, rows=rows)

    stacks = _timed(record, "stacks_float64", stacks64)
    core = TorchCore(hm, sim_cfg.replace(precision="float32"), inverse, kernels=kernels)
    _timed(record, "core_float32", lambda: [
        core.draw(min(64, n_events - s), seed=seed, index=b)
        for b, s in enumerate(range(0, n_events, 64))
    ])  # fmt: skip
    del stack
    _network_costs(record, hm, hemi, stacks, batch_size=batch_size, num_threads=num_threads,
                   networks=networks)
    record["peak_mb"] = _peak_mb()
    return record


def _measure_in_child(args):
    spacing, hemi, options = args
    return measure(spacing, hemi, **options)


def iter_bench_scale(*, configs=CONFIGS, n_events=256, batch_size=8, num_threads=None, seed=0):
    """Run the scale benchmark (generator of Progress; returns the result dict)."""
    ctx = multiprocessing.get_context("spawn")
    options = dict(n_events=n_events, batch_size=batch_size, num_threads=num_threads, seed=seed)
    records = []
    for k, (spacing, hemi) in enumerate(configs):
        yield Progress("bench scale", k, len(configs), f"{spacing} {hemi}")
        with ctx.Pool(1) as pool:  # a fresh process: its peak memory is this configuration's
            records.append(pool.apply(_measure_in_child, ((spacing, hemi, options),)))
    yield Progress("bench scale", len(configs), len(configs))
    return {
        "benchmark": "scale",
        "machine": machine_description(),
        "configs": records,
        "growth": growth(records),
    }


def _time_keys(records) -> list:
    keys = [f"{s}_s" for s in STEPS]
    keys += [f"train_step_{m}_s" for m, _ in NETWORKS]
    keys += [f"predict_{m}_ms_per_event" for m, _ in NETWORKS]
    return [k for k in keys if all(k in r for r in records)]


def growth(records) -> dict:
    """Exponent k of ``time ~ n_rows^k`` per step, per hemisphere setting (smallest vs largest)."""
    out = {}
    for hemi in sorted({r["hemi"] for r in records}):
        rs = sorted((r for r in records if r["hemi"] == hemi), key=lambda r: r["n_rows"])
        if len(rs) < 2 or rs[0]["n_rows"] == rs[-1]["n_rows"]:
            continue
        ratio = rs[-1]["n_rows"] / rs[0]["n_rows"]
        out[hemi] = {
            key: math.log(rs[-1][key] / rs[0][key]) / math.log(ratio)
            for key in _time_keys(rs) if rs[0][key] > 0 and rs[-1][key] > 0
        }  # fmt: skip
        out[hemi]["n_rows"] = [rs[0]["n_rows"], rs[-1]["n_rows"]]
    return out


def format_table(result: dict) -> str:
    m, records = result["machine"], result["configs"]
    keys = _time_keys(records)
    names = {
        "simulate_s": "simulate float64 (s)", "kernels_s": "kernels (s)",
        "stacks_float64_s": "stacks float64 (s)", "core_float32_s": "core float32 (s)",
        "train_step_thesis_s": "train step thesis (s)", "train_step_mesh_s": "train step mesh (s)",
        "predict_thesis_ms_per_event": "predict thesis (ms/event)",
        "predict_mesh_ms_per_event": "predict mesh (ms/event)",
    }  # fmt: skip
    n = records[0]["n_events"]
    lines = [
        f"bench scale — {n} events, batch {records[0]['batch_size']}; {m['cpu']} "
        f"({m['cores']} cores)",
        "",
        "| source space | image rows | " + " | ".join(names.get(k, k) for k in keys)
        + " | peak memory (MB) |",
        "|---|---|" + "---|" * (len(keys) + 1),
    ]  # fmt: skip
    for r in records:
        cells = [f"{r[k]:.3g}" for k in keys]
        lines.append(f"| {r['spacing']} {r['hemi']} | {r['n_rows']} | " + " | ".join(cells)
                     + f" | {r['peak_mb']:.0f} |")  # fmt: skip
    for hemi, g in result["growth"].items():
        lo, hi = g["n_rows"]
        lines.append(
            f"| growth exponent k ({hemi}: {lo} -> {hi} rows) | | "
            + " | ".join(f"{g[k]:.2f}" if k in g else "" for k in keys) + " | |"
        )  # fmt: skip
    return "\n".join(lines)
