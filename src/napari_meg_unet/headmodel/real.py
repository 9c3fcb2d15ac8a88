"""A head model from real inputs: a recording's sensors, its transform, BEM and sources."""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import mne
import numpy as np
from mne._fiff.constants import FIFF
from mne.transforms import apply_trans, invert_transform

from .._docs import fill_doc
from .._logging import verbose
from ..progress import Progress, plain
from . import _docs  # noqa: F401  (registers the package's docdict entries)
from .covariance import _is_cov_fname, _noise_cov_key, check_noise_cov, prepare_noise_cov
from .forward import _describe_conductor, _headmodel_from_forward, compute_forward
from .io import _store, _versions
from .model import SURFACE_KINDS, check_modality
from .readers import (
    _fix_src_units,
    _read_bem_input,
    _read_info_input,
    _read_or_raise,
    _read_src_input,
    _read_trans_input,
    _use_all_vertices,
)

logger = logging.getLogger(__name__)


# =========================================================================== helpers
def _has_eeg_average_ref_proj(info) -> bool:
    return any(
        p["kind"] == FIFF.FIFFV_PROJ_ITEM_EEG_AVREF or p["desc"].startswith("Average EEG reference")
        for p in info["projs"]
    )


def _check_noise_rank(info, cov) -> dict:
    """The noise rank the inverse will use (MNE's ``rank='info'`` for SSS data), warned about.

    ``info['proc_history']`` is kept: for Maxwell-filtered data MNE derives the
    MEG rank (about 70) from it. When the covariance has a higher MEG rank (it
    was not computed from SSS data) a warning says what to do.
    """
    from .covariance import describe_rank, noise_rank

    rank = noise_rank(info, cov)
    logger.info(describe_rank(rank))
    if rank["message"]:
        logger.warning(rank["message"])
        warnings.warn(rank["message"], RuntimeWarning, stacklevel=3)
    return rank


def _real_surfaces(src, subjects_dir, subject, trans) -> dict:
    """Display surfaces in head coordinates, indexed like the source-space vertices.

    ``trans`` is the head -> MRI transform (None: the source space is in head coordinates).
    """
    import nibabel as nib

    mri_head = invert_transform(trans) if trans is not None else None
    surfaces: dict = {}
    surf_dir = Path(subjects_dir) / subject / "surf" if subjects_dir and subject else None
    for kind in SURFACE_KINDS:
        for h, hemi in enumerate(("lh", "rh")):
            fname = surf_dir / f"{hemi}.{kind}" if surf_dir is not None else None
            if fname is not None and fname.is_file():
                rr, tris = nib.freesurfer.read_geometry(str(fname))
                if len(rr) == src[h]["np"]:
                    rr = apply_trans(mri_head, rr / 1e3) if mri_head is not None else rr / 1e3
                    surfaces.setdefault(kind, {})[hemi] = (rr, tris.astype(np.int64))
                    continue
            if kind == "white":  # the source space's own (possibly decimated) surface
                s = src[h]
                rr = s["rr"]
                if s["coord_frame"] == FIFF.FIFFV_COORD_MRI and mri_head is not None:
                    rr = apply_trans(mri_head, rr)
                surfaces.setdefault(kind, {})[hemi] = (rr.copy(), s["tris"].astype(np.int64))
    return surfaces


# =========================================================================== steps
@dataclass
class _RealInputs:
    """The inputs of :func:`iter_make_headmodel` as MNE objects."""

    info: mne.Info  # every channel of the recording
    source: str  # where the info came from, for messages
    trans: mne.transforms.Transform | None  # head -> MRI
    src: mne.SourceSpaces
    spacing: str  # label: the spacing, "custom" or "all"
    scale: float  # factor applied to the source positions


