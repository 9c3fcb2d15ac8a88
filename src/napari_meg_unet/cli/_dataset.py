"""``napari-meg-unet dataset``: simulate and build disjoint train/val/test example sets."""

from __future__ import annotations

from . import _common

DESCRIPTION = """\
Simulate train, validation and test sets from disjoint seeds on a head model
(the fsaverage5 template by default), invert them and write memory-mapped
example sets (OUT/train, OUT/val, OUT/test, OUT/splits.json) for
'napari-meg-unet train'. No test example appears twice, and no example is
shared between splits (checked before anything is written to OUT).
"""


def add_parser(subparsers) -> None:
    from ..headmodel import HEMIS, MODALITIES, TEMPLATE_SPACINGS
    from ..inverse import METHODS, NORMALISATIONS
    from ..simulate import DESIGNS, TIMECOURSES

    parser = subparsers.add_parser(
        "dataset", help="build train/val/test example sets", description=DESCRIPTION
    )
    parser.add_argument("--headmodel", metavar="DIR", help="saved head model directory")
    parser.add_argument("--spacing", default="ico3", choices=TEMPLATE_SPACINGS)
    parser.add_argument("--modality", default="meg", choices=MODALITIES)
    parser.add_argument("--design", default="sweep", choices=DESIGNS)
    parser.add_argument("--hemi", default="rh", choices=HEMIS)
    parser.add_argument("--n-train", type=int, default=2000)
    parser.add_argument("--n-val", type=int, default=300)
    parser.add_argument("--n-test", type=int, default=642)
    parser.add_argument("--n-dipoles", type=int, nargs="+", default=[2, 5], metavar="N")
    parser.add_argument("--off-grid", action="store_true", help="dipoles off the inversion grid")
    parser.add_argument("--timecourse", default="realistic", choices=TIMECOURSES)
    parser.add_argument("--snr", type=_common.number("--snr"), default=1.0)
    parser.add_argument("--methods", nargs="+", default=["MNE", "dSPM", "sLORETA"], choices=METHODS)
    parser.add_argument("--lambda2", type=_common.number("--lambda2"), default=1 / 9)
    parser.add_argument("--normalisation", default="column-max", choices=NORMALISATIONS)
    parser.add_argument("--seed", type=int, default=0)
    _common.add_common(parser, output=True)
    parser.set_defaults(func=handler)


def handler(args) -> dict:
    from .._io import check_output_path
    from ..dataset import iter_make_splits
    from ..headmodel import iter_make_template_headmodel, load_headmodel

    out = check_output_path(args.out, overwrite=args.overwrite, what="dataset")
    if args.headmodel:
        hm = load_headmodel(args.headmodel, verbose=False)
    else:
        hm = _common.drive(
            iter_make_template_headmodel(spacing=args.spacing, modality=args.modality), args
        )
    sim_kwargs = dict(off_grid=args.off_grid, timecourse=args.timecourse, snr=args.snr)
    if args.design == "multi":
        n = args.n_dipoles
        if len(n) not in (1, 2):
            raise ValueError(f"--n-dipoles takes N or LO HI, got {len(n)} values.")
        sim_kwargs["n_dipoles"] = n[0] if len(n) == 1 else tuple(n)
    sets = _common.drive(
        iter_make_splits(
            hm,
            design=args.design,
            n_train=args.n_train,
            n_val=args.n_val,
            n_test=args.n_test,
            seed=args.seed,
            out=out,
            methods=args.methods,
            lambda2=args.lambda2,
            hemi=args.hemi,
            normalisation=args.normalisation,
            overwrite=args.overwrite,
            verbose=False,
            **sim_kwargs,
        ),
        args,
    )
    return {
        "path": str(out),
        "splits": {name: {"n": len(s), "fingerprint": s.fingerprint} for name, s in sets.items()},
        "headmodel_fingerprint": hm.fingerprint,
    }
