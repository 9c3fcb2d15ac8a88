"""``napari-meg-unet bench``: benchmarks that print a table and write JSON."""

from __future__ import annotations

from pathlib import Path

from .._io import write_json
from ._common import add_common, drive, positive_int


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


def _run_throughput(args):
    from ..bench.throughput import format_table, iter_bench_throughput

    result = drive(
        iter_bench_throughput(spacing=args.spacing, n_batches=args.n_batches, seed=args.seed,
                              num_threads=args.num_threads, work_dir=args.work_dir),
        args,
    )  # fmt: skip
    return _finish(result, args, format_table)


def _run_scale(args):
    from ..bench.scale import CONFIGS, format_table, iter_bench_scale

    configs = CONFIGS if not args.configs else tuple(c.split(":") for c in args.configs)
    result = drive(
        iter_bench_scale(configs=configs, n_events=args.n_events, batch_size=args.batch_size,
                         num_threads=args.num_threads, seed=args.seed),
        args,
    )  # fmt: skip
    return _finish(result, args, format_table)


def _finish(result, args, format_table):
    result["command"] = args.command_line
    if args.out:
        write_json(Path(args.out), result)
    result["table"] = format_table(result)
    return result


def _add_throughput_and_scale(sub) -> None:
    throughput = sub.add_parser(
        "throughput",
        help="examples/s of the training stream, of training and of both; inference latency",
        description="On the benchmark conditions: examples/s of the on-the-fly generator "
        "alone, of training alone (disk set) and of training on the stream, for the thesis "
        "U-Net 'small' and the mesh U-Net 'cpu'; then the inference latency per event at "
        "batch 1, 16 and 64.",
    )
    throughput.add_argument("--spacing", default="ico3", help="template source spacing")
    throughput.add_argument(
        "--n-batches", type=positive_int, default=12, help="timed batches per measurement"
    )
    scale = sub.add_parser(
        "scale",
        help="cost growth of every step with the number of sources (ico3/ico4, rh/both)",
        description="Times simulate, kernel computation, stack building (float64 and the "
        "float32 core), one training step and prediction (thesis U-Net and mesh U-Net at "
        "their small size) for the template at ico3 and ico4, one hemisphere and both, each "
        "in a fresh process (peak memory), and prints the growth exponent of each step.",
    )
    scale.add_argument(
        "--configs", nargs="+", metavar="SPACING:HEMI",
        help="configurations (default ico3:rh ico3:both ico4:rh ico4:both)",
    )  # fmt: skip
    scale.add_argument("--n-events", type=positive_int, default=256, help="events simulated")
    scale.add_argument("--batch-size", type=positive_int, default=8, help="training batch")
    for parser in (throughput, scale):
        parser.add_argument("--num-threads", type=positive_int, help="torch threads")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--out", "-o", help="write the result JSON here")
        add_common(parser)
    throughput.add_argument("--work-dir", metavar="DIR", help="parent of the temporary sets")
    throughput.set_defaults(func=_run_throughput)
    scale.set_defaults(func=_run_scale)


def _run_accuracy(args):
    from .._io import check_output_path
    from ..bench.accuracy import iter_bench_accuracy

    if args.out:  # refuse an existing output before hours of computation
        check_output_path(args.out, overwrite=args.overwrite, what="report folder")
    result = drive(
        iter_bench_accuracy(
            args.preset, checkpoint_dir=args.checkpoint_dir, work_dir=args.work_dir,
            device=args.device, seed=args.seed, epochs=args.epochs,
            max_train_s=args.max_train_time, stability=args.stability, n_boot=args.n_boot,
            command=args.command_line, n_train=args.n_train, n_val=args.n_val,
            n_test=args.n_test, headmodel=args.headmodel,
            **_network_overrides(args.preset, args.networks),
            **_peer_overrides(args),
        ),
        args,
    )  # fmt: skip
    files = result.save(args.out, overwrite=args.overwrite) if args.out else None
    out = result.to_dict()
    out["files"] = files
    out["table"] = result.table()
    return out


