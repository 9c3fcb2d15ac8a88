"""The noise covariance of a recording: given, empty-room when it matches, baseline, or ad hoc."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import mne
import numpy as np

from ..headmodel import is_sss
from .reading import Recording

logger = logging.getLogger(__name__)

#: An empty-room recording is used when made at most this many days from the recording.
EMPTYROOM_MAX_DAYS = 30.0
#: Fewest baseline samples (all epochs together) per channel for a baseline covariance.
MIN_BASELINE_SAMPLES_PER_CHANNEL = 1.0
#: Covariance estimator of the baseline: empirical with MNE's fixed diagonal regularisation
#: (baselines are short; "shrunk" cross-validates and takes minutes on 306 channels).
BASELINE_METHOD = "diagonal_fixed"


@dataclass
class NoiseChoice:
    """The noise covariance chosen for a recording, and why.

    Attributes
    ----------
    cov : mne.Covariance | str | path-like
        What the head model is built with (``"adhoc"``, a file or a covariance).
    kind : ``"given"`` | ``"empty-room"`` | ``"baseline"`` | ``"ad hoc"``
    reason : str
        One sentence for the output (what was used, or why not the others).
    """

    cov: object
    kind: str
    reason: str

    def summary(self) -> dict:
        source = self.cov if isinstance(self.cov, str | Path) else type(self.cov).__name__
        return {"kind": self.kind, "reason": self.reason, "source": str(source)}


def _meg_names(info) -> list[str]:
    picks = mne.pick_types(info, meg=True, ref_meg=False, exclude="bads")
    return [info["ch_names"][i] for i in picks]


def _emptyroom_mismatch(info, er_info, max_days) -> str | None:
    """Why the empty-room recording does not match the recording (None: it matches)."""
    names = _meg_names(info)
    missing = [n for n in names if n not in er_info["ch_names"]]
    if missing:
        return (f"it lacks {len(missing)} of the recording's MEG channels (e.g. "
                f"{missing[0]!r}): another system or naming")  # fmt: skip
    coil = {ch["ch_name"]: ch["coil_type"] for ch in er_info["chs"]}
    other = [ch["ch_name"] for ch in info["chs"] if ch["ch_name"] in names
             and coil[ch["ch_name"]] != ch["coil_type"]]  # fmt: skip
    if other:
        return f"its sensors differ (coil type of {other[0]!r}): another MEG system"
    if is_sss(info) != is_sss(er_info):
        which = "is" if is_sss(info) else "is not"
        return (f"the recording {which} Maxwell-filtered and the empty-room recording is "
                "not processed the same way")  # fmt: skip
    a, b = info["meas_date"], er_info["meas_date"]
    if a is None or b is None:
        return "a measurement date is missing, so it cannot be checked to be recent"
    days = abs((a - b).total_seconds()) / 86400.0
    if days > max_days:
        return f"it was measured {days:.0f} days from the recording (more than {max_days:g})"
    return None


def _read_emptyroom(emptyroom):
    if type(emptyroom).__name__ == "BIDSPath":
        from mne_bids import read_raw_bids

        return read_raw_bids(emptyroom, verbose="error"), str(emptyroom.fpath)
    path = Path(emptyroom)
    if not path.is_file():
        raise FileNotFoundError(f"The empty-room recording {str(path)!r} does not exist.")
    return mne.io.read_raw_fif(path, allow_maxshield=True, verbose="error"), str(path)


def _emptyroom_cov(rec: Recording, emptyroom, max_days):
    """``(covariance, reason)`` of a matching empty-room recording, else ``(None, reason)``."""
    raw, source = _read_emptyroom(emptyroom)
    why = _emptyroom_mismatch(rec.info, raw.info, max_days)
    if why is not None:
        return None, f"the empty-room recording {source} was not used: {why}"
    raw.load_data(verbose=False)
    raw.pick(_meg_names(rec.info))
    cov = mne.compute_raw_covariance(raw, tmin=0, tmax=None, verbose=False)
    return cov, f"empty-room recording {source} ({raw.n_times} samples, same channels)"


def _baseline_cov(rec: Recording):
    """``(covariance, reason)`` of the epochs' pre-stimulus baseline, else ``(None, reason)``."""
    epochs = rec.epochs
    if epochs is None:
        return None, "there are no single trials (epochs) for a baseline covariance"
    if epochs.tmin >= 0:
        return None, "the epochs have no pre-stimulus baseline (tmin >= 0)"
    n_base = int(np.sum(epochs.times < 0)) * len(epochs)
    n_ch = len(_meg_names(rec.info))
    if n_base < MIN_BASELINE_SAMPLES_PER_CHANNEL * n_ch:
        return None, (f"the baseline holds {n_base} samples for {n_ch} channels, too few "
                      "for a covariance")  # fmt: skip
    meg = epochs.copy().pick(_meg_names(rec.info))
    cov = mne.compute_covariance(meg, tmax=0.0, method=BASELINE_METHOD,
                                 rank="info" if is_sss(rec.info) else None, verbose=False)
    return cov, (f"pre-stimulus baseline of {len(epochs)} epochs ({n_base} samples, "
                 f"{BASELINE_METHOD} estimator)")  # fmt: skip


def choose_noise_cov(rec: Recording, *, noise_cov=None, emptyroom=None,
                     max_days=EMPTYROOM_MAX_DAYS) -> NoiseChoice:  # fmt: skip
    """The noise covariance for ``rec``: given, else empty-room, else baseline, else ad hoc.

    Parameters
    ----------
    rec : Recording
    noise_cov : mne.Covariance | path-like | "adhoc" | None
        Use this one (a ``-cov.fif`` file, an empty-room raw file is computed
        by the head-model builder); None chooses.
    emptyroom : path-like | mne_bids.BIDSPath | None
        An empty-room recording to try first (else the one BIDS associates).
        It is used when it has the recording's MEG channels with the same
        sensors, the same Maxwell filtering (or none) and was measured within
        ``max_days`` days.
    max_days : float
        See ``emptyroom``.

    Returns
    -------
    choice : NoiseChoice
    """
    if noise_cov is not None:
        kind = "ad hoc" if isinstance(noise_cov, str) and noise_cov == "adhoc" else "given"
        return NoiseChoice(noise_cov, kind, f"{kind} noise covariance ({noise_cov})")
    tried = []
    emptyroom = emptyroom if emptyroom is not None else rec.emptyroom
    if emptyroom is not None:
        cov, reason = _emptyroom_cov(rec, emptyroom, max_days)
        if cov is not None:
            return NoiseChoice(cov, "empty-room", reason)
        tried.append(reason)
    else:
        tried.append("no empty-room recording was given or found")
    cov, reason = _baseline_cov(rec)
    if cov is not None:
        return NoiseChoice(cov, "baseline", reason + ("; " + "; ".join(tried) if tried else ""))
    tried.append(reason)
    return NoiseChoice("adhoc", "ad hoc", "ad hoc (diagonal) noise covariance, because "
                       + "; ".join(tried))  # fmt: skip
