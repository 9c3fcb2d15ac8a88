"""Cortex surfaces: display meshes, stack values mapped onto vertices, Surface layers, views."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from ._base import (
    COLORMAPS,
    MAX_CORTEX_VALUES,
    META_KEY,
    SHORT_UNITS,
    _layout_meta,
    _symmetric_limits,
    colormap_for,
    is_signed,
    limits_for,
    nice_ceiling,
    unit_for,
)
from .colormaps import resolve, with_missing
from .layout import _place

#: Values copied per chunk when mapping a stack onto a mesh: small chunks let a
#: worker thread hand the GIL back to napari's event loop between them.
CHUNK_VALUES = 1_000_000


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
    vertex_of_row : ndarray of int, shape (n_rows,) | None
        The mesh vertex at each row's own source (where a marker of that
        source is drawn).
    hemi_of_vertex : ndarray of int, shape (n_vertices,) | None
        0 (lh) or 1 (rh) per mesh vertex.
    """

    vertices: np.ndarray
    faces: np.ndarray
    background: np.ndarray
    row_of_vertex: np.ndarray | None = None
    source: str = ""
    vertex_of_row: np.ndarray | None = None
    hemi_of_vertex: np.ndarray | None = None

    def values(self, stack) -> np.ndarray:
        """Map a ``(n_events, n_rows, n_times)`` stack to ``(n_times, n_events, n_vertices)``."""
        if self.row_of_vertex is None:
            raise ValueError(f"the cortex mesh {self.source!r} has no row mapping.")
        stack = np.asarray(stack)
        if stack.ndim == 2:
            stack = stack[np.newaxis]
        n_events, n_rows, n_times = stack.shape
        if self.row_of_vertex.max() >= n_rows:
            raise ValueError(
                f"the stack has {n_rows} rows but the cortex mesh maps onto "
                f"{self.row_of_vertex.max() + 1}."
            )
        index = np.where(self.row_of_vertex >= 0, self.row_of_vertex, n_rows)
        out = np.empty((n_times, n_events, len(index)), np.float32)
        per_chunk = max(1, CHUNK_VALUES // max(1, n_times * len(index)))
        for start in range(0, n_events, per_chunk):
            block = np.asarray(stack[start : start + per_chunk], dtype=np.float32)
            padded = np.concatenate([block, np.zeros_like(block[:, :1])], axis=1)
            out[:, start : start + len(block)] = padded[:, index].transpose(2, 0, 1)
        return out

    def per_vertex(self, per_row) -> np.ndarray:
        """Map one value per row to one per vertex (NaN where no row is shown)."""
        per_row = np.asarray(per_row, float)
        values = self.values(per_row[np.newaxis, :, np.newaxis])[0, 0]
        return np.where(self.row_of_vertex >= 0, values, np.nan).astype(np.float32)


def _offset_inflated(hemi_rr: dict) -> dict:
    """Shift inflated hemispheres apart along x as MNE's Brain does (lh max x = 0 = rh min x)."""
    out = dict(hemi_rr)
    if "lh" in out:
        out["lh"] = out["lh"] - [out["lh"][:, 0].max(), 0, 0]
    if "rh" in out:
        out["rh"] = out["rh"] - [out["rh"][:, 0].min(), 0, 0]
    return out


def cortex_mesh_from_surfaces(surfaces: dict, *, kind="pial", source="") -> CortexMesh:
    """Anatomy-only mesh from ``{hemi: (rr, tris, sulc)}`` (see :mod:`..bids`)."""
    rr = {h: np.asarray(surfaces[h][0], float) for h in ("lh", "rh")}
    if kind == "inflated":
        rr = _offset_inflated(rr)
    n_lh = len(rr["lh"])
    return CortexMesh(
        vertices=np.concatenate([rr["lh"], rr["rh"]]),
        faces=np.concatenate([surfaces["lh"][1], surfaces["rh"][1] + n_lh]).astype(np.int64),
        background=np.concatenate([surfaces["lh"][2], surfaces["rh"][2]]).astype(np.float32),
        source=source,
        hemi_of_vertex=np.repeat([0, 1], [n_lh, len(rr["rh"])]),
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

    from ..headmodel import check_hemi

    check_hemi(hemi)
    if kind not in ("inflated", "pial", "white"):
        raise ValueError(f"kind must be 'inflated', 'pial' or 'white', got {kind!r}.")
    kind = display_kind(hm, kind)
    rows = hm.rows(hemi)
    row_index = np.full(hm.n_sources, -1)
    row_index[rows] = np.arange(len(rows))
    offsets = [0, len(hm.vertno[0])]
    verts, faces, mapping, own, hemis, n_done = {}, [], [], [], [], 0
    for h, hname in enumerate(("lh", "rh")):
        rr_kind, tris = hm.surfaces[kind][hname]
        vertno = hm.vertno[h]
        if full:
            white = hm.surfaces["white"][hname][0] if "white" in hm.surfaces else rr_kind
            _, nearest = cKDTree(white[vertno]).query(white)
            verts[hname] = np.asarray(rr_kind, float)
            faces.append(np.asarray(tris) + n_done)
            mapping.append(row_index[offsets[h] + nearest])
            own.append(n_done + np.asarray(vertno))
        else:
            verts[hname] = np.asarray(rr_kind, float)[vertno]
            lut = np.full(len(rr_kind), -1)
            lut[vertno] = np.arange(len(vertno))
            local = lut[hm.fwd["src"][h]["use_tris"]]
            faces.append(local[(local >= 0).all(axis=1)] + n_done)
            mapping.append(row_index[offsets[h] + np.arange(len(vertno))])
            own.append(n_done + np.arange(len(vertno)))
        hemis.append(np.full(len(verts[hname]), h))
        n_done += len(verts[hname])
    if kind == "inflated":
        verts = _offset_inflated(verts)
    vertex_of_source = np.concatenate(own)
    return CortexMesh(
        vertices=np.concatenate([verts["lh"], verts["rh"]]),
        faces=np.concatenate(faces).astype(np.int64),
        background=np.zeros(n_done, np.float32),
        row_of_vertex=np.concatenate(mapping).astype(np.int64),
        source=f"headmodel:{hm.subject} {kind} ({'full' if full else hm.spacing})",
        vertex_of_row=vertex_of_source[rows].astype(np.int64),
        hemi_of_vertex=np.concatenate(hemis),
    )


def napari_vertices(vertices) -> np.ndarray:
    """Head coordinates (x right, y anterior, z up) in napari order (depth z, row -y, col x)."""
    vertices = np.asarray(vertices, float)
    return np.column_stack([vertices[:, 2], -vertices[:, 1], vertices[:, 0]]).astype(np.float32)


def _surface_values(mesh, values, colormap, limits, mapped):
    """Vertex values, colormap, contrast limits and role of a cortex layer."""
    n_vertices = len(mesh.vertices)
    if values is None:
        vals = np.asarray(mesh.background, np.float32)
        limits = _symmetric_limits(vals) if np.any(vals) else (-1.0, 1.0)
        return vals, colormap or COLORMAPS["anatomy"], limits, "cortex"
    values = np.asarray(values)
    if values.ndim == 1:
        if len(values) != n_vertices:
            raise ValueError(
                f"per-vertex values must have {n_vertices} entries, got {len(values)}."
            )
        vals, role = values.astype(np.float32), "map"
    else:
        if mapped and values.shape[-1] != n_vertices:
            raise ValueError(
                f"mapped values must have {n_vertices} vertices last, got {values.shape}."
            )
        vals = values.astype(np.float32, copy=False) if mapped else mesh.values(values)
        role = "cortex"
    cmap = colormap or COLORMAPS["map"]
    limits = limits_for(vals, cmap) if limits is None else limits
    if is_signed(cmap):  # rounded up so that the colorbar labels its ends
        top = nice_ceiling(max(abs(float(v)) for v in limits))
        limits = (-top, top)
    limits = tuple(float(v) for v in limits)
    if role == "map":
        vals, cmap, limits = _grey_where_missing(vals, cmap, limits)
    return vals, cmap, limits, role


def _grey_where_missing(vals, cmap, limits):
    """A per-vertex map whose missing (NaN) vertices show the cortex in grey, not a hole.

    (A per-source DLE map has values only where a true source was: on a few
    events, a few patches of an otherwise invisible surface.) The missing
    vertices get a value just below the limits, which the colormap shows grey.
    """
    missing = ~np.isfinite(vals)
    if not missing.any() or missing.all():
        return vals, cmap, limits
    lo, hi = limits
    below = lo - 0.02 * (hi - lo)
    grey = with_missing(cmap, (lo - below) / (hi - below))
    return np.where(missing, below, vals).astype(np.float32), grey, (below, hi)


def cortex_layer(mesh: CortexMesh, *, values=None, name="cortex", band=0, metadata=None,
                 colormap=None, sfreq=None, tmin=0.0, shows=None, unit=None,
                 mapped=False, limits=None):  # fmt: skip
    """Surface layer of a cortex mesh, optionally with values per time/event.

    Parameters
    ----------
    mesh : CortexMesh
        From :func:`cortex_mesh_from_headmodel` or :func:`cortex_mesh_from_surfaces`.
    values : array-like | None
        ``(n_events, n_rows, n_times)`` stack (mapped with
        :meth:`CortexMesh.values`), ``(n_times, n_events, n_vertices)``
        values already mapped (``mapped=True``), or ``(n_vertices,)`` values
        per vertex (a map such as the mean DLE); None shows ``mesh.background``.
    name : str
        Layer name.
    band : int
        Vertical position among cortex layers (0 = top).
    metadata : dict | None
        Extra metadata.
    colormap : str | dict | None
        Default: gray for anatomy, viridis for values.
    sfreq, tmin : float | None
        Sampling rate and first time of stack values: the ``cortex time``
        axis is then in seconds (scale ``1 / sfreq``).
    shows : str | None
        What the values are (``"truth"``, ``"dSPM"``...), for the title.
    unit : str | None
        Unit of the values (default from ``shows``).
    mapped : bool
        ``values`` are already per vertex (``(n_times, n_events, n_vertices)``).
    limits : (float, float) | None
        Contrast limits (default: from the values, see :func:`.limits_for`);
        pass the stack layer's to show both alike without scanning the values.

    Returns
    -------
    layer : tuple
        ``((vertices, faces, values), kwargs, "surface")`` with vertices in
        napari order (depth = z, row = -y, col = x), metres.
    """
    verts = napari_vertices(mesh.vertices)
    vals, cmap, limits, role = _surface_values(mesh, values, colormap, limits, mapped)
    unit = unit if unit is not None else (unit_for(shows) if shows else "")
    label = f"{name}: {shows}" if shows and shows != name else name
    lo, hi = verts.min(axis=0), verts.max(axis=0)
    layout = _layout_meta(
        role, name=name, slot=int(band), lo=lo.tolist(), hi=hi.tolist(),
        sfreq=None if sfreq is None else float(sfreq), tmin=float(tmin), shows=shows, unit=unit,
        title=f"{label} [{SHORT_UNITS.get(unit, unit)}]" if unit else label,
    )  # fmt: skip
    meta = dict(metadata or {})
    meta.update({META_KEY: layout, "mesh": mesh})
    if shows is not None:
        meta["shows"] = shows
    scale, translate = _place(layout, 1.0)
    # napari makes a Surface with 3-D transforms and adds the value axes after;
    # :func:`.layout.arrange` sets the time axis' scale once the layer exists
    nd = 3
    kwargs = dict(
        name=name,
        colormap=resolve(cmap),
        contrast_limits=limits,
        scale=scale[-nd:],
        translate=translate[-nd:],
        shading="smooth",
        metadata=meta,
    )
    return (verts, np.asarray(mesh.faces, np.int64), vals), kwargs, "surface"


# =========================================================================== head models
_MESHES: OrderedDict = OrderedDict()


def cortex_mesh(hm, hemi: str, n_values: int):
    """Display mesh of ``hm`` for rows ``hm.rows(hemi)`` (full surface within budget), cached."""
    full = n_values <= MAX_CORTEX_VALUES
    key = (hm.fingerprint, hemi, full)
    if key not in _MESHES:
        _MESHES[key] = cortex_mesh_from_headmodel(hm, hemi=hemi, full=full)
        while len(_MESHES) > 8:
            _MESHES.popitem(last=False)
    return _MESHES[key]


def cortex_size(hm, stack) -> int:
    """Values a stack (or a stack shape) would have on the full display surface."""
    kind = display_kind(hm)
    n_vertices = sum(len(hm.surfaces[kind][h][0]) for h in ("lh", "rh"))
    if stack is None:
        return n_vertices
    n_events, _, n_times = stack if isinstance(stack, tuple) else np.shape(stack)
    return n_events * n_times * n_vertices


def headmodel_cortex(hm, *, hemi, source, stack=None, per_row=None, sfreq=None, tmin=0.0,
                     name="cortex", band=0, extra=None, limits=None, unit=None,
                     colormap=None):  # fmt: skip
    """Cortex Surface layer data: anatomy, a stack's values or a per-row map (``per_row``)."""
    mesh = cortex_mesh(hm, hemi, cortex_size(hm, stack))
    meta = {"headmodel": hm, "hemi": hemi, "shows": source, "rows": hm.rows(hemi)}
    meta.update(extra or {})
    if stack is not None:
        values = stack
        cmap = colormap or colormap_for(source)
    elif per_row is not None:
        values = mesh.per_vertex(per_row)
        cmap = colormap or COLORMAPS["map"]
    else:
        values, cmap = None, None
    data, kwargs, kind = cortex_layer(
        mesh, values=values, name=name, colormap=cmap, metadata=meta, band=band,
        sfreq=sfreq if stack is not None else None, tmin=tmin,
        shows=None if source == "anatomy" else source, unit=unit,
        limits=limits if values is not None else None,
    )  # fmt: skip
    if stack is not None:
        kwargs["metadata"]["stack_limits"] = kwargs["contrast_limits"]
    if per_row is not None:
        kwargs["metadata"]["per_row"] = np.asarray(per_row, float)
    return data, kwargs, kind


#: Camera views of the cortex: ``(view_direction, up_direction)`` in napari's
#: displayed (depth = z, row = -y, col = x) order, and which hemisphere is
#: kept (the other is clipped away so that a medial surface can be seen).
VIEWS = {
    "top": ((-1.0, 0.0, 0.0), (0.0, -1.0, 0.0), None),
    "lh lateral": ((0.0, 0.0, 1.0), (1.0, 0.0, 0.0), "lh"),
    "lh medial": ((0.0, 0.0, -1.0), (1.0, 0.0, 0.0), "lh"),
    "rh lateral": ((0.0, 0.0, -1.0), (1.0, 0.0, 0.0), "rh"),
    "rh medial": ((0.0, 0.0, 1.0), (1.0, 0.0, 0.0), "rh"),
}


def hemisphere_bounds(mesh: CortexMesh, hemi: str) -> tuple[np.ndarray, np.ndarray]:
    """``(lo, hi)`` corners of one hemisphere of ``mesh`` in napari order (metres)."""
    if mesh.hemi_of_vertex is None:
        raise ValueError(f"the cortex mesh {mesh.source!r} does not know its hemispheres.")
    verts = napari_vertices(mesh.vertices[mesh.hemi_of_vertex == ("lh", "rh").index(hemi)])
    return verts.min(axis=0), verts.max(axis=0)
