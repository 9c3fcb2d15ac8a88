"""Where every layer sits on napari's shared axes, and the markers/titles that follow them."""

from __future__ import annotations

import numpy as np

from ._base import GAP, MAX_SENSOR_HEIGHT, META_KEY

#: Roles drawn as images in the stack band or the sensor bands.
IMAGE_ROLES = ("stack", "sensor", "events")
#: Roles drawn as cortex surfaces (left of the images).
SURFACE_ROLES = ("cortex", "map")
#: Roles whose data are recomputed from the placements of other layers.
DECORATION_ROLES = ("markers", "cortex-markers", "titles")
#: Size of a truth marker on the stacks, as a fraction of the band height.
MARKER_SIZE = 0.05
#: Size of a truth marker on a cortex (m, before the cortex scale).
CORTEX_MARKER_SIZE = 0.008


def _duration(layout) -> float:
    return layout["n_times"] / layout["sfreq"]


def _default_band_height(layout) -> float:
    """Band height of a layer shown on its own."""
    if layout["role"] in ("sensor", "events"):
        return min(_duration(layout), MAX_SENSOR_HEIGHT)
    return _duration(layout)


def _place(layout: dict, height: float, *, x_left: float | None = None):
    """5-axis ``(scale, translate)`` of one layer given the band height."""
    role = layout["role"]
    gap = GAP * height
    if role in IMAGE_ROLES:
        width = _duration(layout)
        row_scale = height / layout["n_rows"]
        dt = 1.0 / layout["sfreq"]
        if role == "stack":
            y0 = 0.0
            x0 = layout["tmin"] + layout["slot"] * (width + gap)
        else:
            y0 = -(layout["slot"] + 1) * (height + gap)
            x0 = layout["tmin"]
        return (1.0, 1.0, 1.0, row_scale, dt), (0.0, 0.0, 0.0, y0, x0)
    if role not in SURFACE_ROLES:  # decorations: world coordinates
        return (1.0,) * 5, (0.0,) * 5
    # cortex / map: vertices (depth, row, col) in metres -> band of size 2 * height
    lo, hi = np.asarray(layout["lo"]), np.asarray(layout["hi"])
    size = 2 * height + gap
    s = size / max(float((hi - lo)[1:].max()), 1e-9)
    right = (x_left if x_left is not None else 0.0) - gap
    y_top = layout["slot"] * (size + gap)
    translate = (-lo[0] * s, y_top - lo[1] * s, right - (hi[2] - lo[2]) * s - lo[2] * s)
    sfreq = layout.get("sfreq")
    dt = 1.0 / sfreq if sfreq else 1.0
    t0 = layout.get("tmin", 0.0) if sfreq else 0.0
    return (dt, 1.0, s, s, s), (t0, 0.0, *translate)


def _band_height(layouts) -> float:
    stacks = [lay for lay in layouts if lay["role"] == "stack"]
    sensors = [lay for lay in layouts if lay["role"] in ("sensor", "events")]
    if stacks:
        return max(_duration(lay) for lay in stacks)
    if sensors:
        return max(_default_band_height(lay) for lay in sensors)
    return 1.0


