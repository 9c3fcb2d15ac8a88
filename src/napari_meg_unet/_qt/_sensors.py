"""The sensor data behind a sensor layer: a simulation, a BIDS recording or a plain FIF file.

Qt-free: the widgets call :func:`sensor_data` on a layer's metadata, and the
result travels to the worker process that inverts or predicts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import mne
import numpy as np


@dataclass
class SensorData:
    """Sensor data to invert, from a simulation or from a recording.

    Attributes
    ----------
    data : ndarray, shape (n_samples, n_channels, n_times)
        SI units.
    ch_names : list of str
        Channels of ``data``.
    naves : list of int
        Number of averaged trials of each sample.
    sfreq, tmin : float
        Sampling rate and time of the first sample.
    labels : list of str
        What each sample is (event index or condition).
    hemi : str
        Image rows to compute (the simulation's hemisphere, ``"both"`` for recordings).
    simulation : Simulation | None
    description : str
        Where the data come from (for the status line).
    """

    data: np.ndarray
    ch_names: list
    naves: list
    sfreq: float
    tmin: float
    labels: list
    hemi: str
    simulation: object = None
    extra: dict = field(default_factory=dict)
    description: str = ""


def _from_simulation(sim) -> SensorData:
    n = len(sim)
    nave = int(sim.meta["params"].get("nave", 1))
    return SensorData(
        data=np.asarray(sim.data, dtype=np.float64), ch_names=list(sim.info["ch_names"]),
        naves=[nave] * n, sfreq=sim.sfreq, tmin=0.0, labels=[f"event {i}" for i in range(n)],
        hemi=sim.meta["params"]["hemi"], simulation=sim,
        description=f"{n} simulated events",
    )  # fmt: skip


def _check_channels(hm, ch_names, label) -> None:
    missing = [ch for ch in hm.ch_names if ch not in ch_names]
    if missing:
        raise ValueError(
            f"{len(missing)} channels of the head model (e.g. {missing[:3]}) are not in "
            f"{label}; build the head model from the recording (Head model: source "
            "'recording')."
        )


def _average(epochs, average: bool, label: str) -> SensorData:
    if len(epochs) == 0:
        raise ValueError(f"no epoch of {label} fits in the chosen tmin/tmax window.")
    if average:
        evokeds = [epochs[name].average() for name in epochs.event_id if len(epochs[name])]
        data = np.stack([ev.data for ev in evokeds])
        naves = [int(ev.nave) for ev in evokeds]
        labels = [ev.comment for ev in evokeds]
        text = f"{len(evokeds)} averages of {len(epochs)} epochs"
    else:
        data = epochs.get_data(copy=True)
        names = {code: name for name, code in epochs.event_id.items()}
        naves = [1] * len(data)
        labels = [names[code] for code in epochs.events[:, 2]]
        text = f"{len(data)} epochs"
    return SensorData(
        data=data, ch_names=list(epochs.ch_names), naves=naves, sfreq=epochs.info["sfreq"],
        tmin=float(epochs.tmin), labels=labels, hemi="both", description=f"{label}: {text}",
    )  # fmt: skip


def _from_raw(raw, events, event_id, *, hm, tmin, tmax, average, label) -> SensorData:
    _check_channels(hm, raw.ch_names, label)
    if not len(events):
        # no events: the whole recording is one segment
        data = raw.get_data(picks=hm.ch_names)[np.newaxis]
        return SensorData(
            data=data, ch_names=list(hm.ch_names), naves=[1], sfreq=raw.info["sfreq"],
            tmin=0.0, labels=["continuous"], hemi="both",
            description=f"{label}: no events, the whole recording ({data.shape[-1]} samples)",
        )  # fmt: skip
    epochs = mne.Epochs(
        raw, events, event_id, tmin=tmin, tmax=tmax, baseline=(None, 0) if tmin < 0 else None,
        picks=hm.ch_names, proj=False, preload=True, reject=None, event_repeated="drop",
        on_missing="ignore", verbose="error",
    )  # fmt: skip
    return _average(epochs, average, label)


def _from_evoked(evokeds, *, hm, tmin, tmax, label) -> SensorData:
    _check_channels(hm, evokeds[0].ch_names, label)
    cropped = []
    for ev in evokeds:
        ev = ev.copy().pick(hm.ch_names)
        lo, hi = max(tmin, ev.tmin), min(tmax, ev.times[-1])
        if hi > lo:
            ev.crop(lo, hi)
        cropped.append(ev)
    n_times = {len(ev.times) for ev in cropped}
    if len(n_times) != 1:
        raise ValueError(f"the conditions of {label} have different lengths {sorted(n_times)}.")
    return SensorData(
        data=np.stack([ev.data for ev in cropped]), ch_names=list(cropped[0].ch_names),
        naves=[int(ev.nave) for ev in cropped], sfreq=cropped[0].info["sfreq"],
        tmin=float(cropped[0].tmin), labels=[ev.comment for ev in cropped], hemi="both",
        description=f"{label}: {len(cropped)} conditions "
        f"(nave {', '.join(str(ev.nave) for ev in cropped)})",
    )  # fmt: skip


def sensor_data(metadata: dict, *, hm, tmin=-0.1, tmax=0.3, average=True) -> SensorData:
    """The data behind a sensor layer's metadata (a simulation or a recording).

    - A simulation: its events, as simulated.
    - A raw recording (BIDS or FIF): epochs ``tmin..tmax`` around its events
      (baseline up to 0 when ``tmin < 0``) on the head model's channels,
      averaged per event type with ``average`` (one sample per condition,
      with its ``nave``); without events, the whole recording as one sample.
    - An evoked file: one sample per condition (its own ``nave``), cropped to
      ``tmin..tmax`` where they overlap.
    - An epochs file: its epochs cropped to ``tmin..tmax``, averaged per event
      type with ``average``.
    """
    sim = metadata.get("simulation")
    if sim is not None:
        return _from_simulation(sim)
    recording = metadata.get("recording")
    if recording is None:
        raise ValueError("the data layer holds neither a simulation nor a recording.")
    kind, label = getattr(recording, "kind", "raw"), recording.label
    if kind == "evoked":
        out = _from_evoked(recording.evokeds, hm=hm, tmin=tmin, tmax=tmax, label=label)
    elif kind == "epochs":
        _check_channels(hm, recording.epochs.ch_names, label)
        epochs = recording.epochs.copy().pick(hm.ch_names)
        lo, hi = max(tmin, epochs.tmin), min(tmax, epochs.tmax)
        out = _average(epochs.crop(lo, hi) if hi > lo else epochs, average, label)
    else:
        out = _from_raw(
            recording.raw, recording.events, recording.event_id, hm=hm, tmin=tmin, tmax=tmax,
            average=average, label=label,
        )  # fmt: skip
    out.extra["recording"] = recording
    return out


def recording_segments(sdata: SensorData, hm, *, source: str = "the data") -> list:
    """The samples of recorded sensor data as :class:`~..recordings.Segment` objects.

    One :class:`mne.EvokedArray` per sample (its label, ``nave``, ``sfreq``
    and ``tmin``) on the head model's info (its sensors, no bad channel), for
    :func:`~..train.recording.iter_predict_recording`.
    """
    from ..recordings import Segment

    index = {name: ii for ii, name in enumerate(hm.info["ch_names"])}
    missing = [ch for ch in sdata.ch_names if ch not in index]
    if missing:
        raise ValueError(f"{len(missing)} channels of the data are not in the head model "
                         f"({missing[:8]}).")  # fmt: skip
    info = mne.pick_info(hm.info, [index[ch] for ch in sdata.ch_names])
    with info._unlock():
        info["sfreq"] = float(sdata.sfreq)
        info["lowpass"] = min(float(info["lowpass"] or np.inf), sdata.sfreq / 2.0)
        info["bads"] = []
    segments = []
    for data, nave, label in zip(sdata.data, sdata.naves, sdata.labels, strict=True):
        evoked = mne.EvokedArray(np.asarray(data, np.float64), info, tmin=sdata.tmin,
                                 nave=int(nave), comment=str(label), verbose="error")  # fmt: skip
        segments.append(Segment(str(label), evoked, nave=int(nave), source=source))
    return segments
