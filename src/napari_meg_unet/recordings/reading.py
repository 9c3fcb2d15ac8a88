"""Reading a recording into :class:`Segment` objects: FIF evoked/epochs/raw, BIDS, MNE objects.

What comes out (see :func:`read_segments`):

- an evoked file or a list of :class:`mne.Evoked`: one segment per condition,
  each with its own ``nave``;
- epochs: one segment per condition (the average, ``nave`` = number of
  epochs), or, with ``average=False``, one segment holding every epoch
  (``nave`` 1);
- raw data (a FIF file, an :class:`mne.io.Raw` or a BIDS recording): cut into
  epochs around its events and handled as epochs, or, without events, one
  continuous segment cropped to ``tmin``..``tmax``.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import mne
import numpy as np

from .._config import takes_config
from .._logging import verbose as _verbose
from ..configs import RecordingConfig
from .segments import Segment

logger = logging.getLogger(__name__)

#: File-name endings of MNE FIF files, by kind (MNE's naming convention, gzip allowed).
EVOKED_ENDINGS = ("-ave.fif", "_ave.fif", "-ave.fif.gz", "_ave.fif.gz")
EPOCHS_ENDINGS = ("-epo.fif", "_epo.fif", "-epo.fif.gz", "_epo.fif.gz")
RAW_ENDINGS = tuple(
    f"{sep}{kind}{ext}"
    for sep in ("-", "_")
    for kind in ("raw", "raw_sss", "raw_tsss", "meg", "eeg", "tsss_mc", "sss")
    for ext in (".fif", ".fif.gz")
)
#: Epoch span (s) around events when tmin/tmax are not given.
DEFAULT_EPOCH = (-0.2, 0.5)


def fif_kind(path) -> str | None:
    """``"evoked"``, ``"epochs"`` or ``"raw"`` from an MNE FIF file name (None: unknown)."""
    name = Path(path).name
    for kind, endings in (("evoked", EVOKED_ENDINGS), ("epochs", EPOCHS_ENDINGS),
                          ("raw", RAW_ENDINGS)):  # fmt: skip
        if name.endswith(endings):
            return kind
    return None


def _is_bids_path(obj) -> bool:
    return type(obj).__name__ == "BIDSPath"


def _read_fif(path: Path):
    """The MNE object(s) of a FIF file (by name, else by trying raw, epochs, evoked)."""
    kind = fif_kind(path)
    readers = {
        "evoked": lambda: mne.read_evokeds(path, verbose="error"),
        "epochs": lambda: mne.read_epochs(path, preload=True, verbose="error"),
        "raw": lambda: mne.io.read_raw_fif(path, preload=True, verbose="error"),
    }
    order = [kind] if kind is not None else ["raw", "epochs", "evoked"]
    errors = []
    for k in order:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return readers[k]()
        except Exception as err:  # MNE raises many types on a FIF of another kind
            errors.append(f"as {k}: {type(err).__name__}: {str(err).splitlines()[0][:200]}")
    raise ValueError(
        f"Could not read {str(path)!r} as an MNE evoked, epochs or raw FIF file "
        f"({'; '.join(errors)}). Name the file by MNE's convention ({EVOKED_ENDINGS[0]}, "
        f"{EPOCHS_ENDINGS[0]}, {RAW_ENDINGS[0]})."
    )


def _read_bids(bids_path, *, verbose=None):
    """A BIDS recording's raw data, events and their names (via :mod:`napari_meg_unet.bids`)."""
    from ..bids import read_recording

    recording = read_recording(bids_path, verbose=verbose)
    for message in recording.messages:
        logger.info(f"{recording.label}: {message}")
    return recording.raw, recording.events, recording.event_id, recording.label


def _bids_path_of(path):
    """The BIDSPath of a recording file inside a BIDS tree (None when it is not one)."""
    from ..bids import find_bids_root, find_recordings

    path = Path(path)
    if find_bids_root(path) is None:
        return None
    found = find_recordings(path)
    if len(found) > 1:
        raise ValueError(
            f"{str(path)!r} selects {len(found)} BIDS recordings; give one recording "
            f"(e.g. {str(found[0].fpath)!r})."
        )
    return found[0] if found else None


