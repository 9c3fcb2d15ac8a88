"""``napari-meg-unet inverse``: linear inverse solutions and U-Net input stacks."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..progress import Progress
from . import _common

_EVOKED_ENDINGS = ("-ave.fif", "_ave.fif", "-ave.fif.gz", "_ave.fif.gz")
_EPOCHS_ENDINGS = ("-epo.fif", "_epo.fif", "-epo.fif.gz", "_epo.fif.gz")


def _parse_depth(text: str):
    import argparse

    if text.strip().lower() in ("none", "0"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--depth must be a non-negative number or 'none', got {text!r}"
        ) from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"--depth must be non-negative, got {text!r}")
    return value


def add_parser(subparsers) -> None:
    from ..inverse import BACKENDS, METHODS, NORMALISATIONS

    parser = subparsers.add_parser(
        "inverse",
        help="apply MNE/dSPM/sLORETA/eLORETA to a simulation or FIF data; write stacks",
        description=(
            "Make the inverse operator of a head model (the fsaverage5 template by default), "
            "compute the imaging kernels of the chosen methods, apply them to the events of a "
            "simulation (--sim) or to the evoked responses/epochs of a FIF file (--data) and "
            "write, under --out: one input stack per method (stack-<method>.npy, float32, "
            "samples x rows x times), the kernels (kernel-<method>.npy + .json), the operator "
            "(operator-inv.fif) and summary.json. Prints the SVD condition number and the "
            "explained (whitened) variance."
        ),
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--sim", metavar="DIR", help="simulation directory (simulate --out)")
    source.add_argument(
        "--data",
        metavar="FILE",
        help="FIF evoked (-ave.fif: every condition is a sample) or epochs (-epo.fif) file",
    )
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
    parser.add_argument(
        "--methods", nargs="+", default=["MNE", "dSPM", "sLORETA"], choices=METHODS,
        help="inverse methods = stack channels, in order (default: MNE dSPM sLORETA)",
    )  # fmt: skip
    parser.add_argument(
        "--lambda2", type=_common.number("--lambda2"), default=1.0 / 9.0,
        help="regularisation lambda^2, fractions allowed (default: 1/9)",
    )  # fmt: skip
    parser.add_argument(
        "--loose", type=float, default=0.0,
        help="tangential variance factor; 0 = fixed orientation (default: 0)",
    )  # fmt: skip
    parser.add_argument(
        "--depth", type=_parse_depth, default=0.8,
        help="depth-weighting exponent or 'none' (default: 0.8)",
    )  # fmt: skip
    parser.add_argument(
        "--nave", type=int, default=None,
        help="number of averages (default: the simulation's / the evoked nave / 1 for epochs)",
    )  # fmt: skip
    parser.add_argument(
        "--hemi", default=None, choices=("lh", "rh", "both"),
        help="image rows (default: the simulation's hemisphere, else rh)",
    )  # fmt: skip
    parser.add_argument(
        "--normalisation", default="column-max", choices=NORMALISATIONS,
        help="per-image scaling of the stacks (default: column-max, as the thesis)",
    )  # fmt: skip
    parser.add_argument("--backend", default="numpy", choices=BACKENDS, help="array backend")
    parser.add_argument(
        "--device", default=None, help="torch device (default: CUDA when available, else CPU)"
    )
    _common.add_common(parser, output=True)
    parser.set_defaults(func=handler)


def _read_fif_data(path: Path):
    """(data (n, n_ch, n_times), ch_names, nave or None, description) from an evoked/epochs FIF."""
    import mne

    if not path.is_file():
        raise FileNotFoundError(f"The data file {str(path)!r} does not exist.")
    name = path.name
    if name.endswith(_EPOCHS_ENDINGS):
        epochs = mne.read_epochs(path, preload=True, verbose=False)
        return epochs.get_data(), epochs.ch_names, 1, f"{len(epochs)} epochs"
    if not name.endswith(_EVOKED_ENDINGS):
        raise ValueError(
            f"--data {str(path)!r}: expected an evoked file ending in {_EVOKED_ENDINGS} or an "
            f"epochs file ending in {_EPOCHS_ENDINGS}."
        )
    evokeds = mne.read_evokeds(path, verbose=False)
    ch_names = evokeds[0].ch_names
    n_times = evokeds[0].data.shape[1]
    for ev in evokeds[1:]:
        if ev.ch_names != ch_names or ev.data.shape[1] != n_times:
            raise ValueError(
                f"--data {str(path)!r}: the evoked conditions differ in channels or length."
            )
    naves = sorted({int(ev.nave) for ev in evokeds})
    nave = naves[0] if len(naves) == 1 else None
    data = np.stack([ev.data for ev in evokeds])
    return data, ch_names, nave, f"{len(evokeds)} evoked conditions (nave {naves})"


def _load_inputs(args):
    """Data, channel names, nave, hemi and the head model for the handler."""
    from ..headmodel import load_headmodel, make_template_headmodel

    sim_meta = {}
    if args.sim is not None:
        from ..simulate import load_simulation

        sim = load_simulation(args.sim)
        data = np.asarray(sim.data)
        ch_names = list(sim.info["ch_names"])
        sim_meta = sim.meta
        nave = int(sim_meta.get("params", {}).get("nave", 1))
        hemi = sim_meta.get("params", {}).get("hemi", "rh")
        what = f"simulation {args.sim} ({len(sim)} events)"
    else:
        data, ch_names, nave, what = _read_fif_data(Path(args.data))
        hemi = "rh"
        if nave is None and args.nave is None:
            raise ValueError(
                f"--data {args.data!r}: the evoked conditions have different nave; pass --nave "
                "(dSPM/sLORETA scale with sqrt(nave))."
            )
    nave = args.nave if args.nave is not None else nave
    hemi = args.hemi if args.hemi is not None else hemi
    hm_meta = sim_meta.get("headmodel", {})
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
    return data, ch_names, nave, hemi, hm, what


def _iter_inverse(args):
    from .. import inverse as inv_mod
    from .._io import check_output_path, save_npy, write_json

    stage = "inverse"
    methods = list(dict.fromkeys(args.methods))
    total = len(methods) + 4
    yield Progress(stage, 0, total, "loading")
    data, ch_names, nave, hemi, hm, what = _load_inputs(args)
    out = Path(args.out)
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
        check_output_path(path, overwrite=args.overwrite)

    yield Progress(stage, 1, total, "operator")
    inv = inv_mod.make_inverse(hm, loose=args.loose, depth=args.depth, verbose=False)
    kernels = {}
    for ii, method in enumerate(methods):
        yield Progress(stage, 2 + ii, total, f"kernel {method}")
        kernels[method] = inv_mod.compute_kernel(
            inv, method=method, lambda2=args.lambda2, nave=nave, fingerprint=hm.fingerprint,
            verbose=False,
        )  # fmt: skip
    yield Progress(stage, total - 2, total, "stacks")
    stack = inv_mod.make_input_stack(
        kernels, data, rows=hm.rows(hemi), normalisation=args.normalisation,
        ch_names=ch_names, backend=args.backend, device=args.device,
    )  # fmt: skip
    spectrum = inv_mod.svd_spectrum(inv, lambda2=args.lambda2)
    explained = {}
    for method in methods:
        # MNE, dSPM and sLORETA share the SVD and hence the data fit; eLORETA has its own.
        key = "eLORETA" if method == "eLORETA" else "MNE/dSPM/sLORETA"
        if key not in explained:
            ev = np.atleast_1d(
                inv_mod.explained_variance(
                    inv,
                    data,
                    lambda2=args.lambda2,
                    nave=nave,
                    method=method,
                    ch_names=ch_names,
                    verbose=False,
                )  # fmt: skip
            )
            explained[key] = dict(mean=float(ev.mean()), min=float(ev.min()), max=float(ev.max()))

    yield Progress(stage, total - 1, total, "writing")
    out.mkdir(parents=True, exist_ok=True)
    inv_mod.write_operator(inv, files["operator"], overwrite=args.overwrite, verbose=False)
    for mi, method in enumerate(methods):
        save_npy(files[f"stack-{method}"], stack[:, mi])
        inv_mod.save_kernel(kernels[method], files[f"kernel-{method}"], overwrite=args.overwrite)
    summary = dict(
        input=what,
        n_samples=int(stack.shape[0]),
        stack_shape=[int(stack.shape[0]), int(stack.shape[2]), int(stack.shape[3])],
        methods=methods,
        lambda2=args.lambda2,
        nave=int(nave),
        loose=args.loose,
        depth=args.depth,
        hemi=hemi,
        normalisation=args.normalisation,
        headmodel=hm.summary(),
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
    write_json(files["summary"], summary)
    yield Progress(stage, total, total, "done")
    return summary


def handler(args) -> dict:
    import mne

    # MNE logs to stdout, which must hold only the result (--json); its warnings still
    # reach stderr through the warnings module.
    with mne.use_log_level("error"):
        summary = _common.drive(_iter_inverse(args), args)
    lines = [
        f"input: {summary['input']}",
        f"head model: {summary['headmodel']['subject']} {summary['headmodel']['spacing']} "
        f"{summary['headmodel']['modality']} ({summary['headmodel']['n_sources']} sources)",
        f"methods: {' '.join(summary['methods'])}  lambda2={summary['lambda2']:.4g}  "
        f"nave={summary['nave']}  loose={summary['loose']}  depth={summary['depth']}",
        f"stacks: {summary['n_samples']} x {summary['stack_shape'][1]} rows ({summary['hemi']}) "
        f"x {summary['stack_shape'][2]} times, {summary['normalisation']}",
        f"SVD: rank {summary['svd']['rank']} of {summary['svd']['n_channels']} channels, "
        f"condition number {summary['svd']['condition_number']:.4g}",
    ]
    for key, ev in summary["explained_variance"].items():
        lines.append(
            f"explained variance ({key}): mean {100 * ev['mean']:.1f}% "
            f"(min {100 * ev['min']:.1f}%, max {100 * ev['max']:.1f}%)"
        )
    lines.append(f"written to: {Path(summary['files']['summary']).parent}")
    return dict(summary, table="\n".join(lines))
