"""The fsaverage5 template fitted to a recording's digitisation (no FreeSurfer anatomy).

A recording without its subject's MRI can still be source-modelled on the
template anatomy. MNE's standard ``fsaverage-trans.fif`` only aligns the head
frame defined by *fsaverage's* fiducials; :func:`coregister_template` instead
fits the template to the *recording's* digitised fiducials and head shape with
:class:`mne.coreg.Coregistration` (rigid: fiducials first, then ICP on the
head-shape points, then again without the points that stay far from the scalp).
:func:`iter_make_template_anatomy_headmodel` builds the head model of the
recording's sensors on the template cortex and conductor with that transform.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import mne
import numpy as np
from mne._fiff.constants import FIFF
from mne.transforms import apply_trans, rotation_angles
from scipy.spatial import cKDTree

from ._docs import fill_doc
from ._logging import verbose
from ._validation import check_choice, check_int, check_number
from .headmodel import (
    TEMPLATE_SUBJECT,
    _read_info_input,
    _template_trans,
    _write_template_subject,
    cache_root,
    check_modality,
    iter_make_headmodel,
    iter_make_template_headmodel,
)
from .progress import Progress

logger = logging.getLogger(__name__)

_CARDINALS = {
    FIFF.FIFFV_POINT_LPA: "lpa",
    FIFF.FIFFV_POINT_NASION: "nasion",
    FIFF.FIFFV_POINT_RPA: "rpa",
}
#: Fewer head-shape points than this and only the fiducials are fitted (ICP needs shape).
MIN_HEAD_SHAPE_POINTS = 10


@dataclass(frozen=True)
class TemplateCoregistration:
    """A head -> MRI transform of the template and how well it fits.

    Attributes
    ----------
    trans : mne.transforms.Transform
        Head -> MRI (fsaverage5 surface RAS) transform.
    n_points : int
        Digitised points (fiducials, HPI coils, EEG electrodes, head shape).
    n_omitted : int
        Points farther than ``omit_distance`` from the scalp after the first
        ICP, left out of the final fit (still counted in the distances).
    icp : bool
        Whether the head shape was fitted (False: fiducials only).
    distance_mm, standard_distance_mm : dict
        Mean, median and maximum distance (mm) of all digitised points to the
        template scalp with this transform and with MNE's standard
        ``fsaverage-trans.fif``.
    fiducial_error_mm : dict
        Distance (mm) between each digitised fiducial and the template's MRI
        fiducial with this transform.
    """

    trans: mne.transforms.Transform
    n_points: int
    n_omitted: int
    icp: bool
    distance_mm: dict
    standard_distance_mm: dict
    fiducial_error_mm: dict

    def summary(self) -> dict:
        """JSON-friendly description (no transform matrix)."""
        return {
            "method": "mne.coreg.Coregistration: fit_fiducials"
            + (", fit_icp, omit distant points, fit_icp" if self.icp else ""),
            "rigid": True,
            "n_points": self.n_points,
            "n_omitted": self.n_omitted,
            "distance_mm": self.distance_mm,
            "standard_trans_distance_mm": self.standard_distance_mm,
            "fiducial_error_mm": self.fiducial_error_mm,
        }

    def describe(self) -> str:
        d, s = self.distance_mm, self.standard_distance_mm
        what = "fiducials and head shape" if self.icp else "fiducials only"
        return (
            f"template coregistered to {self.n_points} digitised points ({what}): "
            f"median distance to the scalp {d['median']:.1f} mm (standard fsaverage "
            f"transform: {s['median']:.1f} mm)"
        )


def _head_points(info: mne.Info) -> list:
    return [d for d in info.get("dig") or [] if d["coord_frame"] == FIFF.FIFFV_COORD_HEAD]


def _cardinals(points) -> dict:
    """``{"lpa"|"nasion"|"rpa": position}`` of the cardinal points among dig ``points``."""
    return {
        _CARDINALS[d["ident"]]: np.asarray(d["r"], float)
        for d in points
        if d["kind"] == FIFF.FIFFV_POINT_CARDINAL and d["ident"] in _CARDINALS
    }


def _fiducials(info: mne.Info) -> dict:
    return _cardinals(_head_points(info))


def has_fiducials(info: mne.Info) -> bool:
    """Whether ``info['dig']`` holds the LPA, nasion and RPA in head coordinates."""
    return len(_fiducials(info)) == len(_CARDINALS)


def _digitisation(info: mne.Info, source: str) -> tuple[dict, np.ndarray]:
    """Digitised cardinal fiducials and all head-frame points (metres) of ``info``."""
    fids = _fiducials(info)
    missing = sorted(set(_CARDINALS.values()) - set(fids))
    if missing:
        raise ValueError(
            f"The recording ({source}) has no digitised {', '.join(missing)} in head "
            "coordinates (info['dig']), which coregistering the template needs. Pass a "
            "head <-> MRI transform instead, or use the standard fsaverage transform "
            "(coregister=False)."
        )
    points = np.array([d["r"] for d in _head_points(info)], float)
    return fids, points


def _distances_mm(points_head, trans, scalp_tree) -> dict:
    dist, _ = scalp_tree.query(apply_trans(trans, points_head))
    dist = dist * 1e3
    return {"mean": float(dist.mean()), "median": float(np.median(dist)),
            "max": float(dist.max())}  # fmt: skip


@verbose
@fill_doc
def coregister_template(
    info, *, subjects_dir=None, omit_distance=0.01, n_iterations=20, verbose=None
) -> TemplateCoregistration:
    """Fit the fsaverage5 template to a recording's digitised fiducials and head shape.

    Parameters
    ----------
    info : mne.Info | path-like | mne_bids.BIDSPath
        The recording (its ``info['dig']``: the three cardinal fiducials are
        required; HPI, EEG and extra head-shape points are used by the ICP).
    subjects_dir : path-like | None
        Where the template subject ``fsaverage5`` is written; default: the
        head-model cache's ``subjects`` directory.
    omit_distance : float
        Points farther than this (metres) from the scalp after the first ICP are
        left out of the final fit.
    n_iterations : int
        ICP iterations per fit.
    %(verbose)s

    Returns
    -------
    coreg : TemplateCoregistration
    """
    check_number(omit_distance, "omit_distance (m)", minimum=0)
    check_int(n_iterations, "n_iterations", minimum=1)
    info, source = _read_info_input(info, verbose=verbose)
    fids, points = _digitisation(info, source)
    subjects_dir = cache_root() / "subjects" if subjects_dir is None else subjects_dir
    subject_dir = _write_template_subject(subjects_dir)
    icp = len(points) - len(fids) >= MIN_HEAD_SHAPE_POINTS
    trans, n_omitted = _fit_template(
        info, subjects_dir, icp=icp, omit_distance=omit_distance, n_iterations=n_iterations,
        verbose="warning" if verbose is None else verbose,
    )  # fmt: skip
    scalp = mne.read_bem_surfaces(
        subject_dir / "bem" / f"{TEMPLATE_SUBJECT}-head.fif", verbose=False
    )[0]  # fmt: skip
    tree = cKDTree(scalp["rr"])
    return TemplateCoregistration(
        trans=trans,
        n_points=len(points),
        n_omitted=int(n_omitted),
        icp=icp,
        distance_mm=_distances_mm(points, trans, tree),
        standard_distance_mm=_distances_mm(points, _template_trans(), tree),
        fiducial_error_mm=_fiducial_errors_mm(subject_dir, fids, trans),
    )


def _fit_template(info, subjects_dir, *, icp, omit_distance, n_iterations, verbose):
    """Head -> MRI transform fitted to the fiducials (and head shape when ``icp``).

    Returns the transform and how many head-shape points the final ICP left out.
    """
    n_omitted = 0
    with mne.utils.use_log_level(verbose):
        coreg = mne.coreg.Coregistration(
            info, TEMPLATE_SUBJECT, subjects_dir, fiducials="auto", on_defects="ignore"
        )
        coreg.fit_fiducials(verbose=verbose)
        if icp:
            coreg.fit_icp(n_iterations=n_iterations, nasion_weight=2.0, verbose=verbose)
            before = len(coreg.compute_dig_mri_distances())
            coreg.omit_head_shape_points(distance=omit_distance)
            n_omitted = before - len(coreg.compute_dig_mri_distances())
            coreg.fit_icp(n_iterations=n_iterations, nasion_weight=2.0, verbose=verbose)
    return mne.transforms.Transform("head", "mri", coreg.trans["trans"].copy()), n_omitted


def _fiducial_errors_mm(subject_dir, fids: dict, trans) -> dict:
    """Distance (mm) of each digitised fiducial, moved by ``trans``, to the template's."""
    mri_fids = _cardinals(mne.io.read_fiducials(
        subject_dir / "bem" / f"{TEMPLATE_SUBJECT}-fiducials.fif", verbose=False
    )[0])  # fmt: skip
    return {
        name: float(np.linalg.norm(apply_trans(trans, fids[name]) - mri_fids[name]) * 1e3)
        for name in ("lpa", "nasion", "rpa")
    }


