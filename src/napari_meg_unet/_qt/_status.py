"""Hover text (status bar) of the plugin's layers and labelled sliders (seconds, event names).

:func:`install` replaces a layer's ``get_status`` so that the status bar says
what is under the cursor in the user's terms (``dSPM: rh vertex 1234 (row 56),
t = 45.0 ms, event 2 (auditory/left): 3.2 F``) instead of world coordinates;
the text comes from :mod:`..layers.hover` (Qt-free). :func:`label_sliders`
writes the current cortex time in ms and the current event's name into the
axis labels of the sliders.
"""

from __future__ import annotations

import weakref

import numpy as np

from ..layers import AXIS_LABELS, META_KEY, hover


def _stack_or_sensor(layer, position, world, role):
    data_pos = layer.world_to_data(position) if world else np.asarray(position)
    index = np.round(np.asarray(data_pos)[-layer.ndim :]).astype(int)
    shape = np.shape(layer.data)
    if np.any(index < 0) or np.any(index >= np.asarray(shape)):
        return None
    value = float(np.asarray(layer.data[tuple(index)]))
    if role == "stack":
        return hover.stack_status(layer.metadata, index, value)
    return hover.sensor_status(layer.metadata, index, value)


def _cortex(layer, position, view_direction, dims_displayed, world):
    value, triangle = layer.get_value(
        position, view_direction=view_direction, dims_displayed=dims_displayed, world=world
    ) if dims_displayed is not None and len(dims_displayed) == 3 else (None, None)  # fmt: skip
    vertex = None
    if triangle is not None:
        face = np.asarray(layer._view_faces[int(triangle)])
        values = np.asarray(layer._view_vertex_values)[face]
        vertex = int(face[np.nanargmax(np.abs(values))]) if np.isfinite(values).any() else int(
            face[0]
        )  # fmt: skip
    sample = event = None
    if layer.ndim == 5:
        data_pos = layer.world_to_data(position) if world else position
        sample, event = (int(round(v)) for v in np.asarray(data_pos)[:2])
    return hover.cortex_status(layer.metadata, vertex, value, sample=sample, event=event)


def install(layer) -> None:
    """Make ``layer``'s status text describe vertex, hemisphere, time (ms) and value with unit."""
    lay = layer.metadata.get(META_KEY)
    if lay is None or getattr(layer, "_meg_unet_status", False):
        return
    role = lay["role"]
    if role not in ("stack", "sensor", "cortex", "map"):
        return
    original = layer.get_status
    ref = weakref.ref(layer)

    def get_status(position=None, *, view_direction=None, dims_displayed=None, world=False,
                   value=None):  # fmt: skip
        status = original(position, view_direction=view_direction, dims_displayed=dims_displayed,
                          world=world, value=value)  # fmt: skip
        target = ref()
        if target is None or position is None:
            return status
        try:
            if role in ("stack", "sensor"):
                text = _stack_or_sensor(target, position, world, role)
            else:
                text = _cortex(target, position, view_direction, dims_displayed, world)
        except Exception:  # the status bar must never raise
            return status
        if text:
            status["coordinates"] = text
            status["value"] = text.rpartition(": ")[2]
        return status

    layer.get_status = get_status
    layer._meg_unet_status = True


def label_sliders(viewer) -> None:
    """Keep the slider labels in user terms: cortex time in ms, the event's name.

    The ``cortex time (s)`` axis shows the current time in ms, the ``event``
    axis the current event's label (condition name) of the layers that have
    one.
    """

    def update(_event=None):
        labels = list(viewer.dims.axis_labels)
        if len(labels) < 4 or not any(META_KEY in layer.metadata for layer in viewer.layers):
            return
        point = viewer.dims.point
        step = viewer.dims.current_step
        new = list(labels)
        if len(labels) >= 5:
            new[-5] = f"cortex time {1e3 * point[-5]:.1f} ms"
        event = int(step[-4])
        name = _event_label(viewer, event)
        new[-4] = f"event {event}" + (f": {name}" if name else "")
        if new != labels:
            viewer.dims.axis_labels = new

    viewer.dims.events.current_step.connect(update)
    viewer.layers.events.inserted.connect(update)
    viewer.layers.events.removed.connect(update)
    update()


def _event_label(viewer, event: int) -> str:
    for layer in viewer.layers:
        labels = layer.metadata.get("labels")
        if META_KEY in layer.metadata and labels is not None and 0 <= event < len(labels):
            return str(labels[event])
    return ""


def reset_axis_labels(viewer) -> None:
    """The plugin's axis names (used before the first label update)."""
    if viewer.dims.ndim >= 5:
        viewer.dims.axis_labels = list(viewer.dims.axis_labels[:-5]) + list(AXIS_LABELS)
