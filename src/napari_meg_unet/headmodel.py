"""Head models: source space, forward solutions, sensor info and noise covariance.

A :class:`HeadModel` bundles everything the simulation, inverse and learning
code needs about one subject/sensor configuration.

Builders
--------
- :func:`make_template_headmodel`: the fsaverage5 template, offline from
  installed packages, cached on disk (:func:`cache_root`).
- :func:`make_headmodel`: from real inputs (Info/FIF/BIDS, trans, BEM, source
  space, noise covariance).
- :func:`make_dense_sources`: off-grid dense sources sharing a head model's
  sensors and conductor, for simulations that avoid the "inverse crime".
- :meth:`HeadModel.save` / :func:`load_headmodel`: a directory of FIF/npz/JSON.

Vertex order of image rows
--------------------------
Sources are ordered as in :class:`mne.SourceEstimate`: left-hemisphere used
vertices in increasing vertex number, then right-hemisphere ones.
``HeadModel.rows(hemi)`` gives the indices into that order that form the rows
of a vertex x time image for ``hemi`` (``"lh"``, ``"rh"`` or ``"both"``); the
rows keep the same increasing-vertex order.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import mne
import numpy as np
from mne._fiff.constants import FIFF
from mne.proj import make_eeg_average_ref_proj
from mne.transforms import apply_trans, invert_transform
from scipy import sparse
from scipy.spatial import cKDTree

from ._io import atomic_dir, atomic_path, read_json, to_json, write_json
from .fingerprint import array_fingerprint
from .progress import Progress, run

HEMIS = ("lh", "rh", "both")

logger = logging.getLogger(__name__)


def check_hemi(hemi: str) -> str:
    """Validate a hemisphere selection."""
    if hemi not in HEMIS:
        raise ValueError(f"hemi must be one of {HEMIS}, got {hemi!r}.")
    return hemi


@dataclass(eq=False)
class HeadModel:
    """Everything needed to simulate and invert M/EEG data for one head.

    Attributes
    ----------
    info : mne.Info
        Measurement info restricted to the channels of the forward solution,
        with projectors (an average-reference projector when EEG is present).
    src : mne.SourceSpaces
        Two-hemisphere surface source space (lh, rh); ``vertno`` and
        ``use_tris`` describe the used vertices and their triangulation.
    fwd : mne.Forward
        Free-orientation, surface-oriented forward solution (``surf_ori=True``).
    fwd_fixed : mne.Forward
        Fixed (surface-normal) forward solution with the same sources.
    noise_cov : mne.Covariance
        Noise covariance matching ``info`` channels.
    surfaces : dict
        Display surfaces ``{kind: {hemi: (rr, tris)}}`` with ``kind`` among
        ``"white"``, ``"pial"``, ``"inflated"``; ``rr`` in metres in the same
        (head) frame as the sources, indexed by full-surface vertex number.
    trans : mne.transforms.Transform | None
        Head <-> MRI transform.
    subject : str
        Subject name (``"fsaverage5"`` for the template).
    spacing : str
        Source-space spacing (``"ico3"``, ``"oct5"``, ...).
    modality : str
        ``"meg"``, ``"eeg"`` or ``"meg+eeg"``.
    conductor : str
        Description of the conductor model (BEM layers or sphere).
    provenance : dict
        How this model was made (builder, parameters, versions, cache path).
    bem : mne.bem.ConductorModel | None
        The conductor model the forward solutions were computed with (BEM
        solution or sphere model); needed to compute further forwards with
        the same conductor, e.g. :func:`make_dense_sources`.
    """

    info: mne.Info
    src: mne.SourceSpaces
    fwd: mne.Forward
    fwd_fixed: mne.Forward
    noise_cov: mne.Covariance
    surfaces: dict = field(default_factory=dict)
    trans: mne.transforms.Transform | None = None
    subject: str = "fsaverage5"
    spacing: str = "ico3"
    modality: str = "meg"
    conductor: str = ""
    provenance: dict = field(default_factory=dict)
    bem: mne.bem.ConductorModel | None = None

    # ------------------------------------------------------------------ sources
    @property
    def vertno(self) -> list[np.ndarray]:
        """Used vertex numbers per hemisphere ``[lh, rh]``."""
        return [s["vertno"] for s in self.fwd["src"]]

    @property
    def n_sources(self) -> int:
        return int(sum(len(v) for v in self.vertno))

    @property
    def ch_names(self) -> list[str]:
        return list(self.info["ch_names"])

    @property
    def positions(self) -> np.ndarray:
        """Source positions (n_sources, 3) in metres, head coordinates."""
        return np.asarray(self.fwd_fixed["source_rr"], float)

    @property
    def normals(self) -> np.ndarray:
        """Source orientations (n_sources, 3): the (patch) surface normals."""
        return np.asarray(self.fwd_fixed["source_nn"], float)

    @cached_property
    def gain(self) -> np.ndarray:
        """Fixed-orientation gain (n_channels, n_sources) as float64."""
        return np.asarray(self.fwd_fixed["sol"]["data"], dtype=np.float64)

    def rows(self, hemi: str = "both") -> np.ndarray:
        """Indices of the sources forming the image rows of ``hemi``."""
        check_hemi(hemi)
        n_lh = len(self.vertno[0])
        if hemi == "lh":
            return np.arange(n_lh)
        if hemi == "rh":
            return np.arange(n_lh, self.n_sources)
        return np.arange(self.n_sources)

    def triangles(self, hemi: str = "both") -> np.ndarray:
        """Triangulation of the used vertices, as indices into ``rows(hemi)``.

        Built from the source space's ``use_tris`` (the ico/oct triangulation).
        """
        check_hemi(hemi)
        hemis = [0, 1] if hemi == "both" else [HEMIS.index(hemi)]
        out, offset = [], 0
        for h in hemis:
            s = self.fwd["src"][h]
            vertno = s["vertno"]
            tris = s.get("use_tris")
            if tris is None or len(tris) == 0:
                raise ValueError(
                    f"The {HEMIS[h]} source space has no use_tris triangulation; "
                    "mesh-aware operations need an ico/oct source space."
                )
            lut = np.full(s["np"], -1, int)
            lut[vertno] = np.arange(len(vertno))
            local = lut[tris]
            local = local[(local >= 0).all(axis=1)]
            out.append(local + offset)
            offset += len(vertno)
        return np.concatenate(out, axis=0)

    def adjacency(self, hemi: str = "both") -> sparse.csr_matrix:
        """Symmetric vertex adjacency (rows(hemi) x rows(hemi)) from :meth:`triangles`."""
        tris = self.triangles(hemi)
        n = len(self.rows(hemi))
        i = np.concatenate([tris[:, 0], tris[:, 1], tris[:, 2]])
        j = np.concatenate([tris[:, 1], tris[:, 2], tris[:, 0]])
        a = sparse.coo_matrix((np.ones(len(i)), (i, j)), shape=(n, n)).tocsr()
        a = ((a + a.T) > 0).astype(np.float64)
        return a.tocsr()

    # -------------------------------------------------------------- identity
    @cached_property
    def fingerprint(self) -> str:
        """Stable hash of sensor geometry, source positions/normals and conductor model."""
        from .fingerprint import headmodel_fingerprint

        return headmodel_fingerprint(self)

    def summary(self) -> dict:
        """A JSON-friendly summary of this head model."""
        picks = {
            kind: len(mne.pick_types(self.info, meg=kind, eeg=False, exclude=[]))
            for kind in ("mag", "grad")
        }
        picks["eeg"] = len(mne.pick_types(self.info, meg=False, eeg=True, exclude=[]))
        return {
            "subject": self.subject,
            "spacing": self.spacing,
            "modality": self.modality,
            "conductor": self.conductor,
            "n_sources": self.n_sources,
            "n_sources_lh": len(self.vertno[0]),
            "n_sources_rh": len(self.vertno[1]),
            "n_channels": len(self.ch_names),
            "channels": picks,
            "fingerprint": self.fingerprint,
        }

    # ------------------------------------------------------------------ disk
    def save(self, path, *, overwrite: bool = False) -> Path:
        """Save this head model to the directory ``path``.

        The directory holds the forward solution (with its source space), the
        measurement info, the noise covariance, the head<->MRI transform and
        the BEM solution as FIF files, the display surfaces as ``.npz`` and the
        remaining attributes as ``headmodel.json``. It is written into a
        temporary sibling directory and renamed into place, so a partially
        written model never appears at ``path``.

        Parameters
        ----------
        path : path-like
            Output directory.
        overwrite : bool
            Replace an existing ``path``.

        Returns
        -------
        path : Path
            The directory written.
        """
        with atomic_dir(path, overwrite=overwrite, what="head model") as tmp:
            _write_headmodel_files(self, tmp)
        return Path(path)


# =========================================================================== constants
MODALITIES = ("meg", "eeg", "meg+eeg")
TEMPLATE_SUBJECT = "fsaverage5"
#: Spacings accepted by :func:`make_template_headmodel` (fsaverage5 is an ico5 mesh).
TEMPLATE_SPACINGS = ("ico3", "ico4", "oct5", "oct6")
#: Display surfaces stored in ``HeadModel.surfaces``.
SURFACE_KINDS = ("white", "pial", "inflated")
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
#: ico downsampling of MNE's fsaverage inner skull used as the template 1-layer BEM
#: (1280 triangles, as the sample subject's ``sample-1280-bem-sol.fif``). Against ico4
#: (5120 triangles) the fixed gain differs by 1.3% (power-weighted mean relative error)
#: while the build is ~10x faster (the ico4 solution plus forward take 15-40 s on 2 cores);
#: simulations and inverses on the template share the same conductor, so this is not
#: a modelling error between them.
TEMPLATE_BEM_ICO = 3
#: Brain conductivity (S/m) of the 1-layer BEM.
BRAIN_CONDUCTIVITY = 0.3
#: Environment variable overriding the cache directory.
CACHE_ENV = "NAPARI_MEG_UNET_CACHE"
#: Version of the on-disk layout written by :meth:`HeadModel.save`.
FORMAT_VERSION = 1

_FILES = dict(
    meta="headmodel.json",
    fwd="headmodel-fwd.fif",
    info="headmodel-info.fif",
    cov="headmodel-cov.fif",
    trans="headmodel-trans.fif",
    bem="headmodel-bem-sol.fif",
    surfaces="surfaces.npz",
)


# =========================================================================== helpers
def check_modality(modality: str) -> tuple[bool, bool]:
    """Validate ``modality`` and return ``(meg, eeg)`` flags."""
    if modality not in MODALITIES:
        raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}.")
    return "meg" in modality, "eeg" in modality


def cache_root(cache_dir=None) -> Path:
    """Directory under which head models are cached.

    ``cache_dir`` if given, else the ``NAPARI_MEG_UNET_CACHE`` environment
    variable, else ``platformdirs.user_cache_dir("napari-meg-unet")``.
    """
    if cache_dir is None:
        cache_dir = os.environ.get(CACHE_ENV) or None
    if cache_dir is None:
        import platformdirs

        cache_dir = platformdirs.user_cache_dir("napari-meg-unet")
    return Path(cache_dir).expanduser()


def _mne_fsaverage_dir() -> Path:
    return Path(mne.__file__).parent / "data" / "fsaverage"


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in ("napari-meg-unet", "mne", "numpy", "scipy", "nibabel", "nilearn"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = None
    return out


def _apply_trans_to_src(src: mne.SourceSpaces, trans) -> mne.SourceSpaces:
    """Copy of a surface source space moved into the destination frame of ``trans``."""
    out = src.copy()
    for s in out:
        s["rr"] = apply_trans(trans, s["rr"])
        s["nn"] = apply_trans(trans, s["nn"], move=False)
        s["coord_frame"] = trans["to"]
    return out


def _sphere_to_dict(sphere) -> dict:
    return dict(
        r0=[float(x) for x in sphere["r0"]],
        radii=[float(layer["rad"]) for layer in sphere["layers"]],
        sigmas=[float(layer["sigma"]) for layer in sphere["layers"]],
    )


def _sphere_from_dict(params: dict):
    head_radius = params["radii"][-1]
    return mne.make_sphere_model(
        r0=tuple(params["r0"]),
        head_radius=head_radius,
        relative_radii=tuple(r / head_radius for r in params["radii"]),
        sigmas=tuple(params["sigmas"]),
        verbose=False,
    )


def _describe_conductor(bem) -> str:
    if bem["is_sphere"]:
        r0 = np.asarray(bem["r0"]) * 1e3
        radius = bem["layers"][-1]["rad"] * 1e3 if bem["layers"] else float("nan")
        return (
            f"sphere model ({len(bem['layers'])} shells, r0=({r0[0]:.1f}, {r0[1]:.1f}, "
            f"{r0[2]:.1f}) mm, head radius {radius:.1f} mm, head coordinates)"
        )
    ntri = "-".join(str(s["ntri"]) for s in bem["surfs"])
    sigmas = ", ".join(f"{s['sigma']:g}" for s in bem["surfs"])
    return f"{len(bem['surfs'])}-layer BEM ({ntri} triangles, conductivities {sigmas} S/m)"


# =========================================================================== I/O
def _write_headmodel_files(hm: HeadModel, path: Path) -> None:
    """Write the files of ``hm`` into the existing (empty) directory ``path``."""
    path = Path(path)
    with warnings.catch_warnings():
        # MNE warns that it stores the original (not surface-oriented) solution:
        # that is intended, load_headmodel converts it again.
        warnings.filterwarnings("ignore", "This forward solution is based on", RuntimeWarning)
        mne.write_forward_solution(path / _FILES["fwd"], hm.fwd, overwrite=True, verbose="error")
    mne.io.write_info(path / _FILES["info"], hm.info)
    mne.write_cov(path / _FILES["cov"], hm.noise_cov, overwrite=True, verbose=False)
    if hm.trans is not None:
        mne.write_trans(path / _FILES["trans"], hm.trans, overwrite=True, verbose=False)
    conductor = None
    if hm.bem is not None:
        if hm.bem["is_sphere"]:
            conductor = dict(kind="sphere", **_sphere_to_dict(hm.bem))
        else:
            mne.write_bem_solution(path / _FILES["bem"], hm.bem, overwrite=True, verbose=False)
            conductor = dict(kind="bem", file=_FILES["bem"])
    arrays = {}
    for kind, hemis in hm.surfaces.items():
        for hemi, (rr, tris) in hemis.items():
            arrays[f"{kind}__{hemi}__rr"] = np.asarray(rr, np.float64)
            arrays[f"{kind}__{hemi}__tris"] = np.asarray(tris, np.int64)
    np.savez(path / _FILES["surfaces"], **arrays)
    meta = dict(
        format_version=FORMAT_VERSION,
        subject=hm.subject,
        spacing=hm.spacing,
        modality=hm.modality,
        conductor=hm.conductor,
        conductor_model=conductor,
        provenance=hm.provenance,
        fingerprint=hm.fingerprint,
    )
    write_json(path / _FILES["meta"], meta)


def _finish_forwards(fwd: mne.Forward) -> tuple[mne.Forward, mne.Forward]:
    """Free surface-oriented and fixed forwards from one free forward solution."""
    fwd_free = mne.convert_forward_solution(fwd, surf_ori=True, copy=True, verbose=False)
    fwd_fixed = mne.convert_forward_solution(
        fwd, surf_ori=True, force_fixed=True, use_cps=True, copy=True, verbose=False
    )
    return fwd_free, fwd_fixed


def load_headmodel(path, *, verbose=None) -> HeadModel:
    """Load a head model saved with :meth:`HeadModel.save` (or cached by a builder).

    Parameters
    ----------
    path : path-like
        Directory written by :meth:`HeadModel.save`.
    verbose : bool | str | int | None
        MNE log level.

    Returns
    -------
    hm : HeadModel
        The head model.
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(
            f"Expected a head model directory at {str(path)!r} (written by HeadModel.save); "
            "it does not exist."
        )
    meta_file = path / _FILES["meta"]
    if not meta_file.is_file():
        raise FileNotFoundError(
            f"{str(path)!r} is not a head model directory: {_FILES['meta']} is missing."
        )
    meta = read_json(meta_file)
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{str(meta_file)!r} has head-model format version "
            f"{meta.get('format_version')!r}; this version reads {FORMAT_VERSION}."
        )

    def _read(key, reader):
        fname = path / _FILES[key]
        if not fname.is_file():
            raise FileNotFoundError(f"The head model file {str(fname)!r} is missing.")
        try:
            return reader(fname)
        except Exception as err:  # MNE raises many types on corrupt FIF files
            raise ValueError(
                f"Could not read the head model file {str(fname)!r} "
                f"(corrupt or not a valid file): {type(err).__name__}: {err}"
            ) from err

    with mne.use_log_level(verbose if verbose is not None else "warning"):
        fwd = _read("fwd", lambda f: mne.read_forward_solution(f, verbose=False))
        info = _read("info", lambda f: mne.io.read_info(f, verbose=False))
        noise_cov = _read("cov", lambda f: _native_cov(mne.read_cov(f, verbose=False)))
        trans = None
        if (path / _FILES["trans"]).is_file():
            trans = _read("trans", lambda f: mne.read_trans(f, verbose=False))
        conductor = meta.get("conductor_model") or None
        bem = None
        if conductor is not None and conductor["kind"] == "sphere":
            bem = _sphere_from_dict(conductor)
        elif conductor is not None:
            bem = _read("bem", lambda f: mne.read_bem_solution(f, verbose=False))
        surf_npz = _read("surfaces", lambda f: dict(np.load(f, allow_pickle=False)))
    surfaces: dict = {}
    for key, value in surf_npz.items():
        kind, hemi, what = key.split("__")
        if what == "rr":
            surfaces.setdefault(kind, {})[hemi] = (value, surf_npz[f"{kind}__{hemi}__tris"])
    fwd_free, fwd_fixed = _finish_forwards(fwd)
    provenance = dict(meta.get("provenance") or {})
    provenance["loaded_from"] = str(path)
    return HeadModel(
        info=info,
        src=fwd_free["src"],
        fwd=fwd_free,
        fwd_fixed=fwd_fixed,
        noise_cov=noise_cov,
        surfaces=surfaces,
        trans=trans,
        subject=meta["subject"],
        spacing=meta["spacing"],
        modality=meta["modality"],
        conductor=meta["conductor"],
        provenance=provenance,
        bem=bem,
    )