@verbose
@fill_doc
def iter_make_template_anatomy_headmodel(
    info, *, spacing="ico3", modality="meg", noise_cov="adhoc", coregister="auto",
    cache_dir=None, verbose=None,
):  # fmt: skip
    """A recording's sensors on the fsaverage5 template anatomy, yielding progress.

    For a recording whose subject has no FreeSurfer anatomy: the template
    cortex (source space ``spacing``) and conductor (the template inner-skull
    BEM for MEG, a sphere fitted to the head shape when EEG is included), placed
    by :func:`coregister_template` (or by MNE's standard fsaverage transform
    with ``coregister=False``, or ``"auto"`` when the recording has no digitised
    fiducials).

    Parameters
    ----------
    info : mne.Info | path-like | mne_bids.BIDSPath
        The recording.
    spacing : str
        Template source spacing (see
        :func:`~napari_meg_unet.headmodel.make_template_headmodel`).
    %(modality)s
    %(noise_cov)s
    coregister : bool | "auto"
        Fit the template to the digitisation, or use the standard transform;
        ``"auto"`` (default) fits when the recording has digitised fiducials.
    %(cache_dir)s
    %(verbose)s

    Yields
    ------
    %(progress_yields)s

    Returns
    -------
    hm : HeadModel
        ``hm.provenance["coregistration"]`` records the fit.
    coreg : TemplateCoregistration | None
        None when the standard transform was used.
    """
    _, eeg = check_modality(modality)
    check_choice(coregister, "coregister", (True, False, "auto"))
    info_full, source = _read_info_input(info, verbose=verbose)
    if coregister == "auto":
        coregister = has_fiducials(info_full)
        if not coregister:
            logger.warning(
                f"The recording ({source}) has no digitised fiducials: the template is placed "
                "with the standard fsaverage transform, not fitted to the head."
            )
    template = yield from iter_make_template_headmodel(
        spacing=spacing, cache_dir=cache_dir, verbose=verbose
    )
    subjects_dir = cache_root(cache_dir) / "subjects"
    if coregister:
        yield Progress("coregistration", 0, 1, "fiducials and head shape")
        coreg = coregister_template(info_full, subjects_dir=subjects_dir, verbose=verbose)
        trans = coreg.trans
        yield Progress("coregistration", 1, 1, coreg.describe())
    else:
        coreg, trans = None, _template_trans()
    hm = yield from iter_make_headmodel(
        info=info_full if type(info).__name__ == "BIDSPath" else info, trans=trans,
        bem="sphere" if eeg else template.bem,
        subjects_dir=subjects_dir, subject=template.subject, spacing=spacing,
        modality=modality, noise_cov=noise_cov, verbose=verbose,
    )  # fmt: skip
    hm.provenance["coregistration"] = (
        coreg.summary() if coreg is not None
        else {"method": "standard fsaverage-trans.fif (no fit)"}
    )  # fmt: skip
    return hm, coreg


