"""napari reader for MEG recordings: BIDS datasets, plain FIF files and folders of them.

:func:`get_reader` accepts

- a BIDS root, a subject/session/``meg`` folder inside one, or a MEG
  recording inside a BIDS tree (see :func:`.bids.find_recordings`);
- a plain FIF file (``.fif``, ``.fif.gz``): raw data, evoked responses (one
  event per condition, with its ``nave``) or epochs;
- a folder (not BIDS) holding FIF files: every recording in it.

It returns None for anything else and never raises: npe2 offers every folder
to every folder reader. A ``.fif`` that cannot be opened is not refused
silently: the reader says why (not a FIF file, truncated, a covariance /
forward / transform rather than a recording, no MEG channels) in a napari
notification.

:func:`iter_read` is the reading itself as a generator of
:class:`~.progress.Progress` and :class:`Notice` events returning the layer
data tuples; the plugin's npe2 command (``_qt/_open.py``) runs it in a worker
thread so that napari stays responsive, and :func:`read_bids` /
:func:`read_files` run it directly (scripts, tests).

Layers (one set per recording, each in its own sensor band; at most
:data:`MAX_RECORDINGS` per open, the first ones in path order, with a notice
naming the others):

``MEG <label>``
    Image, channels x time (grouped mag, grad, eeg; one contrast per type),
    events x channels x time for evoked and epochs files. Metadata:
    ``recording`` (:class:`.bids.Recording` or :class:`FileRecording`),
    ``info``, ``raw``, ``bids_path``/``path``, ``emptyroom``, channel
    names/types/units, ``labels`` (condition names).
``events <label>``
    Shapes, one vertical line per event of a raw recording, with its name.
``cortex sub-<label>``
    BIDS only: Surface, the subject's FreeSurfer pial surfaces from
    ``derivatives/freesurfer`` when present, else the fsaverage5 template.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import mne
import numpy as np

from . import bids, layers
from .progress import Progress

#: Recordings opened at once; open a subject/session folder or a file for others.
MAX_RECORDINGS = 8
#: FIF file name endings.
FIF_SUFFIXES = (".fif", ".fif.gz")
#: File name endings of FIF files that are not recordings, and what they are.
NOT_RECORDINGS = {
    "-cov": "a noise covariance",
    "_cov": "a noise covariance",
    "-fwd": "a forward solution",
    "-inv": "an inverse operator",
    "-src": "a source space",
    "-trans": "a coordinate transform",
    "_trans": "a coordinate transform",
    "-sol": "a BEM solution",
    "-bem": "a BEM model",
    "-head": "a head surface",
    "-fiducials": "a fiducials file",
    "-morph": "a source morph",
}


@dataclass
class Notice:
    """A message for the user (shown as a napari notification by the plugin)."""

    severity: str
    message: str


class RecordingError(ValueError):
    """A file or folder that cannot be opened as a MEG recording (the message says why)."""


# =========================================================================== FIF files
@dataclass(eq=False)
class FileRecording:
    """A MEG recording read from a plain FIF file (not BIDS).

    Attributes
    ----------
    path : Path
        The file.
    kind : "raw" | "evoked" | "epochs"
        What the file holds.
    raw : mne.io.BaseRaw | None
        The preloaded data of a raw file.
    evokeds : list of mne.Evoked | None
        The conditions of an evoked file.
    epochs : mne.Epochs | None
        The preloaded epochs of an epochs file.
    events, event_id
        Events of a raw file (stim channel, else annotations); empty when it
        has none. Epochs: their events.
    messages : list of str
        Warnings raised while reading.
    """

    path: Path
    kind: str
    raw: object = None
    evokeds: list | None = None
    epochs: object = None
    events: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), int))
    event_id: dict = field(default_factory=dict)
    messages: list = field(default_factory=list)
    emptyroom = None
    bids_path = None

    @property
    def info(self) -> mne.Info:
        if self.raw is not None:
            return self.raw.info
        if self.epochs is not None:
            return self.epochs.info
        return self.evokeds[0].info

    @property
    def label(self) -> str:
        name = self.path.name
        for suffix in FIF_SUFFIXES[::-1]:
            if name.endswith(suffix):
                return name[: -len(suffix)]
        return name

    @property
    def subject(self) -> str | None:
        return None

    @property
    def event_times(self) -> np.ndarray:
        """Event onsets in seconds from the first sample of ``raw``."""
        if self.raw is None:
            return np.zeros(0)
        return (self.events[:, 0] - self.raw.first_samp) / self.raw.info["sfreq"]

    @property
    def event_names(self) -> list[str]:
        names = {code: name for name, code in self.event_id.items()}
        return [names.get(int(code), str(int(code))) for code in self.events[:, 2]]


def is_fif(path) -> bool:
    return str(path).lower().endswith(FIF_SUFFIXES)


def _not_a_recording(path: Path) -> str | None:
    stem = FileRecording(path=path, kind="raw").label.lower()
    for ending, what in NOT_RECORDINGS.items():
        if stem.endswith(ending):
            return what
    return None


def _attempt(read, path):
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            return read(path), [str(w.message).splitlines()[0] for w in caught], None
    except Exception as err:
        return None, [], err


def _reasons(path: Path, errors: list) -> str:
    text = " ".join(f"{type(e).__name__}: {e}" for e in errors)
    if all("measurement data" in str(e) for e in errors):
        return (
            f"{path.name} holds no measurement: it is not a raw, evoked or epochs file (a "
            "covariance, forward solution, source space or transform?)"
        )
    if any(isinstance(e, AttributeError) or "file id" in str(e) for e in errors):
        return f"{path.name} is not a FIF file (its header is missing or damaged)"
    return f"{path.name} could not be read; it may be truncated ({text[:300]})"


def _check_meg(recording: FileRecording) -> FileRecording:
    picks = mne.pick_types(recording.info, meg=True, ref_meg=False, exclude=[])
    if len(picks) == 0:
        types = sorted(set(recording.info.get_channel_types()))
        raise RecordingError(
            f"{recording.path.name} has no MEG channels (channel types: {', '.join(types)})."
        )
    return recording


def _raw_events(raw) -> tuple[np.ndarray, dict]:
    stim = mne.pick_types(raw.info, meg=False, stim=True, exclude=[])
    if len(stim):
        events = mne.find_events(raw, shortest_event=1, verbose="error")
        if len(events):
            return events, {str(code): int(code) for code in np.unique(events[:, 2])}
    if len(raw.annotations):
        events, event_id = mne.events_from_annotations(raw, verbose="error")
        return events, dict(event_id)
    return np.zeros((0, 3), int), {}


def read_fif_recording(path) -> FileRecording:
    """Read a plain FIF recording: raw data, evoked responses or epochs.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    RecordingError
        Naming the file and the reason: not a FIF file, truncated, a
        covariance/forward/transform... rather than a recording, or no MEG
        channels.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No such file: {str(path)!r}.")
    what = _not_a_recording(path)
    if what is not None:
        raise RecordingError(f"{path.name} is {what}, not a MEG recording.")
    errors = []
    raw, messages, err = _attempt(
        lambda p: mne.io.read_raw_fif(p, preload=True, allow_maxshield=True, verbose="error"),
        path,
    )
    if raw is not None:
        events, event_id = _raw_events(raw)
        rec = FileRecording(path, "raw", raw=raw, events=events, event_id=event_id,
                            messages=messages)  # fmt: skip
        return _check_meg(rec)
    errors.append(err)
    evokeds, messages, err = _attempt(lambda p: mne.read_evokeds(p, verbose="error"), path)
    if evokeds is not None:
        return _check_meg(FileRecording(path, "evoked", evokeds=list(evokeds), messages=messages))
    errors.append(err)
    epochs, messages, err = _attempt(
        lambda p: mne.read_epochs(p, preload=True, verbose="error"), path
    )
    if epochs is not None:
        rec = FileRecording(path, "epochs", epochs=epochs, events=epochs.events,
                            event_id=dict(epochs.event_id), messages=messages)  # fmt: skip
        return _check_meg(rec)
    errors.append(err)
    raise RecordingError(_reasons(path, errors))