# =========================================================================== noise covariance
def _native_cov(cov: mne.Covariance) -> mne.Covariance:
    """Convert a covariance read from FIF (big-endian arrays) to native float64.

    MNE 1.13's ``eigh`` asserts a native float64 dtype, so a diagonal
    covariance read from disk would otherwise fail in ``make_inverse_operator``.
    """
    cov["data"] = np.asarray(cov["data"], dtype=np.float64)
    if cov.get("eig") is not None:
        cov["eig"] = np.asarray(cov["eig"], dtype=np.float64)
    if cov.get("eigvec") is not None:
        cov["eigvec"] = np.asarray(cov["eigvec"], dtype=np.float64)
    return cov


def _noise_cov_key(noise_cov):
    """JSON-friendly identity of a ``noise_cov`` argument (for cache keys)."""
    if isinstance(noise_cov, str) and noise_cov == "adhoc":
        return "adhoc"
    if isinstance(noise_cov, mne.Covariance):
        return dict(covariance=array_fingerprint(noise_cov.data, names=list(noise_cov.ch_names)))
    path = Path(noise_cov)
    stat = path.stat() if path.exists() else None
    return dict(path=str(path.resolve()), size=stat.st_size if stat else None,
                mtime=stat.st_mtime if stat else None)  # fmt: skip


