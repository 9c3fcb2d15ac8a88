"""Inverse dock widget: MNE/dSPM/sLORETA/eLORETA stacks of simulated or recorded data."""

from __future__ import annotations

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FloatSpinBox, LineEdit
from qtpy.QtWidgets import QLabel

from .. import layers
from ..inverse import METHODS, NORMALISATIONS
from ._common import (
    DockWidget,
    add_or_replace,
    current_headmodel,
    is_sensor_layer,
    layer_combo,
    place_all,
    show_on_cortex,
)
from ._inputs import InverseInputs
from ._tasks import iter_inverse, sensor_data


class InverseWidget(DockWidget):
    """Linear inverses of the chosen sensor layer, one vertex x time layer per method.

    For a simulation the rows are its hemisphere(s) and the layers share the
    ``truth`` axes and scale; for a BIDS recording, epochs around its events
    (averaged per event type unless "average" is off) are inverted on both
    hemispheres. λ² is typed as text (``1/9``, ``0.05``, ``1e-2``).
    """

    title = "Inverse"

    def __init__(self, napari_viewer):
        super().__init__(napari_viewer)
        d = InverseInputs()
        self.data_layer = layer_combo(napari_viewer, is_sensor_layer, label="data")
        self.method_boxes = {m: CheckBox(label=m, value=m in d.methods) for m in METHODS}
        self.lambda2 = LineEdit(label="λ²", value=d.lambda2)
        self.loose = FloatSpinBox(label="loose", min=0.0, max=1.0, step=0.1, value=d.loose)
        self.depth = LineEdit(label="depth", value=d.depth)
        self.nave = LineEdit(label="nave", value=d.nave)
        self.normalisation = ComboBox(
            label="normalisation", choices=NORMALISATIONS, value=d.normalisation
        )
        self.tmin = FloatSpinBox(label="epoch tmin (s)", min=-10.0, max=10.0, step=0.05,
                                 value=d.tmin)  # fmt: skip
        self.tmax = FloatSpinBox(label="epoch tmax (s)", min=-10.0, max=10.0, step=0.05,
                                 value=d.tmax)  # fmt: skip
        self.average = CheckBox(label="average per event type", value=d.average)
        self.show = ComboBox(label="show on cortex", choices=list(METHODS), value=d.methods[0])
        self.form = Container(
            widgets=[self.data_layer, *self.method_boxes.values(), self.lambda2, self.loose,
                     self.depth, self.nave, self.normalisation, self.tmin, self.tmax,
                     self.average, self.show]  # fmt: skip
        )
        self.add(self.form)
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
        """Head model and sensor data of the chosen data layer."""
        if not self.data_layer.value:
            raise ValueError("no sensor data: simulate, open a sample or a BIDS recording.")
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
            sdata = sensor_data(
                layer.metadata, hm=hm, tmin=inputs.tmin, tmax=inputs.tmax, average=inputs.average
            )
            gen = iter_inverse(hm, sdata, inputs)
        except Exception as err:
            self.fail(err)
            return None
        return self.run(gen, on_return=lambda res: self._done(layer.name, hm, sdata, res))

    def _done(self, data_name, hm, sdata, result):
        self.result = (hm, sdata, result)
        common = {
            "headmodel": hm, "simulation": sdata.simulation, "hemi": sdata.hemi,
            "rows": hm.rows(sdata.hemi), "data_layer": data_name, "labels": sdata.labels,
            **result.params, **sdata.extra,
        }  # fmt: skip
        lines = []
        for method, stack in result.stacks.items():
            meta = dict(common, method=method, explained_variance=result.explained[method])
            add_or_replace(
                self.viewer,
                layers.stack_layer(stack, name=method, sfreq=sdata.sfreq, tmin=sdata.tmin,
                                   metadata=meta),  # fmt: skip
            )
            ev = 100 * np.mean(result.explained[method])
            lines.append(f"{method} {ev:.1f} %")
        place_all(self.viewer)
        self.explained.setText("explained variance (mean over samples): " + ", ".join(lines))
        self.status.setText(f"{len(sdata.labels)} samples inverted")
        if self.show.value not in result.stacks:
            self.show.value = next(iter(result.stacks))
        else:
            self._show_selected()

    def _show_selected(self, *_):
        if self.result is None:
            return
        hm, sdata, result = self.result
        method = self.show.value
        if method not in result.stacks:
            return
        self.guarded(
            show_on_cortex, self.viewer, hm, hemi=sdata.hemi, source=method,
            stack=result.stacks[method], extra={"simulation": sdata.simulation},
        )  # fmt: skip
