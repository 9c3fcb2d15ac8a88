"""``napari-meg-unet train --for-recording PATH``: a network trained for one recording.

Kept apart from ``cli/_train.py``: :func:`add_options` adds this mode's
arguments to the ``train`` parser and :func:`handler` runs it.
"""

from __future__ import annotations

import sys

from .._config import add_cli_options, config_from_args
from ..configs import (
    RECORDING_MATCH_OPTIONS,
    DatasetConfig,
    InverseConfig,
    RecordingTrainingConfig,
    SensorNetConfig,
    SimulationConfig,
    TrainingConfig,
)
from . import _common

#: Simulation options of this mode: those matching the recording, and the design.
SIMULATION_OPTIONS = (*RECORDING_MATCH_OPTIONS, "design", "hemi", "n_dipoles")
#: None: taken from the recording (sfreq, nave, snr) or from the mode's defaults.
SIMULATION_CLI_DEFAULTS = {name: None for name in SIMULATION_OPTIONS} | {"off_grid": True}

HELP_TEXT = """\
With --for-recording PATH (a raw, epochs or evoked FIF file, or a BIDS MEG
recording) no example sets are needed: the recording's head model (--headmodel
to reuse one; its FreeSurfer anatomy with --subjects-dir/--subject, found in a
BIDS dataset, or the fsaverage5 template coregistered to its digitisation), its
noise covariance (--noise-cov; else an --empty-room recording that matches it;
else the pre-stimulus baseline of its epochs; else ad hoc), sampling rate, good
channels and nave define the simulations, at whitened SNRs spanning the
recording's measured SNR; the mesh U-Net's cpu recipe is trained on them. OUT
gets headmodel/, network/best.pt and recording.json (what was chosen and why).
With --sensor-network the sensor network (one source per window, on no grid;
with --design multi, up to the largest --n-dipoles sources per window) is
trained instead, on events drawn on the fly: network/sensor-net.pt, which
'predict' applies as dipoles.
"""


def add_options(parser) -> None:
    """The ``--for-recording`` arguments (grouped) of the ``train`` parser.

    Options the parser already has (those shared with the stream: the simulation's, the
    inverse's, ``--spacing``, ``--n-val``) are not added twice; they default to None there,
    which this mode reads as "the recording's value".
    """
    present = {action.dest for action in parser._actions}
    group = parser.add_argument_group("train for a recording (--for-recording)")
    group.add_argument("--for-recording", metavar="PATH",
                       help="raw/epochs/evoked FIF file or BIDS MEG recording to train for")
    group.add_argument("--subjects-dir", metavar="DIR", help="FreeSurfer subjects directory")
    group.add_argument("--subject", help="the recording's FreeSurfer subject")
    group.add_argument("--trans", metavar="FILE",
                       help="head<->MRI transform (default: coregistered to the digitisation)")
    group.add_argument("--src", metavar="FILE", help="the subject's source space (-src.fif)")
    group.add_argument("--bem", metavar="FILE|auto|1-layer|3-layer",
                       help="the subject's BEM (default: its own solution, or built from its "
                       "surfaces)")  # fmt: skip
    group.add_argument("--noise-cov", metavar="FILE|adhoc",
                       help="noise covariance (default: chosen, see above)")
    group.add_argument("--empty-room", metavar="FILE", help="empty-room recording to try first")
    group.add_argument("--cache-dir", metavar="DIR", help="head-model cache directory")
    add_cli_options(group, RecordingTrainingConfig, exclude=present)
    add_cli_options(parser.add_argument_group("--for-recording --sensor-network: its budget"),
                    SensorNetConfig, exclude=present)  # fmt: skip
    sizes = parser.add_argument_group("--for-recording: example sets")
    # one --seed (the training's) seeds the simulations too
    add_cli_options(sizes, DatasetConfig, exclude=("amplitudes", "seed", *present))
    sim = parser.add_argument_group(
        "--for-recording: simulation (default: the recording's sfreq, nave and SNR range; "
        "sweep, both hemispheres, off-grid, realistic time courses)"
    )
    add_cli_options(sim, SimulationConfig, only=SIMULATION_OPTIONS, exclude=present,
                    defaults=SIMULATION_CLI_DEFAULTS)  # fmt: skip
    add_cli_options(parser.add_argument_group("--for-recording: inverse"), InverseConfig,
                    exclude=("hemi", "nave", *present))  # fmt: skip


