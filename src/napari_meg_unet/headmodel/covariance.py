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


# =========================================================================== rank
#: MEG channel-type keys of :func:`mne.compute_rank`.
_MEG_KEYS = ("meg", "mag", "grad")


def is_sss(info: mne.Info) -> bool:
    """Whether ``info`` is Maxwell-filtered (an SSS record in ``info['proc_history']``)."""
    return any(
        "in_order" in (pp.get("max_info") or {}).get("sss_info", {})
        for pp in info.get("proc_history") or []
    )


def _meg_rank(ranks: dict) -> int:
    return int(sum(v for k, v in ranks.items() if k in _MEG_KEYS))


def noise_rank(info: mne.Info, cov: mne.Covariance) -> dict:
    """The rank the whitener of ``cov`` uses for the data of ``info``, and why.

    Not Maxwell-filtered data: MNE's default (``rank=None``, estimated from
    the covariance). Maxwell-filtered (SSS) data: MNE's ``rank='info'`` for
    MEG, i.e. the number of SSS components kept (from ``info['proc_history']``)
    minus the projectors, or the covariance's own MEG rank if smaller. A
    covariance of higher MEG rank than that was not computed from SSS data:
    ``message`` then says so and what to do.

    Returns
    -------
    rank : dict
        ``mne`` (the ``rank`` argument for MNE: None or ``{"meg": r}``),
        ``by_type`` (the rank per channel type used), ``total``, ``method``
        (``"data"`` or ``"info (SSS)"``), ``sss``, ``info_meg_rank`` and
        ``cov_meg_rank`` (SSS only, else None), ``n_channels`` and ``message``
        (None when the covariance and the data agree).
    """
    cov = _native_cov(cov.copy())
    n_ch = len(info["ch_names"])
    n_meg = len(mne.pick_types(info, meg=True, exclude=[]))
    if not (n_meg and is_sss(info)):
        ranks = mne.compute_rank(cov, rank=None, info=info, verbose=False)
        return dict(mne=None, by_type={k: int(v) for k, v in ranks.items()},
                    total=int(sum(ranks.values())), method="data", sss=False,
                    info_meg_rank=None, cov_meg_rank=None, n_channels=n_ch,
                    message=None)  # fmt: skip
    cleared = info.copy()
    with cleared._unlock():
        cleared["proc_history"] = []
    r_info = _meg_rank(mne.compute_rank(cov, rank="info", info=info, verbose=False))
    data_ranks = mne.compute_rank(cov, rank=None, info=cleared, verbose=False)
    r_cov = _meg_rank(data_ranks)
    r_meg = min(r_info, r_cov)
    by_type = {k: int(v) for k, v in data_ranks.items() if k not in _MEG_KEYS}
    by_type["meg"] = r_meg
    message = None
    if r_cov > r_info:
        message = (
            f"The data are Maxwell-filtered (SSS: MEG rank {r_info} from info['proc_history']) "
            f"but the noise covariance has MEG rank {r_cov}: it does not describe "
            "SSS-processed data (it is ad hoc, or was computed before Maxwell filtering). "
            f"The whitener uses MEG rank {r_meg} (MNE's rank='info'), which keeps the "
            "covariance's strongest components, not the SSS subspace. For a correct "
            "whitener use a covariance of Maxwell-filtered data: the pre-stimulus baseline "
            "of the SSS epochs (mne.compute_covariance(epochs, tmax=0)), or an empty-room "
            "recording Maxwell-filtered with the same settings "
            "(mne.preprocessing.maxwell_filter_prepare_emptyroom, then maxwell_filter)."
        )
    return dict(mne={"meg": r_meg}, by_type=by_type, total=int(sum(by_type.values())),
                method="info (SSS)", sss=True, info_meg_rank=r_info, cov_meg_rank=r_cov,
                n_channels=n_ch, message=message)  # fmt: skip


def describe_rank(rank: dict) -> str:
    """One line: the noise rank used and how it was decided (for CLI output and logs)."""
    parts = ", ".join(f"{k} {v}" for k, v in rank["by_type"].items())
    text = f"noise rank {rank['total']} of {rank['n_channels']} channels ({parts}; "
    if rank["sss"]:
        text += (f"Maxwell-filtered data: rank='info', SSS rank {rank['info_meg_rank']}, "
                 f"covariance MEG rank {rank['cov_meg_rank']})")  # fmt: skip
    else:
        text += "estimated from the covariance)"
    return text
