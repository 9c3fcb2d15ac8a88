"""``napari-meg-unet inverse``: linear inverse solutions and U-Net input stacks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..progress import Progress
from . import _common, _recording


def add_parser(subparsers) -> None:
    from .._config import add_cli_options, option_spec
    from ..configs import InverseConfig
    from ..inverse import BACKENDS

    parser = subparsers.add_parser(
        "inverse",
        help="apply MNE/dSPM/sLORETA/eLORETA to a simulation or a recording",
        description=(
            "Make the inverse operator of a head model (the fsaverage5 template by default) "
            "and apply the chosen methods. On a recording (--data: evoked, epochs or raw FIF, "
            "or a BIDS recording) every condition is inverted with its own nave and written as "
            "source estimates, OUT/stc/<condition>-<method>-lh.stc/-rh.stc (or -stc.h5), with "
            "--npy also as network input stacks. On a simulation (--sim) the events become one "
            "input stack per method (stack-<method>.npy, float32, samples x rows x times). "
            "Both write the kernels (kernel-<method>.npy + .json), the operator "
            "(operator-inv.fif) and summary.json, and print the SVD condition number, the "
            "noise-covariance rank used (and the data's SSS rank), the measured SNR of "
            "averaged responses and the explained (whitened) variance."
        ),
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--sim", metavar="DIR", help="simulation directory (simulate --out)")
    source.add_argument("--data", metavar="PATH", help=_recording.DATA_HELP)
    parser.add_argument(
        "--headmodel",
        metavar="DIR",
        help="saved head model directory (default: the template with --spacing/--modality)",
    )
    parser.add_argument(
        "--spacing", default=None, help="template source spacing (default: the simulation's, "
        "else ico3)",
    )  # fmt: skip
    parser.add_argument(
        "--modality", default=None, help="template modality meg, eeg or meg+eeg (default: the "
        "simulation's, else meg)",
    )  # fmt: skip
    add_cli_options(parser, InverseConfig, exclude=("lambda2",))
    # lambda2 is checked while parsing (a usage error, as every argparse type error).
    spec = option_spec(InverseConfig, "lambda2")
    parser.add_argument(
        "--lambda2", type=_common.number("--lambda2"), default=spec["default"],
        help=f"{spec['help']} (default: 1/9)",
    )  # fmt: skip
    parser.add_argument("--backend", default="numpy", choices=BACKENDS, help="array backend")
    parser.add_argument(
        "--device", default=None, help="torch device (default: CUDA when available, else CPU)"
    )
    parser.add_argument(
        "--force", action="store_true",
        help="run even when the estimated memory or disk use exceeds what is available",
    )  # fmt: skip
    parser.add_argument(
        "--npy", action="store_true",
        help="with --data, also write the network input stacks (stack-<method>.npy)",
    )  # fmt: skip
    _recording.add_recording_options(parser)
    _common.add_common(parser, output=True)
    parser.set_defaults(func=handler)


def _config_from_args(args):
    """The InverseConfig of the command line (repeated methods count once; --depth 0 is none)."""
    from .._config import config_from_args
    from ..configs import InverseConfig

    return config_from_args(
        InverseConfig,
        args,
        methods=tuple(dict.fromkeys(args.methods)),
        depth=None if args.depth == 0 else args.depth,
    )


@dataclass
class _Inputs:
    """What the command works on."""

    data: np.ndarray  # (n_samples, n_channels, n_times)
    ch_names: list
    nave: int
    hemi: str
    hm: object
    what: str  # description for the summary
    where: str  # the file, for messages about its content
    sample: str  # what one sample of ``data`` is called ("event", "epoch", ...)


def _load_headmodel(args, hm_meta: dict):
    """The saved head model, or the template with the simulation's (or given) settings."""
    from ..headmodel import load_headmodel, make_template_headmodel

    if args.headmodel is not None:
        hm = load_headmodel(args.headmodel)
    else:
        spacing = args.spacing or hm_meta.get("spacing", "ico3")
        modality = args.modality or hm_meta.get("modality", "meg")
        hm = make_template_headmodel(spacing=spacing, modality=modality)
    if hm_meta.get("fingerprint") and hm_meta["fingerprint"] != hm.fingerprint:
        raise ValueError(
            f"The simulation {args.sim!r} was made with head model {hm_meta['fingerprint']} "
            f"({hm_meta.get('subject')}, {hm_meta.get('spacing')}, {hm_meta.get('modality')}) "
            f"but the head model used here is {hm.fingerprint}; pass the matching "
            "--headmodel/--spacing/--modality."
        )
    return hm