# =========================================================================== any subject
#: Pitch offsets (degrees) of the ICP starts of :func:`coregister_subject`.
PITCH_STARTS = tuple(float(x) for x in np.arange(-25.0, 25.1, 2.5))
#: ICP weights of :func:`coregister_subject`: the ear fiducials only start the fit.
_ICP_WEIGHTS = dict(lpa_weight=0.0, nasion_weight=1.0, rpa_weight=0.0)


@dataclass(frozen=True)
class SubjectCoregistration:
    """A head -> MRI transform of a FreeSurfer subject fitted to a recording's digitisation.

    Attributes
    ----------
    subject : str
        The FreeSurfer subject.
    trans : mne.transforms.Transform
        Head -> MRI (surface RAS) transform.
    fiducials : str
        The MRI fiducials the fit started from (``"estimated"``: from the MNI
        transform, :func:`mne.coreg.get_mni_fiducials`; or the subject's file).
    n_points, n_omitted : int
        Digitised points, and those left out of the final ICP (farther than
        ``omit_distance`` from the scalp).
    icp : bool
        Whether the head shape was fitted (False: fiducials only).
    distance_mm : dict
        Mean, median and maximum distance (mm) of the digitised points to the
        subject's scalp (nearest vertex of its scalp surface).
    fiducial_error_mm : dict
        Distance (mm) between each digitised fiducial, moved by ``trans``, and
        the MRI fiducial the fit started from.
    starts : list of (float, float)
        ``(pitch offset in degrees, mean distance in mm)`` of every ICP start;
        the best one was refined. A flat profile means the digitisation does
        not fix the head's pitch well.
    """

    subject: str
    trans: mne.transforms.Transform
    fiducials: str
    n_points: int
    n_omitted: int
    icp: bool
    distance_mm: dict
    fiducial_error_mm: dict
    starts: list

    def summary(self) -> dict:
        """JSON-friendly description (no transform matrix)."""
        return {
            "method": "mne.coreg.Coregistration: fit_fiducials"
            + (", fit_icp from pitch offsets (best mean distance), omit distant points, "
               "fit_icp" if self.icp else ""),  # fmt: skip
            "subject": self.subject,
            "fiducials": self.fiducials,
            "rigid": True,
            "n_points": self.n_points,
            "n_omitted": self.n_omitted,
            "distance_mm": self.distance_mm,
            "fiducial_error_mm": self.fiducial_error_mm,
            "pitch_starts_mean_distance_mm": [[p, round(d, 3)] for p, d in self.starts],
        }

    def describe(self) -> str:
        d = self.distance_mm
        what = "fiducials and head shape" if self.icp else "fiducials only"
        return (
            f"subject {self.subject!r} coregistered to {self.n_points} digitised points "
            f"({what}, {self.fiducials} MRI fiducials): median distance to the scalp "
            f"{d['median']:.1f} mm"
        )


