"""The head model of a recording: a saved one, its subject's anatomy, or the fitted template."""

from __future__ import annotations

import logging
from pathlib import Path

from ..coreg import coregister_subject, has_fiducials, iter_make_template_anatomy_headmodel
from ..headmodel import iter_make_headmodel, load_headmodel
from ..progress import Progress
from .reading import Recording

logger = logging.getLogger(__name__)

#: Source spacing of a subject with full FreeSurfer surfaces, and of the template.
SUBJECT_SPACING = "oct5"
TEMPLATE_SPACING = "ico3"


def _check_reused(hm, rec: Recording, source) -> None:
    """A saved head model must hold only good channels of the recording."""
    missing = [ch for ch in hm.ch_names if ch not in rec.info["ch_names"]]
    bad = [ch for ch in hm.ch_names if ch in rec.info["bads"]]
    if missing or bad:
        what = f"lacks {missing[:3]}" if missing else f"marks {bad[:3]} bad"
        raise ValueError(
            f"The head model {source!r} does not fit the recording {rec.source!r}: the "
            f"recording {what}. Build the head model from this recording."
        )


def _subject_src(subjects_dir, subject, src, spacing) -> tuple[object, str, str]:
    """The source space: given, set up from the surfaces, or the subject's only ``-src`` file."""
    if src is not None:
        return src, spacing or SUBJECT_SPACING, f"source space {src}"
    subject_dir = Path(subjects_dir) / subject
    surf = subject_dir / "surf"
    if all((surf / f"{h}.{k}").is_file() for h in ("lh", "rh") for k in ("white", "sphere")):
        spacing = spacing or SUBJECT_SPACING
        return None, spacing, f"{spacing} source space of the subject's white surfaces"
    found = sorted((subject_dir / "bem").glob("*-src.fif*"))
    if len(found) == 1:
        return found[0], spacing or SUBJECT_SPACING, f"the subject's source space {found[0]}"
    raise FileNotFoundError(
        f"Subject {subject!r} has no surf/?h.white and ?h.sphere to set up a source space and "
        f"{'several' if found else 'no'} bem/*-src.fif file(s); pass src."
    )


def _subject_trans(rec: Recording, subjects_dir, subject, trans):
    """The head -> MRI transform: given, else fitted to the digitisation."""
    if trans is not None:
        return trans, f"head <-> MRI transform {trans}", None
    if not has_fiducials(rec.info):
        raise ValueError(
            f"The recording {rec.source!r} has no digitised fiducials to coregister subject "
            f"{subject!r} with; pass trans (a -trans.fif file)."
        )
    fit = coregister_subject(rec.info, subject=subject, subjects_dir=subjects_dir)
    return fit.trans, fit.describe(), fit.summary()


def _bids_anatomy(rec: Recording):
    """The FreeSurfer anatomy a BIDS dataset holds for the recording's subject, if complete."""
    if rec.bids_path is None:
        return None
    from ..bids import subject_anatomy

    anatomy, reason = subject_anatomy(rec.bids_path)
    logger.info(f"BIDS anatomy: {reason}")
    return anatomy


def iter_recording_headmodel(rec: Recording, *, noise_cov, headmodel=None, subjects_dir=None,
                             subject=None, trans=None, src=None, bem=None, spacing=None,
                             cache_dir=None, verbose=None):  # fmt: skip
    """The recording's head model (generator of Progress; returns ``(hm, description dict)``).

    In order: ``headmodel`` (a saved one, reused if it fits the recording's
    channels); the FreeSurfer ``subject`` (given, or found in a BIDS dataset's
    ``derivatives/freesurfer``) with ``trans`` or a coregistration to the
    digitisation, its BEM (``bem``, else its own solution or one built from its
    surfaces) and its source space; else the fsaverage5 template coregistered
    to the digitisation (:func:`~napari_meg_unet.coreg.iter_make_template_anatomy_headmodel`).
    """
    if headmodel is not None:
        hm = load_headmodel(headmodel, verbose=verbose)
        _check_reused(hm, rec, str(headmodel))
        yield Progress("head model", 1, 1, f"reused {headmodel}")
        return hm, {"kind": "reused", "path": str(headmodel)}
    bids = _bids_anatomy(rec) if subject is None else None
    if bids is not None:
        subjects_dir, subject, trans = bids.subjects_dir, bids.subject, bids.trans
        bem = bem if bem is not None else (bids.bem if bids.bem != "sphere" else None)
    if subject is not None:
        if subjects_dir is None:
            raise ValueError(f"subject={subject!r} needs subjects_dir.")
        trans, trans_text, coreg = _subject_trans(rec, subjects_dir, subject, trans)
        src, spacing, src_text = _subject_src(subjects_dir, subject, src, spacing)
        hm = yield from iter_make_headmodel(
            info=rec.info, trans=trans, bem=bem, src=src, subjects_dir=subjects_dir,
            subject=subject, spacing=spacing, noise_cov=noise_cov, cache_dir=cache_dir,
            verbose=verbose,
        )  # fmt: skip
        desc = {"kind": "subject", "subject": subject, "subjects_dir": str(subjects_dir),
                "trans": trans_text, "sources": src_text,
                "conductor": hm.provenance.get("conductor_source")}  # fmt: skip
        if coreg is not None:
            desc["coregistration"] = coreg
        return hm, desc
    hm, fit = yield from iter_make_template_anatomy_headmodel(
        rec.info, spacing=spacing or TEMPLATE_SPACING, noise_cov=noise_cov, cache_dir=cache_dir,
        verbose=verbose,
    )  # fmt: skip
    return hm, {"kind": "template", "subject": hm.subject,
                "trans": fit.describe() if fit is not None else "standard fsaverage transform",
                "coregistration": hm.provenance.get("coregistration")}  # fmt: skip