def _read_real_inputs(info, trans, src, *, subjects_dir, subject, spacing, src_scale,
                      use_all_vertices, verbose) -> _RealInputs:  # fmt: skip
    info_full, info_source = _read_info_input(info, verbose=verbose)
    trans_in = _read_trans_input(trans)
    src_in, spacing_label = _read_src_input(
        src, subjects_dir=subjects_dir, subject=subject, spacing=spacing, verbose=verbose
    )
    src_in, scale = _fix_src_units(src_in, src_scale)
    if use_all_vertices:
        _use_all_vertices(src_in)
        spacing_label = "all"
    if trans_in is None and src_in[0]["coord_frame"] != FIFF.FIFFV_COORD_HEAD:
        raise ValueError(
            "trans (head <-> MRI transform) is required: the source space is in MRI coordinates."
        )
    return _RealInputs(info_full, info_source, trans_in, src_in, spacing_label, scale)


def _check_modality_channels(inputs: _RealInputs, modality: str) -> None:
    meg, eeg = check_modality(modality)
    n_meg = len(mne.pick_types(inputs.info, meg=True, exclude=[]))
    n_eeg = len(mne.pick_types(inputs.info, meg=False, eeg=True, exclude=[]))
    if (meg and not n_meg) or (eeg and not n_eeg):
        raise ValueError(
            f"modality={modality!r} but the info ({inputs.source}) has {n_meg} MEG and "
            f"{n_eeg} EEG channels."
        )


def _noise_cov_bads(noise_cov) -> list[str]:
    """Bad channels recorded in a covariance (object or ``-cov.fif`` file)."""
    check_noise_cov(noise_cov)
    if isinstance(noise_cov, str | os.PathLike) and _is_cov_fname(Path(noise_cov)):
        noise_cov = _read_or_raise(
            Path(noise_cov), "noise covariance", lambda p: mne.read_cov(p, verbose=False)
        )
    return list(noise_cov["bads"]) if isinstance(noise_cov, mne.Covariance) else []


def _headmodel_info(inputs: _RealInputs, noise_cov, modality: str) -> tuple[mne.Info, set]:
    """The recording's channels of ``modality`` that neither it nor the covariance marks bad.

    Returns that info (checked for EEG referencing) and the bad channels left out.
    """
    _check_modality_channels(inputs, modality)
    meg, eeg = check_modality(modality)
    bads = set(inputs.info["bads"])
    bads |= set(_noise_cov_bads(noise_cov)) & set(inputs.info["ch_names"])
    picks = mne.pick_types(inputs.info, meg=meg, eeg=eeg, ref_meg=False, exclude=sorted(bads))
    info_hm = mne.pick_info(inputs.info, picks)
    with info_hm._unlock():
        info_hm["bads"] = []
    if eeg and not _has_eeg_average_ref_proj(info_hm):
        raise ValueError(
            f"The info ({inputs.source}) has EEG channels but no average-reference projector, "
            "which EEG source modelling needs. Add one first, e.g. "
            "raw.set_eeg_reference('average', projection=True) (or mne.set_eeg_reference "
            "with projection=True) and pass that raw's info."
        )
    return info_hm, bads


def _forward_inside(info, src, bem_model, trans, modality, verbose) -> tuple[mne.Forward, int]:
    """The forward solution and how many sources fell outside the conductor (logged)."""
    meg, eeg = check_modality(modality)
    n_in = sum(s["nuse"] for s in src)
    fwd = compute_forward(info, src, bem_model, trans, meg=meg, eeg=eeg, verbose=verbose)
    n_out = sum(s["nuse"] for s in fwd["src"])
    if n_out < n_in:
        logger.warning(
            f"{n_in - n_out} of {n_in} sources lie outside the inner boundary of the "
            "conductor model (inner skull) and were left out."
        )
    return fwd, n_in - n_out


def _describe_input(value) -> str | None:
    if value is None:
        return None
    return str(value) if isinstance(value, str | os.PathLike) else type(value).__name__