def _load(data, *, verbose=None):
    """``(obj, source, events, event_id)``: the MNE object(s) behind ``data``."""
    if _is_bids_path(data):
        raw, events, event_id, label = _read_bids(data, verbose=verbose)
        return raw, label, events, event_id
    if isinstance(data, str | os.PathLike):
        path = Path(data)
        if not path.exists():
            raise FileNotFoundError(f"The recording {str(path)!r} does not exist.")
        bids_path = _bids_path_of(path)
        if bids_path is not None:
            raw, events, event_id, label = _read_bids(bids_path, verbose=verbose)
            return raw, label, events, event_id
        if path.is_dir():
            raise ValueError(
                f"{str(path)!r} is a folder but not a BIDS MEG recording or dataset; give an "
                "evoked (-ave.fif), epochs (-epo.fif) or raw FIF file, or a BIDS recording."
            )
        return _read_fif(path), str(path), None, None
    if isinstance(data, mne.Evoked | mne.BaseEpochs | mne.io.BaseRaw):
        return data, type(data).__name__, None, None
    if isinstance(data, list | tuple) and data and all(isinstance(e, mne.Evoked) for e in data):
        return list(data), "list of Evoked", None, None
    raise TypeError(
        "data must be a path (evoked, epochs or raw FIF; BIDS recording), a mne_bids.BIDSPath, "
        f"an mne.Evoked (or a list of them), mne.Epochs or mne.io.Raw, got {type(data).__name__}."
    )


def _filter(inst, config, notes: list, *, verbose=None):
    if config.l_freq is None and config.h_freq is None:
        return inst
    inst = inst.copy().load_data() if not isinstance(inst, mne.Evoked) else inst.copy()
    inst.filter(config.l_freq, config.h_freq, verbose=verbose if verbose is not None else "error")
    notes.append(f"filtered {config.l_freq or 0:g}-{config.h_freq or 'Nyquist'} Hz")
    return inst


def _events_of(raw, config, events, event_id, source):
    """Events and their names for a raw recording (None: use it continuous)."""
    choice = config.events
    if choice == "none" or (choice == "auto" and (events is None or not len(events))):
        return None, None
    if choice == "auto":
        return events, event_id
    if choice == "stim":
        found = mne.find_events(raw, stim_channel=config.stim_channel, verbose="error")
        names = {str(code): int(code) for code in np.unique(found[:, 2])}
        return found, names
    if choice == "annotations":
        found, names = mne.events_from_annotations(raw, verbose="error")
        return found, names
    path = Path(choice)
    if not path.is_file():
        raise ValueError(
            f"events must be 'auto', 'none', 'stim', 'annotations' or an events file, got "
            f"{choice!r} (no such file)."
        )
    found = mne.read_events(path, verbose="error")
    return found, {str(code): int(code) for code in np.unique(found[:, 2])}


def _check_events(events, event_id, source, choice):
    if events is None or len(events) == 0:
        raise ValueError(f"{source}: no events found with events={choice!r}.")
    codes = set(np.unique(events[:, 2]).tolist())
    kept = {name: code for name, code in event_id.items() if code in codes}
    if not kept:
        raise ValueError(f"{source}: none of the events {sorted(codes)} has a name in {event_id}.")
    return kept


def _epochs_from_raw(raw, events, event_id, config, source):
    """Epochs ``tmin..tmax`` around the events, baseline-corrected when ``tmin < 0``."""
    event_id = _check_events(events, event_id, source, config.events)
    tmin = DEFAULT_EPOCH[0] if config.tmin is None else config.tmin
    tmax = DEFAULT_EPOCH[1] if config.tmax is None else config.tmax
    epochs = mne.Epochs(
        raw, events, event_id, tmin=tmin, tmax=tmax,
        baseline=(None, 0) if config.baseline and tmin < 0 else None, proj=False,
        preload=True, reject=None, event_repeated="drop", on_missing="ignore", verbose="error",
    )  # fmt: skip
    if len(epochs) == 0:
        raise ValueError(
            f"{source}: no epoch fits in the recording with tmin={tmin}, tmax={tmax}."
        )
    return epochs