def find_fif_files(folder) -> list[Path]:
    """FIF files directly in ``folder`` that may be recordings (by name), sorted."""
    folder = Path(folder)
    found = [p for p in folder.iterdir() if p.is_file() and is_fif(p)]
    return sorted(p for p in found if _not_a_recording(p) is None)


# =========================================================================== layers
def recording_layers(recording, *, band: int = 0) -> list:
    """Sensor image (and events) layer data tuples of one recording (BIDS or FIF)."""
    label = recording.label
    meta = {
        "recording": recording,
        "bids_path": recording.bids_path,
        "path": getattr(recording, "path", None),
        "emptyroom": recording.emptyroom,
        "read_messages": list(recording.messages),
    }
    kind = getattr(recording, "kind", "raw")
    if kind == "evoked":
        data = np.stack([ev.data for ev in recording.evokeds])
        names = [f"{ev.comment} (nave {ev.nave})" for ev in recording.evokeds]
        info, tmin = recording.evokeds[0].info, recording.evokeds[0].tmin
    elif kind == "epochs":
        data = recording.epochs.get_data(copy=False)
        names = recording.event_names
        info, tmin = recording.epochs.info, recording.epochs.tmin
    else:
        meta["raw"] = recording.raw
        data, names = recording.raw.get_data(), None
        info, tmin = recording.raw.info, 0.0
    sensor = layers.sensor_layer(
        data, info, name=f"MEG {label}", tmin=float(tmin), metadata=meta, band=band,
        event_names=names,
    )  # fmt: skip
    out = [sensor]
    if kind == "raw" and len(recording.events):
        out.append(
            layers.events_layer(
                recording.event_times, recording.event_names, sensor=sensor,
                name=f"events {label}",
            )  # fmt: skip
        )
    return out


