"""Training-recipe ablation on the accuracy benchmark's training and validation sets.

Builds the training/validation sets of one kind (single dipoles or 2-5 dipoles)
of a ``bench accuracy`` preset with the benchmark's own code (same seeds, same
sizes), then trains each variant with the benchmark's training loop for at most
``--max-train-time`` seconds (stopping between batches once the budget is
spent) and reports the validation DLE after every completed epoch. A variant
is ``MODEL:PRESET`` optionally followed by ``:KEY=VALUE`` recipe or model
overrides (VALUE is JSON)::

    python benchmarks/recipe_ablation.py --kind multi --max-train-time 500 \\
        --variant thesis:small --variant 'thesis:small:class_weighting=[1,20]' \\
        --out ablation-multi.json

Prints a table and writes it (with the machine and the exact settings) as JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from pathlib import Path


def parse_variant(text: str) -> dict:
    """``"mesh:small:dropout=0:class_weighting=[1,20]"`` -> model, preset, overrides."""
    model, preset, *rest = text.split(":")
    overrides = {}
    for item in rest:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--variant {text!r}: expected KEY=VALUE, got {item!r}")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    return {"label": text, "model": model, "preset": preset, "overrides": overrides}


def train_variant(variant, *, p, train_set, val_set, hm, out_dir, seed, epochs, max_train_s):
    """Train one variant as ``bench accuracy`` trains its networks; returns its epoch curve."""
    from napari_meg_unet.accuracy import iter_network
    from napari_meg_unet.progress import run

    def report(event):
        if "val DLE" in event.message:
            print(f"  {variant['label']}: {event.message}", flush=True)

    info = run(
        iter_network(
            model=variant["model"], model_preset=variant["preset"], train_set=train_set,
            val_set=val_set, run_dir=out_dir, mesh=hm, p=p, device="cpu", seed=seed,
            epochs=epochs, max_train_s=max_train_s, reference_dle=None, num_threads=1,
            overrides=variant["overrides"],
        ),
        report,
    )  # fmt: skip
    elapsed = 0.0
    curve = []
    for record in info["history"]:
        elapsed += record["time_s"]
        curve.append({"epoch": record["epoch"], "time_s": elapsed, "val_dle_mm": record["dle_mm"]})
    return {**variant, "curve": curve, "best_val_dle_mm": info["best_val_dle_mm"]}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="benchmark", help="bench accuracy preset")
    parser.add_argument("--kind", default="single", choices=("single", "multi"))
    parser.add_argument("--variant", action="append", required=True, help="MODEL:PRESET[:K=V...]")
    parser.add_argument("--n-train", type=int, default=2568)
    parser.add_argument("--n-val", type=int, default=321)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max-train-time", type=float, default=500.0)
    parser.add_argument("--seed", type=int, default=0, help="master seed of the data sets")
    parser.add_argument("--weights-seed", type=int, default=1)
    parser.add_argument("--work-dir", help="parent of the temporary example sets")
    parser.add_argument("--out", help="write the result as JSON to this file")
    args = parser.parse_args(argv)
    variants = [parse_variant(v) for v in args.variant]

    import torch

    from napari_meg_unet import __version__
    from napari_meg_unet.accuracy import iter_kind_sets
    from napari_meg_unet.bench.accuracy import get_preset
    from napari_meg_unet.headmodel import make_template_headmodel
    from napari_meg_unet.progress import run

    torch.set_num_threads(1)
    p = get_preset(args.preset, n_train=args.n_train, n_val=args.n_val)
    hm = make_template_headmodel(spacing=p.spacing, modality=p.modality)
    with tempfile.TemporaryDirectory(dir=args.work_dir, prefix="recipe-ablation-") as tmp:
        work = Path(tmp)
        train_set, val_set, _ = run(
            iter_kind_sets(
                hm, p, kind=args.kind, work=work, seed=args.seed, lambda2=p.lambda2,
                verbose=False,
            )  # fmt: skip
        )
        results = [
            train_variant(
                v, p=p, train_set=train_set, val_set=val_set, hm=hm, out_dir=work / f"run{i}",
                seed=args.weights_seed, epochs=args.epochs, max_train_s=args.max_train_time,
            )  # fmt: skip
            for i, v in enumerate(variants)
        ]
    print(f"\n{args.preset} preset, {args.kind}: {args.n_train} training / {args.n_val} "
          f"validation events, <= {args.max_train_time:g} s and {args.epochs} epochs each, "
          "one CPU thread\n")  # fmt: skip
    print("| variant | epochs | training time (s) | val DLE per epoch (mm) | best (mm) |")
    print("|---|---|---|---|---|")
    for r in results:
        per_epoch = ", ".join(f"{c['val_dle_mm']:.2f}" for c in r["curve"])
        print(f"| `{r['label']}` | {len(r['curve'])} | {r['curve'][-1]['time_s']:.0f} | "
              f"{per_epoch} | {r['best_val_dle_mm']:.2f} |")  # fmt: skip
    summary = {
        "preset": args.preset, "kind": args.kind, "n_train": args.n_train, "n_val": args.n_val,
        "epochs": args.epochs, "max_train_time_s": args.max_train_time, "seed": args.seed,
        "weights_seed": args.weights_seed, "results": results,
        "machine": f"{platform.processor() or platform.machine()}, {platform.system()}",
        "versions": {"napari_meg_unet": __version__, "torch": torch.__version__},
    }  # fmt: skip
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
