"""Core results as napari layer data tuples, and where they sit in the viewer.

Nothing here imports Qt or napari: functions return ``(data, kwargs,
layer_type)`` tuples (napari's ``LayerDataTuple``) and compute placements, so
the reader, the sample data and the widgets share one definition of layer
names, colormaps, scales and metadata, testable without a display.

World axes
----------
napari aligns layers on their trailing axes and shares one set of sliders, so
vertex x time images and the 3D cortex would collide if both used the last
three axes naively. Every layer made here follows one 5-axis scheme:

====  ===================  ===============================================
axis  name                 used by
====  ===================  ===============================================
-5    ``cortex time``      cortex values (one slider step per sample)
-4    ``event``            stacks, simulated sensor data, cortex values
-3    ``depth``            the cortex (head z); images have size 1 here
-2    rows                 image rows (vertices or channels); cortex y
-1    time (s)             image columns, ``scale = 1 / sfreq``; cortex x
====  ===================  ===============================================

- Vertex x time stacks (``"truth"``, ``"MNE"``, ..., ``"prediction (thesis)"``)
  have shape ``(n_events, 1, n_rows, n_times)``: the event slider browses
  events, the singleton keeps them flat in 3D. They lie side by side in one
  band (``0 <= y <= H``, ``H`` the stacks' duration, so each is square), in
  the fixed order :data:`STACK_ORDER` then predictions.
- Sensor data (channels x time, grouped by channel type) lie in a band above
  the stacks (``y < 0``); events of a recording are vertical lines on it.
- Cortex surfaces lie to the left of every image, scaled to the band height,
  seen from above (anterior up, right hemisphere right) in 3D display
  (``viewer.dims.ndisplay = 3``); their values follow the ``cortex time``
  and ``event`` sliders.

:func:`compute_layout` gives every layer's ``scale``/``translate`` from the
set of layers present; the widgets re-run it (:func:`arrange`) after adding
layers so that nothing overlaps whatever order things were opened in.
"""

from __future__ import annotations

from dataclasses import dataclass

import mne
import numpy as np

#: Key of the layout/role information in napari layer metadata.
META_KEY = "napari_meg_unet"
#: Roles of the layers made here.
ROLES = ("sensor", "events", "stack", "cortex", "map")
#: Stack names in display order; predictions follow.
STACK_ORDER = ("truth", "MNE", "dSPM", "sLORETA", "eLORETA")
#: Colormap per stack/layer kind (napari colormap names).
COLORMAPS = {
    "truth": "bwr",
    "MNE": "bwr",
    "dSPM": "bwr",
    "sLORETA": "bwr",
    "eLORETA": "bwr",
    "prediction": "magma",
    "sensor": "gray",
    "anatomy": "gray",
    "map": "viridis",
}
#: Channel types shown in sensor images, in this order.
SENSOR_TYPES = ("mag", "grad", "eeg")
#: Spacing between bands/cells as a fraction of the band height.
GAP = 0.1
#: Largest number of cortex values (times x events x vertices) drawn on the
#: full-resolution surface; above it the source-space mesh itself is used.
MAX_CORTEX_VALUES = 20_000_000
#: Height (world units) of a sensor band for recordings longer than this (s).
MAX_SENSOR_HEIGHT = 1.0
#: Names of the world axes of the 5-axis scheme.
AXIS_LABELS = ("cortex time", "event", "depth", "row", "time (s)")

SCALINGS = {kind: mne.defaults.DEFAULTS["scalings"][kind] for kind in SENSOR_TYPES}
UNITS = {kind: mne.defaults.DEFAULTS["units"][kind] for kind in SENSOR_TYPES}


def prediction_name(model: str) -> str:
    """Layer name of a network's prediction, e.g. ``"prediction (thesis)"``."""
    return f"prediction ({model})"


def colormap_for(name: str) -> str:
    """The colormap of a stack or layer kind (predictions share one)."""
    if name.startswith("prediction"):
        return COLORMAPS["prediction"]
    return COLORMAPS.get(name, COLORMAPS["map"])


#: Percentile of the non-zero ``|values|`` used as the top of the contrast limits
#: (the strongest 1% saturate instead of washing out everything else).
LIMIT_PERCENTILE = 99.0


def _peak(values) -> float:
    magnitude = np.abs(np.asarray(values, dtype=np.float64))
    magnitude = magnitude[np.isfinite(magnitude) & (magnitude > 0)]
    if magnitude.size == 0:
        return 0.0
    return float(np.percentile(magnitude, LIMIT_PERCENTILE))


