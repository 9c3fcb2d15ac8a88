"""``napari-meg-unet evaluate``: DLE/SD/OA/AUC of source estimators on simulated data."""

from __future__ import annotations

import numpy as np

from .._config import add_cli_options, config_from_args
from .._io import atomic_dir, check_output_path, write_json
from ..configs import METHODS, EvaluationConfig, InverseConfig
from ._common import add_common, drive

#: Benchmark designs: name -> simulate() keyword arguments.
DESIGNS = {
    "single": dict(design="sweep", n_repeats=1),
    "multi": dict(design="multi", n_dipoles=(2, 5)),
}


def _run(args):
    from ..evaluation import iter_evaluate_linear
    from ..simulate import simulate

    if not args.linear_only:
        raise ValueError(
            "evaluate currently needs --linear-only; networks are evaluated by "
            "'napari-meg-unet bench accuracy'."
        )
    evaluation = config_from_args(EvaluationConfig, args)
    inverse = config_from_args(InverseConfig, args)
    out = check_output_path(args.out, overwrite=args.overwrite, what="--out") if args.out else None
    lambda2 = inverse.lambda2
    hm = _headmodel(args)
    results, tables, per_vertex = [], [], {}
    for design in args.design:
        for snr in args.snr:
            sim_kwargs = dict(DESIGNS[design])
            if design == "multi":
                sim_kwargs["n_events"] = args.n_events
            sim = simulate(
                hm,
                hemi=args.hemi,
                off_grid=not args.on_grid,
                timecourse=args.timecourse,
                snr=snr,
                seed=args.seed,
                **sim_kwargs,
            )
            ev = drive(
                iter_evaluate_linear(
                    hm,
                    sim,
                    methods=inverse.methods,
                    lambda2=lambda2,
                    config=evaluation,
                    verbose=False,
                ),
                args,
            )
            title = f"{design}-dipole, whitened SNR {snr:g}, {len(sim)} events"
            tables.append(f"### {title}\n\n{ev.table()}")
            entry = {"design": design, "snr": snr, "n_events": len(sim), **ev.to_dict()}
            results.append(entry)
            maps = {
                f"{est}_{prot}": values
                for (est, prot), values in ev.per_vertex_dle.items()
                if np.isfinite(values).any()
            }
            if maps:
                per_vertex[f"per_vertex_dle_{design}_snr{snr:g}.npz"] = maps
    command = args.command_line
    report = {
        "command": command,
        "headmodel": hm.summary(),
        "off_grid": not args.on_grid,
        "timecourse": args.timecourse,
        "lambda2": lambda2,
        "results": results,
    }
    from ..bench import machine_description

    report["machine"] = machine_description()
    table = "\n\n".join(tables)
    if out is not None:
        with atomic_dir(out, overwrite=args.overwrite, what="--out") as tmp:
            write_json(tmp / "results.json", report)
            (tmp / "results.md").write_text(f"`{command}`\n\n{table}\n")
            for name, maps in per_vertex.items():
                np.savez(tmp / name, **maps)
    report["table"] = table
    return report


def _headmodel(args):
    """The saved head model of ``--headmodel``, else the template of --spacing/--modality."""
    from ..headmodel import load_headmodel, make_template_headmodel

    if args.headmodel:
        return load_headmodel(args.headmodel, verbose=False)
    return make_template_headmodel(spacing=args.spacing, modality=args.modality, verbose=False)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="score linear inverses on simulated data (DLE, SD, OA, AUC with 95%% CIs)",
        description="Simulate single- and multi-dipole data on the template (or --headmodel) "
        "head model (off-grid by default) and score MNE, dSPM, sLORETA and eLORETA per event with "
        "bootstrap 95% CIs, per sample (the thesis protocol) and on the epoch-mean map "
        "(the window a network sees).",
    )
    parser.add_argument(
        "--linear-only", action="store_true", help="evaluate the linear inverses only"
    )
    parser.add_argument(
        "--snr",
        type=float,
        nargs="+",
        default=[0.5, 1.0, 3.0],
        help="whitened per-sample SNRs (default 0.5 1 3)",
    )
    parser.add_argument("--design", nargs="+", choices=sorted(DESIGNS), default=["single", "multi"])
    add_cli_options(
        parser, InverseConfig, only=("methods", "lambda2"),
        defaults={"methods": METHODS, "lambda2": "1/9"},
    )  # fmt: skip
    parser.add_argument(
        "--headmodel", metavar="DIR",
        help="saved head model directory (e.g. a subject's); default: the template of "
        "--spacing/--modality",
    )  # fmt: skip
    parser.add_argument("--spacing", default="ico3")
    parser.add_argument("--modality", default="meg", choices=["meg", "eeg", "meg+eeg"])
    parser.add_argument("--hemi", default="rh", choices=["lh", "rh", "both"])
    parser.add_argument("--n-events", type=int, default=300, help="events of the multi design")
    parser.add_argument("--timecourse", default="realistic", choices=["thesis", "realistic"])
    parser.add_argument(
        "--on-grid",
        action="store_true",
        help="simulate on the inversion grid (the 'inverse crime')",
    )
    add_cli_options(parser, EvaluationConfig, exclude=("seed",))
    # One seed for the simulations and the scoring (read into EvaluationConfig.seed).
    parser.add_argument(
        "--seed", type=int, default=0,
        help="seed of the simulations, the AUC negative draws and the bootstrap (default: 0)",
    )  # fmt: skip
    parser.add_argument(
        "--out", "-o", help="output folder (results.json, results.md, per-vertex DLE .npz)"
    )
    parser.add_argument("--overwrite", action="store_true")
    add_common(parser)
    parser.set_defaults(func=_run)