def _network_overrides(preset: str, networks) -> dict:
    """``networks`` (and the stability network) replacing the preset's, if given."""
    if networks is None:
        return {}
    if not networks:  # "none": the linear inverses (and peers) only
        return {"networks": ()}
    from ..bench.accuracy import PRESETS

    stability = PRESETS[preset].stability_network
    if stability not in networks:  # same model at the size asked for, else the first network
        stability = next((n for n in networks if n[0] == stability[0]), networks[0])
    return {"networks": tuple(networks), "stability_network": stability}


def _peer_overrides(args) -> dict:
    """Preset fields replaced by the peer options and ``--conditions`` (only those given)."""
    from ..bench.accuracy import PRESETS

    out = {key: getattr(args, key) for key in ("peers", "hybrids", "peer_events",
                                               "peer_events_slow", "search_events",
                                               "search_events_slow", "sensor_blocks",
                                               "sensor_net_file")
           if getattr(args, key) is not None}  # fmt: skip
    if args.conditions:
        known = {c.name: c for c in PRESETS[args.preset].conditions}
        unknown = [name for name in args.conditions if name not in known]
        if unknown:
            raise ValueError(
                f"--conditions: {unknown} are not conditions of preset {args.preset!r}; "
                f"it has {sorted(known)}."
            )
        out["conditions"] = tuple(known[name] for name in args.conditions)
    return out


def _network_list(text):
    """``"thesis:small,mesh:small"`` -> ``(("thesis", "small"), ("mesh", "small"))``."""
    import argparse

    from ..models import PRESETS

    if text.strip() == "none":
        return ()
    pairs = []
    for item in text.split(","):
        model, _, size = item.strip().partition(":")
        if model not in PRESETS or size not in PRESETS[model]:
            choices = ", ".join(f"{m}:{s}" for m in PRESETS for s in PRESETS[m])
            raise argparse.ArgumentTypeError(
                f"expected MODEL:PRESET[,MODEL:PRESET] from {choices}; got {item.strip()!r}"
            )
        pairs.append((model, size))
    if len({m for m, _ in pairs}) != len(pairs):
        raise argparse.ArgumentTypeError(f"name each model once, got {text!r}")
    return tuple(pairs)


def _add_accuracy(sub) -> None:
    accuracy = sub.add_parser(
        "accuracy",
        help="linear inverses versus the U-Nets on held-out simulations",
        description="Train (or load) the thesis U-Net and the mesh U-Net, then score them and "
        "MNE, dSPM, sLORETA and eLORETA on held-out test simulations: DLE, SD, OA and AUC "
        "with per-event bootstrap 95% CIs, per-sample and same-window protocols, the grid "
        "floor and the benchmark targets. Presets: 'thesis' (the thesis conditions, on-grid), "
        "'benchmark' (off-grid, realistic time courses, SNR 0.5/1/3, single and 2-5 "
        "dipoles; GPU-sized), 'small' (the benchmark at SNR 1, single dipoles; CPU-sized). "
        "With --out: results.json, results.md, DLE density plots, training curves, an "
        "example panel and per-vertex mean-DLE arrays (per_vertex/*.npy).",
    )
    accuracy.add_argument(
        "--preset", choices=("thesis", "benchmark", "benchmark-model-error", "small"),
        default="small", help="benchmark preset (default small)",
    )  # fmt: skip
    accuracy.add_argument(
        "--headmodel", metavar="DIR",
        help="run on this saved head model (e.g. a subject's, from 'napari-meg-unet headmodel "
        "--out') instead of the preset's template; its spacing and modality are used",
    )  # fmt: skip
    accuracy.add_argument("--out", "-o", help="write the report folder here")
    accuracy.add_argument(
        "--overwrite", action="store_true", help="replace an existing --out folder"
    )
    accuracy.add_argument(
        "--checkpoint-dir", metavar="DIR",
        help="trained networks: loaded from DIR/<kind>-<model>-<preset>/best.pt when present, "
        "else trained and kept there (default: trained and discarded)",
    )  # fmt: skip
    accuracy.add_argument(
        "--work-dir", metavar="DIR", help="parent of the temporary example sets (default: TMPDIR)"
    )
    accuracy.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    accuracy.add_argument("--seed", type=int, default=0, help="master seed (default 0)")
    accuracy.add_argument(
        "--epochs", type=positive_int, help="epochs per network (default: the preset's)"
    )
    accuracy.add_argument(
        "--max-train-time", type=float, metavar="SECONDS",
        help="stop training a network after this many seconds (its best epoch is used)",
    )  # fmt: skip
    accuracy.add_argument(
        "--stability", action="store_true",
        help="also run the thesis section 4.3 experiments (lambda2 1 vs 1/9, MEG vs MEG+EEG, "
        "single-dipole network on multi-dipole data)",
    )  # fmt: skip
    sizes = accuracy.add_argument_group("sizes (override the preset)")
    sizes.add_argument(
        "--networks", type=_network_list, metavar="MODEL:PRESET[,...]",
        help="networks to train instead of the preset's, e.g. thesis:small,mesh:cpu for a "
        "CPU-sized run of the thesis or benchmark preset; 'none' for the linear inverses "
        "and peers only",
    )  # fmt: skip
    _add_peer_options(sizes)
    sizes.add_argument("--n-train", type=positive_int, help="training examples per network")
    sizes.add_argument("--n-val", type=positive_int, help="validation examples")
    sizes.add_argument("--n-test", type=positive_int, help="test events per condition")
    sizes.add_argument(
        "--n-boot", type=positive_int, default=2000, help="bootstrap resamples (default 2000)"
    )
    add_common(accuracy)
    accuracy.set_defaults(func=_run_accuracy)