def cortex_layers(root, subjects) -> list:
    """One cortex Surface layer per BIDS subject (FreeSurfer derivatives or template)."""
    out = []
    for band, subject in enumerate(subjects):
        surfaces, source = bids.cortex_surfaces(root, subject, kind="pial")
        mesh = layers.cortex_mesh_from_surfaces(surfaces, kind="pial", source=source)
        out.append(
            layers.cortex_layer(
                mesh, name=f"cortex sub-{subject}", band=band,
                metadata={"subject": subject, "surface_source": source, "bids_root": root},
            )  # fmt: skip
        )
    return out


# =========================================================================== reading
def _limit(items, path, label):
    if len(items) <= MAX_RECORDINGS:
        return items, None
    skipped = [label(item) for item in items[MAX_RECORDINGS:]]
    notice = Notice(
        "warning",
        f"{path}: opening the first {MAX_RECORDINGS} of {len(items)} MEG recordings; open a "
        f"subject/session folder or a file for the others ({', '.join(skipped)}).",
    )
    return items[:MAX_RECORDINGS], notice


def iter_read(path, *, recordings=None, files=None):
    """Read what ``path`` selects (BIDS recordings or FIF files) into layer data tuples.

    Yields :class:`~.progress.Progress` (one step per recording) and
    :class:`Notice` (a recording that could not be opened, and why; too
    many recordings); returns the placed layer data tuples, or ``[(None,)]``
    (napari's "nothing to show") when nothing could be read.
    """
    if isinstance(path, list | tuple):
        path = path[0]
    if files is None and recordings is None:
        recordings = bids.find_recordings(path)
        if not recordings:
            files = [Path(path)] if is_fif(path) else find_fif_files(path)
    if recordings:
        return (yield from _iter_bids(path, recordings))
    return (yield from _iter_files(path, files or []))


