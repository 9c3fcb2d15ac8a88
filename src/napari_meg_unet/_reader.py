"""napari reader for MEG recordings in BIDS datasets (npe2 ``readers`` contribution).

:func:`get_reader` accepts a BIDS root, a subject/session/``meg`` folder inside
one, or a MEG recording inside a BIDS tree (see :func:`.bids.find_recordings`).
It returns None for anything else and never raises: npe2 offers every folder
to every folder reader.

Layers (one set per recording, so several runs of a subject/session open
side by side, each in its own sensor band; at most :data:`MAX_RECORDINGS`
per open, the first ones in path order, with a warning naming the others):

``MEG <label>``
    Image, channels x time (grouped mag, grad, eeg; fT, fT/cm, µV), time
    scale ``1 / sfreq``. Metadata: ``recording`` (:class:`.bids.Recording`:
    raw, events, empty-room BIDSPath), ``bids_path``, ``info``, ``raw``,
    ``emptyroom``, channel names/types/units.
``events <label>``
    Shapes, one vertical line per event (from ``events.tsv``/annotations)
    with ``features["event"]``.
``cortex sub-<label>``
    Surface, the subject's FreeSurfer pial surfaces from
    ``derivatives/freesurfer`` when present, else the fsaverage5 template
    (nilearn, offline), shaded by sulcal depth.

A recording that cannot be read (e.g. a truncated FIF) gives a napari
warning and no layers; the others are still opened.
"""

from __future__ import annotations

import functools

from . import bids, layers

#: Recordings opened at once; open a subject/session folder or a file for others.
MAX_RECORDINGS = 8


def _notify(message: str, *, severity: str = "warning") -> None:
    from napari.utils.notifications import show_error, show_info, show_warning

    {"warning": show_warning, "error": show_error, "info": show_info}[severity](message)


def get_reader(path):
    """Return :func:`read_bids` when ``path`` selects MEG recordings in a BIDS dataset.

    Parameters
    ----------
    path : str | list of str
        What napari asks to open (a list must hold exactly one path).

    Returns
    -------
    reader : callable | None
        None when ``path`` is not (inside) a BIDS dataset with MEG data.
    """
    if isinstance(path, list | tuple):
        if len(path) != 1:
            return None
        path = path[0]
    try:
        recordings = bids.find_recordings(path)
    except Exception:  # a reader probe must never raise
        return None
    if not recordings:
        return None
    return functools.partial(read_bids, recordings=recordings)


def recording_layers(recording: bids.Recording, *, band: int = 0) -> list:
    """Sensor image and events layer data tuples of one recording."""
    label = recording.label
    raw = recording.raw
    meta = {
        "recording": recording,
        "bids_path": recording.bids_path,
        "raw": raw,
        "emptyroom": recording.emptyroom,
        "read_messages": list(recording.messages),
    }
    sensor = layers.sensor_layer(
        raw.get_data(), raw.info, name=f"MEG {label}", tmin=0.0, metadata=meta, band=band
    )
    out = [sensor]
    if len(recording.events):
        out.append(
            layers.events_layer(
                recording.event_times, recording.event_names, sensor=sensor,
                name=f"events {label}",
            )  # fmt: skip
        )
    return out


def cortex_layers(root, subjects) -> list:
    """One cortex Surface layer per subject (FreeSurfer derivatives or template)."""
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


def read_bids(path, *, recordings=None) -> list:
    """Read the MEG recordings selected by ``path`` into napari layer data tuples.

    Parameters
    ----------
    path : str | list of str
        The path given to :func:`get_reader`.
    recordings : list of mne_bids.BIDSPath | None
        The recordings found by :func:`get_reader` (found again if None).

    Returns
    -------
    layer_data : list of tuple
        ``(data, kwargs, layer_type)`` tuples, or ``[(None,)]`` (napari's
        "nothing to show") when no recording could be read.
    """
    if isinstance(path, list | tuple):
        path = path[0]
    if recordings is None:
        recordings = bids.find_recordings(path)
    if len(recordings) > MAX_RECORDINGS:
        skipped = [bids.recording_label(bp) for bp in recordings[MAX_RECORDINGS:]]
        _notify(
            f"{path}: opening the first {MAX_RECORDINGS} of {len(recordings)} MEG recordings; "
            f"open a subject/session folder or a file for the others ({', '.join(skipped)})."
        )
        recordings = recordings[:MAX_RECORDINGS]
    tuples, subjects, root = [], [], None
    for bids_path in recordings:
        try:
            recording = bids.read_recording(bids_path)
            band = sum(t[2] == "image" for t in tuples)
            tuples.extend(recording_layers(recording, band=band))
        except Exception as err:
            _notify(f"napari-meg-unet could not open {bids.recording_label(bids_path)}: {err}")
            continue
        root = bids_path.root
        if recording.subject not in subjects:
            subjects.append(recording.subject)
    if not tuples:
        return [(None,)]
    try:
        tuples.extend(cortex_layers(root, subjects))
    except Exception as err:
        _notify(f"napari-meg-unet could not load the cortex surfaces: {err}")
    return layers.layout_tuples(tuples)