def _is_cov_fname(path: Path) -> bool:
    name = path.name
    for ext in (".fif", ".fif.gz", ".h5"):
        if name.endswith(ext):
            stem = name[: -len(ext)]
            return stem.endswith(("-cov", "_cov")) or stem == "cov"
    return False


def prepare_noise_cov(noise_cov, info: mne.Info, *, verbose=None) -> mne.Covariance:
    """Return a noise covariance for exactly the channels of ``info``.

    Parameters
    ----------
    noise_cov : "adhoc" | mne.Covariance | path-like
        ``"adhoc"`` for :func:`mne.make_ad_hoc_cov`; a covariance; a covariance
        file (name ending in ``-cov.fif``/``_cov.fif``, optionally ``.gz``); or
        an (empty-room) raw FIF file, from which the covariance is computed
        with :func:`mne.compute_raw_covariance` (MaxShield files are allowed).
    info : mne.Info
        Channels the covariance must cover.
    verbose : bool | str | int | None
        MNE log level.

    Returns
    -------
    cov : mne.Covariance
        Covariance restricted to (and ordered as) ``info['ch_names']``.
    """
    if isinstance(noise_cov, str) and noise_cov == "adhoc":
        return mne.make_ad_hoc_cov(info, verbose=False)
    if isinstance(noise_cov, mne.Covariance):
        cov = noise_cov
        source = "given covariance"
    elif isinstance(noise_cov, str | os.PathLike):
        path = Path(noise_cov)
        if not path.is_file():
            raise FileNotFoundError(
                f"noise_cov file {str(path)!r} does not exist (expected 'adhoc', a "
                "Covariance, a -cov.fif file or an empty-room raw FIF file)."
            )
        source = f"noise_cov file {str(path)!r}"
        try:
            if _is_cov_fname(path):
                cov = _native_cov(mne.read_cov(path, verbose=verbose))
            else:
                raw = mne.io.read_raw_fif(path, allow_maxshield=True, preload=True, verbose=verbose)
                raw.pick([ch for ch in raw.ch_names if ch in info["ch_names"]] or "data")
                cov = mne.compute_raw_covariance(raw, tmin=0, tmax=None, verbose=verbose)
        except Exception as err:  # MNE raises many types on corrupt FIF files
            raise ValueError(
                f"Could not read {source} (corrupt, or not a covariance/raw FIF file): "
                f"{type(err).__name__}: {err}"
            ) from err
    else:
        raise TypeError(
            "noise_cov must be 'adhoc', an mne.Covariance or a path, got "
            f"{type(noise_cov).__name__}."
        )
    missing = [ch for ch in info["ch_names"] if ch not in cov.ch_names]
    if missing:
        hint = ""
        squeezed = {name.replace(" ", ""): name for name in cov.ch_names}
        if all(ch.replace(" ", "") in squeezed for ch in missing):
            hint = (
                " The names differ only by spaces (e.g. "
                f"{squeezed[missing[0].replace(' ', '')]!r} vs {missing[0]!r}); rename the "
                "channels of the covariance or recording first."
            )
        shown = ", ".join(repr(ch) for ch in missing[:10])
        more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        raise ValueError(
            f"The {source} lacks {len(missing)} channel(s) of the info: {shown}{more}.{hint}"
        )
    picked = mne.pick_channels_cov(
        cov, include=list(info["ch_names"]), exclude=[], ordered=True, copy=True, verbose=False
    )
    return _native_cov(picked)