def _simulation_options(args) -> dict:
    values = {}
    for name in SIMULATION_OPTIONS:
        value = getattr(args, name, None)
        if isinstance(value, list):
            value = value[0] if len(value) == 1 else tuple(value)
        values[name] = value
    if values["off_grid"] in (None, True):
        values.pop("off_grid")  # the default; --no-off-grid turns it off
    return values


class _Callback:
    """Progress bars for the steps, the training bar and lines for the epochs."""

    def __init__(self, args):
        from ._train import TrainingProgress

        self.bar = _common.ProgressBar(enabled=not args.no_progress)
        self.training = TrainingProgress(enabled=not args.no_progress)

    def __call__(self, event) -> None:
        from ..progress import Progress

        (self.bar if isinstance(event, Progress) else self.training)(event)

    def close(self) -> None:
        self.bar.close()
        self.training.close()


def handler(args, stop) -> dict:
    """Run ``train --for-recording`` (``stop``: the Ctrl-C event of ``train``)."""
    import contextlib

    from ..progress import run
    from ..training_for_recording import iter_train_for_recording

    training = config_from_args(TrainingConfig, args)
    gen = iter_train_for_recording(
        args.for_recording, out=args.out, config=config_from_args(RecordingTrainingConfig, args),
        headmodel=args.headmodel, subjects_dir=args.subjects_dir, subject=args.subject,
        trans=args.trans, src=args.src, bem=args.bem, noise_cov=args.noise_cov,
        emptyroom=args.empty_room, simulation=_simulation_options(args),
        dataset=config_from_args(DatasetConfig, args),
        inverse=config_from_args(InverseConfig, args), training=training,
        sensor=config_from_args(SensorNetConfig, args), overwrite=args.overwrite, stop=stop,
        cache_dir=args.cache_dir,
    )  # fmt: skip
    callback = _Callback(args)
    try:
        with contextlib.redirect_stdout(sys.stderr):  # MNE logs to stdout
            report = run(gen, callback)
    finally:
        callback.close()
    if report["network"]["stopped"]:
        out = args.out
        raise _common.Interrupted(
            f"kept {out}/network/last.pt and the sets in {out}/data (continue with: train "
            f"--train {out}/data/train --val {out}/data/val --headmodel {out}/headmodel "
            f"--resume --out {out}/network)"
        )
    report = dict(report)
    report["table"] = _table(report)
    return report


def _table(report: dict) -> str:
    sim = report["simulation"]
    hm = report["headmodel"]
    lines = [
        f"recording: {report['recording']['source']} ({report['recording']['kind']}, "
        f"{sim['sfreq']:g} Hz, conditions {report['recording']['conditions']})",
        f"head model: {hm['kind']} {hm['subject']}, {hm['n_sources']} sources, "
        f"{hm['n_channels']} channels ({hm['path']})",
        f"noise covariance: {report['noise_covariance']['reason']}",
        f"{report['noise_rank']}",
    ]
    if report["noise_rank_warning"]:
        lines.append(f"warning: {report['noise_rank_warning']}")
    lines += [f"{key}: {note}" for key, note in sim["notes"].items()]
    net = report["network"]
    best = (f"best block {net['best_block']}" if net["model"] == "sensor"
            else f"best epoch {net['best_epoch']}")  # fmt: skip
    lines.append(
        f"network ({net['model']}): {best} (validation DLE {net['best_dle_mm']:.1f} mm), "
        f"checkpoint {report['checkpoint']}"
    )
    return "\n".join(lines)
