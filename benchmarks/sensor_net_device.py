"""The sensor networks trained on a device (e.g. a GPU): seconds per block and validation.

Usage (on a machine with CUDA; ``OUT`` the folder for the JSON and the networks)::

    OUT=. python benchmarks/sensor_net_device.py N_SINGLE_BLOCKS N_MULTI_BLOCKS [DEVICE]

Trains the one-source and the several-source network on the `benchmark` preset's
training stream (blocks of 512 events, the recipe of ``SensorNetConfig``) on
``DEVICE`` (default cuda) and writes ``sensor_device.json``.

A GPU-sized recipe, trained for a given time::

    OUT=. python benchmarks/sensor_net_device.py --sized [--device cuda] [--multi-s 240]
        [--single-s 90] [--budget-s 420] [--block 8192] [--batch 1024] [--passes 2]
        [--lr 2e-3] [--wide 2048,2048,1024] [--quick]

First a probe (a few blocks of each candidate, timed on the device) measures the seconds
per block of the default recipe (512 events) and of the sized one with the default and
the wide hidden layers (the wide one is kept when it costs at most ``--wide-cost`` times
the default's seconds per block); then it trains the several-source network for about
``--multi-s`` seconds and the one-source network for about ``--single-s`` (within
``--budget-s`` from the start), writing ``sensor_gpu.json`` and the networks
(``sensor-{kind}-gpu-{n_blocks}.pt``; files over 15 MiB are also split into ``.partN``
pieces for transfer) as soon as each is done.

The training path is the library's own (``iter_train_sensor_dipole``): its epoch patterns
come from each event's ``T x T`` Gram matrix and its slot assignment from the slots'
permutations on the device (``models.sensor_dipole.epoch_pattern``,
``models.sensor_sources.assignment``), which made a block of the default recipe 8-12
times faster on an H200 than batched SVDs and a host-side assignment
(``benchmarks/results/sensor-net-gpu-h200``, first run); the networks are ordinary
``save_sensor_dipole_net`` files.
"""

import argparse
import hashlib
import json
import math
import os
import sys
import time

import torch

from napari_meg_unet.bench.accuracy.presets import get_preset
from napari_meg_unet.configs import InverseConfig, SensorNetConfig
from napari_meg_unet.headmodel import make_template_headmodel
from napari_meg_unet.models import sensor_dipole as S
from napari_meg_unet.models.sensor_dipole import iter_make_sensor_dipole_net, save_sensor_dipole_net
from napari_meg_unet.progress import plain

T0 = time.perf_counter()
#: Network files larger than this come back in pieces (the device returns files of 16 MiB).
PARTS_OVER = int(os.environ.get("PARTS_OVER", 15 * 2**20))


def log(*args):
    print(f"[{time.perf_counter() - T0:7.1f}s]", *args, flush=True)


def fixed(argv):
    """The first check: the default recipe for the given numbers of blocks."""
    out = os.environ.get("OUT", ".")
    device = argv[2] if len(argv) > 2 else "cuda"
    name = torch.cuda.get_device_name(0) if device.startswith("cuda") else device
    print(torch.__version__, name, flush=True)
    p = get_preset("benchmark")
    hm = make_template_headmodel(spacing=p.spacing, modality=p.modality)
    res = {}
    for kind, blocks in (("single", int(argv[0])), ("multi", int(argv[1]))):
        sim = p.simulation_config(hm, kind=kind, n=1, snr=p.train_snr, seed=0)
        t0 = time.perf_counter()
        net, hist = plain(iter_make_sensor_dipole_net)(hm, sim,
                                                       recipe=SensorNetConfig(n_blocks=blocks),
                                                       seed=12345, device=device)  # fmt: skip
        dt = time.perf_counter() - t0
        best = min(hist, key=lambda h: h["val_mm"])
        res[kind] = {"blocks": blocks, "seconds": dt, "s_per_block": dt / blocks, "best": best,
                     "last": hist[-1], "device_after": str(next(net.parameters()).device)}
        print(kind, json.dumps(res[kind]), flush=True)
        save_sensor_dipole_net(net, f"{out}/sensor-{kind}-{blocks}.pt")
    with open(f"{out}/sensor_device.json", "w") as f:
        json.dump({"device": name, "torch": torch.__version__, **res}, f, indent=1)


def sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device, repeat=1):
    sync(device)
    t = time.perf_counter()
    for _ in range(repeat):
        r = fn()
    sync(device)
    return r, (time.perf_counter() - t) / repeat


