"""Core results as napari layer data tuples, and where they sit in the viewer.

Nothing here imports Qt or napari: functions return ``(data, kwargs,
layer_type)`` tuples (napari's ``LayerDataTuple``) and compute placements, so
the reader, the sample data and the widgets share one definition of layer
names, colormaps, units, scales and metadata, testable without a display.

Modules: :mod:`.sensors` (sensor images, event lines), :mod:`.stacks`
(vertex x time stacks), :mod:`.cortex` (meshes, Surface layers, views),
:mod:`.layout` (placements), :mod:`.markers` (truth markers, titles),
:mod:`.colormaps`, :mod:`.ordering` (readable row orders) and :mod:`.hover`
(status-bar text).

World axes
----------
napari aligns layers on their trailing axes and shares one set of sliders, so
vertex x time images and the 3D cortex would collide if both used the last
three axes naively. Every layer made here follows one 5-axis scheme:

====  ===================  ===============================================
axis  name                 used by
====  ===================  ===============================================
-5    ``cortex time (s)``  cortex values (scale ``1 / sfreq``)
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
- Sensor data (channels x time, grouped by channel type, one contrast per
  type) lie in a band above the stacks (``y < 0``); events of a recording
  are vertical lines on it.
- Cortex surfaces lie to the left of every image, scaled to the band height,
  seen from above (anterior up, right hemisphere right) in 3D display
  (``viewer.dims.ndisplay = 3``); their values follow the ``cortex time``
  and ``event`` sliders.
- Decorations follow the others: truth markers on every stack of their
  group and on a cortex, titles above every stack, band and cortex.

:func:`compute_layout` gives every layer's ``scale``/``translate`` from the
set of layers present; the widgets re-run it (:func:`arrange`) after adding
layers so that nothing overlaps whatever order things were opened in.
"""

from ._base import (
    AXIS_LABELS,
    COLORMAPS,
    GAP,
    LIMIT_PERCENTILE,
    MAX_CORTEX_VALUES,
    MAX_SENSOR_HEIGHT,
    META_KEY,
    ROLES,
    SCALINGS,
    SENSOR_TYPES,
    STACK_ORDER,
    STACK_UNITS,
    UNITS,
    colormap_for,
    is_signed,
    limits_for,
    nice_ceiling,
    prediction_name,
    spread_to_neighbours,
    unit_for,
)
from .cortex import (
    VIEWS,
    CortexMesh,
    cortex_layer,
    cortex_mesh_from_headmodel,
    cortex_mesh_from_surfaces,
    display_kind,
    hemisphere_bounds,
    napari_vertices,
)
from .layout import arrange, compute_layout, decorations, iter_arrange, layout_tuples
from .markers import cortex_markers, source_table, stack_markers, titles_layer
from .sensors import SensorImage, events_layer, sensor_image, sensor_layer, sensor_values
from .stacks import stack_data, stack_layer, stack_values

__all__ = [
    "AXIS_LABELS",
    "COLORMAPS",
    "GAP",
    "LIMIT_PERCENTILE",
    "MAX_CORTEX_VALUES",
    "MAX_SENSOR_HEIGHT",
    "META_KEY",
    "ROLES",
    "SCALINGS",
    "SENSOR_TYPES",
    "STACK_ORDER",
    "STACK_UNITS",
    "UNITS",
    "VIEWS",
    "CortexMesh",
    "SensorImage",
    "arrange",
    "colormap_for",
    "compute_layout",
    "cortex_layer",
    "cortex_markers",
    "cortex_mesh_from_headmodel",
    "cortex_mesh_from_surfaces",
    "decorations",
    "display_kind",
    "events_layer",
    "hemisphere_bounds",
    "is_signed",
    "iter_arrange",
    "layout_tuples",
    "limits_for",
    "nice_ceiling",
    "napari_vertices",
    "prediction_name",
    "sensor_image",
    "sensor_layer",
    "sensor_values",
    "source_table",
    "spread_to_neighbours",
    "stack_data",
    "stack_layer",
    "stack_markers",
    "stack_values",
    "titles_layer",
    "unit_for",
]