def _load_inputs(args, config) -> _Inputs:
    """Data, channel names, nave, hemi and the head model of a simulation (--sim)."""
    from ..simulate import load_simulation

    sim = load_simulation(args.sim)
    params = sim.meta.get("params", {})
    hm = _load_headmodel(args, sim.meta.get("headmodel", {}))
    return _Inputs(
        data=np.asarray(sim.data),
        ch_names=list(sim.info["ch_names"]),
        nave=config.nave if config.nave is not None else int(params.get("nave", 1)),
        hemi=config.hemi if config.hemi is not None else params.get("hemi", "rh"),
        hm=hm,
        what=f"simulation {args.sim} ({len(sim)} events)",
        where=f"simulation {str(Path(args.sim) / 'data.npy')!r}",
        sample="event",
    )


def _output_files(out: Path, methods, *, overwrite: bool) -> dict:
    """The output paths, refused up front when one exists without --overwrite."""
    from .._io import check_output_path

    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} exists and is not a directory.")
    files = {
        "operator": out / "operator-inv.fif",
        "summary": out / "summary.json",
        **{f"stack-{m}": out / f"stack-{m}.npy" for m in methods},
        **{f"kernel-{m}": out / f"kernel-{m}.npy" for m in methods},
        **{f"kernel-{m}-sidecar": out / f"kernel-{m}.json" for m in methods},
    }
    for path in files.values():
        check_output_path(path, overwrite=overwrite)
    return files


def _check_data(inputs: _Inputs) -> None:
    """NaN/Inf (an error naming the file and sample) and flat channels (a warning)."""
    from ..inverse import check_data_finite, warn_flat_channels

    used = set(inputs.hm.info["ch_names"]) - set(inputs.hm.info["bads"])
    check_data_finite(
        inputs.data, where=inputs.where, axis_name=inputs.sample, ch_names=inputs.ch_names,
        used=used,
    )  # fmt: skip
    warn_flat_channels(inputs.data, inputs.ch_names, where=inputs.where, used=used)


def _estimate(inputs: _Inputs, config):
    """Memory and disk the command will use (stacks, estimates, data copies, kernels)."""
    from .._resources import ResourceEstimate

    n_samples, n_channels, n_times = inputs.data.shape
    n_methods = len(config.methods)
    n_rows = len(inputs.hm.rows(inputs.hemi))
    # a loose/free operator has 3 rows per source location
    n_components = inputs.hm.n_sources * (1 if config.loose == 0 else 3)
    stack = n_samples * n_methods * n_rows * n_times * 4  # float32
    estimates = n_samples * n_components * n_times * 8  # one method's float64 estimates
    data64 = n_samples * n_channels * n_times * 8  # float64 copies of the data
    kernels = n_methods * n_components * n_channels * 8
    return ResourceEstimate(
        f"inverse of {n_samples} samples x {n_methods} methods x {n_rows} rows x {n_times} times",
        # the stacks, one method's estimates (and their selected rows), and the data as
        # float64 twice (applied, and whitened for the explained variance)
        memory=stack + 2 * estimates + 2 * data64 + kernels,
        disk=stack + kernels + n_components * n_channels * 8,  # + the operator's leads
    )


def _explained_variance(inv, inputs: _Inputs, config) -> dict:
    """Mean, min and max explained variance over the samples, per data fit."""
    from ..inverse import explained_variance

    explained = {}
    for method in config.methods:
        # MNE, dSPM and sLORETA share the SVD and hence the data fit; eLORETA has its own.
        key = "eLORETA" if method == "eLORETA" else "MNE/dSPM/sLORETA"
        if key in explained:
            continue
        ev = np.atleast_1d(
            explained_variance(
                inv,
                inputs.data,
                lambda2=config.lambda2,
                nave=config.nave,
                method=method,
                ch_names=inputs.ch_names,
                verbose=False,
            )
        )
        explained[key] = dict(mean=float(ev.mean()), min=float(ev.min()), max=float(ev.max()))
    return explained


def _summary(inputs: _Inputs, config, stack, spectrum, explained, files) -> dict:
    return dict(
        input=inputs.what,
        n_samples=int(stack.shape[0]),
        stack_shape=[int(stack.shape[0]), int(stack.shape[2]), int(stack.shape[3])],
        methods=list(config.methods),
        lambda2=config.lambda2,
        nave=int(config.nave),
        loose=config.loose,
        depth=config.depth,
        hemi=config.hemi,
        normalisation=config.normalisation,
        headmodel=inputs.hm.summary(),
        svd=dict(
            rank=spectrum["rank"],
            n_channels=spectrum["n_channels"],
            condition_number=spectrum["condition_number"],
            n_above_marker=spectrum["n_above_marker"],
            effective_dof=spectrum["effective_dof"],
        ),
        explained_variance=explained,
        files={key: str(path) for key, path in files.items()},
    )


