"""``napari-meg-unet train``: train a U-Net on example sets, with checkpoints and resume."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading

from .._config import add_cli_options, config_from_args
from ..configs import TrainingConfig
from . import _common, _train_for_recording

HELP = "train a U-Net on the training stream or on example sets (checkpoints, resume)"
DESCRIPTION = """\
Train the thesis 2D U-Net or the mesh U-Net and validate on a fixed example
set after every epoch. Without --train the training examples are simulated on
the fly on the training device (the stream: the 'stream' options below, on the
template head model or --headmodel; every example is new, --examples-per-epoch
per epoch) and, without --val, the validation set is simulated once into
OUT/val from a disjoint seed. With --train DIR the network trains on that
example set (made by 'napari-meg-unet dataset' / make_splits). OUT receives
last.pt (every epoch), best.pt (lowest validation DLE) and history.json.
Ctrl-C once stops after the current batch and saves last.pt (with the stream
position); continue with --resume (a stream is rebuilt from the checkpoint).
Under torchrun the same command trains with DistributedDataParallel
(--batch-size is the global batch; each rank draws its own examples).
"""

#: Options of the "network and recipe" group; the others go to "run".
NETWORK_OPTIONS = ("model", "preset", "epochs", "lr", "batch_size", "early_stopping")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "train", help=HELP, description=DESCRIPTION + "\n" + _train_for_recording.HELP_TEXT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    data = parser.add_argument_group("data")
    data.add_argument(
        "--train", metavar="DIR",
        help="training example set (default: train on the stream, or --for-recording)",
    )  # fmt: skip
    data.add_argument(
        "--val", metavar="DIR",
        help="validation example set (required with --train; default with the stream: "
        "simulated into OUT/val)",
    )  # fmt: skip
    data.add_argument(
        "--headmodel",
        metavar="DIR",
        help="saved head model of the data (mesh model; default: rebuild the template the "
        "data were made with)",
    )
    net = parser.add_argument_group("network and recipe")
    add_cli_options(net, TrainingConfig, only=NETWORK_OPTIONS)
    net.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="recipe or model hyper-parameter, e.g. --set dropout=0 --set lr_decay=0.9 "
        "(VALUE is JSON, or a plain string; repeatable)",
    )
    run = parser.add_argument_group("run")
    add_cli_options(run, TrainingConfig, exclude=NETWORK_OPTIONS)
    run.add_argument("--resume", action="store_true", help="continue the run saved in OUT")
    from ._train_stream import add_stream_options

    add_stream_options(parser)
    _train_for_recording.add_options(parser)
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

    if args.for_recording is not None:
        return _with_sigint(lambda stop: _train_for_recording.handler(args, stop))
    config = config_from_args(TrainingConfig, args)
    overrides = parse_overrides(args.set)
    mesh = None
    train_data, val = args.train, args.val
    if train_data is None:  # the stream
        from ._train_stream import stream_data

        train_data, val, hm = stream_data(args)
        mesh = hm if config.model == "mesh" and not args.resume else None
    elif val is None:
        raise ValueError("--val DIR is required with --train (the validation example set).")
    elif config.model == "mesh" and not args.resume:
        mesh = _headmodel_for(args)
    def train(stop):
        gen = fit(
            train=train_data, val=val, out_dir=args.out, config=config, resume=args.resume,
            stop=stop, mesh=mesh, overwrite=args.overwrite, **overrides,
        )  # fmt: skip
        progress = TrainingProgress(enabled=not args.no_progress)
        try:
            return run(gen, progress)
        finally:
            progress.close()

    summary = _with_sigint(train)
    if int(os.environ.get("RANK", "0")) != 0:  # torchrun: only rank 0 reports
        return None
    if summary["stopped"]:  # the first Ctrl-C: stopped after the batch, state saved
        raise _common.Interrupted(f"kept {summary['last_checkpoint']} (continue with --resume)")
    summary = dict(summary)
    summary["table"] = _table(summary)
    return summary


def _with_sigint(work):
    """Run ``work(stop)`` with the first Ctrl-C setting ``stop`` (a second one interrupts)."""
    stop = threading.Event()

    def request_stop(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGINT, request_stop)
    try:
        return work(stop)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
