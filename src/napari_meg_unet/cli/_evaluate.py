"""``napari-meg-unet evaluate``: DLE/SD/OA/AUC of source estimators on simulated data."""

from __future__ import annotations

import numpy as np

from .._config import add_cli_options, config_from_args
from .._io import atomic_dir, check_output_path, write_json
from ..configs import METHODS, EvaluationConfig, InverseConfig, PeerConfig
from ._common import add_common, add_peers_option, drive

#: Benchmark designs: name -> simulate() keyword arguments.
DESIGNS = {
    "single": dict(design="sweep", n_repeats=1),
    "multi": dict(design="multi", n_dipoles=(2, 5)),
}


def _simulate(hm, args, design, snr, seed):
    from ..simulate import simulate

    sim_kwargs = dict(DESIGNS[design])
    if design == "multi":
        sim_kwargs["n_events"] = args.n_events
    return simulate(hm, hemi=args.hemi, off_grid=not args.on_grid, timecourse=args.timecourse,
                    snr=snr, seed=seed, verbose=False, **sim_kwargs)  # fmt: skip


def _true_headmodel(hm, args):
    """The head model the test data are simulated on: ``hm``, or its ``--model-error``."""
    if args.model_error is None:
        return hm
    from ..accuracy import MODEL_ERRORS, derive_seed
    from ..headmodel import make_perturbed_headmodel

    seed = derive_seed(args.seed, "model-error", args.model_error)
    return make_perturbed_headmodel(hm, **MODEL_ERRORS[args.model_error], seed=seed)


def _peer_evaluation(hm, sim, args, peers):
    """The peers on ``sim``: searched on a validation simulation (the trainable ones trained).

    The validation and training simulations repeat ``sim``'s settings on the nominal head
    model with seeds of their own (:func:`~napari_meg_unet.evaluation.peer_simulations`,
    as the Evaluate widget's).
    """
    from ..evaluation import iter_evaluate_peers, peer_simulations

    val, training = peer_simulations(hm, sim, peers.peers or (), seed=args.seed)
    return drive(iter_evaluate_peers(hm, sim, validation=val, training=training,
                                     n_boot=args.n_boot, seed=args.seed, config=peers,
                                     verbose=False), args)  # fmt: skip


def _run(args):
    from ..evaluation import iter_evaluate_linear

    if not args.linear_only and args.peers is None:
        raise ValueError(
            "evaluate scores the linear inverses (--linear-only) and the peers (--peers); "
            "networks are evaluated by 'napari-meg-unet bench accuracy'."
        )
    peers = config_from_args(PeerConfig, args, peers=args.peers or None)
    evaluation = config_from_args(EvaluationConfig, args)
    inverse = config_from_args(InverseConfig, args)
    out = check_output_path(args.out, overwrite=args.overwrite, what="--out") if args.out else None
    lambda2 = inverse.lambda2
    hm = _headmodel(args)
    hm_true = _true_headmodel(hm, args)
    results, tables, per_vertex = [], [], {}
    for design in args.design:
        for snr in args.snr:
            sim = _simulate(hm_true, args, design, snr, args.seed)
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
            if peers.peers:
                ev.merge(_peer_evaluation(hm, sim, args, peers))
            error = f", model error {args.model_error}" if args.model_error else ""
            title = f"{design}-dipole, whitened SNR {snr:g}, {len(sim)} events{error}"
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
        "model_error": hm_true.provenance.get("perturbation"),
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
        help="score linear inverses and peers on simulated data (DLE, SD, OA, AUC with 95%% "
        "CIs, seconds per event)",
        description="Simulate single- and multi-dipole data on the template (or --headmodel) "
        "head model (off-grid by default) and score MNE, dSPM, sLORETA and eLORETA per event with "
        "bootstrap 95% CIs, per sample (the thesis protocol) and on the epoch-mean map "
        "(the window a network sees).",
    )
    parser.add_argument(
        "--linear-only", action="store_true",
        help="evaluate the linear inverses (always scored; networks are not)",
    )  # fmt: skip
    peers = parser.add_argument_group(
        "peers (hyper-parameters chosen on a validation simulation of the same design and "
        "SNR, another seed)"
    )
    add_peers_option(peers)
    add_cli_options(peers, PeerConfig)
    parser.add_argument(
        "--model-error", choices=("coreg", "conductor", "skull", "pial"),
        help="simulate the test data on a perturbed head model (5 mm / 3 deg coregistration "
        "error, a sphere instead of the BEM, the BEM reshaped by 3 mm RMS, or sources on the "
        "pial surface) and invert with the nominal one",
    )  # fmt: skip
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
