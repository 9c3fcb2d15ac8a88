"""Train the small network shipped with the package (or the same recipe on another head model).

The pretrained template network: a mesh U-Net (preset ``cpu``) on the embedded
fsaverage5 template (ico3 sources, MEG), both hemispheres, trained on
simulated evoked responses made for real recordings (realistic time courses at
150 Hz in 32-sample windows, 1-3 off-grid dipoles, whitened SNR 0.5-4 drawn
log-uniformly, nave 1; 1000 training examples, 8 epochs: sized for a shared
2-core CPU). Everything is seeded and training is deterministic::

    python benchmarks/train_pretrained.py --work /tmp/pretrained --install

``--install`` copies the stripped checkpoint (no optimiser state) to
``src/napari_meg_unet/train/pretrained/template-mesh-meg.pt`` (package data).
With ``--headmodel DIR`` the same recipe trains a network for that head model
(e.g. the sample subject's, for the comparison in ``docs/real-data.md``)::

    python benchmarks/train_pretrained.py --work /tmp/sample-net --headmodel /tmp/hm-sample

Prints the validation DLE and writes ``WORK/train_pretrained.json`` (settings,
machine, timings, history).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

#: The recipe of the shipped network (``--set KEY=VALUE`` changes one for an experiment).
SETTINGS = dict(
    spacing="ico3", modality="meg", design="multi", n_dipoles=(1, 3), hemi="both",
    timecourse="realistic", sfreq=150.0, n_times=32, snr=(0.5, 4.0), nave=1, off_grid=True,
    n_train=1000, n_val=100, n_test=100, seed=0, model="mesh", preset="cpu", epochs=8,
)  # fmt: skip

PACKAGE_FILE = (
    Path(__file__).resolve().parents[1] / "src" / "napari_meg_unet" / "train" / "pretrained"
    / "template-mesh-meg.pt"
)  # fmt: skip


def _headmodel(args, s):
    from napari_meg_unet.headmodel import load_headmodel, make_template_headmodel

    if args.headmodel:
        return load_headmodel(args.headmodel, verbose=False)
    return make_template_headmodel(spacing=s["spacing"], modality=s["modality"], verbose=False)


def _splits(hm, s, out):
    from napari_meg_unet.dataset import iter_make_splits
    from napari_meg_unet.progress import run

    def report(event):
        if event.done == event.total:
            print(f"  {event.stage}: {event.message}", flush=True)

    return run(
        iter_make_splits(
            hm, out=out, overwrite=True, design=s["design"], n_dipoles=tuple(s["n_dipoles"]),
            hemi=s["hemi"], timecourse=s["timecourse"], sfreq=s["sfreq"], n_times=s["n_times"],
            snr=tuple(s["snr"]), nave=s["nave"], off_grid=s["off_grid"], n_train=s["n_train"],
            n_val=s["n_val"], n_test=s["n_test"], seed=s["seed"], verbose=False,
        ),
        report,
    )  # fmt: skip


def _train(hm, sets, s, out, threads, resume=False):
    from napari_meg_unet.progress import run
    from napari_meg_unet.train import iter_fit
    from napari_meg_unet.train.events import Validated

    def report(event):
        if isinstance(event, Validated):
            print(f"  epoch {event.epoch}: val DLE {event.dle_mm:.1f} mm, "
                  f"val loss {event.loss:.4f}", flush=True)  # fmt: skip

    return run(
        iter_fit(
            model=s["model"], preset=s["preset"], mesh=hm, train=sets["train"], val=sets["val"],
            out_dir=out, overwrite=not resume, resume=resume, epochs=s["epochs"], seed=s["seed"],
            deterministic=True, device="cpu", num_threads=threads,
        ),
        report,
    )  # fmt: skip


def main(argv=None) -> dict:
    from napari_meg_unet._machine import machine_description
    from napari_meg_unet.checkpoint import load_checkpoint, save_checkpoint, strip_checkpoint

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", required=True, type=Path, help="working folder")
    parser.add_argument("--headmodel", help="saved head model (default: the template)")
    parser.add_argument("--install", action="store_true", help="copy into the package data")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for training")
    parser.add_argument("--resume", action="store_true",
                        help="continue a stopped run in WORK (its sets and WORK/run/last.pt)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="change one setting (VALUE is JSON)")  # fmt: skip
    args = parser.parse_args(argv)
    s = dict(SETTINGS)
    for item in args.set:
        key, _, value = item.partition("=")
        if key not in s:
            raise SystemExit(f"--set: unknown setting {key!r}; known: {sorted(s)}")
        s[key] = json.loads(value)
    if args.install and (args.headmodel or args.set):
        raise SystemExit("--install ships the template network with the default settings only.")
    args.work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    hm = _headmodel(args, s)
    print(f"head model {hm.subject} ({hm.n_sources} sources, {hm.fingerprint})", flush=True)
    if args.resume:  # the sets of the stopped run (their settings are checked by fit)
        sets = {name: args.work / "sets" / name for name in ("train", "val", "test")}
    else:
        sets = _splits(hm, s, args.work / "sets")
    t1 = time.perf_counter()
    summary = _train(hm, sets, s, args.work / "run", args.threads, resume=args.resume)
    t2 = time.perf_counter()
    stripped = strip_checkpoint(load_checkpoint(args.work / "run" / "best.pt"))
    target = args.work / "network.pt"
    save_checkpoint(target, stripped)
    if args.install:
        PACKAGE_FILE.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(target, PACKAGE_FILE)
    result = dict(
        settings=s, headmodel=hm.summary(), machine=machine_description(),
        data_s=t1 - t0, train_s=t2 - t1, best_epoch=summary["best_epoch"],
        best_val_dle_mm=summary["best_dle_mm"],
        history=summary.get("history"), checkpoint=str(target),
        checkpoint_bytes=target.stat().st_size, installed=str(PACKAGE_FILE) if args.install
        else None,
    )  # fmt: skip
    (args.work / "train_pretrained.json").write_text(json.dumps(result, indent=2, default=str))
    print(f"best: epoch {summary['best_epoch']}, val DLE {summary['best_dle_mm']:.1f} mm; "
          f"data {t1 - t0:.0f} s, training {t2 - t1:.0f} s; {target} "
          f"({target.stat().st_size / 1e3:.0f} kB)")  # fmt: skip
    return result


if __name__ == "__main__":
    main()
