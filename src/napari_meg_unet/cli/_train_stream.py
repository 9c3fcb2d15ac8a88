"""``napari-meg-unet train`` without ``--train``: the training stream and its validation set."""

from __future__ import annotations

import os
from pathlib import Path

from ..configs import RECORDING_MATCH_OPTIONS
from ._dataset import DEFAULTS, SIMULATION_OPTIONS

#: Simulation options shared with ``--for-recording``: their CLI default is None, and each
#: mode fills them in (the stream from its defaults, --for-recording from the recording).
SHARED_SIMULATION_OPTIONS = (*RECORDING_MATCH_OPTIONS, "design", "hemi", "n_dipoles")
#: Source spacing of the template head model the stream builds by default.
TEMPLATE_SPACING = "ico3"

#: Name of the validation set written into OUT when ``--val`` is not given.
VAL_DIR = "val"

GROUP_HELP = (
    "stream: without --train the network trains on examples simulated on the fly on the "
    "training device (float32 torch core), on the template head model (or --headmodel); "
    "hemi and nave also apply to the inverse; the simulation options shown without a default "
    "take the stream's defaults (or, with --for-recording, the recording's values)"
)


def add_stream_options(parser) -> None:
    """The stream's options (StreamConfig, SimulationConfig, InverseConfig) and head model."""
    from .._config import add_cli_options
    from ..configs import InverseConfig, SimulationConfig, StreamConfig
    from ..headmodel import MODALITIES, TEMPLATE_SPACINGS

    group = parser.add_argument_group(GROUP_HELP)
    group.add_argument(
        "--spacing", default=None,
        help=f"source spacing of a head model built here ({', '.join(TEMPLATE_SPACINGS)} on the "
        f"template, default {TEMPLATE_SPACING}; with --for-recording on a FreeSurfer subject, "
        "default oct5)",
    )  # fmt: skip
    group.add_argument("--modality", default="meg", choices=MODALITIES, help="template sensors")
    add_cli_options(group, StreamConfig)
    # None: the mode's default (the stream's DEFAULTS, or the recording's values)
    add_cli_options(group, SimulationConfig, only=SIMULATION_OPTIONS,
                    defaults=dict.fromkeys(SHARED_SIMULATION_OPTIONS))  # fmt: skip
    add_cli_options(group, InverseConfig, exclude=("hemi", "nave", "precision"))


def _headmodel(args, summary=None):
    from ..headmodel import load_headmodel, make_template_headmodel

    if args.headmodel:
        return load_headmodel(args.headmodel, verbose=False)
    spacing, modality = args.spacing or TEMPLATE_SPACING, args.modality
    if summary is not None:
        if summary.get("subject") != "fsaverage5":
            raise ValueError(
                "The run trained on a stream of a non-template head model: pass --headmodel DIR."
            )
        spacing, modality = summary["spacing"], summary["modality"]
    return make_template_headmodel(spacing=spacing, modality=modality, verbose=False)


def _with_stream_defaults(args):
    """``args`` with the shared simulation options left at None given the stream's defaults."""
    import argparse
    from dataclasses import fields

    from ..configs import SimulationConfig

    values = dict(vars(args))
    config_defaults = {f.name: f.default for f in fields(SimulationConfig)}
    for name in SHARED_SIMULATION_OPTIONS:
        if values.get(name) is None:
            values[name] = DEFAULTS.get(name, config_defaults[name])
    return argparse.Namespace(**values)


def _new_spec(args, hm):
    from .._config import config_from_args
    from ..configs import InverseConfig, SimulationConfig, StreamConfig
    from ..dataset import StreamSpec

    args = _with_stream_defaults(args)
    n_events = None if args.design == "sweep" else 1
    simulation = config_from_args(SimulationConfig, args, n_events=n_events)
    inverse = config_from_args(InverseConfig, args)
    return StreamSpec(hm, simulation, inverse, config_from_args(StreamConfig, args))


def _resumed_spec(out: Path, args):
    """The stream of the run in OUT, rebuilt from its checkpoint's description."""
    from ..checkpoint import load_checkpoint
    from ..dataset import StreamSpec

    meta = load_checkpoint(out / "last.pt")["dataset_meta"]
    if meta.get("kind") != "stream":
        raise ValueError(
            f"The run in {str(out)!r} trained on an example set: resume it with --train and --val."
        )
    hm = _headmodel(args, meta.get("headmodel", {}))
    return StreamSpec.from_meta(meta, hm), hm


#: How long other torchrun ranks wait for rank 0 to write OUT/val (s).
VAL_WAIT_S = 3600.0


def _wait_for(path: Path, timeout=VAL_WAIT_S) -> None:
    """Under torchrun, ranks > 0 wait for rank 0's validation set (OUT on shared storage)."""
    import time

    t0 = time.monotonic()
    while not (path / "meta.json").is_file():
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(
                f"Rank {os.environ.get('RANK')} waited {timeout:.0f} s for rank 0 to write "
                f"{str(path)!r}; on nodes without a shared OUT pass --val DIR (a set on every "
                "node, e.g. made by 'napari-meg-unet dataset --precision float32')."
            )
        time.sleep(2.0)


def _val_set(spec, out: Path, *, overwrite: bool):
    """OUT/val: reused when it is this stream's validation set, else simulated (rank 0)."""
    from ..dataset import check_compatible, read_dataset

    path = out / VAL_DIR
    if int(os.environ.get("RANK", "0")) > 0:
        _wait_for(path)
        overwrite = False
    if path.exists() and not overwrite:
        val = read_dataset(path)
        seed = val.meta.get("simulation", {}).get("params", {}).get("seed")
        if seed != spec.val_seed:
            raise ValueError(
                f"{str(path)!r} is not the validation set of this stream (seed {seed}, expected "
                f"{spec.val_seed}); pass --overwrite to simulate it again or --val DIR."
            )
        check_compatible(spec.meta, val.meta, names=("the stream", str(path)))
        return val
    out.mkdir(parents=True, exist_ok=True)
    return spec.make_val_set(path, overwrite=True)


def stream_data(args):
    """``(stream spec, validation set or path, head model)`` of a run without ``--train``."""
    from ..train.state import _check_out_dir

    out = Path(args.out)
    _check_out_dir(out, resume=args.resume, overwrite=args.overwrite)
    if args.resume:
        spec, hm = _resumed_spec(out, args)
    else:
        hm = _headmodel(args)
        spec = _new_spec(args, hm)
    val = args.val if args.val else _val_set(spec, out, overwrite=args.overwrite)
    return spec, val, hm
