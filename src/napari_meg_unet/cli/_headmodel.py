"""``napari-meg-unet headmodel``: build (or load from the cache) a head model."""

from __future__ import annotations

import argparse
import contextlib
import sys
import time

from ._common import add_common, drive

HELP = "build the fsaverage5 template head model or one from real inputs"
DESCRIPTION = """\
Build a head model (source space, forward solutions, sensors, noise covariance).

By default (--template) the fsaverage5 template is built offline from installed
packages and cached (NAPARI_MEG_UNET_CACHE or the user cache directory). With
--info (a raw/epochs/evoked FIF file) the model is built from real inputs:
--trans (or --coregister: the subject's head fitted to the digitisation with
MNI-estimated fiducials and ICP), --bem (a BEM solution file or 'sphere'; with
--subjects-dir/--subject by default the subject's own BEM solution, else one
built from its bem/*.surf surfaces and cached) and either --src or
--subjects-dir/--subject; or, for a subject without FreeSurfer anatomy,
--template-anatomy: the recording's sensors on the fsaverage5 template fitted
to its digitised fiducials and head shape (mne.coreg). --out saves the model
to a directory.
"""


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "headmodel", help=HELP, description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--template", action="store_true",
        help="build the fsaverage5 template head model (the default)",
    )  # fmt: skip
    source.add_argument("--info", metavar="FILE", help="raw/epochs/evoked FIF file (real inputs)")
    parser.add_argument(
        "--spacing", default=None,
        help="source spacing: template ico3 (default), ico4, oct5, oct6; "
        "real inputs with --subjects-dir/--subject: e.g. oct5 (default)",
    )  # fmt: skip
    parser.add_argument(
        "--modality", default="meg", choices=("meg", "eeg", "meg+eeg"),
        help="sensor modality (default: meg)",
    )  # fmt: skip
    parser.add_argument(
        "--template-anatomy", action="store_true",
        help="with --info: the template cortex and conductor coregistered to the recording's "
        "digitised fiducials and head shape (standard fsaverage transform without fiducials)",
    )  # fmt: skip
    parser.add_argument(
        "--standard-trans", action="store_true",
        help="with --template-anatomy: do not fit, use MNE's standard fsaverage transform",
    )  # fmt: skip
    parser.add_argument("--trans", metavar="FILE", help="head<->MRI transform (-trans.fif)")
    parser.add_argument(
        "--bem", metavar="FILE",
        help="BEM solution file, or 'sphere'; with --subjects-dir/--subject also 'auto' (the "
        "default: the subject's solution, else built from its surfaces), '1-layer', '3-layer'",
    )  # fmt: skip
    parser.add_argument(
        "--bem-ico", type=int, metavar="N",
        help="ico decimation of a BEM built from the surfaces (default 4 for 1 layer, 3 for 3)",
    )  # fmt: skip
    parser.add_argument(
        "--coregister", action="store_true",
        help="with --subjects-dir/--subject and no --trans: fit the subject's head to the "
        "digitisation (MNI-estimated fiducials, ICP)",
    )  # fmt: skip
    parser.add_argument("--src", metavar="FILE", help="surface source space (-src.fif)")
    parser.add_argument("--subjects-dir", metavar="DIR", help="FreeSurfer subjects directory")
    parser.add_argument("--subject", help="FreeSurfer subject name")
    parser.add_argument(
        "--cov", default="adhoc", metavar="FILE|adhoc",
        help="noise covariance: 'adhoc' (default), a -cov.fif file or an empty-room raw FIF",
    )  # fmt: skip
    parser.add_argument(
        "--all-vertices", action="store_true",
        help="real inputs: use every vertex of the source-space surface",
    )  # fmt: skip
    parser.add_argument(
        "--no-cache", action="store_true", help="template: rebuild, do not use the cache"
    )
    parser.add_argument("--cache-dir", metavar="DIR", help="template cache directory")
    add_common(parser, output=False)
    parser.add_argument("--out", "-o", metavar="DIR", help="save the head model to this directory")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing --out directory"
    )
    parser.set_defaults(func=handler)