class Trainer:
    """A kind's core (built once) and nets trained on it."""

    def __init__(self, hm, sim, device):
        from napari_meg_unet.simulate.torch_core import TorchCore

        self.hm, self.sim, self.device = hm, sim, device
        self.core = TorchCore(hm, sim, InverseConfig(hemi=sim.hemi), inputs=False, device=device)
        self.n_sources = max(sim.n_dipoles) if sim.design == "multi" else 1

    def net(self, hidden):
        return S.make_sensor_dipole_net(self.hm, self.hm.info, hidden=hidden,
                                        n_sources=self.n_sources).to(self.core.device)  # fmt: skip

    def train(self, hidden, recipe, *, seed, deadline=math.inf, every=None):
        """(net on the CPU, history, block times, stopped early) of one training."""
        net = self.net(hidden)
        gen = S.iter_train_sensor_dipole(net, self.core, seed=seed, recipe=recipe)
        stamps, stopped = [], False
        while True:
            try:
                ev = next(gen)
            except StopIteration as stop:
                history = stop.value
                break
            stamps.append((ev.done, time.perf_counter()))
            if every is not None and (ev.done % every == 0 or ev.done == ev.total):
                log(f"  {ev.message}")
            if time.perf_counter() > deadline:
                log(f"  deadline reached at block {ev.done}: stopping (current state kept)")
                gen.close()
                history, stopped = None, True
                break
        return net.cpu().eval(), history, stamps, stopped


