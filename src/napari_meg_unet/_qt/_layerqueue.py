"""The main thread only adds layers: one prepared layer per event-loop turn, then layout and camera.

Workers deliver napari layers made in their thread (:func:`._common.make_layers`).
Adding a layer to a viewer costs napari tens to hundreds of milliseconds (layer
list entry, vispy node, a repaint); adding several in one handler would add up
to one long freeze. :class:`LayerQueue` adds them one per event-loop turn (input
and timers run in between; a cortex already shown is refilled in place, not
replaced), then re-runs the plugin's layout, moving one layer per turn (each
move re-slices napari's layers), installs the hover text, turns on colorbars
(one per turn), switches to 3D when a cortex arrived and fits the camera to
the new layers, each in a turn of its own.
"""

from __future__ import annotations

import weakref
from collections import deque

import numpy as np
from qtpy.QtCore import QObject, QTimer

from .. import layers as L
from ..layers import META_KEY
from ._perviewer import PerViewer

#: Decoration layers added once per viewer (their data follow the others).
ONCE = ("titles",)

class _Job:
    def __init__(self, layers, *, fit, then):
        self.pending = deque(layers)
        self.added = []
        self.fit = fit
        self.then = then
        self.finishing = None


class LayerQueue(QObject):
    """Adds layers to one viewer without long main-thread stalls (see the module docstring).

    Every event-loop turn does one piece of work: add (or refill) one layer,
    move one layer to its new place, turn on one colorbar, switch to 3D, fit
    the camera.
    """

    def __init__(self, viewer):
        super().__init__()
        self._viewer = weakref.ref(viewer)  # the registry must not keep a closed viewer alive
        self._jobs: deque = deque()
        self._running = False
        self._sliders = False
        self.n_added = 0

    @property
    def viewer(self):
        viewer = self._viewer()
        if viewer is None:
            raise RuntimeError("the viewer of this layer queue was closed.")
        return viewer

    @property
    def idle(self) -> bool:
        return not self._jobs and not self._running

    def add(self, layers, *, fit: bool = True, then=None) -> None:
        """Add (or replace, by name) ``layers``; ``then(added)`` runs once they are all in."""
        self._jobs.append(_Job(list(layers), fit=fit, then=then))
        if not self._running:
            self._running = True
            QTimer.singleShot(0, self._step)

    def arrange(self, then=None) -> None:
        """Re-place the plugin's layers (one changed layer per turn), after queued additions."""
        self.add([], fit=False, then=then)

    def _step(self) -> None:
        if not self._jobs or self._viewer() is None:
            self._jobs.clear()
            self._running = False
            return
        job = self._jobs[0]
        if job.pending:
            layer = job.pending.popleft()
            try:
                added = self._put(layer)
            except Exception as err:  # never raise in a Qt timer callback
                from ._common import notify_error

                notify_error(f"napari-meg-unet: could not add {layer.name!r}: {err}")
                added = None
            if added is not None:
                job.added.append(added)
        elif self._finish(job):
            self._jobs.popleft()
        QTimer.singleShot(0, self._step)

    def _put(self, layer):
        layers = self.viewer.layers
        role = layer.metadata.get(META_KEY, {}).get("role")
        if layer.name in layers and role == "titles" and layer.name in ONCE:
            return None
        if layer.name in layers:
            current = layers[layer.name]
            if _same_surface(current, layer) and _assign_surface(current, layer):
                return current  # new values in the existing cortex: no new vispy node
            index = layers.index(layer.name)
            layers.pop(index)
            layers.insert(index, layer)
        else:
            layers.append(layer)
        self.n_added += 1
        return layer

    def _finish(self, job) -> bool:
        """One piece of the work after a job's layers are in; whether the job is done."""
        try:
            if job.finishing is None:
                job.finishing = self._finish_steps(job)
            next(job.finishing)
            return False
        except StopIteration:
            return True
        except Exception as err:  # never raise in a Qt timer callback
            from ._common import notify_error

            notify_error(f"napari-meg-unet: could not place the new layers: {err}")
            return True

    def _finish_steps(self, job):
        """Generator: layout, hover text, colorbars, 3D and camera, one piece per ``next()``."""
        from ._cortex import controller_for
        from ._status import install, label_sliders

        viewer = self.viewer
        if not self._sliders:
            label_sliders(viewer)
            self._sliders = True
            yield
        yield from L.iter_arrange(viewer.layers)  # one moved layer per turn
        controller = controller_for(viewer)
        for layer in job.added:
            install(layer)
            if layer.metadata.get("source_layer") is not None:
                controller.remember(layer)  # what a step's cortex shows is known
            if show_colorbar(layer):
                yield  # napari makes the colorbar's vispy overlay: a turn of its own
        if any(_is_surface(layer) for layer in job.added) and viewer.dims.ndisplay != 3:
            viewer.dims.ndisplay = 3
            yield
        if job.fit and job.added:
            fit_camera(viewer, job.added)
            yield
        if job.then is not None:
            job.then(job.added)


