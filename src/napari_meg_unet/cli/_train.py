"""``napari-meg-unet train``: train a U-Net on example sets, with checkpoints and resume."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading

from . import _common

HELP = "train a U-Net on example sets (checkpoints, resume, early stopping)"
DESCRIPTION = """\
Train the thesis 2D U-Net or the mesh U-Net on an example set (a directory
made by napari_meg_unet.dataset.build_dataset / make_splits) and validate on
another after every epoch. OUT receives last.pt (every epoch), best.pt
(lowest validation DLE) and history.json. Ctrl-C once stops after the current
batch and saves last.pt; continue with --resume. Under torchrun the same
command trains with DistributedDataParallel (--batch-size is the global batch).
"""


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("train", help=HELP, description=DESCRIPTION)
    data = parser.add_argument_group("data")
    data.add_argument("--train", required=True, metavar="DIR", help="training example set")
    data.add_argument("--val", required=True, metavar="DIR", help="validation example set")
    data.add_argument(
        "--headmodel",
        metavar="DIR",
        help="saved head model of the data (mesh model; default: rebuild the template the "
        "data were made with)",
    )
    net = parser.add_argument_group("network and recipe")
    net.add_argument(
        "--model",
        choices=("thesis", "mesh"),
        help="network (default thesis; a resumed run keeps its own)",
    )
    net.add_argument("--preset", help="model/recipe preset (default small)")
    net.add_argument(
        "--epochs", type=_common.positive_int, help="number of epochs (default: recipe)"
    )
    net.add_argument(
        "--lr",
        type=_common.number("--lr"),
        help="learning rate, e.g. 0.02 or 1/50 (default: recipe)",
    )
    net.add_argument(
        "--batch-size", type=_common.positive_int, help="global batch size (default: recipe)"
    )
    net.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="recipe or model hyper-parameter, e.g. --set dropout=0 --set lr_decay=0.9 "
        "(VALUE is JSON, or a plain string; repeatable)",
    )
    net.add_argument(
        "--no-early-stopping", action="store_true", help="train all epochs regardless of DLE"
    )
    run = parser.add_argument_group("run")
    run.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    run.add_argument(
        "--amp", default="auto", choices=("auto", "bf16", "off"), help="mixed precision"
    )
    run.add_argument("--seed", type=int, default=0, help="random seed")
    run.add_argument("--deterministic", action="store_true", help="deterministic algorithms only")
    run.add_argument("--resume", action="store_true", help="continue the run saved in OUT")
    run.add_argument("--compile", action="store_true", help="use torch.compile")
    run.add_argument("--num-threads", type=_common.positive_int, help="CPU threads")
    run.add_argument("--num-workers", type=int, default=0, help="data loader worker processes")
    _common.add_common(parser, output=True)
    parser.set_defaults(func=handler)


def parse_overrides(items) -> dict:
    """``["KEY=VALUE", ...]`` into a dict; values are JSON when they parse as JSON."""
    overrides = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}.")
        try:
            overrides[key] = json.loads(text)
        except json.JSONDecodeError:
            overrides[key] = None if text in ("None", "none") else text
    return overrides


class TrainingProgress:
    """Callback drawing one progress bar per epoch from :class:`~..train.BatchDone` events."""

    def __init__(self, enabled: bool = True):
        self.bar = _common.ProgressBar(enabled=enabled)
        self.enabled = enabled

    def __call__(self, event) -> None:
        from ..progress import Progress
        from ..train import BatchDone, Stopped, Validated

        if isinstance(event, BatchDone):
            self.bar(
                Progress(
                    f"epoch {event.epoch}",
                    event.batch,
                    event.n_batches,
                    f"loss {event.loss:.4g} lr {event.lr:.3g} {event.samples_per_s:.0f}/s",
                )
            )
        elif isinstance(event, Validated) and self.enabled:
            self.bar.close()
            print(
                f"epoch {event.epoch}: val loss {event.loss:.4g}, DLE {event.dle_mm:.1f} mm",
                file=sys.stderr,
            )
        elif isinstance(event, Stopped) and self.enabled:
            self.bar.close()
            print(
                f"stopped in epoch {event.epoch} after {event.batch} batches; state saved to "
                f"{event.checkpoint} (continue with --resume)",
                file=sys.stderr,
            )

    def close(self) -> None:
        self.bar.close()


def _headmodel_for(args):
    """The head model of the data, for the mesh model (None when not needed)."""
    from ..dataset import read_dataset
    from ..headmodel import load_headmodel, make_template_headmodel

    if args.headmodel:
        return load_headmodel(args.headmodel, verbose=False)
    meta = read_dataset(args.train).meta
    summary = meta.get("headmodel", {})
    if summary.get("subject") != "fsaverage5":
        raise ValueError(
            "The mesh model needs the head model of the data: pass --headmodel DIR "
            f"(the data were made on subject {summary.get('subject')!r})."
        )
    hm = make_template_headmodel(spacing=summary["spacing"], modality=summary["modality"])
    if hm.fingerprint != meta["headmodel_fingerprint"]:
        raise ValueError(
            "The template head model rebuilt from the data's description does not match the "
            "data's head model; pass --headmodel DIR."
        )
    return hm


def _table(summary: dict) -> str:
    lines = ["epoch  train loss  val loss  DLE (mm)        lr"]
    for h in summary["history"]:
        lines.append(
            f"{h['epoch']:>5}  {h['train_loss']:>10.4g}  {h['val_loss']:>8.4g}  "
            f"{h['dle_mm']:>8.2f}  {h['lr']:>8.3g}"
        )
    state = "stopped on request" if summary["stopped"] else (
        "early stopping" if summary["early_stopped"] else "finished"
    )  # fmt: skip
    lines.append(
        f"{state} after {summary['epochs_done']} epoch(s); best epoch {summary['best_epoch']} "
        f"(DLE {summary['best_dle_mm']:.2f} mm): {summary['best_checkpoint']}"
    )
    return "\n".join(lines)


def handler(args) -> dict:
    from ..progress import run
    from ..train import fit

    overrides = parse_overrides(args.set)
    mesh = None
    if args.model == "mesh" and not args.resume:
        mesh = _headmodel_for(args)
    stop = threading.Event()
    gen = fit(
        model=args.model,
        preset=args.preset,
        train=args.train,
        val=args.val,
        out_dir=args.out,
        epochs=args.epochs,
        lr=args.lr,
        batch_size=args.batch_size,
        device=args.device,
        amp=args.amp,
        seed=args.seed,
        deterministic=args.deterministic,
        resume=args.resume,
        stop=stop,
        mesh=mesh,
        early_stopping=not args.no_early_stopping,
        compile=args.compile,
        num_threads=args.num_threads,
        num_workers=args.num_workers,
        overwrite=args.overwrite,
        **overrides,
    )
    progress = TrainingProgress(enabled=not args.no_progress)

    def request_stop(signum, frame):
        if stop.is_set():  # a second Ctrl-C interrupts at once
            raise KeyboardInterrupt
        stop.set()

    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGINT, request_stop)
    try:
        summary = run(gen, progress)
    finally:
        progress.close()
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    if int(os.environ.get("RANK", "0")) != 0:  # torchrun: only rank 0 reports
        return None
    summary = dict(summary)
    summary["table"] = _table(summary)
    return summary