def _symmetric_limits(data) -> tuple[float, float]:
    peak = _peak(data)
    peak = peak if peak > 0 else 1.0
    return (-peak, peak)


def _positive_limits(data) -> tuple[float, float]:
    data = np.asarray(data)
    finite = data[np.isfinite(data)]
    if finite.size == 0:
        return (0.0, 1.0)
    lo, hi = min(float(finite.min()), 0.0), _peak(finite)
    return (lo, hi) if hi > lo else (0.0, 1.0)


# =========================================================================== sensor data
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


def _layout_meta(role, *, name, n_rows=None, n_times=None, sfreq=None, tmin=0.0, slot=None,
                 **extra) -> dict:  # fmt: skip
    meta = dict(role=role, name=name, n_rows=n_rows, n_times=n_times, sfreq=sfreq, tmin=tmin,
                slot=slot)  # fmt: skip
    meta.update(extra)
    return meta


def sensor_layer(data, info, *, name="sensor data", tmin=0.0, metadata=None, band=0):
    """Image layer of sensor data (channels x time).

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
    n_rows, n_times = shown.shape[-2:]
    sfreq = float(info["sfreq"])
    layout = _layout_meta(
        "sensor", name=name, n_rows=n_rows, n_times=n_times, sfreq=sfreq, tmin=float(tmin),
        slot=int(band),
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
            "picks": image.picks,
            "scalings": dict(SCALINGS),
            "sfreq": sfreq,
            "tmin": float(tmin),
        }
    )
    scale, translate = _place(layout, _default_band_height(layout))
    kwargs = dict(
        name=name,
        colormap=COLORMAPS["sensor"],
        contrast_limits=_symmetric_limits(shown),
        scale=scale[-shown.ndim :],
        translate=translate[-shown.ndim :],
        metadata=meta,
        axis_labels=AXIS_LABELS[-shown.ndim :],
    )
    return shown, kwargs, "image"


def events_layer(times, names, *, sensor, name="events"):
    """Shapes layer of vertical lines at event onsets over a sensor image.

    Parameters
    ----------
    times : array-like of float
        Event onsets (s) from the first sample of the recording.
    names : list of str
        Event descriptions (``features["event"]``).
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
        scale=skw["scale"][-2:],
        translate=skw["translate"][-2:],
        metadata=meta,
    )
    return lines, kwargs, "shapes"


def _event_colors(n: int) -> list:
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    return [tuple(cmap(i % 10)) for i in range(max(n, 1))]


# =========================================================================== stacks
def stack_layer(data, *, name, sfreq, tmin=0.0, slot=None, metadata=None):
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
        Extra metadata (``headmodel``, ``simulation``, ``hemi``, ``rows``, ...).

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
    layout = _layout_meta(
        "stack", name=name, n_rows=n_rows, n_times=n_times, sfreq=float(sfreq),
        tmin=float(tmin), slot=int(slot),
    )  # fmt: skip
    meta = dict(metadata or {})
    meta.update({META_KEY: layout, "sfreq": float(sfreq), "tmin": float(tmin)})
    scale, translate = _place(layout, _default_band_height(layout))
    cmap = colormap_for(name)
    limits = _positive_limits(data) if cmap != "bwr" else _symmetric_limits(data)
    kwargs = dict(
        name=name,
        colormap=cmap,
        contrast_limits=limits,
        scale=scale[-4:],
        translate=translate[-4:],
        metadata=meta,
        axis_labels=AXIS_LABELS[-4:],
        interpolation2d="nearest",
    )
    return data[:, np.newaxis], kwargs, "image"


def stack_data(layer_data) -> np.ndarray:
    """The ``(n_events, n_rows, n_times)`` array behind a stack layer's data."""
    data = np.asarray(layer_data)
    if data.ndim == 4 and data.shape[1] == 1:
        return data[:, 0]
    if data.ndim == 2:
        return data[np.newaxis]
    raise ValueError(f"not a stack layer's data: shape {data.shape}.")