def compute_layout(layouts: list[dict]) -> list[tuple]:
    """``(scale, translate)`` (5 axes each) for every layer layout, avoiding overlaps.

    Parameters
    ----------
    layouts : list of dict
        The ``metadata[META_KEY]`` of the layers (as made by the functions
        of this package).

    Returns
    -------
    placements : list of (scale, translate)
        In the order of ``layouts``. Decorations (markers, titles) get unit
        scale: their data are world coordinates (:func:`decorations`).
    """
    height = _band_height(layouts)
    # stacks keep their slot order but are packed left to right; sensor bands
    # likewise upwards (events share the band of their sensor layer)
    stacks = sorted({(lay["slot"], lay["name"]) for lay in layouts if lay["role"] == "stack"})
    packed = {key: i for i, key in enumerate(stacks)}
    bands = sorted({(lay["slot"], lay["name"]) for lay in layouts if lay["role"] == "sensor"})
    band_of_sensor = {name: i for i, (_, name) in enumerate(bands)}
    images, out = [], []
    for lay in layouts:
        if lay["role"] == "stack":
            lay = dict(lay, slot=packed[(lay["slot"], lay["name"])])
        elif lay["role"] == "sensor":
            lay = dict(lay, slot=band_of_sensor[lay["name"]])
        elif lay["role"] == "events":
            lay = dict(lay, slot=band_of_sensor.get(lay["sensor"], lay["slot"]))
        placement = _place(lay, height) if lay["role"] in IMAGE_ROLES else None
        if placement is not None:
            images.append(placement[1][-1])
        out.append((lay, placement))
    x_left = min(images) if images else 0.0
    cortex = sorted({(lay["slot"], lay["name"]) for lay in layouts if lay["role"] in SURFACE_ROLES})
    band_of = {key: i for i, key in enumerate(cortex)}
    result = []
    for lay, placement in out:
        if placement is None:
            if lay["role"] in SURFACE_ROLES:
                lay = dict(lay, slot=band_of[(lay["slot"], lay["name"])])
            placement = _place(lay, height, x_left=x_left)
        result.append(placement)
    # cortex markers take the placement of the cortex they mark
    by_name = {lay["name"]: p for lay, p in zip(layouts, result, strict=True)}
    for i, lay in enumerate(layouts):
        if lay["role"] == "cortex-markers" and lay.get("on") in by_name:
            scale, translate = by_name[lay["on"]]
            result[i] = ((1.0, 1.0, *scale[-3:]), (0.0, 0.0, *translate[-3:]))
    return result


# =========================================================================== decorations
def _stack_points(lay, layouts, placements) -> np.ndarray:
    """World (event, depth, y, x) points of stack markers on every stack of their group."""
    base = np.asarray(lay.get("points", np.zeros((0, 3))), float).reshape(-1, 3)
    out = []
    for target, (scale, translate) in zip(layouts, placements, strict=True):
        if target["role"] != "stack" or target.get("group") != lay.get("group"):
            continue
        rows = base[:, 1].astype(int)
        order = target.get("row_order")
        if order is not None:
            inverse = np.empty(len(order), int)
            inverse[np.asarray(order)] = np.arange(len(order))
            rows = inverse[rows]
        y = translate[-2] + (rows + 0.5) * scale[-2]
        x = translate[-1] + (base[:, 2] + 0.5) * scale[-1]
        out.append(np.column_stack([base[:, 0], np.zeros(len(base)), y, x]))
    return np.concatenate(out) if out else np.zeros((0, 4))


def _title_of(lay, scale, translate, height):
    """World ``(y above, y below, x)`` of a layer's title and its text, or None."""
    title = lay.get("title")
    if not title:
        return None
    if lay["role"] in ("stack", "sensor"):
        width = lay["n_times"] * scale[-1]
        bottom = translate[-2] + (lay.get("n_rows") or 0) * scale[-2]
        x = translate[-1] + width / 2
        return (translate[-2] - 0.04 * height, bottom + 0.06 * height, x), title
    if lay["role"] in SURFACE_ROLES:
        lo, hi = np.asarray(lay["lo"]), np.asarray(lay["hi"])
        s = scale[-1]
        top, bottom = translate[-2] + lo[1] * s, translate[-2] + hi[1] * s
        x = translate[-1] + (lo[2] + hi[2]) / 2 * s
        return (top - 0.04 * height, bottom + 0.06 * height, x), title
    return None


