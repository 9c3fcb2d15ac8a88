"""The ``napari-meg-unet`` command line.

Each subcommand lives in its own module exposing ``add_parser(subparsers)``;
the module registers its handler with ``parser.set_defaults(func=...)``.
Handlers return a JSON-friendly dict that is printed as JSON with ``--json``
and as a short human summary otherwise.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .. import __version__

#: Subcommand modules, in the order they appear in ``--help``.
SUBCOMMANDS = (
    "headmodel",
    "simulate",
    "inverse",
    "evaluate",
    "bench",
    "dataset",
    "train",
    "predict",
    "demo",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="napari-meg-unet",
        description="MEG source imaging: template head models, simulations, linear inverses, "
        "U-Nets and benchmarks.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"._{name}", __name__)
        except ModuleNotFoundError as err:
            if err.name != f"{__name__}._{name}":
                raise
            continue
        module.add_parser(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.command_line = "napari-meg-unet " + " ".join(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    import mne

    from ._common import emit

    mne.set_log_level("WARNING")

    try:
        result = args.func(args)
    except (ValueError, FileNotFoundError, FileExistsError, OSError, RuntimeError) as err:
        print(f"napari-meg-unet {args.command}: error: {err}", file=sys.stderr)
        return 2
    emit(result, as_json=getattr(args, "json", False))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
