"""Truth you can see: markers of the true sources on the stacks and the cortex, canvas titles.

A simulation's truth has a few non-zero rows among hundreds, too thin to see
in a downscaled image. :func:`stack_markers` puts a ring on every stack of the
simulation at each true source's row and the middle of its active window;
:func:`cortex_markers` puts a disc at each source's vertex on a cortex
surface (drawn over it, so a source in a sulcus stays visible).
:func:`titles_layer` writes the name and unit of every stack, sensor band and
cortex above it in the canvas. Their data are world coordinates computed from
the other layers' placements (:func:`.layout.decorations`).
"""

from __future__ import annotations

import numpy as np

from ._base import META_KEY, _layout_meta
from .cortex import CortexMesh, napari_vertices
from .layout import CORTEX_MARKER_SIZE, MARKER_SIZE

#: Colour of the truth markers (visible on bwr, the probability map and grey).
MARKER_COLOR = "lime"


def source_table(sim, rows) -> dict:
    """Per true source of a simulation: event, image row (index into ``rows``), sample, label.

    The sample is the middle of the source's active window; off-grid dipoles
    are placed at their nearest row (as in ``Simulation.truth``).
    """
    rows = np.asarray(rows)
    row_of = np.full(sim.n_sources, -1)
    row_of[rows] = np.arange(len(rows))
    src = sim.sources
    image_row = row_of[np.asarray(src["row"])]
    keep = image_row >= 0
    onset = np.asarray(src["onset"], float)
    centre = onset + (np.asarray(src["duration"], float) - 1) / 2
    hemi = np.where(np.asarray(src["hemi"]) == 0, "lh", "rh")
    labels = [
        f"event {int(e)}: {h} vertex {int(v)}"
        for e, h, v in zip(src["event"], hemi, src["vertex"], strict=True)
    ]
    return {
        "event": np.asarray(src["event"])[keep],
        "row": image_row[keep],
        "sample": centre[keep],
        "label": [lab for lab, k in zip(labels, keep, strict=True) if k],
    }


def stack_markers(sim, rows, *, group, height, name="truth sources"):
    """Points layer marking every true source on the stacks of ``group``.

    Parameters
    ----------
    sim : Simulation
        The simulation whose sources are marked.
    rows : array-like of int
        The stacks' rows (``sim.rows``).
    group : str
        The stacks' group (:func:`.stacks.stack_layer`), e.g. ``sim.fingerprint``.
    height : float
        The stack band height (world units), for the marker size.
    name : str
        Layer name.

    Returns
    -------
    layer : tuple
        ``(points, kwargs, "points")``; the points are placed by
        :func:`.layout.layout_tuples` / :func:`.layout.arrange`.
    """
    table = source_table(sim, rows)
    base = np.column_stack([table["event"], table["row"], table["sample"]]).astype(float)
    layout = _layout_meta(
        "markers", name=name, group=group, points=base, labels=table["label"],
    )  # fmt: skip
    kwargs = dict(
        name=name,
        ndim=4,
        symbol="ring",
        size=MARKER_SIZE * height,
        face_color=MARKER_COLOR,
        border_width=0,
        blending="translucent_no_depth",
        features={"source": []},
        metadata={META_KEY: layout, "simulation": sim},
        out_of_slice_display=False,
    )
    return np.zeros((0, 4)), kwargs, "points"


def cortex_markers(sim, mesh: CortexMesh, rows, *, on="cortex", name="truth sources (cortex)"):
    """Points layer of the true sources of ``sim`` on the cortex layer ``on``.

    Parameters
    ----------
    sim : Simulation
        The simulation whose sources are marked.
    mesh : CortexMesh
        The mesh of the cortex layer ``on`` (made for ``rows``).
    rows : array-like of int
        The rows the mesh maps (``HeadModel.rows(hemi)`` of the mesh).
    on : str
        Name of the cortex layer the markers follow.
    name : str
        Layer name.

    Returns
    -------
    layer : tuple
        ``(points, kwargs, "points")``: ``(event, depth, row, col)`` points in
        the cortex's data coordinates (metres), drawn at the mesh vertex of
        each source's row (its nearest grid vertex when off-grid), for its
        event only, over the surface (``translucent_no_depth`` blending).
    """
    if mesh.vertex_of_row is None:
        raise ValueError(f"the cortex mesh {mesh.source!r} does not know where its rows lie.")
    table = source_table(sim, rows)
    xyz = napari_vertices(mesh.vertices[mesh.vertex_of_row[table["row"]]])
    points = np.column_stack([table["event"].astype(float), xyz])
    layout = _layout_meta("cortex-markers", name=name, on=on)
    kwargs = dict(
        name=name,
        ndim=4,
        symbol="disc",
        size=CORTEX_MARKER_SIZE,
        face_color=MARKER_COLOR,
        border_color="black",
        border_width=0.1,
        blending="translucent_no_depth",
        features={"source": table["label"]},
        metadata={META_KEY: layout, "simulation": sim},
        out_of_slice_display=False,
    )
    return points, kwargs, "points"


def titles_layer(name="titles"):
    """Points layer of text titles (name and unit of every stack, sensor band and cortex)."""
    layout = _layout_meta("titles", name=name)
    kwargs = dict(
        name=name,
        ndim=2,
        size=1e-9,
        face_color="transparent",
        border_width=0,
        features={"title": []},
        text={"string": "{title}", "size": 10, "color": "white", "anchor": "center"},
        metadata={META_KEY: layout},
    )
    return np.zeros((0, 2)), kwargs, "points"