def _same_surface(current, new) -> bool:
    """Two cortex Surface layers made by the plugin (refilled in place, whatever their values).

    napari takes new vertices, faces and values of any dimensions into an
    existing Surface layer; replacing the layer instead costs a new vispy node
    and a garbage collection (hundreds of milliseconds).
    """
    return (
        type(current).__name__ == type(new).__name__ == "Surface"
        and current.metadata.get("mesh") is not None and new.metadata.get("mesh") is not None
        and current.metadata.get(META_KEY, {}).get("role")
        == new.metadata.get(META_KEY, {}).get("role")
    )  # fmt: skip


def _assign_surface(current, new) -> bool:
    """Move ``new``'s values, colours and metadata into ``current``; False if napari refuses."""
    try:
        current.metadata = dict(new.metadata)
        current.data = (new.vertices, new.faces, new.vertex_values)
        current.colormap = new.colormap
        current.contrast_limits = tuple(new.contrast_limits)
        colorbar = getattr(current, "colorbar", None)
        if colorbar is not None and colorbar.visible and not _has_values(new):
            colorbar.visible = False  # anatomy again: no colorbar
        return True
    except Exception:
        return False


def _has_values(layer) -> bool:
    lay = layer.metadata.get(META_KEY, {})
    return layer.metadata.get("stack_limits") is not None or lay.get("role") == "map"


def show_colorbar(layer) -> bool:
    """Colorbars on for estimates: the cortex showing values and per-vertex maps.

    (napari >= 0.6; the stacks' ranges are in their titles' units and on hover.)
    Returns whether a colorbar was turned on.
    """
    lay = layer.metadata.get(META_KEY, {})
    colorbar = getattr(layer, "colorbar", None)
    if colorbar is not None and lay.get("role") in ("cortex", "map") and _has_values(layer):
        if not colorbar.visible:
            colorbar.visible = True
            return True
    return False


def _is_surface(layer) -> bool:
    return layer.metadata.get(META_KEY, {}).get("role") in ("cortex", "map")


def camera_of(viewer):
    """The viewer's camera (``viewer.scene.camera`` from napari 0.9, ``viewer.camera`` before)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None else viewer.camera


def canvas_size(viewer) -> tuple[int, int]:
    """``(height, width)`` of the canvas in pixels."""
    canvas = getattr(viewer, "canvas", None)
    if canvas is not None and hasattr(canvas, "size"):
        return tuple(canvas.size)
    return tuple(viewer._canvas_size)


def _world_box(viewer, layers):
    """``(lo, hi)`` over the viewer's displayed axes of the layers' world extents."""
    nd = viewer.dims.ndim
    displayed = list(viewer.dims.displayed)
    lo, hi = np.full(len(displayed), np.inf), np.full(len(displayed), -np.inf)
    for layer in layers:
        extent = np.asarray(layer.extent.world, float)  # (2, layer.ndim), trailing world axes
        offset = nd - extent.shape[1]
        for k, axis in enumerate(displayed):
            if axis - offset >= 0 and np.all(np.isfinite(extent[:, axis - offset])):
                lo[k] = min(lo[k], extent[0, axis - offset])
                hi[k] = max(hi[k], extent[1, axis - offset])
    return lo, hi


def fit_camera(viewer, layers, *, margin: float = 0.06) -> None:
    """Fit the view to ``layers`` (their extent in the displayed dimensions), top view in 3D.

    napari's ``reset_view(layers=...)`` fails for layers with fewer dimensions
    than the viewer (a 3-D cortex among 5-D stacks), so the box is computed here.
    """
    decorations = ("titles", "markers", "cortex-markers")
    shown = [layer for layer in layers if layer.name in viewer.layers and layer.visible]
    shown = [
        layer for layer in shown
        if layer.metadata.get(META_KEY, {}).get("role") not in decorations
    ] or shown  # fmt: skip
    if not shown:
        return
    lo, hi = _world_box(viewer, shown)
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
        viewer.reset_view()
        return
    camera = camera_of(viewer)
    if viewer.dims.ndisplay == 3:
        camera.angles = (0.0, 0.0, 0.0)  # as napari's reset_view: looking down the depth axis
    height, width = canvas_size(viewer)
    size = np.maximum(hi - lo, 1e-12)
    camera.center = tuple((lo + hi) / 2)
    camera.zoom = float(min(height / size[-2], width / size[-1]) * (1 - 2 * margin))


queue_for = PerViewer(LayerQueue, "The layer queue of ``viewer`` (made on first use).")