# =========================================================================== template
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


def check_template_spacing(spacing: str) -> str:
    """Validate a template source-space spacing."""
    if spacing not in TEMPLATE_SPACINGS:
        raise ValueError(
            f"spacing must be one of {TEMPLATE_SPACINGS} for the fsaverage5 template, "
            f"got {spacing!r}."
        )
    return spacing


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


def compute_forward(info, src, bem, trans, *, meg=True, eeg=False, verbose=None) -> mne.Forward:
    """Free-orientation forward solution with sources returned in head coordinates.

    Works around MNE's sphere-model source filter, which compares MRI-frame
    source positions with the head-frame sphere when ``trans`` is not the
    identity (and so wrongly drops sources): for sphere models the source
    space is first moved to head coordinates and ``trans=None`` is passed.
    """
    if bem["is_sphere"]:
        if src[0]["coord_frame"] != FIFF.FIFFV_COORD_HEAD:
            src = _apply_trans_to_src(src, invert_transform(trans))
        trans = None
    return mne.make_forward_solution(
        info, trans=trans, src=src, bem=bem, meg=meg, eeg=eeg, mindist=0.0, verbose=verbose
    )


def _template_params(spacing, modality, noise_cov) -> dict:
    return dict(
        builder="make_template_headmodel",
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


def _cache_key(params: dict) -> str:
    return hashlib.sha256(to_json(params, sort_keys=True).encode()).hexdigest()[:16]


def template_cache_path(*, spacing="ico3", modality="meg", noise_cov="adhoc", cache_dir=None):
    """Where :func:`make_template_headmodel` caches a model built with these parameters."""
    check_template_spacing(spacing)
    check_modality(modality)
    key = _cache_key(_template_params(spacing, modality, noise_cov))
    tag = modality.replace("+", "")
    return cache_root(cache_dir) / "headmodels" / f"{TEMPLATE_SUBJECT}-{spacing}-{tag}-{key}"


def _store(hm: HeadModel, path: Path | None, *, verbose=None) -> HeadModel:
    """Save ``hm`` at ``path`` (or a temporary directory) and return the model read back.

    Returning what was read back makes a fresh build and a cached load identical
    (the FIF files store the gain in float32).
    """
    if path is None:
        with tempfile.TemporaryDirectory(prefix="napari-meg-unet-hm-") as tmp:
            hm.save(Path(tmp) / "hm")
            out = load_headmodel(Path(tmp) / "hm", verbose=verbose)
            out.provenance.pop("loaded_from", None)
            return out
    try:
        hm.save(path)
    except FileExistsError:
        pass  # another process cached the same model meanwhile
    return load_headmodel(path, verbose=verbose)


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
    modality : str
        ``"meg"``, ``"eeg"`` or ``"meg+eeg"``.
    noise_cov : "adhoc" | mne.Covariance | path-like
        Noise covariance (see :func:`prepare_noise_cov`); ad hoc by default.
    cache : bool
        Load the model from the cache when present and store a new build there.
        With ``cache=False`` the model is always rebuilt and not stored (the
        fsaverage5 FreeSurfer files and the template BEM solution, which do
        not depend on the parameters, are still kept under the cache root).
    cache_dir : path-like | None
        Cache directory; defaults to :func:`cache_root`.
    verbose : bool | str | int | None
        MNE log level.

    Yields
    ------
    event : progress.Progress
        Progress of the build.

    Returns
    -------
    hm : HeadModel
        The head model (through ``StopIteration.value``).
    """
    check_template_spacing(spacing)
    meg, eeg = check_modality(modality)
    if not (isinstance(noise_cov, str | os.PathLike | mne.Covariance)):
        raise TypeError(
            "noise_cov must be 'adhoc', an mne.Covariance or a path, got "
            f"{type(noise_cov).__name__}."
        )
    if isinstance(noise_cov, str | os.PathLike) and noise_cov != "adhoc":
        _check_file(noise_cov, "noise_cov")
    stage = "template head model"
    params = _template_params(spacing, modality, noise_cov)
    path = (
        template_cache_path(
            spacing=spacing, modality=modality, noise_cov=noise_cov, cache_dir=cache_dir
        )
        if cache
        else None
    )
    if path is not None and (path / _FILES["meta"]).is_file():
        yield Progress(stage, 0, 1, "loading from cache")
        try:
            hm = load_headmodel(path, verbose=verbose)
        except (ValueError, FileNotFoundError) as err:
            logger.warning(f"Rebuilding the cached head model {str(path)!r}: {err}")
        else:
            yield Progress(stage, 1, 1, "loaded from cache")
            return hm
    total = 7
    verbose = "warning" if verbose is None else verbose
    yield Progress(stage, 0, total, "writing fsaverage5 subject")
    subjects_dir = cache_root(cache_dir) / "subjects"
    subject_dir = _write_template_subject(subjects_dir)
    yield Progress(stage, 1, total, f"source space {spacing}")
    src = _setup_template_src(spacing, subjects_dir, verbose=verbose)
    trans = _template_trans()
    yield Progress(stage, 2, total, "sensors")
    info = _template_info(modality, trans)
    yield Progress(stage, 3, total, "conductor model")
    bem = _template_conductor(modality, subjects_dir, info, verbose=verbose)
    yield Progress(stage, 4, total, "forward solution")
    fwd = compute_forward(info, src, bem, trans, meg=meg, eeg=eeg, verbose=verbose)
    yield Progress(stage, 5, total, "noise covariance")
    cov = prepare_noise_cov(noise_cov, info, verbose=verbose)
    surfaces = _template_surfaces(subject_dir, trans)
    fwd_free, fwd_fixed = _finish_forwards(fwd)
    provenance = dict(
        builder="make_template_headmodel",
        parameters=params,
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
    hm = HeadModel(
        info=info, src=fwd_free["src"], fwd=fwd_free, fwd_fixed=fwd_fixed, noise_cov=cov,
        surfaces=surfaces, trans=trans, subject=TEMPLATE_SUBJECT, spacing=spacing,
        modality=modality, conductor=_describe_conductor(bem), provenance=provenance,
        bem=bem,
    )  # fmt: skip
    yield Progress(stage, 6, total, "saving")
    hm = _store(hm, path, verbose=verbose)
    yield Progress(stage, total, total, "done")
    return hm


def make_template_headmodel(
    *, spacing="ico3", modality="meg", noise_cov="adhoc", cache=True, cache_dir=None,
    verbose=None,
) -> HeadModel:  # fmt: skip
    """Build or load the fsaverage5 template head model.

    See :func:`iter_make_template_headmodel` for the parameters.
    """
    return run(
        iter_make_template_headmodel(
            spacing=spacing,
            modality=modality,
            noise_cov=noise_cov,
            cache=cache,
            cache_dir=cache_dir,
            verbose=verbose,
        )  # fmt: skip
    )


# =========================================================================== dense sources
#: Default dense (off-grid) spacing of the template for each head-model spacing.
DENSE_DEFAULT_SPACING = {"ico3": "ico4", "ico4": "ico5", "oct5": "oct6", "oct6": "ico5"}
#: Dense spacings accepted for the template; "ico5" is the full fsaverage5 mesh.
DENSE_SPACINGS = ("ico4", "ico5", "oct6")


@dataclass(eq=False)
class DenseSources:
    """Off-grid cortical sources for simulation (avoiding the "inverse crime").

    The dense sources lie on the same cortical surface as the head model's
    sources but never on them: a vertex used by the head model is never a dense
    source. Their gain uses the same channels (same order), conductor model and
    coordinate frame as the head model.

    Attributes
    ----------
    positions : ndarray, shape (n_dense, 3)
        Positions in metres, head coordinates.
    normals : ndarray, shape (n_dense, 3)
        Surface normals (the fixed source orientations).
    gain : ndarray, shape (n_channels, n_dense)
        Fixed-orientation gain (float64), rows in ``hm.ch_names`` order.
    vertno : list of ndarray
        Surface vertex numbers of the dense sources per hemisphere ``[lh, rh]``.
    hemi : ndarray of int, shape (n_dense,)
        0 for left-hemisphere sources, 1 for right.
    nearest_row : ndarray of int, shape (n_dense,)
        Index (into the head model's source order) of the nearest head-model
        source of the same hemisphere.
    grid_distance : ndarray, shape (n_dense,)
        Euclidean distance (m) to that nearest head-model source.
    spacing : str
        Dense spacing (``"ico4"``, ``"ico5"``, ``"oct6"`` or ``"full"``).
    headmodel_fingerprint : str
        Fingerprint of the head model these sources belong to.
    """

    positions: np.ndarray
    normals: np.ndarray
    gain: np.ndarray
    vertno: list
    hemi: np.ndarray
    nearest_row: np.ndarray
    grid_distance: np.ndarray
    spacing: str
    headmodel_fingerprint: str

    @property
    def n_dense(self) -> int:
        return int(self.positions.shape[0])

    def _arrays(self) -> dict:
        return dict(
            positions=self.positions, normals=self.normals,
            gain=self.gain.astype(np.float32), vertno_lh=self.vertno[0],
            vertno_rh=self.vertno[1], hemi=self.hemi, nearest_row=self.nearest_row,
            grid_distance=self.grid_distance,
        )  # fmt: skip


def _is_template(hm: HeadModel) -> bool:
    return hm.provenance.get("builder") == "make_template_headmodel"


def _dense_vertices(hm: HeadModel, spacing, cache_dir, verbose) -> tuple[str, list]:
    """Dense spacing name and the dense vertex numbers per hemisphere."""
    if _is_template(hm):
        if spacing is None:
            spacing = DENSE_DEFAULT_SPACING[hm.spacing]
        if spacing not in DENSE_SPACINGS:
            raise ValueError(
                f"spacing must be None or one of {DENSE_SPACINGS} for the template "
                f"(ico5 is the full fsaverage5 mesh), got {spacing!r}."
            )
        if spacing == "ico5":
            full = [np.arange(s["np"]) for s in hm.src]
        else:
            subjects_dir = cache_root(cache_dir) / "subjects"
            _write_template_subject(subjects_dir)
            full = [s["vertno"] for s in _setup_template_src(spacing, subjects_dir,
                                                             verbose=verbose)]  # fmt: skip
    else:
        if spacing not in (None, "full"):
            raise ValueError(
                "spacing must be None (or 'full') for head models built from real inputs: "
                "the dense sources are the vertices of the full source-space surface that "
                f"the head model does not use; got {spacing!r}."
            )
        spacing = "full"
        full = [np.arange(s["np"]) for s in hm.src]
    dense = [np.setdiff1d(f, v) for f, v in zip(full, hm.vertno, strict=True)]
    if sum(len(d) for d in dense) == 0:
        raise ValueError(
            f"The head model uses every vertex of its {spacing} surface, so there are no "
            "off-grid vertices left for dense sources; build the head model with a "
            "coarser source space."
        )
    return spacing, dense


def _dense_cache_path(hm: HeadModel, spacing: str, cache_dir) -> Path:
    key = _cache_key(
        dict(kind="dense", headmodel=hm.fingerprint, spacing=spacing, mne=mne.__version__,
             format_version=FORMAT_VERSION)
    )  # fmt: skip
    return cache_root(cache_dir) / "dense" / f"{hm.subject}-{hm.spacing}-{spacing}-{key}.npz"


def _load_dense(path: Path, spacing: str, hm: HeadModel) -> DenseSources:
    with np.load(path, allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files}
    return DenseSources(
        positions=arrays["positions"], normals=arrays["normals"],
        gain=arrays["gain"].astype(np.float64), vertno=[arrays["vertno_lh"], arrays["vertno_rh"]],
        hemi=arrays["hemi"], nearest_row=arrays["nearest_row"],
        grid_distance=arrays["grid_distance"], spacing=spacing,
        headmodel_fingerprint=hm.fingerprint,
    )  # fmt: skip


def iter_make_dense_sources(hm: HeadModel, *, spacing=None, cache=True, cache_dir=None,
                            verbose=None):  # fmt: skip
    """Compute off-grid dense sources for ``hm``, yielding progress.

    Parameters
    ----------
    hm : HeadModel
        The head model.
    spacing : str | None
        Template head models: ``"ico4"``, ``"ico5"`` (the full fsaverage5 mesh)
        or ``"oct6"``; ``None`` picks one level finer than ``hm.spacing``
        (ico3 -> ico4, ico4 -> ico5, oct5 -> oct6, oct6 -> ico5). Head models
        from real inputs: ``None``/``"full"``, i.e. every vertex of the surface
        the source space was decimated from (e.g. the 1026 vertices/hemisphere of
        the sample's ``small-src``). Either way the head model's own vertices are
        left out, so every dense source is off the grid.
    cache : bool
        Load from / store into the cache (keyed by ``hm.fingerprint`` and spacing).
    cache_dir : path-like | None
        Cache directory (see :func:`cache_root`).
    verbose : bool | str | int | None
        MNE log level.

    Yields
    ------
    event : progress.Progress

    Returns
    -------
    dense : DenseSources
    """
    if not isinstance(hm, HeadModel):
        raise TypeError(f"hm must be a HeadModel, got {type(hm).__name__}.")
    if hm.bem is None:
        raise ValueError(
            "hm has no conductor model (hm.bem is None); dense sources need the head "
            "model's BEM or sphere model. Build it with make_template_headmodel or "
            "make_headmodel."
        )
    verbose = "warning" if verbose is None else verbose
    stage = "dense sources"
    spacing, dense_vertno = _dense_vertices(hm, spacing, cache_dir, verbose)
    path = _dense_cache_path(hm, spacing, cache_dir) if cache else None
    if path is not None and path.is_file():
        yield Progress(stage, 0, 1, "loading from cache")
        try:
            dense = _load_dense(path, spacing, hm)
        except (OSError, ValueError, KeyError) as err:
            logger.warning(f"Recomputing the cached dense sources {str(path)!r}: {err}")
        else:
            yield Progress(stage, 1, 1, "loaded from cache")
            return dense
    total = 3
    yield Progress(stage, 0, total, f"{sum(map(len, dense_vertno))} {spacing} sources")
    src = hm.src.copy()
    for s, vertno in zip(src, dense_vertno, strict=True):
        s["inuse"] = np.zeros(s["np"], int)
        s["inuse"][vertno] = 1
        s["vertno"] = np.asarray(vertno, np.int64)
        s["nuse"] = len(vertno)
        s.update(use_tris=None, nuse_tri=0, patch_inds=None, pinfo=None, dist=None,
                 dist_limit=None, nearest=None, nearest_dist=None)  # fmt: skip
    meg, eeg = check_modality(hm.modality)
    yield Progress(stage, 1, total, "forward solution")
    try:
        fwd = compute_forward(hm.info, src, hm.bem, hm.trans, meg=meg, eeg=eeg, verbose=verbose)
    except RuntimeError as err:
        if "No points left" not in str(err):
            raise
        raise ValueError(
            f"None of the {sum(map(len, dense_vertno))} off-grid {spacing} vertices lies "
            "inside the conductor model, so there are no dense sources."
        ) from err
    if fwd["sol"]["row_names"] != hm.ch_names:
        raise RuntimeError("The dense forward solution's channels differ from the head model's.")
    fwd = mne.convert_forward_solution(
        fwd, surf_ori=True, force_fixed=True, use_cps=True, copy=False, verbose=False
    )
    yield Progress(stage, 2, total, "nearest grid sources")
    vertno = [np.asarray(s["vertno"]) for s in fwd["src"]]
    hemi = np.concatenate([np.full(len(v), h) for h, v in enumerate(vertno)])
    positions = np.asarray(fwd["source_rr"], float)
    nearest_row = np.empty(len(positions), np.int64)
    grid_distance = np.empty(len(positions))
    for h, hemi_name in enumerate(("lh", "rh")):
        rows = hm.rows(hemi_name)
        mask = hemi == h
        dist, idx = cKDTree(hm.positions[rows]).query(positions[mask])
        nearest_row[mask] = rows[idx]
        grid_distance[mask] = dist
    dense = DenseSources(
        positions=positions, normals=np.asarray(fwd["source_nn"], float),
        # rounded to float32 like the head model's gain (and the cache)
        gain=np.asarray(fwd["sol"]["data"], np.float32).astype(np.float64),
        vertno=vertno, hemi=hemi, nearest_row=nearest_row, grid_distance=grid_distance,
        spacing=spacing, headmodel_fingerprint=hm.fingerprint,
    )  # fmt: skip
    if path is not None:
        with atomic_path(path, suffix=".npz") as tmp:
            np.savez(tmp, **dense._arrays())
    yield Progress(stage, total, total, "done")
    return dense


def make_dense_sources(hm: HeadModel, *, spacing=None, cache=True, cache_dir=None,
                       verbose=None) -> DenseSources:  # fmt: skip
    """Off-grid dense sources for ``hm``; see :func:`iter_make_dense_sources`."""
    return run(
        iter_make_dense_sources(
            hm, spacing=spacing, cache=cache, cache_dir=cache_dir, verbose=verbose
        )
    )


# =========================================================================== real inputs
def _check_file(path, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"The {what} file {str(path)!r} does not exist.")
    return path


def _read_or_raise(path: Path, what: str, reader):
    try:
        return reader(path)
    except Exception as err:  # MNE raises many types on corrupt/wrong FIF files
        raise ValueError(
            f"Could not read the {what} file {str(path)!r} (corrupt or not a {what} file): "
            f"{type(err).__name__}: {err}"
        ) from err


def _read_info_input(info, *, verbose=None) -> tuple[mne.Info, str]:
    """An Info from an Info, a FIF path (raw/epochs/evoked) or a BIDSPath."""
    if isinstance(info, mne.Info):
        return info.copy(), "mne.Info"
    if type(info).__name__ == "BIDSPath":
        import mne_bids

        fname = info.fpath
        if not Path(fname).exists():
            raise FileNotFoundError(f"The BIDS recording {str(fname)!r} does not exist.")
        raw = _read_or_raise(
            Path(fname), "BIDS recording",
            lambda _: mne_bids.read_raw_bids(info, verbose=verbose or False),
        )  # fmt: skip
        return raw.info.copy(), str(fname)
    if isinstance(info, str | os.PathLike):
        path = _check_file(info, "info (raw/epochs/evoked FIF)")
        return _read_or_raise(
            path, "measurement info", lambda p: mne.io.read_info(p, verbose=verbose or False)
        ), str(path)  # fmt: skip
    raise TypeError(
        f"info must be an mne.Info, a FIF path or a mne_bids.BIDSPath, got {type(info).__name__}."
    )


def _read_trans_input(trans) -> mne.transforms.Transform | None:
    if trans is None:
        return None
    if isinstance(trans, mne.transforms.Transform):
        out = trans
    elif isinstance(trans, str | os.PathLike):
        path = _check_file(trans, "trans")
        out = _read_or_raise(path, "trans", lambda p: mne.read_trans(p, verbose=False))
    else:
        raise TypeError(f"trans must be a Transform or a path, got {type(trans).__name__}.")
    frames = {out["from"], out["to"]}
    if frames != {FIFF.FIFFV_COORD_HEAD, FIFF.FIFFV_COORD_MRI}:
        raise ValueError(f"trans must be a head <-> MRI transform, got {out}.")
    if out["from"] == FIFF.FIFFV_COORD_MRI:
        out = invert_transform(out)
    return out


def _read_bem_input(bem, *, info, eeg, verbose=None):
    if bem is None:
        raise ValueError(
            "bem is required for real inputs: a BEM solution file, an mne ConductorModel or "
            "'sphere'."
        )
    if isinstance(bem, str) and bem == "sphere":
        if not info["dig"]:
            raise ValueError(
                "bem='sphere' fits a sphere to the head-shape points, but the info has no "
                "digitisation points; pass a BEM or a ConductorModel."
            )
        return mne.make_sphere_model(r0="auto", head_radius="auto", info=info, verbose=verbose)
    if isinstance(bem, mne.bem.ConductorModel):
        out = bem
    elif isinstance(bem, str | os.PathLike):
        path = _check_file(bem, "BEM")

        def reader(p):
            try:
                return mne.read_bem_solution(p, verbose=False)
            except Exception:  # maybe BEM surfaces without a solution
                surfs = mne.read_bem_surfaces(p, verbose=False)
                return mne.make_bem_solution(surfs, verbose=verbose)

        out = _read_or_raise(path, "BEM", reader)
    else:
        raise TypeError(
            f"bem must be a path, a ConductorModel or 'sphere', got {type(bem).__name__}."
        )
    if not out["is_sphere"] and eeg and len(out["surfs"]) == 1:
        raise ValueError(
            "A 1-layer BEM (inner skull only) can only model MEG; EEG needs a 3-layer BEM "
            "(e.g. sample-320-320-320-bem-sol.fif) or bem='sphere'. Use modality='meg' or "
            "another bem."
        )
    return out


def _read_src_input(src, *, subjects_dir, subject, spacing, verbose=None):
    if src is None:
        if subjects_dir is None or subject is None:
            raise ValueError(
                "src is None, so subjects_dir and subject are needed to build the source "
                f"space (spacing={spacing!r})."
            )
        try:
            return mne.setup_source_space(
                subject, spacing=spacing, subjects_dir=subjects_dir, add_dist=False,
                verbose=verbose,
            ), spacing  # fmt: skip
        except (OSError, ValueError, RuntimeError) as err:
            raise ValueError(
                f"Could not set up the {spacing} source space of subject {subject!r} in "
                f"subjects_dir {str(subjects_dir)!r}: {err}"
            ) from err
    if isinstance(src, mne.SourceSpaces):
        out = src.copy()
    elif isinstance(src, str | os.PathLike):
        path = _check_file(src, "source space")
        out = _read_or_raise(
            path, "source space", lambda p: mne.read_source_spaces(p, verbose=False)
        )
    else:
        raise TypeError(f"src must be a SourceSpaces or a path, got {type(src).__name__}.")
    if len(out) != 2 or any(s["type"] != "surf" for s in out):
        raise ValueError(
            "src must be a two-hemisphere (lh, rh) surface source space, got "
            f"{len(out)} source space(s) of type(s) {[s['type'] for s in out]}."
        )
    return out, "custom"


def _fix_src_units(src, src_scale) -> tuple[mne.SourceSpaces, float]:
    """Scale positions stored in the wrong unit (e.g. small-src.fif.gz, 1000x too small)."""
    max_r = max(float(np.linalg.norm(s["rr"], axis=1).max()) for s in src)
    if src_scale == "auto":
        # a cortex spans ~7 cm from any reasonable origin; < 5 mm means mm stored as m
        scale = 1000.0 if max_r < 0.005 else 1.0
        if scale != 1.0:
            logger.warning(
                f"The source-space positions all lie within {max_r * 1e3:.3f} mm of the "
                "origin: they are stored 1000x too small (as in MNE's small-src.fif.gz); "
                "multiplying them by 1000. Pass src_scale=1.0 to keep them."
            )
    else:
        scale = float(src_scale)
        if not np.isfinite(scale) or scale <= 0:
            raise ValueError(f"src_scale must be 'auto' or a positive number, got {src_scale!r}.")
    if scale != 1.0:
        for s in src:
            s["rr"] = s["rr"] * scale
            if s.get("dist") is not None:
                s["dist"] = s["dist"] * scale
            if s.get("nearest_dist") is not None:
                s["nearest_dist"] = s["nearest_dist"] * scale
    return src, scale


def _use_all_vertices(src) -> None:
    for s in src:
        s["inuse"] = np.ones(s["np"], int)
        s["vertno"] = np.arange(s["np"])
        s["nuse"] = s["np"]
        s["use_tris"] = s["tris"].copy()
        s["nuse_tri"] = len(s["tris"])
        s.update(patch_inds=None, pinfo=None, nearest=None, nearest_dist=None)


def _has_eeg_average_ref_proj(info) -> bool:
    return any(
        p["kind"] == FIFF.FIFFV_PROJ_ITEM_EEG_AVREF or p["desc"].startswith("Average EEG reference")
        for p in info["projs"]
    )


def _clear_sss_if_inconsistent(info, cov) -> bool:
    """Clear an SSS ``proc_history`` when the covariance is not SSS-processed.

    MNE derives the MEG rank of SSS data (about 70) from ``proc_history``; with a
    full-rank (non-SSS, or ad hoc) covariance that rank is wrong and the whitener
    breaks. Returns whether it was cleared.
    """
    if not info["proc_history"] or not len(mne.pick_types(info, meg=True, exclude=[])):
        return False
    cleared = info.copy()
    with cleared._unlock():
        cleared["proc_history"] = []
    info_rank = mne.compute_rank(cov, rank="info", info=info, verbose=False)
    data_rank = mne.compute_rank(cov, rank=None, info=cleared, verbose=False)
    meg_keys = ("meg", "mag", "grad")
    r_info = sum(v for k, v in info_rank.items() if k in meg_keys)
    r_data = sum(v for k, v in data_rank.items() if k in meg_keys)
    if r_data <= r_info:
        return False
    logger.warning(
        f"The info is SSS-processed (MEG rank {r_info} from proc_history) but the noise "
        f"covariance has MEG rank {r_data}: clearing info['proc_history']."
    )
    with info._unlock():
        info["proc_history"] = []
    return True


def _real_surfaces(src, subjects_dir, subject, mri_head) -> dict:
    """Display surfaces in head coordinates, indexed like the source-space vertices."""
    import nibabel as nib

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


def iter_make_headmodel(
    *, info, trans=None, bem=None, src=None, subjects_dir=None, subject=None, spacing="oct5",
    noise_cov="adhoc", modality="meg", src_scale="auto", use_all_vertices=False, verbose=None,
):  # fmt: skip
    """Build a head model from real inputs, yielding progress.

    Parameters
    ----------
    info : mne.Info | path-like | mne_bids.BIDSPath
        Sensors: an Info, a raw/epochs/evoked FIF file or a BIDS recording.
        Bad channels (of the info and of the covariance) are left out.
    trans : path-like | mne.transforms.Transform | None
        Head <-> MRI transform; required unless ``src`` is in head coordinates.
    bem : path-like | mne.bem.ConductorModel | "sphere"
        BEM solution file (1-layer: MEG only; 3-layer: MEG and EEG; a BEM
        surfaces file is solved on the fly), a conductor model, or ``"sphere"``
        for a sphere fitted to the head-shape points.
    src : mne.SourceSpaces | path-like | None
        Two-hemisphere surface source space; ``None`` builds one from
        ``subjects_dir``/``subject``/``spacing``.
    subjects_dir, subject : path-like, str | None
        FreeSurfer subject, for building ``src`` and for display surfaces.
    spacing : str
        Source spacing when ``src`` is None (e.g. ``"oct5"``, ``"ico4"``).
    noise_cov : "adhoc" | mne.Covariance | path-like
        See :func:`prepare_noise_cov` (a ``-cov.fif`` file, or an empty-room raw
        FIF from which a covariance is computed).
    modality : str
        ``"meg"``, ``"eeg"`` or ``"meg+eeg"``.
    src_scale : "auto" | float
        Factor applied to the source positions. ``"auto"`` multiplies by 1000
        (with a logged warning) when all positions lie within 5 mm of the
        origin, as in MNE's ``small-src.fif.gz``.
    use_all_vertices : bool
        Use every vertex of the source-space surface (e.g. all 1026/hemisphere
        of ``small-src``) instead of its decimated subset.
    verbose : bool | str | int | None
        MNE log level.

    Yields
    ------
    event : progress.Progress

    Returns
    -------
    hm : HeadModel
        Sources, surfaces and sensors in head coordinates.
    """
    meg, eeg = check_modality(modality)
    verbose = "warning" if verbose is None else verbose
    stage = "head model"
    total = 6
    yield Progress(stage, 0, total, "reading inputs")
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
    n_meg = len(mne.pick_types(info_full, meg=True, exclude=[]))
    n_eeg = len(mne.pick_types(info_full, meg=False, eeg=True, exclude=[]))
    if (meg and not n_meg) or (eeg and not n_eeg):
        raise ValueError(
            f"modality={modality!r} but the info ({info_source}) has {n_meg} MEG and "
            f"{n_eeg} EEG channels."
        )
    cov_in = noise_cov
    if not (isinstance(noise_cov, str) and noise_cov == "adhoc"):
        if isinstance(noise_cov, str | os.PathLike) and _is_cov_fname(Path(noise_cov)):
            path = _check_file(noise_cov, "noise_cov")
            cov_in = _read_or_raise(
                path, "noise covariance", lambda p: mne.read_cov(p, verbose=False)
            )
    bads = set(info_full["bads"])
    if isinstance(cov_in, mne.Covariance):
        bads |= set(cov_in["bads"]) & set(info_full["ch_names"])
    picks = mne.pick_types(info_full, meg=meg, eeg=eeg, ref_meg=False, exclude=sorted(bads))
    info_hm = mne.pick_info(info_full, picks)
    with info_hm._unlock():
        info_hm["bads"] = []
    if eeg and not _has_eeg_average_ref_proj(info_hm):
        raise ValueError(
            f"The info ({info_source}) has EEG channels but no average-reference projector, "
            "which EEG source modelling needs. Add one first, e.g. "
            "raw.set_eeg_reference('average', projection=True) (or mne.set_eeg_reference "
            "with projection=True) and pass that raw's info."
        )
    yield Progress(stage, 1, total, "noise covariance")
    cov = prepare_noise_cov(cov_in, info_hm, verbose=verbose)
    sss_cleared = _clear_sss_if_inconsistent(info_hm, cov)
    yield Progress(stage, 2, total, "conductor model")
    bem_model = _read_bem_input(bem, info=info_hm, eeg=eeg, verbose=verbose)
    yield Progress(stage, 3, total, "forward solution")
    n_in = sum(s["nuse"] for s in src_in)
    fwd = compute_forward(info_hm, src_in, bem_model, trans_in, meg=meg, eeg=eeg,
                          verbose=verbose)  # fmt: skip
    n_out = sum(s["nuse"] for s in fwd["src"])
    if n_out < n_in:
        logger.warning(
            f"{n_in - n_out} of {n_in} sources lie outside the inner boundary of the "
            "conductor model (inner skull) and were left out."
        )
    fwd_free, fwd_fixed = _finish_forwards(fwd)
    yield Progress(stage, 4, total, "surfaces")
    subject_name = subject or src_in[0].get("subject_his_id") or "unknown"
    mri_head = invert_transform(trans_in) if trans_in is not None else None
    surfaces = _real_surfaces(src_in, subjects_dir, subject_name, mri_head)
    params = dict(
        info=info_source,
        trans=str(trans) if isinstance(trans, str | os.PathLike) else type(trans).__name__,
        bem=str(bem) if isinstance(bem, str | os.PathLike) else type(bem).__name__,
        src=str(src) if isinstance(src, str | os.PathLike) else type(src).__name__,
        subjects_dir=str(subjects_dir) if subjects_dir is not None else None,
        subject=subject, spacing=spacing, modality=modality,
        noise_cov=noise_cov if isinstance(noise_cov, str) else _noise_cov_key(noise_cov),
        src_scale=src_scale, use_all_vertices=bool(use_all_vertices),
    )  # fmt: skip
    dev_head = info_hm["dev_head_t"]
    provenance = dict(
        builder="make_headmodel",
        parameters=params,
        versions=_versions(),
        dev_head_translation_m=(
            [float(x) for x in dev_head["trans"][:3, 3]] if dev_head is not None else None
        ),
        src_scale_applied=scale,
        bads_excluded=sorted(bads),
        sss_proc_history_cleared=sss_cleared,
        n_sources_outside_inner_skull=int(n_in - n_out),
        cache_path=None,
    )
    hm = HeadModel(
        info=info_hm, src=fwd_free["src"], fwd=fwd_free, fwd_fixed=fwd_fixed, noise_cov=cov,
        surfaces=surfaces, trans=trans_in, subject=subject_name, spacing=spacing_label,
        modality=modality, conductor=_describe_conductor(bem_model), provenance=provenance,
        bem=bem_model,
    )  # fmt: skip
    yield Progress(stage, 5, total, "finalising")
    hm = _store(hm, None, verbose=verbose)
    yield Progress(stage, total, total, "done")
    return hm


def make_headmodel(
    *, info, trans=None, bem=None, src=None, subjects_dir=None, subject=None, spacing="oct5",
    noise_cov="adhoc", modality="meg", src_scale="auto", use_all_vertices=False, verbose=None,
) -> HeadModel:  # fmt: skip
    """Build a head model from real inputs; see :func:`iter_make_headmodel`."""
    return run(
        iter_make_headmodel(
            info=info,
            trans=trans,
            bem=bem,
            src=src,
            subjects_dir=subjects_dir,
            subject=subject,
            spacing=spacing,
            noise_cov=noise_cov,
            modality=modality,
            src_scale=src_scale,
            use_all_vertices=use_all_vertices,
            verbose=verbose,
        )  # fmt: skip
    )
