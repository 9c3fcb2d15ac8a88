"""The noise covariance of a head model: read, computed or ad hoc, checked per channel."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import mne
import numpy as np

from .._docs import fill_doc
from .._logging import verbose
from ..fingerprint import array_fingerprint

logger = logging.getLogger(__name__)

#: How many channel names an error or warning lists before "and N more".
_N_NAMES_SHOWN = 10


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


def _is_adhoc(noise_cov) -> bool:
    return isinstance(noise_cov, str) and noise_cov == "adhoc"


def check_noise_cov(noise_cov):
    """Validate a ``noise_cov`` argument: ``"adhoc"``, a Covariance or an existing file."""
    if not isinstance(noise_cov, str | os.PathLike | mne.Covariance):
        raise TypeError(
            "noise_cov must be 'adhoc', an mne.Covariance or a path, got "
            f"{type(noise_cov).__name__}."
        )
    if isinstance(noise_cov, str | os.PathLike) and not _is_adhoc(noise_cov):
        path = Path(noise_cov)
        if not path.is_file():
            raise FileNotFoundError(
                f"noise_cov file {str(path)!r} does not exist (expected 'adhoc', a "
                "Covariance, a -cov.fif file or an empty-room raw FIF file)."
            )
    return noise_cov


def _name_list(names) -> str:
    """``'A', 'B', ... and N more``: at most :data:`_N_NAMES_SHOWN` names."""
    shown = ", ".join(repr(name) for name in names[:_N_NAMES_SHOWN])
    n_more = len(names) - _N_NAMES_SHOWN
    return shown + (f" and {n_more} more" if n_more > 0 else "")


def _read_noise_cov(path: Path, info: mne.Info, source: str, *, verbose=None) -> mne.Covariance:
    """A covariance file, or the covariance of an (empty-room) raw FIF file."""
    try:
        if _is_cov_fname(path):
            return _native_cov(mne.read_cov(path, verbose=verbose))
        raw = mne.io.read_raw_fif(path, allow_maxshield=True, preload=True, verbose=verbose)
        raw.pick([ch for ch in raw.ch_names if ch in info["ch_names"]] or "data")
        return mne.compute_raw_covariance(raw, tmin=0, tmax=None, verbose=verbose)
    except Exception as err:  # MNE raises many types on corrupt FIF files
        raise ValueError(
            f"Could not read {source} (corrupt, or not a covariance/raw FIF file): "
            f"{type(err).__name__}: {err}"
        ) from err


def _check_cov_channels(cov: mne.Covariance, info: mne.Info, source: str) -> None:
    """Raise naming the channels of ``info`` that ``cov`` lacks."""
    missing = [ch for ch in info["ch_names"] if ch not in cov.ch_names]
    if not missing:
        return
    hint = ""
    squeezed = {name.replace(" ", ""): name for name in cov.ch_names}
    if all(ch.replace(" ", "") in squeezed for ch in missing):
        hint = (
            " The names differ only by spaces (e.g. "
            f"{squeezed[missing[0].replace(' ', '')]!r} vs {missing[0]!r}); rename the "
            "channels of the covariance or recording first."
        )
    raise ValueError(
        f"The {source} lacks {len(missing)} channel(s) of the info: {_name_list(missing)}.{hint}"
    )


def _check_cov_values(cov: mne.Covariance, source: str) -> None:
    """Raise on non-finite entries; warn, by name, about zero-variance channels.

    MNE only warns from deep inside the whitener, without saying which channels
    or what to do; a zero variance makes the whitened data of that channel
    (and so the inverse and the simulated noise) meaningless.
    """
    data = np.asarray(cov.data)
    finite = np.isfinite(data)
    bad_rows = ~finite if data.ndim == 1 else ~finite.all(axis=1)
    if bad_rows.any():
        names = [cov.ch_names[i] for i in np.flatnonzero(bad_rows)]
        raise ValueError(
            f"The {source} has NaN or Inf entries for {len(names)} channel(s): "
            f"{_name_list(names)}. Recompute or repair the covariance."
        )
    variance = data if data.ndim == 1 else np.diag(data)
    zero = np.flatnonzero(variance <= 0)
    if not len(zero):
        return
    names = [cov.ch_names[i] for i in zero]
    message = (
        f"The {source} has zero (or negative) variance on {len(names)} of the "
        f"{len(cov.ch_names)} channel(s) it is used for: {_name_list(names)}. Whitening "
        "divides by these variances, so these channels would distort the inverse and the "
        "simulated noise: mark them bad (the recording's info['bads'] or the covariance's "
        "'bads', which make_headmodel leaves out) or drop them, or use another covariance."
    )
    logger.warning(message)
    warnings.warn(message, RuntimeWarning, stacklevel=2)


@verbose
@fill_doc
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
    %(verbose)s

    Returns
    -------
    cov : mne.Covariance
        Covariance restricted to (and ordered as) ``info['ch_names']``.

    Raises
    ------
    ValueError
        When channels of ``info`` are missing, or the covariance of these
        channels has NaN or Inf entries (naming the file and the channels).

    Warns
    -----
    RuntimeWarning
        When some of these channels have zero variance (naming them).
    """
    check_noise_cov(noise_cov)
    if _is_adhoc(noise_cov):
        return mne.make_ad_hoc_cov(info, verbose=False)
    if isinstance(noise_cov, mne.Covariance):
        cov, source = noise_cov, "given covariance"
    else:
        path = Path(noise_cov)
        source = f"noise_cov file {str(path)!r}"
        cov = _read_noise_cov(path, info, source, verbose=verbose)
    _check_cov_channels(cov, info, source)
    picked = mne.pick_channels_cov(
        cov, include=list(info["ch_names"]), exclude=[], ordered=True, copy=True, verbose=False
    )
    _check_cov_values(picked, source)
    return _native_cov(picked)
