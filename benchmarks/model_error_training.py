"""Train the single-dipole mesh U-Net with coregistration-error augmentation (bench accuracy).

The ``benchmark-model-error`` preset's networks were trained on data made with the nominal
forward model only. This trains the same network (mesh U-Net ``cpu`` recipe, off-grid single
dipoles, realistic time courses, training SNR log-uniform in [0.5, 3], the protocol's
validation set) on the training stream with **model-error augmentation**: each training event
is simulated with one forward model drawn uniformly from the nominal template and
``--draws`` coregistration errors (sensors moved by a rigid transform of 5 mm and 3 degrees
about a random axis and direction, the size of the test condition's), and inverted with the
nominal kernels.

The networks never see a test perturbation: the draws' seeds come from
``derive_seed(seed, "augment-coreg", i)``, the test condition's from
``derive_seed(seed, "model-error", "single-snr1-coreg")`` (the script checks that no draw's
transform is the test's); the conductor (sphere) and pial conditions are not drawn at all.

The network is written where ``bench accuracy --checkpoint-dir`` loads it
(``<out-dir>/single-mesh-cpu/best.pt``) with a JSON of the run beside it, so the benchmark
scores it with every estimator of the model-error conditions (docs/benchmark.md):

    python benchmarks/model_error_training.py --out-dir runs/ckpt-coreg-augmented
    napari-meg-unet bench accuracy --preset benchmark-model-error \\
        --conditions single-snr1-coreg,single-snr1-conductor,single-snr1-pial \\
        --networks mesh:cpu --checkpoint-dir runs/ckpt-coreg-augmented ...
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

KIND = "single"
NETWORK = ("mesh", "cpu")




def augmentation_models(hm, *, draws, seed, log):
    """The nominal head model and ``draws`` coregistration errors (none of them a test's)."""
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
    p = get_preset("benchmark-model-error", n_train=args.n_train, n_val=args.n_val,
                   networks=(NETWORK,))  # fmt: skip
    hm = make_template_headmodel(spacing=p.spacing, modality=p.modality, verbose=False)
    kernels = linear_kernels(hm, p.inverse_config(methods=("dSPM",)), verbose=False)
    models, records = augmentation_models(hm, draws=args.draws, seed=args.seed, log=log)
    work = Path(tempfile.mkdtemp(prefix="model-error-training-", dir=args.work_dir))
    key = network_key(KIND, *NETWORK)
    run_dir = Path(args.out_dir) / key
    try:
        log("validation set (the protocol's, nominal)")
        _, val_set, reference = drive(iter_kind_sets_and_reference(
            hm, p, kind=KIND, work=work, seed=args.seed, kernel=kernels["dSPM"]
        ), every(30, log))  # fmt: skip
        stream = training_stream(hm, p, kind=KIND, seed=args.seed, key="stream-coreg",
                                 model_error=models)  # fmt: skip
        log(f"training {NETWORK} on the stream with {len(models) - 1} coregistration errors")
        cpu0 = time.process_time()
        info = drive(iter_network(
            model=NETWORK[0], model_preset=NETWORK[1], train_set=stream, val_set=val_set,
            run_dir=run_dir, mesh=hm, p=p, device="cpu",
            seed=derive_seed(args.seed, "weights", key), epochs=args.epochs,
            max_train_s=args.max_train_time, reference_dle=reference, num_threads=1,
        ), every(30, log))  # fmt: skip
        log(f"trained: {info['epochs_done']} epochs, best val DLE {info['best_val_dle_mm']:.2f}")
        return {
            "benchmark": "model-error-training",
            "command": " ".join(sys.argv),
            "machine": machine_description(),
            "preset": p.name,
            "kind": KIND,
            "network": list(NETWORK),
            "checkpoint": str(run_dir / "best.pt"),
            "augmentation": records,
            "n_train_per_epoch": p.n_train,
            "n_val": p.n_val,
            "epochs": args.epochs,
            "max_train_time_s": args.max_train_time,
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
    parser.add_argument("--draws", type=int, default=4, help="coregistration errors drawn")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max-train-time", type=float, default=1500.0)
    parser.add_argument("--n-train", type=int, default=2568, help="examples per epoch")
    parser.add_argument("--n-val", type=int, default=321)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work-dir")
    args = parser.parse_args(argv)
    result = run(args)
    out = Path(args.out_dir) / "model-error-training.json"
    write_json(out, result)
    print(json.dumps({k: result[k] for k in ("epochs_done", "best_val_dle_mm", "total_s")}))


if __name__ == "__main__":
    main()
