"""The fsaverage5 template anatomy, from installed packages only.

The cortex comes from the GIFTI files shipped with nilearn, the inner skull,
scalp, fiducials and head <-> MRI transform from MNE's own ``fsaverage``
data; :func:`_write_template_subject` lays them out as a FreeSurfer subject
so that MNE's source-space, BEM and coregistration functions can use them.
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
from pathlib import Path

import mne
import numpy as np
from mne.transforms import apply_trans, invert_transform

from .._io import atomic_path
from .._validation import check_choice
from .model import SURFACE_KINDS, check_modality

logger = logging.getLogger(__name__)

TEMPLATE_SUBJECT = "fsaverage5"
#: Spacings accepted by :func:`make_template_headmodel` (fsaverage5 is an ico5 mesh).
TEMPLATE_SPACINGS = ("ico3", "ico4", "oct5", "oct6")
#: ico downsampling of MNE's fsaverage inner skull used as the template 1-layer BEM
#: (1280 triangles, as the sample subject's ``sample-1280-bem-sol.fif``). Against ico4
#: (5120 triangles) the fixed gain differs by 1.3% (power-weighted mean relative error)
#: while the build is ~10x faster (the ico4 solution plus forward take 15-40 s on 2 cores);
#: simulations and inverses on the template share the same conductor, so this is not
#: a modelling error between them.
TEMPLATE_BEM_ICO = 3
#: Brain conductivity (S/m) of the 1-layer BEM.
BRAIN_CONDUCTIVITY = 0.3


def check_template_spacing(spacing: str) -> str:
    """Validate a template source-space spacing."""
    return check_choice(spacing, "spacing of the fsaverage5 template", TEMPLATE_SPACINGS)


def _mne_fsaverage_dir() -> Path:
    return Path(mne.__file__).parent / "data" / "fsaverage"


def _read_gifti(fname) -> tuple[np.ndarray, np.ndarray]:
    import nibabel as nib

    gii = nib.load(fname)
    rr = np.asarray(gii.darrays[0].data, np.float64)
    tris = np.asarray(gii.darrays[1].data, np.int32)
    return rr, tris


def _fsaverage5_gifti(key: str, side: str) -> Path:
    """Path of a fsaverage5 GIFTI file shipped inside nilearn (e.g. ``white``, ``left``).

    The files are located without importing :mod:`nilearn.datasets` (which imports
    scikit-learn and takes seconds); :func:`nilearn.datasets.fetch_surf_fsaverage`
    is the fallback should nilearn move them.
    """
    spec = importlib.util.find_spec("nilearn")
    if spec is not None and spec.origin is not None:
        fname = (
            Path(spec.origin).parent / "datasets" / "data" / "fsaverage5"
            / f"{key}_{side}.gii.gz"
        )  # fmt: skip
        if fname.is_file():
            return fname
    from nilearn.datasets import fetch_surf_fsaverage

    return Path(fetch_surf_fsaverage("fsaverage5")[f"{key}_{side}"])


def _write_template_subject(subjects_dir: Path) -> Path:
    """Write fsaverage5 as a FreeSurfer subject (surf/ and bem/) under ``subjects_dir``.

    The surfaces come from the GIFTI files shipped in nilearn (mm, surface RAS);
    the inner skull, scalp and MRI fiducials are MNE's shipped fsaverage ones.
    Existing files are kept.
    """
    import nibabel as nib

    subject_dir = Path(subjects_dir) / TEMPLATE_SUBJECT
    for hemi, side in (("lh", "left"), ("rh", "right")):
        for kind, key in (("white", "white"), ("sphere", "sphere"), ("pial", "pial"),
                          ("inflated", "infl")):  # fmt: skip
            fname = subject_dir / "surf" / f"{hemi}.{kind}"
            if fname.is_file():
                continue
            rr, tris = _read_gifti(_fsaverage5_gifti(key, side))
            with atomic_path(fname, suffix="") as tmp:
                nib.freesurfer.write_geometry(str(tmp), rr, tris)
    # scalp and MRI fiducials for coregistration: fsaverage5 shares fsaverage's surface RAS
    for name in ("head", "fiducials"):
        fname = subject_dir / "bem" / f"{TEMPLATE_SUBJECT}-{name}.fif"
        if not fname.is_file():
            with atomic_path(fname, suffix=".fif") as tmp:
                shutil.copyfile(_mne_fsaverage_dir() / f"fsaverage-{name}.fif", tmp)
    inner_skull = subject_dir / "bem" / "inner_skull.surf"
    if not inner_skull.is_file():
        surf = mne.read_bem_surfaces(
            _mne_fsaverage_dir() / "fsaverage-inner_skull-bem.fif", verbose=False
        )[0]
        with atomic_path(inner_skull, suffix="") as tmp:
            nib.freesurfer.write_geometry(str(tmp), surf["rr"] * 1e3, surf["tris"])
    return subject_dir


def _template_trans() -> mne.transforms.Transform:
    """MNE's fsaverage head -> MRI transform (head frame from the fsaverage fiducials)."""
    return mne.read_trans(_mne_fsaverage_dir() / "fsaverage-trans.fif", verbose=False)


