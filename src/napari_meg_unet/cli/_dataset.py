"""``napari-meg-unet dataset``: simulate and build disjoint train/val/test example sets."""

from __future__ import annotations

from ..configs import RECORDING_MATCH_OPTIONS
from . import _common

DESCRIPTION = """\
Simulate train, validation and test sets from disjoint seeds on a head model
(the fsaverage5 template by default), invert them and write memory-mapped
example sets (OUT/train, OUT/val, OUT/test, OUT/splits.json) for
'napari-meg-unet train'. --precision float32 simulates and inverts with the
float32 torch core (the training stream's path: a set made with --seed S holds
the first examples of the stream with --data-seed S and batch size 256). No
test example appears twice, and no example is
shared between splits (checked before anything is written to OUT). The memory
and disk the sets need are estimated first; a request that would not fit is
refused unless --force.
"""

#: Simulation options of this command (seed: the dataset's master seed; n_events and
#: n_repeats: set per split from the split sizes); the options a network shares with the
#: data it is applied to (configs.RECORDING_MATCH_OPTIONS) are all among them.
SIMULATION_OPTIONS = (
    "design",
    "hemi",
    "n_dipoles",
    "min_separation_mm",
    "extent_mm",
    "noise",
    *RECORDING_MATCH_OPTIONS,
)
#: Defaults of this command that differ from the configs'.
DEFAULTS = {"timecourse": "realistic"}


def add_parser(subparsers) -> None:
    from .._config import add_cli_options
    from ..configs import DatasetConfig, InverseConfig, SimulationConfig
    from ..headmodel import MODALITIES, TEMPLATE_SPACINGS

    parser = subparsers.add_parser(
        "dataset", help="build train/val/test example sets", description=DESCRIPTION
    )
    hm = parser.add_argument_group("head model")
    hm.add_argument("--headmodel", metavar="DIR", help="saved head model directory")
    hm.add_argument(
        "--spacing", default="ico3", choices=TEMPLATE_SPACINGS, help="template source spacing"
    )
    hm.add_argument("--modality", default="meg", choices=MODALITIES, help="template sensors")
    add_cli_options(parser.add_argument_group("splits"), DatasetConfig)
    add_cli_options(
        parser.add_argument_group(
            "simulation (hemi, nave and precision also apply to the inverse)"
        ),
        SimulationConfig,
        only=(*SIMULATION_OPTIONS, "precision"),
        defaults=DEFAULTS,
    )
    add_cli_options(
        parser.add_argument_group("inverse"), InverseConfig, exclude=("hemi", "nave", "precision")
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="build even when the estimated memory or disk use exceeds what is available",
    )
    _common.add_common(parser, output=True)
    parser.set_defaults(func=handler)


def configs_from_args(args) -> tuple:
    """The dataset, simulation and inverse configs of the command line."""
    from .._config import config_from_args
    from ..configs import DatasetConfig, InverseConfig, SimulationConfig
    from ..dataset import split_configs

    dataset = config_from_args(DatasetConfig, args)
    # make_splits sets n_events per split; the training split's makes the config valid
    n_events = None if args.design == "sweep" else dataset.n_train
    simulation = config_from_args(SimulationConfig, args, n_events=n_events)
    inverse = config_from_args(InverseConfig, args)
    return split_configs(dataset=dataset, simulation=simulation, inverse=inverse)


def handler(args) -> dict:
    from .._io import check_output_path
    from ..dataset import iter_make_splits
    from ..headmodel import describe_rank, iter_make_template_headmodel, load_headmodel

    out = check_output_path(args.out, overwrite=args.overwrite, what="dataset")
    dataset, simulation, inverse = configs_from_args(args)
    if args.headmodel:
        hm = load_headmodel(args.headmodel, verbose=False)
    else:
        hm = _common.drive(
            iter_make_template_headmodel(spacing=args.spacing, modality=args.modality), args
        )
    sets = _common.drive(
        iter_make_splits(
            hm, dataset=dataset, simulation=simulation, inverse=inverse, out=out,
            overwrite=args.overwrite, force=args.force, verbose=False,
        ),
        args,
    )  # fmt: skip
    result = {
        "path": str(out),
        "splits": {name: {"n": len(s), "fingerprint": s.fingerprint} for name, s in sets.items()},
        "headmodel_fingerprint": hm.fingerprint,
        "noise_rank": describe_rank(hm.noise_rank),
    }
    if simulation.off_grid:
        result["dense_sources"] = _dense_description(hm, simulation)
    return result


def _dense_description(hm, simulation) -> str:
    """The off-grid dense sources the simulations used (from the cache, as they did)."""
    from ..headmodel import _is_template, make_dense_sources
    from ..simulate.core import SWEEP_DENSE_SPACING

    spacing = simulation.dense_spacing
    if spacing is None and simulation.design == "sweep" and _is_template(hm):
        spacing = SWEEP_DENSE_SPACING
    return make_dense_sources(hm, spacing=spacing, verbose=False).describe()