def s_per_block(stamps):
    """Median seconds between successive blocks after the first (warm-up) one."""
    d = sorted(b[1] - a[1] for a, b in zip(stamps[1:-1], stamps[2:], strict=False))
    if not d:
        d = [stamps[-1][1] - stamps[0][1]]
    return d[len(d) // 2]


def save_net(net, out, name, parts_over=PARTS_OVER):
    path = f"{out}/{name}"
    save_sensor_dipole_net(net, path)
    data = open(path, "rb").read()
    info = {"file": name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    if len(data) > parts_over:
        parts = []
        for i in range(0, len(data), parts_over):
            part = f"{name}.part{i // parts_over}"
            with open(f"{out}/{part}", "wb") as f:
                f.write(data[i:i + parts_over])
            parts.append(part)
        os.remove(path)  # only the pieces come back (16 MiB a file)
        info["parts"] = parts
    log(f"  saved {info}")
    return info


def sized(argv):
    ap = argparse.ArgumentParser()
    ap.add_argument("--sized", action="store_true")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--multi-s", type=float, default=240.0)
    ap.add_argument("--single-s", type=float, default=90.0)
    ap.add_argument("--budget-s", type=float, default=420.0)
    ap.add_argument("--block", type=int, default=8192)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--passes", type=int, default=2)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--wide", default="2048,2048,1024")
    ap.add_argument("--wide-cost", type=float, default=1.3)
    ap.add_argument("--val-events", type=int, default=1024)
    ap.add_argument("--probe-blocks", type=int, default=5)
    ap.add_argument("--seed", type=int, default=12345)
    ap.add_argument("--quick", action="store_true", help="tiny sizes, for a CPU test")
    a = ap.parse_args(argv)
    out = os.environ.get("OUT", ".")
    dev = a.device
    name = torch.cuda.get_device_name(0) if dev.startswith("cuda") else dev
    log(torch.__version__, name)
    wide = tuple(int(w) for w in a.wide.split(","))
    default_hidden = S.HIDDEN
    if a.quick:
        default_hidden, wide = (32, 32), (64, 64)
    base = SensorNetConfig()
    recipe = SensorNetConfig(block=a.block, batch_size=a.batch, passes=a.passes, lr=a.lr,
                             weight_decay=base.weight_decay, val_events=a.val_events)  # fmt: skip
    res = {"device": name, "torch": torch.__version__, "argv": argv, "seed": a.seed,
           "stream": "benchmark preset, simulation_config(kind, n=1, snr=train_snr, seed=0)",
           "probe": {}, "trained": {}}  # fmt: skip

    def dump():
        res["elapsed_s"] = round(time.perf_counter() - T0, 1)
        with open(f"{out}/sensor_gpu.json", "w") as f:
            json.dump(res, f, indent=1)

    p = get_preset("benchmark")
    hm = make_template_headmodel(spacing=p.spacing, modality=p.modality)
    small = dict(n_blocks=a.probe_blocks, val_every=1, val_events=min(256, a.val_events))
    for kind, target in (("multi", a.multi_s), ("single", a.single_s)):
        if target <= 0:
            continue
        left = a.budget_s - (time.perf_counter() - T0)
        if left < 30:
            log(f"{kind}: only {left:.0f} s of the budget left, skipped")
            continue
        try:
            one_kind(a, res, dump, hm, p, kind, target, dev, out, base, recipe, small,
                     default_hidden, wide)  # fmt: skip
        except Exception:  # noqa: BLE001 - the next kind may still run
            import traceback

            traceback.print_exc()
            res.setdefault("errors", {})[kind] = traceback.format_exc()[-2000:]
            dump()
    dump()
    log("all done")


def one_kind(a, res, dump, hm, p, kind, target, dev, out, base, recipe, small, default_hidden,
             wide):  # fmt: skip
    """Probe, then train, one kind's network (writes its JSON entry and file)."""
    sim = p.simulation_config(hm, kind=kind, n=1, snr=p.train_snr, seed=0)
    trainer = Trainer(hm, sim, dev)
    log(f"{kind}: core ready ({len(trainer.core.candidates)} candidate rows)")
    probe = res["probe"][kind] = {}
    cands = [("default-recipe", default_hidden, base.replace(**small)),
             ("sized", default_hidden, recipe.replace(**small))]  # fmt: skip
    if kind == "multi":
        cands.append(("sized-wide", wide, recipe.replace(**small)))
    for label, hidden, r in cands:
        _, hist, stamps, _ = trainer.train(hidden, r, seed=a.seed)
        spb = s_per_block(stamps)
        probe[label] = {"block": r.block, "batch_size": r.batch_size, "passes": r.passes,
                        "hidden": list(hidden), "s_per_block": spb,
                        "events_per_s": r.block / spb,
                        "event_passes_per_s": r.block * r.passes / spb,
                        "val_mm_after_probe": hist[-1]["val_mm"]}  # fmt: skip
        log(f"{kind} probe {label}: {json.dumps(probe[label])}")
        dump()
    hidden = default_hidden
    spb = probe["sized"]["s_per_block"]
    if kind == "multi" and probe["sized-wide"]["s_per_block"] <= a.wide_cost * spb:
        hidden, spb = wide, probe["sized-wide"]["s_per_block"]
    left = a.budget_s - (time.perf_counter() - T0)
    seconds = min(target, left - 25)
    n_blocks = max(2, int(seconds / spb))
    val_every = max(1, round(n_blocks / 40))
    r = recipe.replace(n_blocks=n_blocks, val_every=val_every)
    log(f"{kind}: training hidden={hidden} n_blocks={n_blocks} val_every={val_every} "
        f"(~{n_blocks * spb:.0f} s at {spb:.3f} s/block)")
    t = time.perf_counter()
    net, hist, stamps, stopped = trainer.train(
        hidden, r, seed=a.seed, deadline=min(t + 1.4 * seconds + 10, T0 + a.budget_s),
        every=val_every * max(1, round(n_blocks / val_every / 10)),
    )  # fmt: skip
    dt = time.perf_counter() - t
    rec = {"block": r.block, "batch_size": r.batch_size, "passes": r.passes, "lr": r.lr,
           "weight_decay": r.weight_decay, "val_events": r.val_events,
           "val_every": r.val_every, "hidden": list(hidden), "n_blocks": n_blocks,
           "seconds": dt, "stopped_early": stopped,
           "s_per_block": dt / max(1, stamps[-1][0]), "blocks_done": stamps[-1][0],
           "events": r.block * stamps[-1][0]}  # fmt: skip
    if hist is not None:
        best = min(hist, key=lambda h: h["val_mm"])
        rec |= {"best": best, "last": hist[-1], "history": hist}
    tag = f"sensor-{kind}-gpu-{n_blocks}" + ("-partial" if stopped else "")
    rec["saved"] = save_net(net, out, f"{tag}.pt")
    res["trained"][kind] = rec
    dump()
    log(f"{kind}: done in {dt:.0f} s; best {rec.get('best')}, last {rec.get('last')}")


if __name__ == "__main__":
    if {"--sized", "-h", "--help"} & set(sys.argv[1:]):
        sized(sys.argv[1:])
    else:
        fixed(sys.argv[1:])