# =========================================================================== cortex
@dataclass
class CortexMesh:
    """A display mesh of the cortex and how source rows map onto it.

    Attributes
    ----------
    vertices : ndarray, shape (n_vertices, 3)
        Head/MRI coordinates in metres (x right, y anterior, z up).
    faces : ndarray, shape (n_faces, 3)
    background : ndarray, shape (n_vertices,)
        Values shown without data (sulcal depth, or zeros).
    row_of_vertex : ndarray of int, shape (n_vertices,) | None
        For each mesh vertex, the index into the image rows whose value it
        shows (-1: none); None for anatomy-only meshes.
    source : str
        Where the mesh comes from (for metadata).
    """

    vertices: np.ndarray
    faces: np.ndarray
    background: np.ndarray
    row_of_vertex: np.ndarray | None = None
    source: str = ""

    def values(self, stack) -> np.ndarray:
        """Map a ``(n_events, n_rows, n_times)`` stack to ``(n_times, n_events, n_vertices)``."""
        if self.row_of_vertex is None:
            raise ValueError(f"the cortex mesh {self.source!r} has no row mapping.")
        stack = np.asarray(stack, dtype=np.float32)
        if stack.ndim == 2:
            stack = stack[np.newaxis]
        n_rows = stack.shape[1]
        if self.row_of_vertex.max() >= n_rows:
            raise ValueError(
                f"the stack has {n_rows} rows but the cortex mesh maps onto "
                f"{self.row_of_vertex.max() + 1}."
            )
        padded = np.concatenate([stack, np.zeros_like(stack[:, :1])], axis=1)
        picked = padded[:, self.row_of_vertex]  # -1 -> the zero row
        return np.ascontiguousarray(picked.transpose(2, 0, 1))


def _offset_inflated(hemi_rr: dict) -> dict:
    """Shift inflated hemispheres apart along x as MNE's Brain does (lh max x = 0 = rh min x)."""
    out = dict(hemi_rr)
    if "lh" in out:
        out["lh"] = out["lh"] - [out["lh"][:, 0].max(), 0, 0]
    if "rh" in out:
        out["rh"] = out["rh"] - [out["rh"][:, 0].min(), 0, 0]
    return out


def cortex_mesh_from_surfaces(surfaces: dict, *, kind="pial", source="") -> CortexMesh:
    """Anatomy-only mesh from ``{hemi: (rr, tris, sulc)}`` (see :mod:`.bids`)."""
    rr = {h: np.asarray(surfaces[h][0], float) for h in ("lh", "rh")}
    if kind == "inflated":
        rr = _offset_inflated(rr)
    n_lh = len(rr["lh"])
    return CortexMesh(
        vertices=np.concatenate([rr["lh"], rr["rh"]]),
        faces=np.concatenate([surfaces["lh"][1], surfaces["rh"][1] + n_lh]).astype(np.int64),
        background=np.concatenate([surfaces["lh"][2], surfaces["rh"][2]]).astype(np.float32),
        source=source,
    )


def display_kind(hm, preferred: str = "inflated") -> str:
    """``preferred`` if the head model has that display surface, else inflated, pial or white."""
    for kind in (preferred, "inflated", "pial", "white"):
        if all(h in hm.surfaces.get(kind, {}) for h in ("lh", "rh")):
            return kind
    raise ValueError(f"the head model {hm.subject!r} has no display surfaces.")


