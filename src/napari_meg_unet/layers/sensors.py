"""Sensor data (channels x time, one contrast per channel type) and event lines."""

from __future__ import annotations

from dataclasses import dataclass

import mne
import numpy as np

from ._base import (
    AXIS_LABELS,
    COLORMAPS,
    META_KEY,
    SCALINGS,
    SENSOR_TYPES,
    UNITS,
    _layout_meta,
    _peak,
)
from .layout import _default_band_height, _place


@dataclass
class SensorImage:
    """Sensor data regrouped by channel type and scaled to display units.

    Attributes
    ----------
    data : ndarray, shape (..., n_shown, n_times), float32
        Rows ordered by :data:`SENSOR_TYPES`, values in :data:`UNITS`.
    picks : ndarray of int
        Index of each row in the original channel order.
    ch_names, ch_types, units : list of str
        Per row.
    type_rows : dict
        ``{type: (start, stop)}`` row ranges.
    """

    data: np.ndarray
    picks: np.ndarray
    ch_names: list
    ch_types: list
    units: list
    type_rows: dict


def sensor_image(data, info: mne.Info) -> SensorImage:
    """Regroup data channels by type (mag, grad, eeg) and scale them to fT, fT/cm, µV.

    Parameters
    ----------
    data : array-like, shape (..., n_channels, n_times)
        Data in SI units, channels as in ``info``.
    info : mne.Info
        Channel information.

    Returns
    -------
    image : SensorImage
    """
    data = np.asarray(data)
    if data.ndim < 2 or data.shape[-2] != len(info["ch_names"]):
        raise ValueError(
            f"data must have shape (..., n_channels={len(info['ch_names'])}, n_times), "
            f"got {data.shape}."
        )
    types = info.get_channel_types()
    picks, type_rows, start = [], {}, 0
    for kind in SENSOR_TYPES:
        idx = [i for i, t in enumerate(types) if t == kind]
        if idx:
            picks.extend(idx)
            type_rows[kind] = (start, start + len(idx))
            start += len(idx)
    if not picks:
        raise ValueError(
            f"info has no {'/'.join(SENSOR_TYPES)} channels to show (types: {sorted(set(types))})."
        )
    picks = np.asarray(picks)
    scale = np.array([SCALINGS[types[i]] for i in picks])[:, np.newaxis]
    out = (data[..., picks, :] * scale).astype(np.float32)
    return SensorImage(
        data=out,
        picks=picks,
        ch_names=[info["ch_names"][i] for i in picks],
        ch_types=[types[i] for i in picks],
        units=[UNITS[types[i]] for i in picks],
        type_rows=type_rows,
    )


def type_peaks(image: SensorImage) -> dict:
    """``{type: peak}``: the 99th percentile of ``|value|`` of each channel type (display units)."""
    peaks = {}
    for kind, (start, stop) in image.type_rows.items():
        peak = _peak(image.data[..., start:stop, :])
        peaks[kind] = peak if peak > 0 else 1.0
    return peaks


