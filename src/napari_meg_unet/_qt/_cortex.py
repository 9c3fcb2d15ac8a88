"""What the cortex shows: any estimate, the truth beside it, a threshold, a view — without stalls.

One :class:`CortexController` per viewer. Choosing what the ``cortex`` layer
shows (a stack layer: truth, a method, a prediction) maps that stack onto the
mesh in a worker thread (chunked, so the GIL is handed back between chunks),
keeps the result in a cache (changing back, or moving the time slider, never
recomputes it) and only assigns the prepared values in the main thread.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict

import numpy as np

from .. import layers as L
from ..layers import META_KEY
from ._perviewer import PerViewer
from ._prepare import CORTEX, CORTEX_TRUTH, cortex_tuple

#: Bytes of mapped cortex values kept in the cache (oldest dropped first).
CACHE_BYTES = 1_000_000_000

def stack_layers(viewer) -> list:
    """The stack layers a cortex can show (truth, methods, predictions), in display order."""
    out = [layer for layer in viewer.layers
           if layer.metadata.get(META_KEY, {}).get("role") == "stack"]  # fmt: skip
    return sorted(out, key=lambda layer: layer.metadata[META_KEY]["slot"])


def prepare_cortex(layer, *, name=CORTEX, band=0):
    """Cortex layer data showing the stack ``layer`` (in a worker thread)."""
    meta = layer.metadata
    hm, hemi = meta["headmodel"], meta["hemi"]
    stack = L.stack_values(layer.data, meta)
    data, kwargs, kind = cortex_tuple(
        hm, hemi=hemi, source=layer.name, stack=stack, sfreq=meta["sfreq"], tmin=meta["tmin"],
        name=name, band=band, limits=layer.contrast_limits,
        extra={"simulation": meta.get("simulation"), "labels": meta.get("labels"),
               "source_layer": layer.name, "stack": stack},
    )  # fmt: skip
    return data, kwargs, kind


class CortexController:
    """Shows stacks on the cortex layers of one viewer (see the module docstring)."""

    def __init__(self, viewer):
        self._viewer = weakref.ref(viewer)  # the registry must not keep a closed viewer alive
        self._cache: OrderedDict = OrderedDict()
        self.threshold = 0.0
        self.n_computed = 0
        self.worker = None
        self._hidden: list = []

    @property
    def viewer(self):
        viewer = self._viewer()
        if viewer is None:
            raise RuntimeError("the viewer of this cortex controller was closed.")
        return viewer

    # ------------------------------------------------------------------ cache
    def _key(self, layer, name):
        return (layer.name, id(layer.data), name)

    def cached(self, layer, name=CORTEX):
        return self._cache.get(self._key(layer, name))

    def _store(self, key, prepared) -> None:
        self._cache[key] = prepared
        while sum(np.asarray(p[0][2]).nbytes for p in self._cache.values()) > CACHE_BYTES:
            if len(self._cache) == 1:
                break
            self._cache.popitem(last=False)

    def remember(self, cortex_layer) -> None:
        """Cache what a freshly added cortex layer shows (made by a step's worker)."""
        source = cortex_layer.metadata.get("source_layer")
        if source in self.viewer.layers:
            data = (cortex_layer.vertices, cortex_layer.faces, cortex_layer.vertex_values)
            kwargs = {
                "metadata": dict(cortex_layer.metadata), "name": cortex_layer.name,
                "colormap": cortex_layer.colormap,
                "contrast_limits": tuple(cortex_layer.contrast_limits),
            }  # fmt: skip
            self._store(self._key(self.viewer.layers[source], cortex_layer.name),
                        (data, kwargs, "surface"))  # fmt: skip

    # ------------------------------------------------------------------ showing
    def show(self, source: str, *, name: str = CORTEX, band: int = 0, then=None):
        """Show the stack layer ``source`` on the cortex layer ``name`` (cached, else a worker)."""
        from napari.qt.threading import thread_worker

        if source not in self.viewer.layers:
            raise ValueError(f"no layer {source!r} to show on the cortex.")
        layer = self.viewer.layers[source]
        if layer.metadata.get("headmodel") is None:
            raise ValueError(f"{source!r} has no head model to map its rows onto a cortex.")
        key = self._key(layer, name)
        if key in self._cache:
            self._cache.move_to_end(key)
            self._assign(self._cache[key], then=then)
            return None

        def work():
            return prepare_cortex(layer, name=name, band=band)

        def done(prepared):
            self.n_computed += 1
            self._store(key, prepared)
            self._assign(prepared, then=then)

        def failed(err):
            from ._common import notify_error

            notify_error(f"napari-meg-unet: could not show {source!r} on the cortex: {err}")

        worker = thread_worker(work, connect={"returned": done, "errored": failed})()
        self.worker = worker
        worker.finished.connect(lambda: self._release(worker))
        return worker

    def _release(self, worker) -> None:
        """Forget a finished worker and drop its slots.

        The registry is keyed weakly by the viewer, but a worker made while the
        viewer is current holds napari's window (its task status), which holds
        the viewer: kept here, it would keep a closed viewer alive.
        """
        from ._common import _disconnect

        if self.worker is worker:
            self.worker = None
        _disconnect(worker)

    def _assign(self, prepared, *, then=None) -> None:
        """Put prepared cortex data into the cortex layer (data assigned if shapes allow)."""
        from napari.layers import Layer

        from ._layerqueue import queue_for
        from ._status import install

        data, kwargs, kind = prepared
        name = kwargs["name"]
        layers = self.viewer.layers
        current = layers[name] if name in layers else None
        # napari refills a Surface with any mesh and values: replacing the layer would
        # cost a new vispy node and a garbage collection (hundreds of milliseconds)
        same = current is not None and current.metadata.get("mesh") is not None
        if same:
            try:
                self._assign_data(current, data, kwargs)
            except Exception:  # napari could not re-slice in place: replace the layer
                same = False
        if not same:
            queue_for(self.viewer).add(
                [Layer.create(data, dict(kwargs), kind)], fit=current is None,
                then=lambda added: (self.apply_threshold(), then and then(added)),
            )  # fmt: skip
            return
        install(current)
        self.apply_threshold([current])
        if then is not None:
            then([current])

    def _assign_data(self, current, data, kwargs) -> None:
        """New values (and colours, time axis) in the existing cortex layer."""
        lay = kwargs["metadata"][META_KEY]
        if current.ndim == 5 and lay.get("sfreq") and np.ndim(data[2]) == 3:
            # keep the sliders inside the new values while the layer is swapped
            n_times, n_events = np.shape(data[2])[:2]
            step = list(self.viewer.dims.current_step)
            step[-5] = min(step[-5], n_times - 1)
            step[-4] = min(step[-4], n_events - 1)
            self.viewer.dims.current_step = tuple(step)
        current.metadata = dict(kwargs["metadata"])  # napari may clear the dict it is given
        current.data = data
        current.colormap = kwargs["colormap"]
        current.contrast_limits = kwargs["contrast_limits"]
        from ._layerqueue import queue_for

        queue_for(self.viewer).arrange()  # the time axis of the new values (seconds), next turns

    # ------------------------------------------------------------------ display options
    def cortex_layers(self) -> list:
        return [layer for layer in self.viewer.layers
                if layer.metadata.get(META_KEY, {}).get("role") in ("cortex", "map")
                and layer.metadata.get("stack_limits") is not None]  # fmt: skip

    def apply_threshold(self, targets=None) -> None:
        """Grey out values below ``threshold`` x the top of each cortex layer's range."""
        for layer in targets or self.cortex_layers():
            limits = layer.metadata.get("stack_limits") or tuple(layer.contrast_limits)
            lay = layer.metadata[META_KEY]
            cmap = L.colormap_for(lay.get("shows") or "")
            signed = L.is_signed(cmap)
            top = max(abs(limits[0]), abs(limits[1])) if signed else limits[1]
            threshold = self.threshold * top if self.threshold > 0 else 0.0
            layer.colormap = L.colormaps.thresholded(
                cmap, threshold, limits, signed=signed, name=f"{layer.name}: {threshold:.3g}"
            )
            layer.contrast_limits = limits

    def set_threshold(self, fraction: float) -> None:
        self.threshold = float(np.clip(fraction, 0.0, 1.0))
        self.apply_threshold()

    def truth_beside(self, on: bool, *, then=None):
        """Show the ``truth`` stack on a second cortex (``cortex (truth)``) below the first."""
        if not on:
            if CORTEX_TRUTH in self.viewer.layers:
                from ._layerqueue import queue_for

                self.viewer.layers.remove(CORTEX_TRUTH)
                queue_for(self.viewer).arrange()
            return None
        if "truth" not in self.viewer.layers:
            raise ValueError("no truth layer: simulate (or open a sample) first.")
        return self.show("truth", name=CORTEX_TRUTH, band=1, then=then)

    def set_view(self, view: str) -> None:
        """Camera and clipping for ``"top"``, ``"lh lateral"``, ``"rh medial"``... (3D).

        A side view looks along the time axis of the images, through the stacks
        and sensor bands beside the cortex (which hid it behind a slab of
        stripes): they are hidden in side views and shown again by ``"top"``.
        """
        from ._layerqueue import camera_of, fit_camera

        if view not in L.VIEWS:
            raise ValueError(f"view must be one of {tuple(L.VIEWS)}, got {view!r}.")
        direction, up, keep = L.VIEWS[view]
        viewer = self.viewer
        viewer.dims.ndisplay = 3
        roles = ("cortex", "map")
        surfaces = [
            layer for layer in viewer.layers
            if layer.metadata.get(META_KEY, {}).get("role") in roles
        ]  # fmt: skip
        for layer in surfaces:
            planes = []
            if keep is not None:
                # the inflated/pial hemispheres are split at x = 0 (head coordinates); vispy
                # clips in scene (world) coordinates, where x = 0 lies at the layer's translate
                normal = (0.0, 0.0, 1.0) if keep == "rh" else (0.0, 0.0, -1.0)
                position = tuple(float(v) for v in np.asarray(layer.translate, float)[-3:])
                planes = [{"position": position, "normal": normal, "enabled": True}]
            layer.experimental_clipping_planes = planes
        self._show_beside(side=keep is not None and bool(surfaces))
        # napari's reset_view(layers=...) misplaces layers of fewer dimensions than the
        # viewer: the plugin's own fit (top view), then the view direction
        if surfaces:
            fit_camera(viewer, surfaces)
        else:
            viewer.reset_view(margin=0.06)
        camera_of(viewer).set_view_direction(direction, up)

    #: Roles hidden in side views (they lie beside the cortex, in the line of sight).
    SIDE_HIDDEN = ("stack", "sensor", "events", "markers", "titles")

    def _show_beside(self, *, side: bool) -> None:
        """Hide the images and their decorations for a side view; show them again after."""
        hidden = self._hidden
        if side:
            for layer in self.viewer.layers:
                role = layer.metadata.get(META_KEY, {}).get("role")
                if role in self.SIDE_HIDDEN and layer.visible:
                    layer.visible = False
                    hidden.append(weakref.ref(layer))
            self._hidden = hidden
            return
        for ref in hidden:
            layer = ref()
            if layer is not None and layer in self.viewer.layers:
                layer.visible = True
        self._hidden = []

    @property
    def hidden_for_view(self) -> list:
        """Names of the layers a side view has hidden (shown again by the top view)."""
        return [ref().name for ref in self._hidden if ref() is not None]


controller_for = PerViewer(
    CortexController, "The cortex controller of ``viewer`` (made on first use)."
)