def _template_surfaces(subject_dir: Path, trans) -> dict:
    """White/pial/inflated surfaces of fsaverage5 in head coordinates (metres)."""
    import nibabel as nib

    mri_head = invert_transform(trans)
    surfaces: dict = {}
    for kind in SURFACE_KINDS:
        surfaces[kind] = {}
        for hemi in ("lh", "rh"):
            rr, tris = nib.freesurfer.read_geometry(str(subject_dir / "surf" / f"{hemi}.{kind}"))
            surfaces[kind][hemi] = (apply_trans(mri_head, rr / 1e3), tris.astype(np.int64))
    return surfaces


def _setup_template_src(spacing: str, subjects_dir: Path, *, verbose=None) -> mne.SourceSpaces:
    src = mne.setup_source_space(
        TEMPLATE_SUBJECT, spacing=spacing, subjects_dir=subjects_dir, add_dist=False,
        verbose=verbose,
    )  # fmt: skip
    if spacing.startswith("ico"):
        # fsaverage5 is an ico5 subdivision, so coarser ico vertices are a prefix.
        for s in src:
            if not np.array_equal(s["vertno"], np.arange(s["nuse"])):
                raise RuntimeError(
                    f"The fsaverage5 {spacing} source space is not the vertex prefix "
                    f"0..{s['nuse'] - 1}; the surface files under {str(subjects_dir)!r} are "
                    "not the ico5 fsaverage5 mesh."
                )
    return src


def _template_conductor(modality, subjects_dir, info, *, verbose=None):
    """A sphere fitted to the electrodes with EEG, else the cached 1-layer template BEM."""
    meg, eeg = check_modality(modality)
    if eeg:
        return mne.make_sphere_model(r0="auto", head_radius="auto", info=info, verbose=verbose)
    # The BEM solution does not depend on the spacing: keep it next to the subject.
    fname = (
        Path(subjects_dir) / TEMPLATE_SUBJECT / "bem"
        / f"{TEMPLATE_SUBJECT}-inner_skull-ico{TEMPLATE_BEM_ICO}-bem-sol.fif"
    )  # fmt: skip
    if fname.is_file():
        try:
            return mne.read_bem_solution(fname, verbose=verbose)
        except Exception as err:  # a corrupt cache file: rebuild it
            logger.warning(f"Rebuilding the cached BEM solution {str(fname)!r}: {err}")
    surfs = mne.make_bem_model(
        TEMPLATE_SUBJECT, ico=TEMPLATE_BEM_ICO, conductivity=(BRAIN_CONDUCTIVITY,),
        subjects_dir=subjects_dir, verbose=verbose,
    )  # fmt: skip
    bem = mne.make_bem_solution(surfs, verbose=verbose)
    with atomic_path(fname, suffix="-bem-sol.fif") as tmp:
        mne.write_bem_solution(tmp, bem, overwrite=True, verbose=False)
    return bem
