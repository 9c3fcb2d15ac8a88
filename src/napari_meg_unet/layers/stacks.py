"""Vertex x time stacks (truth, linear inverses, predictions): one image per event."""

from __future__ import annotations

import numpy as np

from ._base import (
    AXIS_LABELS,
    META_KEY,
    SHORT_UNITS,
    STACK_ORDER,
    _layout_meta,
    colormap_for,
    limits_for,
    unit_for,
)
from .colormaps import resolve
from .layout import _default_band_height, _place


def stack_layer(data, *, name, sfreq, tmin=0.0, slot=None, metadata=None, group=None,
                row_order=None, unit=None):  # fmt: skip
    """Image layer of a vertex x time stack (one image per event).

    Parameters
    ----------
    data : array-like, shape (n_events, n_rows, n_times) | (n_rows, n_times)
        Values per row (``HeadModel.rows(hemi)`` order) and sample.
    name : str
        ``"truth"``, a method (``"MNE"``, ...) or a prediction name.
    sfreq : float
        Sampling rate (Hz): the time axis scale is ``1 / sfreq``.
    tmin : float
        Time of the first sample (s).
    slot : int | None
        Position in the band; default: the index in :data:`STACK_ORDER`, or
        after it for other names.
    metadata : dict | None
        Extra metadata (``headmodel``, ``simulation``, ``hemi``, ``rows``,
        ``normalisation``, ``labels`` ...).
    group : str | None
        Stacks of one data set (e.g. the simulation fingerprint) share a
        group: the truth markers are drawn on every stack of their group.
    row_order : array-like of int | None
        Display order of the rows (``display row i`` shows row
        ``row_order[i]``, see :mod:`.ordering`); None keeps the documented
        order. :func:`stack_values` undoes it.
    unit : str | None
        Unit of the values (default: :func:`unit_for` of the name and the
        metadata's ``normalisation``).

    Returns
    -------
    layer : tuple
        ``(data, kwargs, "image")`` with data ``(n_events, 1, n_rows, n_times)`` float32.
    """
    data = np.asarray(data, dtype=np.float32)
    if data.ndim == 2:
        data = data[np.newaxis]
    if data.ndim != 3:
        raise ValueError(
            f"data must have shape (n_events, n_rows, n_times) or (n_rows, n_times), "
            f"got {data.shape}."
        )
    if not (np.isfinite(sfreq) and sfreq > 0):
        raise ValueError(f"sfreq must be a positive number, got {sfreq!r}.")
    if slot is None:
        slot = STACK_ORDER.index(name) if name in STACK_ORDER else len(STACK_ORDER)
    n_events, n_rows, n_times = data.shape
    if row_order is not None:
        row_order = np.asarray(row_order, dtype=np.int64)
        if sorted(row_order.tolist()) != list(range(n_rows)):
            raise ValueError(f"row_order must be a permutation of the {n_rows} rows.")
        data = data[:, row_order]
    meta = dict(metadata or {})
    unit = unit if unit is not None else unit_for(name, meta.get("normalisation"))
    layout = _layout_meta(
        "stack", name=name, n_rows=n_rows, n_times=n_times, sfreq=float(sfreq),
        tmin=float(tmin), slot=int(slot), group=group, unit=unit,
        title=f"{name} [{SHORT_UNITS.get(unit, unit)}]" if unit else name,
        row_order=None if row_order is None else row_order,
    )  # fmt: skip
    meta.update({META_KEY: layout, "sfreq": float(sfreq), "tmin": float(tmin), "unit": unit})
    scale, translate = _place(layout, _default_band_height(layout))
    cmap = colormap_for(name)
    kwargs = dict(
        name=name,
        colormap=resolve(cmap),
        contrast_limits=limits_for(data, cmap),
        scale=scale[-4:],
        translate=translate[-4:],
        metadata=meta,
        axis_labels=AXIS_LABELS[-4:],
        interpolation2d="nearest",
    )
    return data[:, np.newaxis], kwargs, "image"


def stack_data(layer_data) -> np.ndarray:
    """The ``(n_events, n_rows, n_times)`` array behind a stack layer's data (display order)."""
    data = np.asarray(layer_data)
    if data.ndim == 4 and data.shape[1] == 1:
        return data[:, 0]
    if data.ndim == 2:
        return data[np.newaxis]
    raise ValueError(f"not a stack layer's data: shape {data.shape}.")


def stack_values(layer_data, metadata) -> np.ndarray:
    """A stack layer's values in the documented row order (``HeadModel.rows(hemi)``).

    Undoes a display ``row_order`` (:func:`stack_layer`); use it wherever the
    values leave the display (scoring, export, the cortex).
    """
    data = stack_data(layer_data)
    order = (metadata.get(META_KEY) or {}).get("row_order")
    if order is None:
        return data
    inverse = np.empty_like(np.asarray(order))
    inverse[np.asarray(order)] = np.arange(len(order))
    return data[:, inverse]