def _real_parameters(inputs: _RealInputs, trans, bem, src, *, subjects_dir, subject, spacing,
                     modality, noise_cov, src_scale, use_all_vertices,
                     bem_ico) -> dict:  # fmt: skip
    """The builder's arguments, JSON-friendly, for the provenance."""
    return dict(
        info=inputs.source, trans=_describe_input(trans), bem=_describe_input(bem),
        src=_describe_input(src),
        subjects_dir=str(subjects_dir) if subjects_dir is not None else None,
        subject=subject, spacing=spacing, modality=modality,
        noise_cov=noise_cov if isinstance(noise_cov, str) else _noise_cov_key(noise_cov),
        src_scale=src_scale, use_all_vertices=bool(use_all_vertices), bem_ico=bem_ico,
    )  # fmt: skip


def _real_provenance(params, inputs: _RealInputs, info_hm, bads, rank, n_dropped, bem_source):
    dev_head = info_hm["dev_head_t"]
    return dict(
        builder="make_headmodel",
        parameters=params,
        versions=_versions(),
        dev_head_translation_m=(
            [float(x) for x in dev_head["trans"][:3, 3]] if dev_head is not None else None
        ),
        src_scale_applied=inputs.scale,
        bads_excluded=sorted(bads),
        noise_rank={k: v for k, v in rank.items() if k != "mne"},
        conductor_source=bem_source,
        n_sources_outside_inner_skull=int(n_dropped),
        cache_path=None,
    )


def _conductor(bem, info_hm, modality, *, subjects_dir, subject, bem_ico, cache_dir, verbose):
    """The conductor model and where it came from (file, object, sphere or the subject's BEM)."""
    from .bem import BEM_CHOICES, subject_conductor

    eeg = "eeg" in modality
    if (bem is None and subjects_dir is not None and subject is not None) or (
        isinstance(bem, str) and bem in BEM_CHOICES
    ):
        model, source = subject_conductor(
            "auto" if bem is None else bem, subjects_dir=subjects_dir, subject=subject, eeg=eeg,
            ico=bem_ico, cache_dir=cache_dir, verbose=verbose,
        )  # fmt: skip
        _read_bem_input(model, info=info_hm, eeg=eeg, verbose=verbose)  # the layer check
        return model, source
    model = _read_bem_input(bem, info=info_hm, eeg=eeg, verbose=verbose)
    return model, _describe_input(bem)


