"""The fsaverage5 template head model: template sensors, cache key and builder."""

from __future__ import annotations

import mne
import numpy as np
from mne.proj import make_eeg_average_ref_proj
from mne.transforms import apply_trans, invert_transform

from .._docs import fill_doc
from .._logging import verbose
from ..progress import Progress, plain
from . import _docs  # noqa: F401  (registers the package's docdict entries)
from .covariance import _noise_cov_key, check_noise_cov, prepare_noise_cov
from .forward import _describe_conductor, _headmodel_from_forward, compute_forward
from .fsaverage import (
    BRAIN_CONDUCTIVITY,
    TEMPLATE_BEM_ICO,
    TEMPLATE_SUBJECT,
    _setup_template_src,
    _template_conductor,
    _template_surfaces,
    _template_trans,
    _write_template_subject,
    check_template_spacing,
)
from .io import (
    _FILES,
    FORMAT_VERSION,
    _cache_key,
    _iter_load_cached,
    _store,
    _versions,
    cache_root,
    load_headmodel,
)
from .model import HeadModel, check_modality

#: Device -> head translation (metres) of the template Neuromag-306 helmet. With the
#: fsaverage head frame of MNE's ``fsaverage-trans.fif`` it leaves every MEG sensor at
#: least 14 mm outside the fsaverage scalp (``fsaverage-head.fif``); the median
#: sensor-scalp distance is about 25 mm, typical of an adult head in a Vectorview.
TEMPLATE_DEV_HEAD_TRANSLATION = (0.0, 0.0, 0.045)
#: Standard montage (fsaverage MRI coordinates) the template EEG electrodes come from.
TEMPLATE_EEG_MONTAGE = "fsaverage_1010"
#: The 60 template EEG electrodes: the 10-10 montage without its inferior ring
#: (F9/F10, FT9/FT10, T9/T10, P9/P10) and without I1/I2, which lie below the scalp
#: mesh; they cover the scalp from Fp1/Fp2 to Iz.
TEMPLATE_EEG_CHANNELS = (
    "Fp1", "Fpz", "Fp2", "AF7", "AFz", "AF8",
    "F7", "F5", "F3", "F1", "Fz", "F2", "F4", "F6", "F8",
    "FT7", "FC5", "FC3", "FC1", "FCz", "FC2", "FC4", "FC6", "FT8",
    "T7", "C5", "C3", "C1", "Cz", "C2", "C4", "C6", "T8",
    "TP7", "CP5", "CP3", "CP1", "CPz", "CP2", "CP4", "CP6", "TP8",
    "P7", "P5", "P3", "P1", "Pz", "P2", "P4", "P6", "P8",
    "PO9", "PO7", "POz", "PO8", "PO10",
    "O1", "Oz", "O2", "Iz",
)  # fmt: skip

_BUILDER = "make_template_headmodel"


def _is_template(hm: HeadModel) -> bool:
    return hm.provenance.get("builder") == _BUILDER


# =========================================================================== sensors
def _template_dev_head_t() -> mne.transforms.Transform:
    mat = np.eye(4)
    mat[:3, 3] = TEMPLATE_DEV_HEAD_TRANSLATION
    return mne.transforms.Transform("meg", "head", mat)


def _template_eeg_montage(trans) -> mne.channels.DigMontage:
    """The template electrodes and fiducials in head coordinates via ``trans``."""
    montage = mne.channels.make_standard_montage(TEMPLATE_EEG_MONTAGE)
    pos = montage.get_positions()  # fsaverage MRI (surface RAS) coordinates, metres
    mri_head = invert_transform(trans)
    ch_pos = {name: apply_trans(mri_head, pos["ch_pos"][name]) for name in TEMPLATE_EEG_CHANNELS}
    fids = {key: apply_trans(mri_head, pos[key]) for key in ("nasion", "lpa", "rpa")}
    return mne.channels.make_dig_montage(ch_pos=ch_pos, coord_frame="head", **fids)


