"""``napari-meg-unet simulate``: simulate sensor data on a head model and save it."""

from __future__ import annotations

from . import _common

HELP = "simulate dipole / patch sensor data on a head model"
DESCRIPTION = """\
Simulate M/EEG sensor data on a head model (the fsaverage5 template by
default, or a saved head model with --headmodel) and write it as a
simulation directory (.npy arrays + simulation.json). The SNR is set exactly
per event in whitened sensor space; see docs/simulation.md.
"""


def add_parser(subparsers) -> None:
    from ..headmodel import HEMIS, MODALITIES, TEMPLATE_SPACINGS
    from ..simulate import DESIGNS, TIMECOURSES

    parser = subparsers.add_parser("simulate", help=HELP, description=DESCRIPTION)
    hm = parser.add_argument_group("head model")
    hm.add_argument(
        "--headmodel", metavar="DIR", help="saved head model directory (overrides the template)"
    )
    hm.add_argument(
        "--spacing", default="ico3", choices=TEMPLATE_SPACINGS, help="template source spacing"
    )
    hm.add_argument("--modality", default="meg", choices=MODALITIES, help="template sensors")
    design = parser.add_argument_group("design")
    design.add_argument("--design", default="sweep", choices=DESIGNS, help="source design")
    design.add_argument("--hemi", default="rh", choices=HEMIS, help="hemisphere(s) of sources")
    design.add_argument(
        "--n-repeats", type=int, default=1, help="times each row is used (sweep / extended)"
    )
    design.add_argument("--n-events", type=int, help="number of events (multi / extended)")
    design.add_argument(
        "--n-dipoles",
        type=int,
        nargs="+",
        default=[2, 5],
        metavar="N",
        help="dipoles per multi event: N, or LO HI (inclusive range)",
    )
    design.add_argument("--min-separation-mm", type=float, help="multi: minimum distance (mm)")
    design.add_argument("--extent-mm", type=float, default=10.0, help="extended: radius (mm)")
    design.add_argument(
        "--off-grid", action="store_true", help="dipoles at dense vertices (dense forward)"
    )
    design.add_argument("--dense-spacing", help="spacing of the dense source space (off-grid)")
    signal = parser.add_argument_group("signal and noise")
    signal.add_argument("--timecourse", default="thesis", choices=TIMECOURSES, help="preset")
    signal.add_argument(
        "--snr",
        type=float,
        nargs="+",
        default=[1.0],
        metavar="SNR",
        help="whitened SNR per event: S, or LO HI (log-uniform per event)",
    )
    signal.add_argument(
        "--noise", default="cov", choices=("cov", "white", "none"), help="noise model"
    )
    signal.add_argument("--nave", type=int, default=1, help="number of averaged trials")
    signal.add_argument("--sfreq", type=float, help="sampling rate (Hz; default: preset's)")
    signal.add_argument("--n-times", type=int, help="samples per event (default 32)")
    signal.add_argument("--seed", type=int, default=0, help="random seed")
    _common.add_common(parser, output=True)
    parser.set_defaults(func=handler)


def _pair(values, name):
    if len(values) == 1:
        return values[0]
    if len(values) == 2:
        return tuple(values)
    raise ValueError(f"--{name} takes one value or two (LO HI), got {len(values)}.")


def handler(args) -> dict:
    from .._io import check_output_path
    from ..headmodel import iter_make_template_headmodel, load_headmodel
    from ..simulate import iter_simulate

    out = check_output_path(args.out, overwrite=args.overwrite, what="simulation")
    if args.headmodel:
        hm = load_headmodel(args.headmodel, verbose=False)
    else:
        hm = _common.drive(
            iter_make_template_headmodel(spacing=args.spacing, modality=args.modality), args
        )
    sim = _common.drive(
        iter_simulate(
            hm,
            design=args.design,
            hemi=args.hemi,
            n_repeats=args.n_repeats,
            n_events=args.n_events,
            n_dipoles=_pair(args.n_dipoles, "n-dipoles"),
            min_separation_mm=args.min_separation_mm,
            extent_mm=args.extent_mm,
            off_grid=args.off_grid,
            dense_spacing=args.dense_spacing,
            timecourse=args.timecourse,
            snr=_pair(args.snr, "snr"),
            noise=None if args.noise == "none" else args.noise,
            nave=args.nave,
            sfreq=args.sfreq,
            n_times=args.n_times,
            seed=args.seed,
            verbose=False,
        ),
        args,
    )
    path = sim.save(out, overwrite=args.overwrite)
    return {
        "path": str(path),
        "n_events": len(sim),
        "n_sources_total": int(sim.meta["n_sources_total"]),
        "data_shape": list(sim.data.shape),
        "sfreq": sim.sfreq,
        "design": args.design,
        "hemi": args.hemi,
        "fingerprint": sim.fingerprint,
        "headmodel_fingerprint": hm.fingerprint,
    }