def _check_args(args) -> None:
    real_only = {"--trans": args.trans, "--bem": args.bem, "--src": args.src,
                 "--bem-ico": args.bem_ico,
                 "--subjects-dir": args.subjects_dir, "--subject": args.subject}  # fmt: skip
    given = [name for name, value in real_only.items() if value is not None]
    if args.all_vertices:
        given.append("--all-vertices")
    if args.coregister and (args.trans or not (args.subjects_dir and args.subject)):
        raise ValueError("--coregister needs --subjects-dir and --subject, and no --trans.")
    if args.standard_trans and not args.template_anatomy:
        raise ValueError("--standard-trans applies with --template-anatomy only.")
    if args.info is None:
        if args.template_anatomy:
            given.append("--template-anatomy")
        if given:
            raise ValueError(
                f"{', '.join(given)} need(s) --info (real inputs); the template uses its own."
            )
    elif args.template_anatomy:
        if given:
            raise ValueError(
                f"--template-anatomy uses the template's anatomy; drop {', '.join(given)}."
            )
        if args.no_cache:
            raise ValueError("--no-cache applies to the template only.")
    elif args.no_cache or args.cache_dir:
        raise ValueError("--no-cache/--cache-dir apply to the template only.")


def _trans(args):
    """``(trans, fit)``: the given transform, or the subject fitted with ``--coregister``."""
    if not args.coregister:
        return args.trans, None
    from ..coreg import coregister_subject

    fit = coregister_subject(args.info, subject=args.subject, subjects_dir=args.subjects_dir)
    return fit.trans, fit


def handler(args) -> dict:
    from .. import headmodel as hmod

    _check_args(args)
    if args.out is not None:
        from .._io import check_output_path

        check_output_path(args.out, overwrite=args.overwrite, what="head model")
    start = time.perf_counter()
    fit = None
    if args.info is None:
        gen = hmod.iter_make_template_headmodel(
            spacing=args.spacing or "ico3", modality=args.modality, noise_cov=args.cov,
            cache=not args.no_cache, cache_dir=args.cache_dir,
        )  # fmt: skip
    elif args.template_anatomy:
        from ..coreg import iter_make_template_anatomy_headmodel

        gen = iter_make_template_anatomy_headmodel(
            args.info, spacing=args.spacing or "ico3", modality=args.modality,
            noise_cov=args.cov, coregister=False if args.standard_trans else "auto",
            cache_dir=args.cache_dir,
        )  # fmt: skip
    else:
        trans, fit = _trans(args)
        gen = hmod.iter_make_headmodel(
            info=args.info, trans=trans, bem=args.bem, src=args.src,
            subjects_dir=args.subjects_dir, subject=args.subject,
            spacing=args.spacing or "oct5", noise_cov=args.cov, modality=args.modality,
            use_all_vertices=args.all_vertices, bem_ico=args.bem_ico,
        )  # fmt: skip
    # MNE logs to stdout; keep stdout for the result (e.g. --json)
    with contextlib.redirect_stdout(sys.stderr):
        hm = drive(gen, args)
    if args.template_anatomy:  # (head model, fit)
        hm, _ = hm
    elapsed = time.perf_counter() - start
    result = hm.summary()
    result["build_time_s"] = round(elapsed, 3)
    result["cache_path"] = hm.provenance.get("cache_path")
    if args.template_anatomy:
        result["coregistration"] = hm.provenance["coregistration"]
    elif args.info is not None:
        result["conductor_source"] = hm.provenance.get("conductor_source")
        if fit is not None:
            result["coregistration"] = fit.summary()
    result["noise_rank"] = hmod.describe_rank(hm.noise_rank)
    if args.out is not None:
        result["out"] = str(hm.save(args.out, overwrite=args.overwrite))
    return result