# =========================================================================== builder
@verbose
@fill_doc
def iter_make_headmodel(
    *, info, trans=None, bem=None, src=None, subjects_dir=None, subject=None, spacing="oct5",
    noise_cov="adhoc", modality="meg", src_scale="auto", use_all_vertices=False, bem_ico=None,
    cache_dir=None, verbose=None,
):  # fmt: skip
    """Build a head model from real inputs, yielding progress.

    Parameters
    ----------
    info : mne.Info | path-like | mne_bids.BIDSPath
        Sensors: an Info, a raw/epochs/evoked FIF file or a BIDS recording.
        Bad channels (of the info and of the covariance) are left out.
    trans : path-like | mne.transforms.Transform | None
        Head <-> MRI transform; required unless ``src`` is in head coordinates.
    bem : path-like | mne.bem.ConductorModel | "sphere" | "auto" | "1-layer" | "3-layer" | None
        BEM solution file (1-layer: MEG only; 3-layer: MEG and EEG; a BEM
        surfaces file is solved on the fly), a conductor model, or ``"sphere"``
        for a sphere fitted to the head-shape points. With ``subjects_dir`` and
        ``subject``: ``None``/``"auto"`` uses the subject's own
        ``bem/<subject>-*-bem-sol.fif`` (1 layer for MEG, 3 with EEG) when it
        has one, else builds one from its ``bem/*.surf`` surfaces
        (:func:`~napari_meg_unet.headmodel.make_subject_bem`, cached);
        ``"1-layer"``/``"3-layer"`` always build from the surfaces. The
        provenance's ``conductor_source`` says which.
    src : mne.SourceSpaces | path-like | None
        Two-hemisphere surface source space; ``None`` builds one from
        ``subjects_dir``/``subject``/``spacing``.
    subjects_dir, subject : path-like, str | None
        FreeSurfer subject, for building ``src`` and for display surfaces.
    spacing : str
        Source spacing when ``src`` is None (e.g. ``"oct5"``, ``"ico4"``).
    %(noise_cov)s
    %(modality)s
    src_scale : "auto" | float
        Factor applied to the source positions. ``"auto"`` multiplies by 1000
        (with a logged warning) when all positions lie within 5 mm of the
        origin, as in MNE's ``small-src.fif.gz``.
    use_all_vertices : bool
        Use every vertex of the source-space surface (e.g. all 1026/hemisphere
        of ``small-src``) instead of its decimated subset.
    bem_ico : int | None
        Decimation of the surfaces of a BEM built from the subject's surfaces
        (None: ico4 for 1 layer, ico3 for 3 layers).
    cache_dir : path-like | None
        Where BEM solutions built from surfaces are cached; None:
        :func:`~napari_meg_unet.headmodel.cache_root`.
    %(verbose)s

    Yields
    ------
    %(progress_yields)s

    Returns
    -------
    hm : HeadModel
        Sources, surfaces and sensors in head coordinates. The noise rank the
        inverse uses is ``hm.noise_rank`` (MNE's ``rank='info'`` for
        Maxwell-filtered data, whose ``info['proc_history']`` is kept); a
        covariance that disagrees with SSS data is warned about.
    """
    check_modality(modality)
    verbose = "warning" if verbose is None else verbose
    stage, total = "head model", 6
    yield Progress(stage, 0, total, "reading inputs")
    inputs = _read_real_inputs(
        info, trans, src, subjects_dir=subjects_dir, subject=subject, spacing=spacing,
        src_scale=src_scale, use_all_vertices=use_all_vertices, verbose=verbose,
    )  # fmt: skip
    info_hm, bads = _headmodel_info(inputs, noise_cov, modality)
    yield Progress(stage, 1, total, "noise covariance")
    cov = prepare_noise_cov(noise_cov, info_hm, verbose=verbose)
    rank = _check_noise_rank(info_hm, cov)
    yield Progress(stage, 2, total, "conductor model")
    bem_model, bem_source = _conductor(
        bem, info_hm, modality, subjects_dir=subjects_dir, subject=subject, bem_ico=bem_ico,
        cache_dir=cache_dir, verbose=verbose,
    )  # fmt: skip
    yield Progress(stage, 3, total, "forward solution")
    fwd, n_dropped = _forward_inside(info_hm, inputs.src, bem_model, inputs.trans, modality,
                                     verbose)  # fmt: skip
    yield Progress(stage, 4, total, "surfaces")
    subject_name = subject or inputs.src[0].get("subject_his_id") or "unknown"
    params = _real_parameters(
        inputs, trans, bem, src, subjects_dir=subjects_dir, subject=subject, spacing=spacing,
        modality=modality, noise_cov=noise_cov, src_scale=src_scale,
        use_all_vertices=use_all_vertices, bem_ico=bem_ico,
    )  # fmt: skip
    hm = _headmodel_from_forward(
        fwd, info=info_hm, noise_cov=cov,
        surfaces=_real_surfaces(inputs.src, subjects_dir, subject_name, inputs.trans),
        trans=inputs.trans, subject=subject_name, spacing=inputs.spacing, modality=modality,
        conductor=_describe_conductor(bem_model),
        provenance=_real_provenance(params, inputs, info_hm, bads, rank, n_dropped,
                                                   bem_source),
        bem=bem_model,
    )  # fmt: skip
    yield Progress(stage, 5, total, "finalising")
    hm = _store(hm, None, verbose=verbose)
    yield Progress(stage, total, total, "done")
    return hm


make_headmodel = plain(iter_make_headmodel)
