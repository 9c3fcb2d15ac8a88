"""``napari-meg-unet bench``: benchmarks that print a table and write JSON."""

from __future__ import annotations

from pathlib import Path

from .._io import write_json
from ._common import add_common, drive


def _run_core(args):
    from ..bench.core import format_table, iter_bench_core

    result = drive(
        iter_bench_core(
            spacing=args.spacing, repeats=args.repeats, n_epochs=args.n_epochs, seed=args.seed
        ),
        args,
    )
    result["command"] = args.command_line
    if args.out:
        write_json(Path(args.out), result)
    result["table"] = format_table(result)
    return result


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="run a benchmark (prints a table, writes JSON)",
        description="Benchmarks: 'core' times our vectorised simulate-and-invert path against "
        "the thesis's MNE simulate_raw/apply_inverse_raw path and batched kernels against an "
        "apply_inverse loop.",
    )
    sub = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    core = sub.add_parser("core", help="simulation + inversion speed versus the thesis path")
    core.add_argument("--spacing", default="ico3", help="template source spacing (default ico3)")
    core.add_argument("--repeats", type=int, default=3, help="timing repeats (best is kept)")
    core.add_argument(
        "--n-epochs", type=int, default=100, help="epochs in the apply_inverse loop comparison"
    )
    core.add_argument("--seed", type=int, default=0)
    core.add_argument("--out", "-o", help="write the result JSON here")
    add_common(core)
    core.set_defaults(func=_run_core)