def _template_info(modality: str, trans) -> mne.Info:
    meg, eeg = check_modality(modality)
    infos = []
    if meg:
        infos.append(mne.channels.read_meg_canonical_info("neuromag"))
    if eeg:
        sfreq = infos[0]["sfreq"] if infos else 1000.0
        infos.append(mne.create_info(list(TEMPLATE_EEG_CHANNELS), sfreq, "eeg"))
    raws = [mne.io.RawArray(np.zeros((inf["nchan"], 1)), inf, verbose=False) for inf in infos]
    raw = raws[0]
    if len(raws) > 1:
        raw.add_channels(raws[1:], force_update_info=True)
    if eeg:
        raw.set_montage(_template_eeg_montage(trans), verbose=False)
    info = raw.info.copy()
    with info._unlock():
        if eeg:
            info["projs"].append(make_eeg_average_ref_proj(info, activate=True, verbose=False))
        info["dev_head_t"] = _template_dev_head_t()
        info["description"] = f"napari-meg-unet template ({modality}, {TEMPLATE_SUBJECT})"
    return info


# =========================================================================== cache key
def _template_params(spacing, modality, noise_cov) -> dict:
    return dict(
        builder=_BUILDER,
        format_version=FORMAT_VERSION,
        subject=TEMPLATE_SUBJECT,
        spacing=spacing,
        modality=modality,
        noise_cov=_noise_cov_key(noise_cov),
        dev_head_translation_m=list(TEMPLATE_DEV_HEAD_TRANSLATION),
        eeg_montage=TEMPLATE_EEG_MONTAGE,
        eeg_channels=list(TEMPLATE_EEG_CHANNELS) if "eeg" in modality else [],
        bem_ico=TEMPLATE_BEM_ICO if modality == "meg" else None,
        conductivity=BRAIN_CONDUCTIVITY if modality == "meg" else None,
        mne=mne.__version__,
    )


def template_cache_path(*, spacing="ico3", modality="meg", noise_cov="adhoc", cache_dir=None):
    """Where :func:`make_template_headmodel` caches a model built with these parameters."""
    check_template_spacing(spacing)
    check_modality(modality)
    key = _cache_key(_template_params(spacing, modality, noise_cov))
    tag = modality.replace("+", "")
    return cache_root(cache_dir) / "headmodels" / f"{TEMPLATE_SUBJECT}-{spacing}-{tag}-{key}"


# =========================================================================== builder
def _template_provenance(spacing, modality, noise_cov, path) -> dict:
    _, eeg = check_modality(modality)
    return dict(
        builder=_BUILDER,
        parameters=_template_params(spacing, modality, noise_cov),
        versions=_versions(),
        dev_head_translation_m=list(TEMPLATE_DEV_HEAD_TRANSLATION),
        trans="mne/data/fsaverage/fsaverage-trans.fif (head -> MRI)",
        surfaces="nilearn fsaverage5 GIFTI (white, pial, inflated)",
        inner_skull=(
            f"mne/data/fsaverage/fsaverage-inner_skull-bem.fif (ico{TEMPLATE_BEM_ICO})"
            if not eeg
            else None
        ),
        cache_path=str(path) if path is not None else None,
    )


def _iter_build_template(stage, *, spacing, modality, noise_cov, path, cache_dir, verbose):
    """Build the template head model and store it at ``path`` (None: not cached)."""
    meg, eeg = check_modality(modality)
    total = 7
    yield Progress(stage, 0, total, "writing fsaverage5 subject")
    subjects_dir = cache_root(cache_dir) / "subjects"
    subject_dir = _write_template_subject(subjects_dir)
    yield Progress(stage, 1, total, f"source space {spacing}")
    src = _setup_template_src(spacing, subjects_dir, verbose=verbose)
    trans = _template_trans()
    yield Progress(stage, 2, total, "sensors")
    info = _template_info(modality, trans)
    yield Progress(stage, 3, total, "noise covariance")  # before the forward: fail fast
    cov = prepare_noise_cov(noise_cov, info, verbose=verbose)
    yield Progress(stage, 4, total, "conductor model")
    bem = _template_conductor(modality, subjects_dir, info, verbose=verbose)
    yield Progress(stage, 5, total, "forward solution")
    fwd = compute_forward(info, src, bem, trans, meg=meg, eeg=eeg, verbose=verbose)
    hm = _headmodel_from_forward(
        fwd, info=info, noise_cov=cov, surfaces=_template_surfaces(subject_dir, trans),
        trans=trans, subject=TEMPLATE_SUBJECT, spacing=spacing, modality=modality,
        conductor=_describe_conductor(bem),
        provenance=_template_provenance(spacing, modality, noise_cov, path), bem=bem,
    )  # fmt: skip
    yield Progress(stage, 6, total, "saving")
    hm = _store(hm, path, verbose=verbose)
    yield Progress(stage, total, total, "done")
    return hm


