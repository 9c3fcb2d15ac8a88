"""Inverse dock widget: MNE/dSPM/sLORETA/eLORETA stacks of simulated or recorded data."""

from __future__ import annotations

import dataclasses

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FloatSpinBox, LineEdit
from qtpy.QtWidgets import QLabel

from ..configs import InverseConfig
from ..inverse import METHODS
from ._common import (
    DockWidget,
    current_headmodel,
    is_sensor_layer,
    layer_combo,
    option_widget,
    widen_combo,
)
from ._cortex import controller_for
from ._inputs import InverseInputs
from ._layerqueue import queue_for
from ._sensors import sensor_data
from ._tasks import iter_inverse_step
from ._view import current_row_order


def child_data(sdata):
    """The sensor data to send to a worker process (without the recording object)."""
    return dataclasses.replace(sdata, extra={})


class InverseWidget(DockWidget):
    """Linear inverses of the chosen sensor layer, one vertex x time layer per method.

    For a simulation the rows are its hemisphere(s) and the layers share the
    ``truth`` axes, scale and markers; for a recording, epochs around its
    events (averaged per event type unless "average" is off), an evoked
    file's conditions or the whole recording (no events) are inverted on both
    hemispheres. λ² is typed as text (``1/9``, ``0.05``, ``1e-2``).
    """

    title = "Inverse"

    def __init__(self, napari_viewer):
        super().__init__(napari_viewer)
        d = InverseInputs()
        help_of = {f.name: f.metadata["help"] for f in dataclasses.fields(InverseConfig)}
        self.data_layer = layer_combo(napari_viewer, is_sensor_layer, label="data")
        self.method_boxes = {m: CheckBox(label=m, value=m in d.methods) for m in METHODS}
        self.lambda2 = LineEdit(label="λ²", value=d.lambda2, tooltip=help_of["lambda2"])
        self.loose = FloatSpinBox(label="loose", min=0.0, max=1.0, step=0.1, value=d.loose,
                                  tooltip=help_of["loose"])  # fmt: skip
        self.depth = LineEdit(label="depth", value=d.depth, tooltip=help_of["depth"])
        self.nave = LineEdit(label="nave", value=d.nave, tooltip=help_of["nave"])
        self.normalisation = option_widget(InverseConfig, "normalisation")
        self.tmin = FloatSpinBox(label="epoch tmin (s)", min=-10.0, max=10.0, step=0.05,
                                 value=d.tmin)  # fmt: skip
        self.tmax = FloatSpinBox(label="epoch tmax (s)", min=-10.0, max=10.0, step=0.05,
                                 value=d.tmax)  # fmt: skip
        self.average = CheckBox(label="average per event type", value=d.average)
        self.show = ComboBox(label="show on cortex", choices=list(METHODS), value=d.methods[0],
                             tooltip="the method on the cortex (the View widget shows any "
                             "layer, the truth beside it)")  # fmt: skip
        widen_combo(self.show)
        self.form = Container(
            widgets=[self.data_layer, *self.method_boxes.values(), self.lambda2, self.loose,
                     self.depth, self.nave, self.normalisation, self.tmin, self.tmax,
                     self.average]  # fmt: skip
        )
        self.add(self.form)
        self.add(self.show)
        self.compute_button = self.button("Compute inverses", self.compute)
        self.explained = QLabel("")
        self.explained.setWordWrap(True)
        self.add(self.explained)
        self.finish(self.form)
        self.result = None
        self.show.changed.connect(self._show_selected)

    def inputs(self) -> InverseInputs:
        return InverseInputs(
            methods=tuple(m for m, box in self.method_boxes.items() if box.value),
            lambda2=self.lambda2.value, loose=self.loose.value, depth=self.depth.value,
            nave=self.nave.value, normalisation=self.normalisation.value, tmin=self.tmin.value,
            tmax=self.tmax.value, average=self.average.value,
        )  # fmt: skip

    def _source(self):
        """Head model and sensor layer of the chosen data."""
        if not self.data_layer.value:
            raise ValueError("no sensor data: simulate, open a sample or a recording.")
        layer = self.viewer.layers[self.data_layer.value]
        hm = layer.metadata.get("headmodel") or current_headmodel(self.viewer)
        if hm is None:
            raise ValueError("no head model: build one with the Head model widget first.")
        return layer, hm

    def compute(self):
        try:
            inputs = self.inputs()
            inputs.validate()
            layer, hm = self._source()
            show = self.show.value if self.show.value in inputs.methods else inputs.methods[0]
            order = current_row_order(self.viewer)
        except Exception as err:
            self.fail(err)
            return None
        metadata, name = layer.metadata, layer.name

        def work():  # in the worker thread: epoching a recording can take a while
            sdata = sensor_data(
                metadata, hm=hm, tmin=inputs.tmin, tmax=inputs.tmax, average=inputs.average
            )
            step = yield from self.call(
                iter_inverse_step, hm, child_data(sdata), inputs, data_layer=name, show=show,
                row_order=order,
            )  # fmt: skip
            if not isinstance(step, str):
                step.context["sdata"] = sdata
            return step

        return self.run_work(work, on_done=lambda step, made: self._done(hm, step, made))

    def _done(self, hm, step, made):
        result, sdata = step.value, step.context["sdata"]
        self.result = (hm, sdata, result)
        for layer in made:
            layer.metadata.update(sdata.extra)
        lines = [f"{m} {100 * np.mean(result.explained[m]):.1f} %" for m in result.stacks]
        self.explained.setText("explained variance (mean over samples): " + ", ".join(lines))
        self.status.setText(f"{sdata.description or len(sdata.labels)}: inverted")
        def added(_layers):
            if self.show.value not in result.stacks:
                self.show.value = next(iter(result.stacks))

        queue_for(self.viewer).add(made, then=added)

    def _show_selected(self, *_):
        if self.result is None or self.show.value not in self.viewer.layers:
            return
        self.guarded(controller_for(self.viewer).show, self.show.value)

    def guarded(self, func, *args, **kwargs):
        """Call ``func``; show an exception as an error instead of raising it."""
        try:
            return func(*args, **kwargs)
        except Exception as err:
            self.fail(err)
            return None
