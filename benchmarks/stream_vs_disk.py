"""Training on the stream versus on a disk set, at the same number of optimisation steps.

The ``benchmark`` conditions of ``bench accuracy`` (template ico3, right hemisphere, off-grid
single dipoles, realistic time courses, training SNR log-uniform in [0.5, 3], tests at SNR
0.5, 1 and 3), the mesh U-Net ``cpu`` recipe, one network per variant:

``disk``
    The recorded runs' training set: 2568 events simulated once (float64 path, the accuracy
    protocol's seed), ``--epochs`` passes over it.
``stream``
    ``--epochs`` epochs of 2568 examples each from the training stream (float32 torch core,
    made on the fly in the training process): every example is new, so 10 epochs see 25,680
    distinct examples.

Both variants validate on the same disk validation set (321 events, the protocol's seed),
keep the best epoch by validation DLE, train with early stopping off, one CPU thread, and
are scored with the accuracy protocol on the same test sets (321 events per condition, the
protocol's seeds) next to the linear inverses. Each variant is one process writing a JSON
(run them side by side); ``--table`` prints the comparison of two JSONs.

Commands (docs/benchmark.md):

    out=benchmarks/results/stream-vs-disk
    python benchmarks/stream_vs_disk.py --variant disk --out $out/disk.json
    python benchmarks/stream_vs_disk.py --variant stream --out $out/stream.json
    python benchmarks/stream_vs_disk.py --table $out/disk.json $out/stream.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from napari_meg_unet._io import write_json
from napari_meg_unet._machine import machine_description
from napari_meg_unet.accuracy import derive_seed
from napari_meg_unet.accuracy.conditions import iter_condition
from napari_meg_unet.accuracy.data import (
    iter_kind_sets_and_reference,
    linear_kernels,
    training_stream,
)
from napari_meg_unet.accuracy.networks import iter_network
from napari_meg_unet.accuracy.spec import LINEAR_METHODS
from napari_meg_unet.bench.accuracy import get_preset
from napari_meg_unet.headmodel import make_template_headmodel
from napari_meg_unet.progress import every
from napari_meg_unet.progress import run as drive

KIND = "single"
NETWORK = ("mesh", "cpu")




def run(args) -> dict:
    def log(msg):
        print(f"[{time.strftime('%H:%M:%S')}] {args.variant}: {msg}", flush=True)

    t_start = time.perf_counter()
    p = get_preset("benchmark", n_train=args.n_train, n_val=args.n_val, n_test=args.n_test,
                   networks=(NETWORK,))  # fmt: skip
    hm = make_template_headmodel(spacing=p.spacing, modality=p.modality, verbose=False)
    kernels = linear_kernels(hm, p.inverse_config(methods=LINEAR_METHODS), verbose=False)
    work = Path(tempfile.mkdtemp(prefix=f"stream-vs-disk-{args.variant}-", dir=args.work_dir))
    try:
        log("disk training and validation sets")
        train_set, val_set, reference = drive(iter_kind_sets_and_reference(
            hm, p, kind=KIND, work=work, seed=args.seed, kernel=kernels["dSPM"]
        ), every(30, log))  # fmt: skip
        train = train_set
        if args.variant == "stream":
            train = training_stream(hm, p, kind=KIND, seed=args.seed, key="stream")
        log(f"training {NETWORK} on {'the stream' if args.variant == 'stream' else 'the set'}")
        cpu0, t0 = time.process_time(), time.perf_counter()
        key = f"{KIND}-{NETWORK[0]}-{NETWORK[1]}-{args.variant}"
        info = drive(iter_network(
            model=NETWORK[0], model_preset=NETWORK[1], train_set=train, val_set=val_set,
            run_dir=work / key, mesh=hm, p=p, device="cpu",
            seed=derive_seed(args.seed, "weights", f"{KIND}-{NETWORK[0]}-{NETWORK[1]}"),
            epochs=args.epochs, max_train_s=args.max_train_time, reference_dle=reference,
            num_threads=1, overrides={"early_stopping": False},
        ), every(30, log))  # fmt: skip
        info.update(kind=KIND, estimator="mesh U-Net", train_cpu_s=time.process_time() - cpu0,
                    train_wall_s=time.perf_counter() - t0)  # fmt: skip
        info["examples_seen"] = _examples_seen(info, p.n_train)
        info["distinct_examples"] = (
            info["examples_seen"] if args.variant == "stream" else min(info["examples_seen"],
                                                                       p.n_train)
        )  # fmt: skip
        log(f"trained: {info['epochs_done']} epochs, best val DLE {info['best_val_dle_mm']:.2f}")
        conditions = {}
        offset = p.n_train + p.n_val
        for cond in p.conditions:
            if cond.kind != KIND:
                continue
            result, *_ = drive(iter_condition(
                hm, p, cond, kernels=kernels, networks={key: info}, work=work, seed=args.seed,
                n_boot=args.n_boot, device="cpu", verbose=False, event_offset=offset,
                train_sets={KIND: (train_set, val_set)},
            ), every(30, log))  # fmt: skip
            offset += p.n_test
            conditions[cond.name] = result
            log(f"{cond.name}: " + ", ".join(f"{r['estimator']} {r['protocol']} "
                                             f"{r['dle_mm']['mean']:.2f}"
                                             for r in result["results"]))  # fmt: skip
        info["checkpoint"] = None  # in the temporary work directory
        return {
            "benchmark": "stream-vs-disk",
            "variant": args.variant,
            "command": " ".join(sys.argv),
            "machine": machine_description(),
            "preset": p.name,
            "description": p.describe(),
            "n_train": p.n_train,
            "n_val": p.n_val,
            "n_test": p.n_test,
            "epochs": args.epochs,
            "max_train_time_s": args.max_train_time,
            "stream": None if args.variant != "stream" else train.describe(),
            "network": info,
            "conditions": conditions,
            "total_s": time.perf_counter() - t_start,
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _examples_seen(info, n_train) -> int:
    """Examples presented to the network: full epochs, plus the batches of a stopped one."""
    return int(info["epochs_done"]) * n_train


def _dle(result, estimator, protocol="window"):
    for row in result["results"]:
        if row["estimator"] == estimator and row["protocol"] == protocol:
            return row["dle_mm"]
    return None


def table(paths) -> str:
    runs = [json.loads(Path(p).read_text()) for p in paths]
    lines = [
        "| training data | distinct examples | examples seen | epochs | training wall (s) | "
        "training CPU (s) | best val DLE (mm) | " + " | ".join(
            f"{name} DLE (mm)" for name in runs[0]["conditions"]) + " |",
        "|---|---|---|---|---|---|---|" + "---|" * len(runs[0]["conditions"]),
    ]
    for r in runs:
        net = r["network"]
        cells = [
            f"{_dle(c, 'mesh U-Net')['mean']:.2f} [{_dle(c, 'mesh U-Net')['ci_low']:.2f}, "
            f"{_dle(c, 'mesh U-Net')['ci_high']:.2f}]"
            for c in r["conditions"].values()
        ]
        lines.append(
            f"| {r['variant']} | {net['distinct_examples']} | {net['examples_seen']} | "
            f"{net['epochs_done']} | {net['train_wall_s']:.0f} | {net['train_cpu_s']:.0f} | "
            f"{net['best_val_dle_mm']:.2f} | " + " | ".join(cells) + " |"
        )
    dspm = [f"{_dle(c, 'dSPM')['mean']:.2f}" for c in runs[0]["conditions"].values()]
    lines.append("| dSPM (window), for reference | | | | | | | " + " | ".join(dspm) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", choices=("disk", "stream"))
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--max-train-time", type=float, default=5400.0)
    parser.add_argument("--n-train", type=int, default=2568)
    parser.add_argument("--n-val", type=int, default=321)
    parser.add_argument("--n-test", type=int, default=321)
    parser.add_argument("--n-boot", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work-dir")
    parser.add_argument("--out")
    parser.add_argument("--table", nargs="+", metavar="JSON")
    args = parser.parse_args(argv)
    if args.table:
        print(table(args.table))
        return
    if args.variant is None:
        parser.error("--variant is required (or --table)")
    result = run(args)
    if args.out:
        write_json(Path(args.out), result)
    print(json.dumps({k: result[k] for k in ("variant", "total_s")}))


if __name__ == "__main__":
    main()