def cortex_mesh_from_headmodel(hm, *, hemi="both", kind="inflated", full=True) -> CortexMesh:
    """Display mesh of a head model whose values come from the rows of ``hm.rows(hemi)``.

    Parameters
    ----------
    hm : HeadModel
        Its ``surfaces[kind]`` (head coordinates) and source space.
    hemi : "lh" | "rh" | "both"
        The image rows the values come from (vertices of the other hemisphere
        show 0).
    kind : "inflated" | "pial" | "white"
        Display surface (falls back as :func:`display_kind` when the head
        model lacks it, e.g. a subject without an inflated surface).
    full : bool
        Draw the full-resolution surface, each vertex showing its nearest
        source (nearest on the white surface); ``False`` draws the
        source-space triangulation itself (exact, coarser).

    Returns
    -------
    mesh : CortexMesh
    """
    from scipy.spatial import cKDTree

    from .headmodel import check_hemi

    check_hemi(hemi)
    if kind not in ("inflated", "pial", "white"):
        raise ValueError(f"kind must be 'inflated', 'pial' or 'white', got {kind!r}.")
    kind = display_kind(hm, kind)
    rows = hm.rows(hemi)
    row_index = np.full(hm.n_sources, -1)
    row_index[rows] = np.arange(len(rows))
    offsets = [0, len(hm.vertno[0])]
    verts, faces, mapping, n_done = {}, [], [], 0
    for h, hname in enumerate(("lh", "rh")):
        rr_kind, tris = hm.surfaces[kind][hname]
        vertno = hm.vertno[h]
        if full:
            white = hm.surfaces["white"][hname][0] if "white" in hm.surfaces else rr_kind
            _, nearest = cKDTree(white[vertno]).query(white)
            verts[hname] = np.asarray(rr_kind, float)
            faces.append(np.asarray(tris) + n_done)
            mapping.append(row_index[offsets[h] + nearest])
        else:
            verts[hname] = np.asarray(rr_kind, float)[vertno]
            lut = np.full(len(rr_kind), -1)
            lut[vertno] = np.arange(len(vertno))
            use_tris = hm.fwd["src"][h]["use_tris"]
            local = lut[use_tris]
            faces.append(local[(local >= 0).all(axis=1)] + n_done)
            mapping.append(row_index[offsets[h] + np.arange(len(vertno))])
        n_done += len(verts[hname])
    if kind == "inflated":
        verts = _offset_inflated(verts)
    vertices = np.concatenate([verts["lh"], verts["rh"]])
    return CortexMesh(
        vertices=vertices,
        faces=np.concatenate(faces).astype(np.int64),
        background=np.zeros(len(vertices), np.float32),
        row_of_vertex=np.concatenate(mapping).astype(np.int64),
        source=f"headmodel:{hm.subject} {kind} ({'full' if full else hm.spacing})",
    )


def cortex_layer(mesh: CortexMesh, *, values=None, name="cortex", band=0, metadata=None,
                 colormap=None):  # fmt: skip
    """Surface layer of a cortex mesh, optionally with values per time/event.

    Parameters
    ----------
    mesh : CortexMesh
        From :func:`cortex_mesh_from_headmodel` or :func:`cortex_mesh_from_surfaces`.
    values : array-like | None
        ``(n_events, n_rows, n_times)`` stack (mapped with
        :meth:`CortexMesh.values`) or ``(n_vertices,)`` values per vertex
        (a map such as the mean DLE); None shows ``mesh.background``.
    name : str
        Layer name.
    band : int
        Vertical position among cortex layers (0 = top).
    metadata : dict | None
        Extra metadata.
    colormap : str | None
        Default: gray for anatomy, :func:`colormap_for` of the stack source.

    Returns
    -------
    layer : tuple
        ``((vertices, faces, values), kwargs, "surface")`` with vertices in
        napari order (depth = z, row = -y, col = x), metres.
    """
    verts = np.column_stack(
        [mesh.vertices[:, 2], -mesh.vertices[:, 1], mesh.vertices[:, 0]]
    ).astype(np.float32)
    if values is None:
        vals = np.asarray(mesh.background, np.float32)
        cmap = colormap or COLORMAPS["anatomy"]
        limits = _symmetric_limits(vals) if np.any(vals) else (-1.0, 1.0)
        role = "cortex"
    else:
        values = np.asarray(values)
        if values.ndim == 1:
            if len(values) != len(verts):
                raise ValueError(
                    f"per-vertex values must have {len(verts)} entries, got {len(values)}."
                )
            vals = values.astype(np.float32)
            role = "map"
        else:
            vals = mesh.values(values)
            role = "cortex"
        cmap = colormap or COLORMAPS["map"]
        finite = vals[np.isfinite(vals)]
        limits = (
            _symmetric_limits(finite) if cmap == "bwr" else _positive_limits(finite)
        )
    lo, hi = verts.min(axis=0), verts.max(axis=0)
    layout = _layout_meta(
        role, name=name, slot=int(band), lo=lo.tolist(), hi=hi.tolist()
    )
    meta = dict(metadata or {})
    meta.update({META_KEY: layout, "mesh": mesh})
    scale, translate = _place(layout, 1.0)
    kwargs = dict(
        name=name,
        colormap=cmap,
        contrast_limits=limits,
        scale=scale[-3:],
        translate=translate[-3:],
        shading="smooth",
        metadata=meta,
    )
    return (verts, np.asarray(mesh.faces, np.int64), vals), kwargs, "surface"


