"""``napari-meg-unet demo``: the README's main job, written as a report folder."""

from __future__ import annotations

import argparse

from ._common import add_common, drive, positive_int

HELP = "simulate, invert, train the small U-Net and evaluate on the template; write a report"
DESCRIPTION = """\
Build the embedded fsaverage5 template head model (ico3, MEG; nothing is
downloaded), simulate training, validation and test sets from disjoint seeds
(off-grid single dipoles, realistic time courses, whitened SNR 1, right
hemisphere), invert them (MNE, dSPM, sLORETA, eLORETA), train the small mesh
U-Net on the MNE/dSPM/sLORETA images, score every method on the same test
events and write OUT/report.md (table of DLE, SD, OA and AUC with 95% CIs,
whether the network beat dSPM, command, machine, runtime), OUT/results.json
and PNG plots. Runs on a CPU in minutes.
"""


def handler(args):
    from ..demo import iter_demo

    return drive(
        iter_demo(
            args.out, overwrite=args.overwrite, epochs=args.epochs, seed=args.seed,
            device=args.device, command=args.command_line, tiny=args.tiny,
        ),
        args,
    )  # fmt: skip


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("demo", help=HELP, description=DESCRIPTION)
    parser.add_argument(
        "--epochs", type=positive_int, help="training epochs (default: the demo's, 3)"
    )
    parser.add_argument("--seed", type=int, default=0, help="master seed (default 0)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    # seconds-long sizes for the test suite; the numbers mean nothing
    parser.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)
    add_common(parser, output=True)
    parser.set_defaults(func=handler)