def _iter_bids(path, recordings):
    recordings, notice = _limit(recordings, path, bids.recording_label)
    if notice is not None:
        yield notice
    tuples, subjects, root = [], [], None
    total = len(recordings) + 1
    for k, bids_path in enumerate(recordings):
        yield Progress("read", k, total, bids.recording_label(bids_path))
        try:
            recording = bids.read_recording(bids_path)
            band = sum(t[2] == "image" for t in tuples)
            tuples.extend(recording_layers(recording, band=band))
        except Exception as err:
            yield Notice("warning", f"could not open {bids.recording_label(bids_path)}: {err}")
            continue
        root = bids_path.root
        if recording.subject not in subjects:
            subjects.append(recording.subject)
    if not tuples:
        return [(None,)]
    yield Progress("read", total - 1, total, "cortex surfaces")
    try:
        tuples.extend(cortex_layers(root, subjects))
    except Exception as err:
        yield Notice("warning", f"could not load the cortex surfaces: {err}")
    yield Progress("read", total, total, "done")
    return layers.layout_tuples(tuples)


def _iter_files(path, files):
    if not files:
        yield Notice("warning", f"{path}: no FIF recording found.")
        return [(None,)]
    files, notice = _limit(list(files), path, lambda p: Path(p).name)
    if notice is not None:
        yield notice
    tuples = []
    for k, file in enumerate(files):
        yield Progress("read", k, len(files), Path(file).name)
        try:
            recording = read_fif_recording(file)
            band = sum(t[2] == "image" for t in tuples)
            tuples.extend(recording_layers(recording, band=band))
        except Exception as err:
            yield Notice("warning", f"napari-meg-unet could not open {file}: {err}")
    yield Progress("read", len(files), len(files), "done")
    return layers.layout_tuples(tuples) if tuples else [(None,)]


def _notify(message: str, *, severity: str = "warning") -> None:
    from napari.utils.notifications import show_error, show_info, show_warning

    {"warning": show_warning, "error": show_error, "info": show_info}[severity](message)


def _run(gen) -> list:
    """Drive :func:`iter_read` in the caller's thread, notifying its notices."""
    while True:
        try:
            event = next(gen)
        except StopIteration as done:
            return done.value
        if isinstance(event, Notice):
            _notify(event.message, severity=event.severity)


def read_bids(path, *, recordings=None) -> list:
    """Read the MEG recordings selected by ``path`` in a BIDS dataset (in this thread)."""
    if isinstance(path, list | tuple):
        path = path[0]
    if recordings is None:
        recordings = bids.find_recordings(path)
    return _run(iter_read(path, recordings=recordings))


def read_files(path, *, files=None) -> list:
    """Read plain FIF recordings (a file, or the FIF files of a folder) in this thread."""
    if isinstance(path, list | tuple):
        path = path[0]
    if files is None:
        files = [Path(path)] if is_fif(path) else find_fif_files(path)
    return _run(iter_read(path, files=files))


def probe(path):
    """``("bids", recordings)``, ``("files", paths)`` or None: what ``path`` would open."""
    if isinstance(path, list | tuple):
        if len(path) != 1:
            return None
        path = path[0]
    try:
        recordings = bids.find_recordings(path)
        if recordings:
            return "bids", recordings
        p = Path(path)
        if p.is_file() and is_fif(p):
            return "files", [p]
        if p.is_dir() and bids.find_bids_root(p) is None:
            files = find_fif_files(p)
            return ("files", files) if files else None
    except Exception:  # a reader probe must never raise
        return None
    return None


def get_reader(path):
    """Return a reader (in the caller's thread) when ``path`` selects MEG recordings.

    Parameters
    ----------
    path : str | list of str
        What napari asks to open (a list must hold exactly one path).

    Returns
    -------
    reader : callable | None
        None when ``path`` is neither inside a BIDS dataset with MEG data, nor a
        FIF file, nor a folder holding FIF files.
    """
    found = probe(path)
    if found is None:
        return None
    kind, items = found
    if kind == "bids":
        return functools.partial(read_bids, recordings=items)
    return functools.partial(read_files, files=items)
