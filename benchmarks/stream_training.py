"""Train a network of ``bench accuracy`` on the training stream, for longer or with model error.

``bench accuracy`` trains its networks on a fixed disk set (``--n-train`` examples, a few
epochs). This trains the same network (the preset's simulation of ``--kind``, off-grid,
realistic time courses, the preset's training SNR, the protocol's validation set) on the
**training stream** instead: ``--n-train`` new examples every epoch, for ``--epochs`` epochs
or ``--max-train-time`` seconds, so a longer budget sees new data rather than the same set
again. The network is written where ``bench accuracy --checkpoint-dir`` loads it
(``<out-dir>/<kind>-<model>-<preset>/best.pt``) with a JSON of the run beside it, so the
benchmark scores it with every estimator (docs/benchmark.md). ``--num-threads`` sets
torch's threads (1 lets two runs share the 2-core machine)::

    python benchmarks/stream_training.py --out-dir runs/ckpt-long --network mesh:cpu-centre \
        --kind single --epochs 12 --max-train-time 3300
    napari-meg-unet bench accuracy --preset benchmark --conditions single-snr1 \
        --networks mesh:cpu-centre --checkpoint-dir runs/ckpt-long ...

**Model-error augmentation** (``--draws N``, with ``--preset benchmark-model-error``): each
training event is simulated with one forward model drawn uniformly from the nominal template
and ``N`` coregistration errors (sensors moved by a rigid transform of 5 mm and 3 degrees
about a random axis and direction, the size of the test condition's), and inverted with the
nominal kernels. The networks never see a test perturbation: the draws' seeds come from
``derive_seed(seed, "augment-coreg", i)``, the test conditions' from ``model_error_seed``
(the script checks that no draw's transform is a test's); the conductor (sphere) and pial
conditions are not drawn at all::

    python benchmarks/stream_training.py --out-dir runs/ckpt-coreg-aug \
        --preset benchmark-model-error --draws 4 --epochs 4 --max-train-time 1500
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
from napari_meg_unet.accuracy.data import (
    iter_kind_sets_and_reference,
    linear_kernels,
    training_stream,
)
from napari_meg_unet.accuracy.networks import iter_network, network_key
from napari_meg_unet.accuracy.spec import MODEL_ERRORS, model_error_seed
from napari_meg_unet.bench.accuracy import get_preset
from napari_meg_unet.headmodel import make_perturbed_headmodel, make_template_headmodel
from napari_meg_unet.progress import every
from napari_meg_unet.progress import run as drive


def augmentation_models(hm, *, draws, seed, log):
    """The nominal head model and ``draws`` coregistration errors (none of them a test's)."""
    if draws == 0:
        return [hm], [{"name": "nominal"}]
    p = get_preset("benchmark-model-error")
    test = {model_error_seed(seed, c) for c in p.conditions if c.model_error == "coreg"}
    models, records = [hm], [{"name": "nominal"}]
    for i in range(draws):
        draw_seed = derive_seed(seed, "augment-coreg", i)
        if draw_seed in test:
            raise RuntimeError(f"augmentation draw {i} has a test condition's seed.")
        log(f"coregistration draw {i + 1}/{draws}: forward model")
        model = make_perturbed_headmodel(hm, **MODEL_ERRORS["coreg"], seed=draw_seed,
                                         verbose=False)  # fmt: skip
        models.append(model)
        records.append({"name": f"coreg-{i}", "seed": draw_seed,
                        **model.provenance["perturbation"]})  # fmt: skip
    return models, records


def run(args) -> dict:
    def log(msg):
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    t_start = time.perf_counter()
    network, kind = tuple(args.network.split(":")), args.kind
    p = get_preset(args.preset, n_train=args.n_train, n_val=args.n_val,
                   networks=(network,))  # fmt: skip
    hm = make_template_headmodel(spacing=p.spacing, modality=p.modality, verbose=False)
    kernels = linear_kernels(hm, p.inverse_config(methods=("dSPM",)), verbose=False)
    models, records = augmentation_models(hm, draws=args.draws, seed=args.seed, log=log)
    work = Path(tempfile.mkdtemp(prefix="model-error-training-", dir=args.work_dir))
    key = network_key(kind, *network)
    run_dir = Path(args.out_dir) / key
    try:
        log("validation set (the protocol's, nominal)")
        _, val_set, reference = drive(iter_kind_sets_and_reference(
            hm, p, kind=kind, work=work, seed=args.seed, kernel=kernels["dSPM"]
        ), every(30, log))  # fmt: skip
        stream = training_stream(hm, p, kind=kind, seed=args.seed,
                                 key="stream-coreg" if args.draws else "stream-long",
                                 model_error=models)  # fmt: skip
        log(f"training {network} on the stream with {len(models) - 1} coregistration errors")
        cpu0 = time.process_time()
        info = drive(iter_network(
            model=network[0], model_preset=network[1], train_set=stream, val_set=val_set,
            run_dir=run_dir, mesh=hm, p=p, device="cpu",
            seed=derive_seed(args.seed, "weights", key), epochs=args.epochs,
            max_train_s=args.max_train_time, reference_dle=reference,
            num_threads=args.num_threads,
        ), every(30, log))  # fmt: skip
        log(f"trained: {info['epochs_done']} epochs, best val DLE {info['best_val_dle_mm']:.2f}")
        return {
            "benchmark": "stream-training",
            "command": " ".join(sys.argv),
            "machine": machine_description(),
            "preset": p.name,
            "kind": kind,
            "network": list(network),
            "checkpoint": str(run_dir / "best.pt"),
            "augmentation": records,
            "n_train_per_epoch": p.n_train,
            "n_val": p.n_val,
            "epochs": args.epochs,
            "max_train_time_s": args.max_train_time,
            "num_threads": args.num_threads,
            "epochs_done": info["epochs_done"],
            "best_val_dle_mm": info["best_val_dle_mm"],
            "train_cpu_s": time.process_time() - cpu0,
            "history": info.get("history"),
            "total_s": time.perf_counter() - t_start,
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out-dir", required=True, help="checkpoint folder for bench accuracy")
    parser.add_argument("--preset", default="benchmark", help="bench accuracy preset")
    parser.add_argument("--kind", default="single", help="the preset's kind of data")
    parser.add_argument("--network", default="mesh:cpu", help="MODEL:PRESET")
    parser.add_argument("--draws", type=int, default=0,
                        help="coregistration errors drawn (model-error augmentation)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max-train-time", type=float, default=1500.0)
    parser.add_argument("--n-train", type=int, default=2568, help="examples per epoch")
    parser.add_argument("--n-val", type=int, default=321)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-threads", type=int, default=1, help="torch threads")
    parser.add_argument("--work-dir")
    args = parser.parse_args(argv)
    result = run(args)
    out = Path(args.out_dir) / f"{network_key(args.kind, *args.network.split(':'))}.json"
    write_json(out, result)
    print(json.dumps({k: result[k] for k in ("epochs_done", "best_val_dle_mm", "total_s")}))


if __name__ == "__main__":
    main()