def _write(files, inv, kernels, stack, summary, *, overwrite: bool) -> None:
    from .._io import save_npy, write_json
    from ..inverse import save_kernel, write_operator

    Path(files["summary"]).parent.mkdir(parents=True, exist_ok=True)
    write_operator(inv, files["operator"], overwrite=overwrite, verbose=False)
    for mi, method in enumerate(kernels):
        save_npy(files[f"stack-{method}"], stack[:, mi])
        save_kernel(kernels[method], files[f"kernel-{method}"], overwrite=overwrite)
    write_json(files["summary"], summary)


def _iter_simulation(args):
    from .._resources import check_resources
    from ..inverse import compute_kernel, make_input_stack, make_inverse, svd_spectrum

    config = _config_from_args(args)
    stage = "inverse"
    total = len(config.methods) + 4
    yield Progress(stage, 0, total, "loading")
    inputs = _load_inputs(args, config)
    config = config.replace(nave=inputs.nave, hemi=inputs.hemi)
    out = Path(args.out)
    files = _output_files(out, config.methods, overwrite=args.overwrite)
    _check_data(inputs)
    check_resources(_estimate(inputs, config), out=out, force=args.force)

    yield Progress(stage, 1, total, "operator")
    hm = inputs.hm
    inv = make_inverse(hm, loose=config.loose, depth=config.depth, verbose=False)
    kernels = {}
    for ii, method in enumerate(config.methods):
        yield Progress(stage, 2 + ii, total, f"kernel {method}")
        kernels[method] = compute_kernel(
            inv, method=method, lambda2=config.lambda2, nave=config.nave,
            fingerprint=hm.fingerprint, verbose=False,
        )  # fmt: skip
    yield Progress(stage, total - 2, total, "stacks")
    stack = make_input_stack(
        kernels, inputs.data, rows=hm.rows(config.hemi), normalisation=config.normalisation,
        ch_names=inputs.ch_names, backend=args.backend, device=args.device,
    )  # fmt: skip
    spectrum = svd_spectrum(inv, lambda2=config.lambda2)
    explained = _explained_variance(inv, inputs, config)

    yield Progress(stage, total - 1, total, "writing")
    summary = _summary(inputs, config, stack, spectrum, explained, files)
    _write(files, inv, kernels, stack, summary, overwrite=args.overwrite)
    yield Progress(stage, total, total, "done")
    return summary


def handler(args) -> dict:
    import mne

    # MNE logs to stdout, which must hold only the result (--json); its warnings still
    # reach stderr through the warnings module.
    with mne.use_log_level("error"):
        if args.sim is not None:
            summary = _common.drive(_iter_simulation(args), args)
        else:
            from ._inverse_data import iter_recording

            summary = _common.drive(iter_recording(args, _config_from_args(args)), args)
    return dict(summary, table="\n".join(_lines(summary)))


def _condition_line(cond) -> str:
    seg = cond["segment"]
    line = (
        f"  {seg['name']}: nave {cond['nave']}, {seg['n_times']} samples at {seg['sfreq']:.6g} "
        f"Hz from {seg['tmin']:.3f} s"
    )
    snr = cond.get("snr")
    if snr:
        line += (
            f", whitened SNR peak {snr['peak']:.2f} at {1e3 * snr['peak_time']:.0f} ms "
            f"(noise level from the {snr['noise_from']})"
        )
    return line + (f" [{'; '.join(seg['notes'])}]" if seg["notes"] else "")


def _lines(summary) -> list[str]:
    hm = summary["headmodel"]
    lines = [
        f"input: {summary['input']}",
        f"head model: {hm['subject']} {hm['spacing']} {hm['modality']} "
        f"({hm['n_sources']} sources)",
        f"methods: {' '.join(summary['methods'])}  lambda2={summary['lambda2']:.4g}  "
        f"nave={summary['nave']}  loose={summary['loose']}  depth={summary['depth']}",
    ]
    for cond in summary.get("conditions", []):
        lines.append(_condition_line(cond))
    if summary.get("stack_shape"):
        shape = summary["stack_shape"]
        lines.append(
            f"stacks: {summary['n_samples']} x {shape[1]} rows ({summary['hemi']}) x {shape[2]} "
            f"times, {summary['normalisation']}"
        )
    lines.append(
        f"SVD: rank {summary['svd']['rank']} of {summary['svd']['n_channels']} channels, "
        f"condition number {summary['svd']['condition_number']:.4g}"
    )
    if summary.get("rank"):
        lines.append(f"noise covariance: {summary['rank']['message']}")
    for key, ev in summary["explained_variance"].items():
        lines.append(
            f"explained variance ({key}): mean {100 * ev['mean']:.1f}% "
            f"(min {100 * ev['min']:.1f}%, max {100 * ev['max']:.1f}%)"
        )
    lines.append(f"written to: {Path(summary['files']['summary']).parent}")
    return lines