def _add_peer_options(group) -> None:
    from .._config import add_cli_options
    from ..configs import PeerConfig
    from ._common import add_peers_option, hybrid_list

    add_peers_option(group, default_text="the preset's")
    group.add_argument(
        "--hybrids", type=hybrid_list, metavar="all|none|HYBRID[,...]",
        help="estimators built on each trained network, scored as rows of their own: "
        "'centre-of-mass' (its peaks moved to the probability-weighted centre of mass of "
        "their mesh neighbourhood), 'centre-head' (its peaks placed by its own centre head; "
        "networks of preset cpu-centre only), 'dipole-fit' (its peaks refined by a "
        "multi-dipole least-squares fit), 'dipole-fit-mne' (the same fit with MNE's "
        "orientation rule) and 'dipole-fit-mne-given' (that fit told each event's number "
        "of sources, as rap-music is); "
        "their peak threshold is chosen on the validation sets only "
        "(default: the preset's)",
    )  # fmt: skip
    group.add_argument(
        "--conditions", type=lambda t: [c.strip() for c in t.split(",") if c.strip()],
        metavar="NAME[,...]", help="run only these conditions of the preset",
    )  # fmt: skip
    # the sizes: PeerConfig's options, None here so that the preset's values stay
    add_cli_options(group, PeerConfig, defaults={name: None for name in PeerConfig.option_names()})


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="run a benchmark (prints a table, writes JSON)",
        description="Benchmarks: 'core' times our vectorised simulate-and-invert paths "
        "(float64 numpy and the float32 torch core) against the thesis's MNE "
        "simulate_raw/apply_inverse_raw path and batched kernels against an apply_inverse "
        "loop; 'throughput' the training stream and training; 'scale' the cost growth to "
        "ico4 and both hemispheres; 'accuracy' the networks against the linear inverses.",
    )
    sub = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    core = sub.add_parser("core", help="simulation + inversion speed versus the thesis path")
    core.add_argument("--spacing", default="ico3", help="template source spacing (default ico3)")
    core.add_argument(
        "--repeats", type=positive_int, default=3, help="timing repeats (best is kept)"
    )
    core.add_argument(
        "--n-epochs", type=positive_int, default=30,
        help="epochs in the apply_inverse loop comparison",
    )  # fmt: skip
    core.add_argument("--seed", type=int, default=0)
    core.add_argument("--out", "-o", help="write the result JSON here")
    add_common(core)
    core.set_defaults(func=_run_core)
    _add_throughput_and_scale(sub)
    _add_accuracy(sub)
