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

#: Options of the "design" group; the others form the "signal and noise" group.
DESIGN_OPTIONS = (
    "design",
    "hemi",
    "n_repeats",
    "n_events",
    "n_dipoles",
    "min_separation_mm",
    "extent_mm",
    "off_grid",
    "dense_spacing",
)


def add_parser(subparsers) -> None:
    from .._config import add_cli_options
    from ..configs import SimulationConfig
    from ..headmodel import MODALITIES, TEMPLATE_SPACINGS

    parser = subparsers.add_parser("simulate", help=HELP, description=DESCRIPTION)
    hm = parser.add_argument_group("head model")
    hm.add_argument(
        "--headmodel", metavar="DIR", help="saved head model directory (overrides the template)"
    )
    hm.add_argument(
        "--spacing", default="ico3", choices=TEMPLATE_SPACINGS, help="template source spacing"
    )
    hm.add_argument("--modality", default="meg", choices=MODALITIES, help="template sensors")
    add_cli_options(parser.add_argument_group("design"), SimulationConfig, only=DESIGN_OPTIONS)
    add_cli_options(
        parser.add_argument_group("signal and noise"), SimulationConfig, exclude=DESIGN_OPTIONS
    )
    _common.add_common(parser, output=True)
    parser.add_argument(
        "--force",
        action="store_true",
        help="simulate and write even when the estimated memory or disk space exceeds what "
        "is available",
    )
    parser.set_defaults(func=handler)


def handler(args) -> dict:
    from .._config import config_from_args
    from .._io import check_writable_output
    from .._resources import check_resources
    from ..configs import SimulationConfig
    from ..headmodel import iter_make_template_headmodel, load_headmodel
    from ..simulate import estimate_simulation, iter_simulate

    # options and the output path are checked before the (slow) head model is built
    config = config_from_args(SimulationConfig, args)
    out = check_writable_output(args.out, overwrite=args.overwrite, what="simulation")
    if args.headmodel:
        hm = load_headmodel(args.headmodel, verbose=False)
    else:
        hm = _common.drive(
            iter_make_template_headmodel(spacing=args.spacing, modality=args.modality), args
        )
    estimate = estimate_simulation(hm, config, saving=True)
    check_resources(estimate, out=out, force=args.force)
    # memory checked just above, with the disk space
    sim = _common.drive(iter_simulate(hm, config=config, force=True, verbose=False), args)
    path = sim.save(out, overwrite=args.overwrite, force=True)  # checked above, with the data
    return {
        "path": str(path),
        "n_events": len(sim),
        "n_sources_total": int(sim.meta["n_sources_total"]),
        "data_shape": list(sim.data.shape),
        "sfreq": sim.sfreq,
        "design": config.design,
        "hemi": config.hemi,
        "fingerprint": sim.fingerprint,
        "headmodel_fingerprint": hm.fingerprint,
        "estimate": estimate.describe(),
    }