def _mri_fiducials(subjects_dir, subject, fiducials) -> tuple[str, list]:
    """The MRI fiducials to start from: MNI-estimated, or the subject's own file."""
    check_choice(fiducials, "fiducials", ("estimated", "auto"))
    fname = Path(subjects_dir) / subject / "bem" / f"{subject}-fiducials.fif"
    if fiducials == "auto" and fname.is_file():
        return str(fname), mne.io.read_fiducials(fname, verbose=False)[0]
    xfm = Path(subjects_dir) / subject / "mri" / "transforms" / "talairach.xfm"
    if not xfm.is_file():
        raise FileNotFoundError(
            f"Estimating the MRI fiducials of subject {subject!r} needs its MNI transform "
            f"{str(xfm)!r} (FreeSurfer's talairach.xfm), which is missing. Pass a head <-> MRI "
            "transform (trans) instead, or save the subject's fiducials as "
            f"{str(fname)!r} and use fiducials='auto'."
        )
    return "estimated", mne.coreg.get_mni_fiducials(subject, subjects_dir, verbose=False)


def _icp_from_pitches(coreg, n_iterations, verbose) -> list:
    """ICP from several pitch offsets of the fiducial fit; keeps the best; returns the profile.

    The ear landmarks are digitised inconsistently (tragus, ear canal, preauricular
    point: centimetres apart), which mostly tilts a fiducial fit about the left-right
    axis; ICP then converges near its start, so several starts are tried.
    """
    rot0, tra0 = _mri_head_params(coreg)
    starts, best = [], None
    for pitch in PITCH_STARTS:
        coreg.set_rotation(rot0 + np.array([np.radians(pitch), 0.0, 0.0]))
        coreg.set_translation(tra0)
        coreg.fit_icp(n_iterations=n_iterations, **_ICP_WEIGHTS, verbose=verbose)
        mean = float(np.mean(coreg.compute_dig_mri_distances()) * 1e3)
        starts.append((pitch, mean))
        if best is None or mean < best[0]:
            best = (mean, *_mri_head_params(coreg))
    coreg.set_rotation(best[1])
    coreg.set_translation(best[2])
    return starts


