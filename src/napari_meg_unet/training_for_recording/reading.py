"""The recording a network is trained for: read with plain mne / mne-bids calls.

SWAP POINT: :func:`read_recording` is deliberately small (``mne.io.read_raw``,
``mne.read_evokeds``, ``mne.read_epochs``, :func:`napari_meg_unet.bids.read_recording`
for BIDS). When the package's general recording reader (MNE objects in,
``predict``/``inverse`` on recordings) exists, this function should become a
thin adapter over it; nothing else in this package reads files.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import mne
import numpy as np

logger = logging.getLogger(__name__)

#: Epoch window (s) around the events of a raw recording (a pre-stimulus baseline included).
EPOCH_WINDOW = (-0.2, 0.5)
_EVOKED_SUFFIXES = ("-ave.fif", "-ave.fif.gz", "_ave.fif", "_ave.fif.gz")
_EPOCHS_SUFFIXES = ("-epo.fif", "-epo.fif.gz", "_epo.fif", "_epo.fif.gz")


@dataclass(eq=False)
class Recording:
    """A recording as the training for it needs it.

    Attributes
    ----------
    source : str
        The file (or BIDS recording) read, for messages.
    kind : ``"raw"`` | ``"epochs"`` | ``"evoked"``
        What the file holds.
    info : mne.Info
        Sensors, bad channels, digitisation, projectors, processing history.
    evokeds : list of mne.Evoked
        The averages whose SNR is measured: one per condition (evoked files,
        epochs and raw files with events), or the whole raw recording as one
        segment (``nave=1``) when it has no events.
    epochs : mne.Epochs | None
        The single trials, when there are any (their baseline gives a noise
        covariance).
    bids_path : mne_bids.BIDSPath | None
        The BIDS recording, when read through BIDS.
    emptyroom : path-like | mne_bids.BIDSPath | None
        An empty-room recording associated by BIDS.
    notes : list of str
        What was done while reading (events found, epochs made, ...).
    """

    source: str
    kind: str
    info: mne.Info
    evokeds: list
    epochs: mne.BaseEpochs | None = None
    bids_path: object = None
    emptyroom: object = None
    notes: list = field(default_factory=list)

    @property
    def sfreq(self) -> float:
        return float(self.info["sfreq"])

    @property
    def naves(self) -> list[int]:
        return [int(ev.nave) for ev in self.evokeds]

    @property
    def conditions(self) -> list[str]:
        return [ev.comment or f"condition {i}" for i, ev in enumerate(self.evokeds)]

    def summary(self) -> dict:
        return {
            "source": self.source, "kind": self.kind, "sfreq": self.sfreq,
            "conditions": self.conditions, "nave": self.naves,
            "n_epochs": None if self.epochs is None else len(self.epochs),
            "bads": list(self.info["bads"]), "notes": list(self.notes),
        }  # fmt: skip


def _has_suffix(name: str, suffixes) -> bool:
    return any(name.endswith(s) for s in suffixes)


def _is_bids(path) -> bool:
    return type(path).__name__ == "BIDSPath"


def read_recording(path, *, condition=None, verbose=None) -> Recording:
    """Read a raw, epochs or evoked FIF file, or a BIDS MEG recording.

    Parameters
    ----------
    path : path-like | mne_bids.BIDSPath
        An evoked file (``-ave.fif``: every condition), an epochs file
        (``-epo.fif``), any raw file :func:`mne.io.read_raw` reads, or a
        recording inside a BIDS dataset (a path or a BIDSPath).
    condition : str | None
        Keep only this condition (an evoked comment or an event name).
    verbose : bool | str | int | None
        MNE's logging level.

    Returns
    -------
    recording : Recording
    """
    from ..bids import find_recordings

    if not _is_bids(path):
        if not isinstance(path, str | os.PathLike):
            raise TypeError(
                f"The recording must be a path or a mne_bids.BIDSPath, got {type(path).__name__}."
            )
        if not Path(path).exists():
            raise FileNotFoundError(f"The recording {str(path)!r} does not exist.")
        found = find_recordings(path)
        if len(found) > 1:
            raise ValueError(
                f"{str(path)!r} selects {len(found)} BIDS recordings; pass one of them, e.g. "
                f"{str(found[0].fpath)!r}."
            )
        path = found[0] if found else Path(path)
    verbose = "error" if verbose is None else verbose
    if _is_bids(path):
        rec = _read_bids(path, verbose)
    elif _has_suffix(path.name, _EVOKED_SUFFIXES):
        rec = _from_evokeds(mne.read_evokeds(path, verbose=verbose), str(path))
    elif _has_suffix(path.name, _EPOCHS_SUFFIXES):
        epochs = mne.read_epochs(path, preload=True, verbose=verbose)
        rec = _from_epochs(epochs, str(path), "epochs", [])
    else:
        raw = mne.io.read_raw(path, preload=True, verbose=verbose)
        rec = _from_raw(raw, mne.find_events(raw, verbose=False) if _has_stim(raw) else None,
                        None, str(path))  # fmt: skip
    return _select(rec, condition)


def _has_stim(raw) -> bool:
    return bool(len(mne.pick_types(raw.info, meg=False, stim=True)))


def _read_bids(bids_path, verbose) -> Recording:
    from ..bids import read_recording as read_bids_recording

    bids_rec = read_bids_recording(bids_path, verbose=verbose)
    events = bids_rec.events if len(bids_rec.events) else None
    rec = _from_raw(bids_rec.raw, events, bids_rec.event_id or None, str(bids_path.fpath))
    rec.bids_path, rec.emptyroom = bids_path, bids_rec.emptyroom
    rec.notes += bids_rec.messages
    return rec


def _from_evokeds(evokeds, source) -> Recording:
    info = evokeds[0].info
    for ev in evokeds[1:]:
        if ev.ch_names != info["ch_names"] or ev.info["sfreq"] != info["sfreq"]:
            raise ValueError(f"The conditions of {source!r} differ in channels or sampling rate.")
    return Recording(source, "evoked", info, list(evokeds))


def _from_epochs(epochs, source, kind, notes) -> Recording:
    names = list(epochs.event_id) if len(epochs.event_id) > 1 else [None]
    evokeds = []
    for name in names:
        sub = epochs if name is None else epochs[name]
        if len(sub):
            ev = sub.average()
            ev.comment = name or ev.comment
            evokeds.append(ev)
    return Recording(source, kind, epochs.info, evokeds, epochs=epochs, notes=notes)


def _from_raw(raw, events, event_id, source) -> Recording:
    if events is not None and len(events):
        tmin, tmax = EPOCH_WINDOW
        epochs = mne.Epochs(raw, events, event_id=event_id, tmin=tmin, tmax=tmax,
                            baseline=(None, 0), preload=True, reject=None, verbose=False,
                            on_missing="ignore")  # fmt: skip
        if len(epochs):
            note = (f"{len(events)} events: epochs {tmin:g} to {tmax:g} s, baseline before 0 "
                    f"({len(epochs)} kept)")  # fmt: skip
            return _from_epochs(epochs, source, "raw", [note])
    seg = mne.EvokedArray(raw.get_data(), raw.info, tmin=0.0, nave=1, comment="raw",
                          verbose=False)  # fmt: skip
    note = (f"no events: the whole recording ({raw.n_times} samples) is one segment, "
            "nave 1, without a baseline")  # fmt: skip
    return Recording(source, "raw", raw.info, [seg], notes=[note])


def _select(rec: Recording, condition) -> Recording:
    if condition is None:
        return rec
    keep = [ev for ev in rec.evokeds if ev.comment == condition]
    if not keep:
        raise ValueError(
            f"condition {condition!r} is not in {rec.source!r}; its conditions are "
            f"{rec.conditions}."
        )
    rec.evokeds = keep
    if rec.epochs is not None and condition in rec.epochs.event_id:
        rec.epochs = rec.epochs[condition]
    return rec


def common_nave(rec: Recording) -> tuple[int, str]:
    """The nave of the training data: the conditions' most frequent nave (ties: the larger)."""
    naves = rec.naves
    values, counts = np.unique(naves, return_counts=True)
    nave = int(max(zip(counts, values, strict=True))[1])
    if len(values) == 1:
        return nave, f"nave {nave}"
    return nave, (
        f"nave {nave}, the most frequent of the conditions' {naves} (the inverse's noise "
        "normalisation scales with nave, which the per-image normalisation cancels)"
    )