def _crop_raw(raw, config, source, notes) -> Segment:
    """One continuous segment ``tmin..tmax`` of a raw recording (times from its first sample)."""
    duration = raw.times[-1]
    tmin = 0.0 if config.tmin is None else config.tmin
    tmax = duration if config.tmax is None else min(config.tmax, duration)
    if tmin < 0 or tmin >= duration:
        raise ValueError(
            f"{source}: tmin={tmin} s lies outside the recording (0..{duration:.3f} s); a "
            "continuous recording's times start at 0 (its first sample)."
        )
    cropped = raw.copy().crop(tmin, tmax)
    if config.tmin is not None or config.tmax is not None:
        notes.append(f"cropped to {tmin:g}..{tmax:g} s")
    offset = (cropped.first_samp - raw.first_samp) / raw.info["sfreq"]  # the sample MNE kept
    return Segment("raw", cropped, nave=1, time_offset=offset, source=source, notes=notes)


def _from_epochs(epochs, config, source, notes) -> list[Segment]:
    names = [n for n in epochs.event_id if len(epochs[n])]
    if config.condition is not None:
        names = _select(names, config.condition, source)
    if not config.average:
        picked = epochs[names] if names != list(epochs.event_id) else epochs
        return [Segment("epochs", picked, nave=1, source=source, notes=notes)]
    out = []
    for name in names:
        evoked = epochs[name].average()
        out.append(Segment(name, evoked, nave=int(evoked.nave), source=source,
                           notes=[*notes, f"average of {evoked.nave} epochs"]))  # fmt: skip
    return out


def _select(names, condition, source):
    if condition not in names:
        raise ValueError(f"{source}: no condition {condition!r}; it has {names}.")
    return [condition]


def _from_evokeds(evokeds, config, source, notes) -> list[Segment]:
    names = [ev.comment or f"condition {ii}" for ii, ev in enumerate(evokeds)]
    if len(set(names)) < len(names):
        names = [f"{name} ({ii})" for ii, name in enumerate(names)]
    keep = range(len(evokeds))
    if config.condition is not None:
        keep = [names.index(_select(names, config.condition, source)[0])]
    out = []
    for ii in keep:
        ev = evokeds[ii]
        if config.tmin is not None or config.tmax is not None:
            ev = ev.copy().crop(config.tmin, config.tmax)
        out.append(Segment(names[ii], ev, nave=int(ev.nave), source=source, notes=list(notes)))
    return out


@takes_config(RecordingConfig)
@_verbose
def read_segments(data, *, config, verbose=None) -> list[Segment]:
    """Read a recording into the segments to invert, one per condition.

    Parameters
    ----------
    data : path-like | mne_bids.BIDSPath | mne.Evoked | list of mne.Evoked | mne.Epochs | mne.io.Raw
        An evoked file (``-ave.fif``: every condition, each with its own
        nave), an epochs file, a raw FIF file, a BIDS recording (a file
        inside a BIDS tree or a :class:`mne_bids.BIDSPath`) or the MNE object.
    %(options)s
    %(verbose)s

    Returns
    -------
    segments : list of Segment
        One per condition (the epochs' averages per event type, the evoked
        conditions), one holding every epoch (``average=False``), or one
        continuous crop of raw data without events.
    """
    obj, source, events, event_id = _load(data, verbose=verbose)
    notes: list[str] = []
    if isinstance(obj, list):
        return _from_evokeds([_filter(ev, config, notes) for ev in obj], config, source, notes)
    if isinstance(obj, mne.Evoked):
        return _from_evokeds([_filter(obj, config, notes)], config, source, notes)
    obj = _filter(obj, config, notes, verbose=verbose)
    if isinstance(obj, mne.BaseEpochs):
        if config.tmin is not None or config.tmax is not None:
            obj = obj.copy().crop(config.tmin, config.tmax)
        return _from_epochs(obj, config, source, notes)
    events, event_id = _events_of(obj, config, events, event_id, source)
    if events is None:
        if config.condition is not None:
            raise ValueError(f"{source}: condition={config.condition!r} but the data have no "
                             "events (continuous).")  # fmt: skip
        return [_crop_raw(obj, config, source, notes)]
    epochs = _epochs_from_raw(obj, events, event_id, config, source)
    return _from_epochs(epochs, config, source, notes)