def _mri_head_params(coreg) -> tuple[np.ndarray, np.ndarray]:
    """Rotation angles and translation of ``coreg``'s MRI -> head transform (its parameters)."""
    mri_head = np.linalg.inv(coreg.trans["trans"])
    return np.array(rotation_angles(mri_head)), mri_head[:3, 3].copy()


@verbose
@fill_doc
def coregister_subject(
    info, *, subject, subjects_dir, fiducials="estimated", omit_distance=0.005,
    n_iterations=20, verbose=None,
) -> SubjectCoregistration:  # fmt: skip
    """Fit a FreeSurfer subject's head to a recording's digitised fiducials and head shape.

    Rigid, with :class:`mne.coreg.Coregistration`: the digitised fiducials are
    aligned to the subject's MRI fiducials (estimated from its MNI transform
    with :func:`mne.coreg.get_mni_fiducials` by default), then the head shape
    (HPI, EEG and extra points) is fitted to the scalp by ICP from several
    pitch offsets (the best mean distance is kept: ear landmarks are digitised
    inconsistently), points farther than ``omit_distance`` are left out and
    the ICP is run again.

    Parameters
    ----------
    info : mne.Info | path-like | mne_bids.BIDSPath
        The recording (its ``info['dig']``).
    subject : str
        FreeSurfer subject; needs a scalp surface (``bem/<subject>-head.fif``,
        ``-head-dense.fif`` or ``outer_skin.surf``) and, for estimated
        fiducials, ``mri/transforms/talairach.xfm``.
    subjects_dir : path-like
        FreeSurfer subjects directory.
    fiducials : "estimated" | "auto"
        MRI fiducials from the MNI transform, or (``"auto"``) the subject's
        ``bem/<subject>-fiducials.fif`` when it exists (else estimated).
    omit_distance : float
        Points farther than this (metres) from the scalp after the first ICP
        are left out of the final fit.
    n_iterations : int
        ICP iterations per fit.
    %(verbose)s

    Returns
    -------
    coreg : SubjectCoregistration
    """
    check_number(omit_distance, "omit_distance (m)", minimum=0)
    check_int(n_iterations, "n_iterations", minimum=1)
    info, source = _read_info_input(info, verbose=verbose)
    fids, points = _digitisation(info, source)
    fid_source, mri_fids = _mri_fiducials(subjects_dir, subject, fiducials)
    icp = len(points) - len(fids) >= MIN_HEAD_SHAPE_POINTS
    verbose = "warning" if verbose is None else verbose
    with mne.utils.use_log_level(verbose):
        coreg = mne.coreg.Coregistration(info, subject, subjects_dir, fiducials=mri_fids,
                                         on_defects="ignore")  # fmt: skip
        coreg.fit_fiducials(verbose=verbose)
        starts, n_omitted = [], 0
        if icp:
            starts = _icp_from_pitches(coreg, n_iterations, verbose)
            before = len(coreg.compute_dig_mri_distances())
            coreg.omit_head_shape_points(distance=omit_distance)
            n_omitted = before - len(coreg.compute_dig_mri_distances())
            coreg.fit_icp(n_iterations=n_iterations, **_ICP_WEIGHTS, verbose=verbose)
    trans = mne.transforms.Transform("head", "mri", coreg.trans["trans"].copy())
    scalp = mne.get_head_surf(subject, source=("head-dense", "head", "bem"),
                              subjects_dir=subjects_dir, verbose=False)  # fmt: skip
    tree = cKDTree(scalp["rr"])
    fid_mri = _cardinals(mri_fids)
    return SubjectCoregistration(
        subject=subject, trans=trans, fiducials=fid_source, n_points=len(points),
        n_omitted=int(n_omitted), icp=icp, distance_mm=_distances_mm(points, trans, tree),
        fiducial_error_mm={
            name: float(np.linalg.norm(apply_trans(trans, fids[name]) - fid_mri[name]) * 1e3)
            for name in ("lpa", "nasion", "rpa")
        },
        starts=starts,
    )  # fmt: skip
