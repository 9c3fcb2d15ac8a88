"""View dock widget: what the cortex shows, truth beside it, threshold, views, row order, saving."""

from __future__ import annotations

import weakref

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FloatSlider
from qtpy.QtWidgets import QFileDialog, QGridLayout, QPushButton, QWidget

from .. import layers as L
from ..layers import META_KEY
from ..layers.ordering import ORDERS
from . import _settings
from ._common import DockWidget, widen_combo
from ._cortex import controller_for, stack_layers
from ._prepare import CORTEX
from ._tasks import iter_row_orders

_ORDERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def current_row_order(viewer) -> str:
    """The display row order chosen in the View widget of ``viewer`` (``"source"`` by default)."""
    return _ORDERS.get(getattr(viewer, "__wrapped__", viewer), "source")


def _reordered(layer, order):
    """A stack layer's data in display order ``order`` (None: documented), event by event."""
    values = L.stack_values(layer.data, layer.metadata)
    out = np.empty_like(values)
    for i in range(len(values)):  # small copies: the GIL goes back to the event loop between them
        out[i] = values[i] if order is None else values[i][order]
    return out[:, np.newaxis]


class ViewWidget(DockWidget):
    """What the cortex shows and how the results are drawn.

    - **show on cortex**: any stack (the truth, a method, a prediction); the
      values are mapped once and kept, so going back is immediate.
    - **truth beside**: the truth on a second cortex under the first.
    - **threshold**: values below this fraction of the top of the range show
      the anatomy grey (|value| for signed maps).
    - **views**: top, lateral and medial views of each hemisphere (the other
      hemisphere is clipped away; the stacks, sensor bands and titles, in
      the line of sight of a side view, are hidden until the top view).
    - **row order**: the display order of the vertex rows of every stack:
      ``source`` (documented: lh then rh by vertex number, what the networks
      use), ``spectral`` or ``bisection`` (cortical neighbours on neighbouring
      rows, see :mod:`..layers.ordering`); scoring and export always use the
      documented order.
    - **Save estimate…**: the shown stack as MNE source estimates (``.stc`` /
      ``.h5``) with a JSON sidecar (the plugin's npe2 writer).
    """

    title = "View"

    def __init__(self, napari_viewer):
        super().__init__(napari_viewer)
        saved = _settings.load("view")
        self.controller = controller_for(napari_viewer)
        self.source = ComboBox(label="show on cortex", choices=self._sources)
        widen_combo(self.source)
        self.beside = CheckBox(label="truth beside (second cortex)", value=False)
        self.threshold = FloatSlider(
            label="threshold (fraction of max)", min=0.0, max=1.0, step=0.05,
            value=float(saved.get("threshold", 0.0)),
        )  # fmt: skip
        order = saved.get("row_order") if saved.get("row_order") in ORDERS else "source"
        self.row_order = ComboBox(
            label="row order", choices=ORDERS, value=order,
            tooltip="display order of the vertex rows of the stacks",
        )  # fmt: skip
        widen_combo(self.row_order)
        _ORDERS[getattr(napari_viewer, "__wrapped__", napari_viewer)] = order
        self.form = Container(widgets=[self.source, self.beside, self.threshold, self.row_order])
        self.add(self.form)
        self.add(self._view_buttons())
        self.save_button = self.button("Save estimate…", self._save_dialog)
        self.finish(self.form)
        self.controller.threshold = self.threshold.value
        self.source.changed.connect(self._show)
        self.beside.changed.connect(self._beside)
        self.threshold.changed.connect(self._threshold)
        self.row_order.changed.connect(self.reorder)
        for event in (napari_viewer.layers.events.inserted, napari_viewer.layers.events.removed):
            event.connect(self._layers_changed)  # a method: napari keeps it weakly

    def _layers_changed(self, _event=None):
        # new stacks must not change what the cortex shows (the Inverse widget's "show on
        # cortex", a prediction): the choices follow the layers, the value the cortex
        with self.source.changed.blocked():
            self.source.reset_choices()
            layers = self.viewer.layers
            shows = layers[CORTEX].metadata.get("source_layer") if CORTEX in layers else None
            if shows is not None and shows in self.source.choices:
                self.source.value = shows

    def _sources(self, _widget=None):
        return [layer.name for layer in stack_layers(self.viewer)]

    def _view_buttons(self) -> QWidget:
        box = QWidget()
        grid = QGridLayout(box)
        grid.setContentsMargins(0, 0, 0, 0)
        for i, name in enumerate(L.VIEWS):
            btn = QPushButton(name)
            btn.setToolTip(f"camera: {name} view of the cortex")
            btn.clicked.connect(lambda _=False, n=name: self.set_view(n))
            grid.addWidget(btn, i // 3, i % 3)
        return box

    # ------------------------------------------------------------------ actions
    def _show(self, *_):
        if self.source.value:
            self._guard(self.controller.show, self.source.value)

    def _beside(self, *_):
        self._guard(self.controller.truth_beside, bool(self.beside.value))

    def _threshold(self, *_):
        self.controller.set_threshold(self.threshold.value)
        _settings.save("view", {"threshold": float(self.threshold.value)})

    def set_view(self, name: str) -> None:
        self._guard(self.controller.set_view, name)

    def _guard(self, func, *args):
        try:
            return func(*args)
        except Exception as err:
            self.fail(err)
            return None

    def reorder(self, *_):
        """Redraw every stack in the chosen row order (orders made in a worker process)."""
        kind = self.row_order.value
        _ORDERS[getattr(self.viewer, "__wrapped__", self.viewer)] = kind
        _settings.save("view", {"row_order": kind})
        targets = [layer for layer in stack_layers(self.viewer)
                   if layer.metadata.get("headmodel") is not None]  # fmt: skip
        keys = {}
        for layer in targets:
            hm, hemi = layer.metadata["headmodel"], layer.metadata["hemi"]
            keys[(hm.fingerprint, hemi)] = (hm, hemi)
        if not targets:
            return None

        def work():
            step = yield from self.call(iter_row_orders, keys, kind)
            if isinstance(step, str):
                return step
            orders = step.value
            step.context["data"] = [
                _reordered(layer, orders[(layer.metadata["headmodel"].fingerprint,
                                          layer.metadata["hemi"])])  # fmt: skip
                for layer in targets
            ]
            step.context["orders"] = [
                orders[(layer.metadata["headmodel"].fingerprint, layer.metadata["hemi"])]
                for layer in targets
            ]
            return step

        return self.run_work(work, on_done=lambda step, _m: self._reordered(targets, step))

    def _reordered(self, targets, step) -> None:
        for layer, data, order in zip(targets, step.context["data"], step.context["orders"],
                                      strict=True):  # fmt: skip
            if layer.name not in self.viewer.layers:
                continue
            layer.metadata[META_KEY] = dict(layer.metadata[META_KEY], row_order=order)
            layer.data = data
        L.arrange(self.viewer.layers)
        self.status.setText(f"rows in {self.row_order.value} order")

    # ------------------------------------------------------------------ saving
    def save(self, path, layer_name: str | None = None) -> list:
        """Write the stack ``layer_name`` (default: the one shown) as source estimates."""
        from .._writer import write_estimate

        name = layer_name or self.source.value
        if not name or name not in self.viewer.layers:
            raise ValueError("choose an estimate to save (show on cortex).")
        layer = self.viewer.layers[name]
        return write_estimate(str(path), layer.data, {"metadata": layer.metadata})

    def _save_dialog(self):
        path, _ = QFileDialog.getSaveFileName(
            self, "Save estimate", f"{self.source.value or 'estimate'}.stc",
            "MNE source estimate (*.stc *.h5)",
        )  # fmt: skip
        if path:
            try:
                written = self.save(path)
                self.status.setText(f"wrote {len(written)} files: {written[-1]}")
            except Exception as err:
                self.fail(err)