@verbose
@fill_doc
def iter_make_template_headmodel(
    *, spacing="ico3", modality="meg", noise_cov="adhoc", cache=True, cache_dir=None,
    verbose=None,
):  # fmt: skip
    """Build (or load from the cache) the fsaverage5 template head model, yielding progress.

    Everything comes from installed packages, nothing is downloaded:

    - cortex: fsaverage5 (ico5, 10242 vertices/hemisphere) white, sphere, pial
      and inflated surfaces shipped with nilearn, written as a FreeSurfer
      subject ``fsaverage5`` in the cache; sources from
      :func:`mne.setup_source_space` (``add_dist=False``). ico spacings give the
      vertex prefix ``0..n-1`` of each hemisphere (ico3: 642/hemisphere).
    - head <-> MRI: MNE's ``fsaverage-trans.fif`` (the head frame defined by
      the fsaverage fiducials, the frame MNE's standard montages use).
    - MEG: canonical Neuromag-306 sensors with the device -> head translation
      :data:`TEMPLATE_DEV_HEAD_TRANSLATION`; conductor (``modality="meg"``) a
      1-layer BEM on MNE's fsaverage inner skull (ico3, 1280 triangles, 0.3 S/m).
    - EEG: the 60 electrodes :data:`TEMPLATE_EEG_CHANNELS` of the
      ``fsaverage_1010`` montage, an (active) average-reference projector and a
      4-shell sphere model fitted to the electrodes, which is the conductor for
      ``"eeg"`` and ``"meg+eeg"``.
    - ``fwd``: free orientation, surface-oriented; ``fwd_fixed``: fixed
      (surface normals). Sources and surfaces are in head coordinates, metres.

    Parameters
    ----------
    spacing : str
        ``"ico3"`` (default, 2 x 642 sources), ``"ico4"``, ``"oct5"`` or ``"oct6"``.
    %(modality)s
    %(noise_cov)s
    cache : bool
        Load the model from the cache when present and store a new build there.
        With ``cache=False`` the model is always rebuilt and not stored (the
        fsaverage5 FreeSurfer files and the template BEM solution, which do
        not depend on the parameters, are still kept under the cache root).
    %(cache_dir)s
    %(verbose)s

    Yields
    ------
    %(progress_yields)s

    Returns
    -------
    hm : HeadModel
        The head model.
    """
    check_template_spacing(spacing)
    check_modality(modality)
    check_noise_cov(noise_cov)
    stage = "template head model"
    path = (
        template_cache_path(
            spacing=spacing, modality=modality, noise_cov=noise_cov, cache_dir=cache_dir
        )
        if cache
        else None
    )
    hm = yield from _iter_load_cached(
        stage, path, path / _FILES["meta"] if path is not None else None,
        lambda: load_headmodel(path, verbose=verbose), (ValueError, FileNotFoundError),
        "Rebuilding the cached head model",
    )  # fmt: skip
    if hm is not None:
        return hm
    return (
        yield from _iter_build_template(
            stage,
            spacing=spacing,
            modality=modality,
            noise_cov=noise_cov,
            path=path,
            cache_dir=cache_dir,
            verbose="warning" if verbose is None else verbose,
        )  # fmt: skip
    )


make_template_headmodel = plain(iter_make_template_headmodel)