def sensor_layer(data, info, *, name="sensor data", tmin=0.0, metadata=None, band=0,
                 event_names=None):  # fmt: skip
    """Image layer of sensor data (channels x time), one contrast per channel type.

    Magnetometers (fT), gradiometers (fT/cm) and EEG (µV) differ by orders of
    magnitude, so each type's rows are divided by that type's peak
    (:func:`type_peaks`): every band spans about -1..1 and the metadata keep
    ``type_peaks`` and ``units`` to give values back in their unit (hover,
    titles).

    Parameters
    ----------
    data : array-like, shape (n_channels, n_times) | (n_events, n_channels, n_times)
        SI units, channels as in ``info`` (continuous data or epochs/events).
    info : mne.Info
        Channel information (``sfreq`` sets the time scale).
    name : str
        Layer name.
    tmin : float
        Time of the first sample (s).
    metadata : dict | None
        Extra metadata (e.g. ``bids_path``, ``raw``, ``simulation``).
    band : int
        Index of the sensor band (several recordings are stacked upwards).
    event_names : list of str | None
        Name of each event (condition) of 3-D data, for the event slider.

    Returns
    -------
    layer : tuple
        ``(data, kwargs, "image")``; ``data`` is ``(n_ch, n_times)`` for
        continuous data and ``(n_events, 1, n_ch, n_times)`` for events.
    """
    image = sensor_image(data, info)
    shown = image.data
    if shown.ndim == 3:
        shown = shown[:, np.newaxis]
    elif shown.ndim != 2:
        raise ValueError(f"data must be 2-D or 3-D, got shape {np.shape(data)}.")
    peaks = type_peaks(image)
    for kind, (start, stop) in image.type_rows.items():
        shown[..., start:stop, :] /= peaks[kind]
    n_rows, n_times = shown.shape[-2:]
    sfreq = float(info["sfreq"])
    layout = _layout_meta(
        "sensor", name=name, n_rows=n_rows, n_times=n_times, sfreq=sfreq, tmin=float(tmin),
        slot=int(band),
        title=f"{name}: " + ", ".join(
            f"{kind} ±{peaks[kind]:.3g} {UNITS[kind]}" for kind in image.type_rows
        ),
    )  # fmt: skip
    meta = dict(metadata or {})
    meta.update(
        {
            META_KEY: layout,
            "info": info,
            "ch_names": image.ch_names,
            "ch_types": image.ch_types,
            "units": image.units,
            "type_rows": image.type_rows,
            "type_peaks": peaks,
            "picks": image.picks,
            "scalings": dict(SCALINGS),
            "sfreq": sfreq,
            "tmin": float(tmin),
        }
    )
    if event_names is not None:
        meta["labels"] = list(event_names)
    scale, translate = _place(layout, _default_band_height(layout))
    kwargs = dict(
        name=name,
        colormap=COLORMAPS["sensor"],
        contrast_limits=(-1.0, 1.0),
        scale=scale[-shown.ndim :],
        translate=translate[-shown.ndim :],
        metadata=meta,
        axis_labels=AXIS_LABELS[-shown.ndim :],
    )
    return shown, kwargs, "image"


def sensor_values(layer_data, metadata) -> np.ndarray:
    """The display-unit values (fT, fT/cm, µV) behind a sensor layer's per-type scaled data."""
    data = np.array(layer_data, dtype=np.float32)
    for kind, (start, stop) in metadata["type_rows"].items():
        data[..., start:stop, :] *= metadata["type_peaks"][kind]
    return data


def events_layer(times, names, *, sensor, name="events"):
    """Shapes layer of vertical lines at event onsets over a sensor image.

    Parameters
    ----------
    times : array-like of float
        Event onsets (s) from the first sample of the recording.
    names : list of str
        Event descriptions (``features["event"]``), shown as the lines' text.
    sensor : tuple
        The sensor layer tuple of the same recording (from :func:`sensor_layer`).
    name : str
        Layer name.

    Returns
    -------
    layer : tuple
        ``(lines, kwargs, "shapes")``, lines in the sensor image's data
        coordinates (row, sample) with the same scale/translate.
    """
    times = np.asarray(times, float).ravel()
    if len(names) != len(times):
        raise ValueError(f"names must have one entry per event ({len(times)}), got {len(names)}.")
    _, skw, _ = sensor
    layout = skw["metadata"][META_KEY]
    samples = (times - layout["tmin"]) * layout["sfreq"]
    lines = [np.array([[0.0, s], [float(layout["n_rows"]), s]]) for s in samples]
    meta = {
        META_KEY: dict(layout, role="events", name=name, sensor=layout["name"]),
        "times": times,
    }
    kwargs = dict(
        name=name,
        shape_type="line",
        edge_color="event",
        edge_color_cycle=_event_colors(len(set(names))),
        edge_width=2,
        features={"event": list(names), "time": times},
        text={"string": "{event}", "size": 9, "color": "yellow", "anchor": "upper_left"},
        scale=skw["scale"][-2:],
        translate=skw["translate"][-2:],
        metadata=meta,
    )
    return lines, kwargs, "shapes"


def _event_colors(n: int) -> list:
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    return [tuple(cmap(i % 10)) for i in range(max(n, 1))]
