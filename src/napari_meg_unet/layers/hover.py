"""What the status bar says under the cursor: vertex, hemisphere, time in ms, value and unit.

Pure functions of a layer's metadata and the data index under the cursor;
the napari side (``_qt/_status.py``) calls them from the layers' ``get_status``.
"""

from __future__ import annotations

import numpy as np

from ._base import META_KEY


def _value(value, unit: str) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "no value"
    return f"{float(value):.4g} {unit}".rstrip()


def _event(metadata, event: int | None) -> str:
    if event is None:
        return ""
    labels = metadata.get("labels")
    if labels is not None and 0 <= event < len(labels):
        return f", event {event} ({labels[event]})"
    return f", event {event}"


def source_of_row(metadata, row: int) -> tuple[str, int] | None:
    """``(hemi, vertex number)`` of an image row (documented order), or None if unknown."""
    hm, rows = metadata.get("headmodel"), metadata.get("rows")
    if hm is None or rows is None or not 0 <= row < len(rows):
        return None
    source = int(np.asarray(rows)[row])
    n_lh = len(hm.vertno[0])
    if source < n_lh:
        return "lh", int(hm.vertno[0][source])
    return "rh", int(hm.vertno[1][source - n_lh])


def documented_row(metadata, display_row: int) -> int:
    """The documented row shown at ``display_row`` (undoes a display row order)."""
    order = (metadata.get(META_KEY) or {}).get("row_order")
    return int(display_row if order is None else np.asarray(order)[display_row])


def _time(metadata, sample) -> str:
    sfreq, tmin = metadata.get("sfreq"), metadata.get("tmin", 0.0)
    if not sfreq or sample is None:
        return ""
    return f", t = {1e3 * (tmin + sample / sfreq):.1f} ms"


def stack_status(metadata: dict, index, value) -> str:
    """Status of a stack pixel ``index = (event, 0, display_row, sample)``."""
    event, _, display_row, sample = (int(i) for i in index)
    name = metadata[META_KEY]["name"]
    row = documented_row(metadata, display_row)
    where = source_of_row(metadata, row)
    place = f"{where[0]} vertex {where[1]} (row {row})" if where else f"row {row}"
    unit = metadata.get("unit", "")
    return f"{name}: {place}{_time(metadata, sample)}{_event(metadata, event)}: " + _value(
        value, unit
    )


def sensor_status(metadata: dict, index, value) -> str:
    """Status of a sensor image pixel ``index = ([event, 0,] row, sample)``."""
    index = [int(i) for i in index]
    row, sample = index[-2], index[-1]
    event = index[0] if len(index) == 4 else None
    name = metadata[META_KEY]["name"]
    ch_names, ch_types = metadata.get("ch_names", []), metadata.get("ch_types", [])
    if not 0 <= row < len(ch_names):
        return name
    kind = ch_types[row]
    shown = None if value is None else float(value) * metadata["type_peaks"][kind]
    return (
        f"{name}: {ch_names[row]} ({kind}){_time(metadata, sample)}{_event(metadata, event)}: "
        + _value(shown, metadata["units"][row])
    )


def cortex_status(metadata: dict, vertex: int | None, value, *, sample=None, event=None) -> str:
    """Status of a cortex surface at mesh vertex ``vertex`` at a sample and event (data indices)."""
    lay = metadata[META_KEY]
    name = lay["name"]
    mesh = metadata.get("mesh")
    if vertex is None or mesh is None:
        return name
    parts = []
    hemi = None
    if mesh.hemi_of_vertex is not None:
        hemi = ("lh", "rh")[int(mesh.hemi_of_vertex[vertex])]
    row = None if mesh.row_of_vertex is None else int(mesh.row_of_vertex[vertex])
    where = source_of_row(metadata, row) if row is not None and row >= 0 else None
    if where is not None:
        parts.append(f"{where[0]} source vertex {where[1]} (row {row})")
    elif hemi is not None:
        parts.append(f"{hemi} surface vertex {vertex}")
    text = name + (f" ({lay['shows']})" if lay.get("shows") else "")
    if parts:
        text += ": " + ", ".join(parts)
    if lay.get("sfreq") and sample is not None:
        text += _time({"sfreq": lay["sfreq"], "tmin": lay.get("tmin", 0.0)}, int(sample))
    if event is not None:
        text += _event(metadata, int(event))
    return f"{text}: {_value(value, lay.get('unit') or '')}"