# =========================================================================== layout
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
    if role in ("stack", "sensor", "events"):
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
    # cortex / map: vertices (depth, row, col) in metres -> band of size 2 * height
    lo, hi = np.asarray(layout["lo"]), np.asarray(layout["hi"])
    size = 2 * height + gap
    s = size / max(float((hi - lo)[1:].max()), 1e-9)
    right = (x_left if x_left is not None else 0.0) - gap
    y_top = layout["slot"] * (size + gap)
    translate = (-lo[0] * s, y_top - lo[1] * s, right - (hi[2] - lo[2]) * s - lo[2] * s)
    return (1.0, 1.0, s, s, s), (0.0, 0.0, *translate)


def compute_layout(layouts: list[dict]) -> list[tuple]:
    """``(scale, translate)`` (5 axes each) for every layer layout, avoiding overlaps.

    Parameters
    ----------
    layouts : list of dict
        The ``metadata[META_KEY]`` of the layers (as made by the functions
        of this module).

    Returns
    -------
    placements : list of (scale, translate)
        In the order of ``layouts``.
    """
    stacks = [lay for lay in layouts if lay["role"] == "stack"]
    sensors = [lay for lay in layouts if lay["role"] in ("sensor", "events")]
    if stacks:
        height = max(_duration(lay) for lay in stacks)
    elif sensors:
        height = max(_default_band_height(lay) for lay in sensors)
    else:
        height = 1.0
    # stacks keep their slot order but are packed left to right; sensor bands
    # likewise upwards (events share the band of their sensor layer)
    order = sorted({(lay["slot"], lay["name"]) for lay in stacks})
    packed = {key: i for i, key in enumerate(order)}
    bands = sorted({(lay["slot"], lay["name"]) for lay in layouts if lay["role"] == "sensor"})
    band_of_sensor = {name: i for i, (_, name) in enumerate(bands)}
    images = []
    out = []
    for lay in layouts:
        if lay["role"] == "stack":
            lay = dict(lay, slot=packed[(lay["slot"], lay["name"])])
        elif lay["role"] == "sensor":
            lay = dict(lay, slot=band_of_sensor[lay["name"]])
        elif lay["role"] == "events":
            lay = dict(lay, slot=band_of_sensor.get(lay["sensor"], lay["slot"]))
        if lay["role"] in ("stack", "sensor", "events"):
            placement = _place(lay, height)
            images.append(placement[1][-1])
        out.append((lay, placement if lay["role"] in ("stack", "sensor", "events") else None))
    x_left = min(images) if images else 0.0
    cortex = sorted({(lay["slot"], lay["name"]) for lay in layouts
                     if lay["role"] in ("cortex", "map")})  # fmt: skip
    band_of = {key: i for i, key in enumerate(cortex)}
    result = []
    for lay, placement in out:
        if placement is None:
            lay = dict(lay, slot=band_of[(lay["slot"], lay["name"])])
            placement = _place(lay, height, x_left=x_left)
        result.append(placement)
    return result


def arrange(layers) -> None:
    """Re-place every layer made by this plugin (``metadata[META_KEY]``) without overlaps.

    ``layers`` is a napari ``LayerList`` (or any iterable of objects with
    ``metadata``, ``ndim``, ``scale`` and ``translate``); layers not made here
    are left alone.
    """
    ours = [layer for layer in layers if META_KEY in getattr(layer, "metadata", {})]
    placements = compute_layout([layer.metadata[META_KEY] for layer in ours])
    for layer, (scale, translate) in zip(ours, placements, strict=True):
        nd = layer.ndim
        if layer.metadata[META_KEY]["role"] in ("cortex", "map"):
            # leading (time/event) axes of surface values keep unit scale
            layer.scale = (1.0,) * (nd - 3) + tuple(scale[-3:])
            layer.translate = (0.0,) * (nd - 3) + tuple(translate[-3:])
        else:
            layer.scale = tuple(scale[-nd:])
            layer.translate = tuple(translate[-nd:])


def layout_tuples(tuples: list) -> list:
    """Set ``scale``/``translate`` of layer data tuples made here with :func:`compute_layout`.

    Used by the reader and the sample data, whose layers arrive together.
    """
    ours = [t for t in tuples if META_KEY in t[1].get("metadata", {})]
    placements = compute_layout([t[1]["metadata"][META_KEY] for t in ours])
    for (data, kwargs, layer_type), (scale, translate) in zip(ours, placements, strict=True):
        nd = {"surface": 3, "shapes": 2}.get(layer_type) or np.ndim(data)
        kwargs["scale"] = tuple(scale[-nd:])
        kwargs["translate"] = tuple(translate[-nd:])
    return tuples