def decorations(layouts: list[dict], placements: list[tuple]) -> dict:
    """Data of the decoration layers (markers, titles) for these placements.

    Returns
    -------
    data : dict
        ``{name: (points, features)}`` for every ``markers`` / ``titles``
        layout: stack markers as world ``(event, depth, y, x)`` points on
        every stack of their group, titles as world ``(y, x)`` points with a
        ``title`` feature (one per stack, sensor band and cortex). Cortex
        markers keep their own data (they follow their cortex's placement).
    """
    height = _band_height(layouts)
    out = {}
    for lay in layouts:
        if lay["role"] == "markers":
            pts = _stack_points(lay, layouts, placements)
            n_per = len(lay.get("points", ()))
            labels = list(lay.get("labels", [])) * (len(pts) // n_per if n_per else 0)
            out[lay["name"]] = (pts, {"source": labels or [""] * len(pts)})
        elif lay["role"] == "titles":
            pts, texts = [], []
            for other, (scale, translate) in zip(layouts, placements, strict=True):
                found = _title_of(other, scale, translate, height)
                if found is not None:
                    pts.append(found[0])
                    texts.append(found[1])
            pts = _stagger_titles(np.asarray(pts, float).reshape(-1, 3), height)
            out[lay["name"]] = (pts, {"title": texts})
    return out


def _stagger_titles(places: np.ndarray, height: float) -> np.ndarray:
    """World ``(y, x)`` of titles: above their layer, every other one of a row below it.

    ``places``: ``(y above, y below, x)`` per title. Titles are drawn at a
    fixed screen size, wider than a zoomed-out stack; alternating above and
    below (left to right along a row: titles less than ``0.1 * height``
    apart vertically) gives each title twice its stack's width. Below, not
    higher above: the sensor band sits right above the stacks.
    """
    pts = places[:, [0, 2]].copy()
    by_y = np.argsort(pts[:, 0], kind="stable")
    rows, start = [], 0
    for i in range(1, len(by_y) + 1):
        if i == len(by_y) or pts[by_y[i], 0] - pts[by_y[i - 1], 0] >= 0.1 * height:
            rows.append(by_y[start:i])
            start = i
    for idx in rows:
        idx = idx[np.argsort(pts[idx, 1], kind="stable")]
        pts[idx[1::2], 0] = places[idx[1::2], 1]
    return pts


def marker_size(layouts: list[dict]) -> float:
    """World size of stack markers (a fixed fraction of the band height)."""
    return MARKER_SIZE * _band_height(layouts)


# =========================================================================== applying
def _set_placement(layer, scale, translate) -> bool:
    """Give ``layer`` this placement; whether anything changed.

    A napari layer gets scale and translate in one go (one refresh, one
    re-slice of the viewer instead of two); other objects through their
    ``scale``/``translate`` attributes.
    """
    nd = layer.ndim
    new_scale, new_translate = tuple(scale[-nd:]), tuple(translate[-nd:])
    same_scale = layer.scale is not None and tuple(np.asarray(layer.scale, float)) == new_scale
    same_translate = (layer.translate is not None
                      and tuple(np.asarray(layer.translate, float)) == new_translate)  # fmt: skip
    if same_scale and same_translate:
        return False
    transform = getattr(layer, "_transforms", None)
    events = getattr(layer, "events", None)
    try:
        physical = transform["data2physical"]
    except (TypeError, KeyError):
        physical = None
    if physical is None or events is None or not hasattr(layer, "refresh"):
        if not same_scale:
            layer.scale = new_scale
        if not same_translate:
            layer.translate = new_translate
        return True
    moved = np.flatnonzero(
        (np.asarray(layer.scale, float) != new_scale)
        | (np.asarray(layer.translate, float) != new_translate)
    )
    physical.scale = np.array(new_scale)
    physical.translate = np.array(new_translate)
    layer._clear_extent()
    if not _only_displayed(layer, moved):
        layer.refresh(extent=False)  # the slice through the moved axes changes
    if not same_scale:
        events.scale()
    if not same_translate:
        events.translate()
    return True


def _only_displayed(layer, axes) -> bool:
    """Whether ``axes`` (of the layer) are all displayed: moving along them re-slices nothing.

    napari's setters re-slice a layer after every transform change; a slice
    depends on the transform of the axes that are not displayed only (the
    displayed ones are drawn whole), so a move along displayed axes needs the
    new transform (the events) and no new slice, which for a cortex mesh
    means no new vertex normals.
    """
    try:
        displayed = {int(a) for a in layer._slice_input.displayed}
    except Exception:  # not a napari layer as known: re-slice
        return False
    return all(int(a) in displayed for a in axes)


def iter_arrange(layers):
    """:func:`arrange` one layer at a time: a generator yielding after each layer it changed.

    The layout is computed once, first; each ``next()`` then applies the
    placement (or decoration data) of the next layer that needs a change, so
    that a caller on napari's event loop can spread napari's re-slicing over
    several turns (:mod:`.._qt._layerqueue`).
    """
    ours = [layer for layer in layers if META_KEY in getattr(layer, "metadata", {})]
    layouts = [layer.metadata[META_KEY] for layer in ours]
    placements = compute_layout(layouts)
    found_all = decorations(layouts, placements)
    for layer, (scale, translate) in zip(ours, placements, strict=True):
        if _set_placement(layer, scale, translate):
            yield layer
    for layer in ours:
        found = found_all.get(layer.metadata[META_KEY]["name"])
        if found is not None and layer.metadata[META_KEY]["role"] in DECORATION_ROLES:
            points, features = found
            if hasattr(layer, "features") and _set_points(layer, points, features):
                yield layer


def arrange(layers) -> None:
    """Re-place every layer made by this plugin (``metadata[META_KEY]``) without overlaps.

    ``layers`` is a napari ``LayerList`` (or any iterable of objects with
    ``metadata``, ``ndim``, ``scale`` and ``translate``); layers not made here
    are left alone. Only changed placements are assigned, and decoration
    layers (markers, titles) get their data recomputed.
    """
    for _ in iter_arrange(layers):
        pass


def _set_points(layer, points, features) -> bool:
    """Replace a Points layer's points and features (and hence its text); whether changed."""
    import pandas as pd

    current = np.asarray(layer.data)
    same_points = current.shape == points.shape and np.allclose(current, points)
    same_features = all(
        name in layer.features and list(layer.features[name]) == list(values)
        for name, values in features.items()
    )
    if same_points and same_features:
        return False
    layer.data = points
    layer.features = pd.DataFrame(features)
    if getattr(layer, "text", None) is not None:
        layer.text.refresh(layer.features)
    return True


def layout_tuples(tuples: list, *, among=()) -> list:
    """Set ``scale``/``translate`` of layer data tuples made here with :func:`compute_layout`.

    Used by the reader, the sample data and the widgets' workers, whose layers
    arrive together; decoration tuples get their data too. ``among`` are the
    layouts (``metadata[META_KEY]``) of the layers already in the viewer: the
    new layers are placed where :func:`arrange` will want them once added, so
    that adding them moves nothing.
    """
    ours = [t for t in tuples if META_KEY in t[1].get("metadata", {})]
    new_names = {t[1]["metadata"][META_KEY]["name"] for t in ours}
    others = [lay for lay in among if lay["name"] not in new_names]
    layouts = [t[1]["metadata"][META_KEY] for t in ours] + others
    placements = compute_layout(layouts)
    found = decorations(layouts, placements)
    for (data, kwargs, layer_type), (scale, translate) in zip(ours, placements, strict=False):
        nd = _tuple_ndim(data, kwargs, layer_type)
        kwargs["scale"] = tuple(scale[-nd:])
        kwargs["translate"] = tuple(translate[-nd:])
    for i, t in enumerate(tuples):
        lay = t[1].get("metadata", {}).get(META_KEY)
        if lay is not None and lay["name"] in found and lay["role"] in DECORATION_ROLES:
            points, features = found[lay["name"]]
            tuples[i] = (points, dict(t[1], features=features), t[2])
    return tuples


def _tuple_ndim(data, kwargs, layer_type) -> int:
    if layer_type == "surface":  # napari adds the value axes after making the layer
        return 3
    if layer_type == "shapes":
        return 2
    if layer_type == "points":
        return int(np.shape(data)[1]) if np.ndim(data) == 2 else int(kwargs.get("ndim", 2))
    return int(np.ndim(data))
