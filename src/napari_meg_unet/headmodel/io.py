"""Head models on disk: the saved layout, loading, and the builders' cache."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import warnings
from pathlib import Path

import mne
import numpy as np

from .._docs import fill_doc
from .._io import read_json, to_json, write_json
from .._logging import verbose
from ..progress import Progress
from .covariance import _native_cov
from .forward import _headmodel_from_forward, _sphere_from_dict, _sphere_to_dict
from .model import HeadModel

logger = logging.getLogger(__name__)

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


def _cache_key(params: dict) -> str:
    return hashlib.sha256(to_json(params, sort_keys=True).encode()).hexdigest()[:16]


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in ("napari-meg-unet", "mne", "numpy", "scipy", "nibabel", "nilearn"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = None
    return out


# =========================================================================== write
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


# =========================================================================== read
def _read_meta(path: Path) -> dict:
    """``headmodel.json`` of the head-model directory ``path``, checked."""
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
    return meta


def _read_part(path: Path, key: str, reader):
    """Read the file ``key`` of the head-model directory ``path`` with ``reader``."""
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


def _read_conductor(path: Path, meta: dict):
    conductor = meta.get("conductor_model") or None
    if conductor is None:
        return None
    if conductor["kind"] == "sphere":
        return _sphere_from_dict(conductor)
    return _read_part(path, "bem", lambda f: mne.read_bem_solution(f, verbose=False))


def _read_surfaces(path: Path) -> dict:
    arrays = _read_part(path, "surfaces", lambda f: dict(np.load(f, allow_pickle=False)))
    surfaces: dict = {}
    for key, value in arrays.items():
        kind, hemi, what = key.split("__")
        if what == "rr":
            surfaces.setdefault(kind, {})[hemi] = (value, arrays[f"{kind}__{hemi}__tris"])
    return surfaces


@verbose
@fill_doc
def load_headmodel(path, *, verbose=None) -> HeadModel:
    """Load a head model saved with :meth:`HeadModel.save` (or cached by a builder).

    Parameters
    ----------
    path : path-like
        Directory written by :meth:`HeadModel.save`.
    %(verbose)s

    Returns
    -------
    hm : HeadModel
        The head model.
    """
    path = Path(path)
    meta = _read_meta(path)
    with mne.use_log_level(verbose if verbose is not None else "warning"):
        fwd = _read_part(path, "fwd", lambda f: mne.read_forward_solution(f, verbose=False))
        info = _read_part(path, "info", lambda f: mne.io.read_info(f, verbose=False))
        noise_cov = _read_part(path, "cov", lambda f: _native_cov(mne.read_cov(f, verbose=False)))
        trans = None
        if (path / _FILES["trans"]).is_file():
            trans = _read_part(path, "trans", lambda f: mne.read_trans(f, verbose=False))
        bem = _read_conductor(path, meta)
        surfaces = _read_surfaces(path)
    provenance = dict(meta.get("provenance") or {})
    provenance["loaded_from"] = str(path)
    return _headmodel_from_forward(
        fwd, info=info, noise_cov=noise_cov, surfaces=surfaces, trans=trans,
        subject=meta["subject"], spacing=meta["spacing"], modality=meta["modality"],
        conductor=meta["conductor"], provenance=provenance, bem=bem,
    )  # fmt: skip


# =========================================================================== cache
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


def _iter_load_cached(stage: str, path: Path | None, marker: Path | None, load, errors, redo):
    """Load a cached result, yielding progress; None when absent or unreadable.

    ``marker`` is the file whose presence means a cached result exists at
    ``path``; ``load()`` reads it. An error among ``errors`` is logged as
    ``"{redo} {path!r}: {error}"`` and None is returned, so the caller rebuilds.
    """
    if path is None or marker is None or not marker.is_file():
        return None
    yield Progress(stage, 0, 1, "loading from cache")
    try:
        out = load()
    except errors as err:
        logger.warning(f"{redo} {str(path)!r}: {err}")
        return None
    yield Progress(stage, 1, 1, "loaded from cache")
    return out
