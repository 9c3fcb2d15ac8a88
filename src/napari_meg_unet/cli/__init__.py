"""The ``napari-meg-unet`` command line.

Each subcommand lives in its own module exposing ``add_parser(subparsers)``;
the module registers its handler with ``parser.set_defaults(func=...)``.
Handlers return a JSON-friendly dict that is printed as JSON with ``--json``
and as a short human summary otherwise.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from .. import __version__
from .._resources import InsufficientResourcesError
from .._resources import logger as resources_logger

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
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show the full traceback of an error (also NAPARI_MEG_UNET_DEBUG=1; "
        "accepted anywhere on the command line)",
    )
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


#: Exceptions that explain a wrong input, request or environment: one line, exit 2.
USER_ERRORS = (
    InsufficientResourcesError,
    ValueError,
    TypeError,
    FileNotFoundError,
    FileExistsError,
    NotADirectoryError,
    IsADirectoryError,
    PermissionError,
    OSError,
    RuntimeError,  # training, checkpoint and MNE errors that explain themselves
)


def _debug_requested(argv: list[str]) -> bool:
    return "--debug" in argv or os.environ.get("NAPARI_MEG_UNET_DEBUG", "") not in ("", "0")


def main(argv=None) -> int:
    """Run the command line; every error becomes one line on stderr (``--debug``: traceback)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = _debug_requested(argv)
    argv = [a for a in argv if a != "--debug"]
    parser = build_parser()
    args = parser.parse_args(argv)
    args.command_line = "napari-meg-unet " + " ".join(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    import mne

    from ._common import Interrupted, emit

    mne.set_log_level("WARNING")
    resources_logger.setLevel(logging.INFO)  # size estimates are printed before each step
    prefix = f"napari-meg-unet {args.command}"
    try:
        result = args.func(args)
    except KeyboardInterrupt as err:
        if debug:
            raise
        kept = getattr(err, "kept", None) if isinstance(err, Interrupted) else None
        print(f"{prefix}: interrupted, {kept or 'nothing written'}", file=sys.stderr)
        return 130
    except USER_ERRORS as err:
        if debug:
            raise
        print(f"{prefix}: error: {err}", file=sys.stderr)
        return 2
    except MemoryError as err:
        if debug:
            raise
        detail = f" ({err})" if str(err) else ""
        print(
            f"{prefix}: error: out of memory{detail}; nothing was written. Ask for fewer "
            "events or a smaller head model (run with --debug for the traceback).",
            file=sys.stderr,
        )
        return 1
    except Exception as err:  # noqa: BLE001 - the CLI's last line of defence
        if debug:
            raise
        print(
            f"{prefix}: error: {type(err).__name__}: {err} "
            "(run with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1
    emit(result, as_json=getattr(args, "json", False))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
