"""Predict dock widget: a trained network's source maps for simulated or recorded data."""

from __future__ import annotations

from magicgui.widgets import ComboBox, Container, FileEdit, SpinBox
from qtpy.QtWidgets import QLabel

from .. import layers
from ._common import (
    DockWidget,
    add_or_replace,
    current_headmodel,
    is_sensor_layer,
    layer_combo,
    place_all,
    show_on_cortex,
)
from ._inputs import PredictInputs, available_devices
from ._tasks import checkpoint_report, iter_predict_data, sensor_data


class PredictWidget(DockWidget):
    """Run a checkpoint on the chosen sensor layer.

    Choosing a checkpoint loads it and checks it against the current head
    model and data (head-model fingerprint, channels, image size); the inputs
    are then made exactly as for its training set (methods, λ², nave, loose,
    depth, normalisation, hemisphere). The probabilities become the layer
    ``prediction (<model>)`` and are shown on the cortex.
    """

    title = "Predict"

    def __init__(self, napari_viewer):
        super().__init__(napari_viewer)
        d = PredictInputs()
        self.data_layer = layer_combo(napari_viewer, is_sensor_layer, label="data")
        self.checkpoint = FileEdit(label="checkpoint", mode="r", filter="*.pt",
                                   value=d.checkpoint or None)  # fmt: skip
        self.device = ComboBox(label="device", choices=available_devices(), value=d.device)
        self.batch_size = SpinBox(label="batch size", min=1, max=4096, value=d.batch_size)
        self.form = Container(
            widgets=[self.data_layer, self.checkpoint, self.device, self.batch_size]
        )
        self.add(self.form)
        self.check = QLabel("No checkpoint chosen.")
        self.check.setWordWrap(True)
        self.add(self.check)
        self.predict_button = self.button("Predict", self.predict)
        self.finish(self.form)
        self.compatible = False
        self.checkpoint.changed.connect(self.check_checkpoint)
        self.data_layer.changed.connect(self.check_checkpoint)

    def inputs(self) -> PredictInputs:
        value = self.checkpoint.value
        return PredictInputs(
            checkpoint="" if value is None or str(value) in ("", ".") else str(value),
            device=self.device.value, batch_size=self.batch_size.value,
        )  # fmt: skip

    def _sources(self):
        if not self.data_layer.value:
            raise ValueError("no sensor data: simulate, open a sample or a BIDS recording.")
        layer = self.viewer.layers[self.data_layer.value]
        hm = layer.metadata.get("headmodel") or current_headmodel(self.viewer)
        if hm is None:
            raise ValueError("no head model: build one with the Head model widget first.")
        return layer, hm

    def _prepare(self):
        inputs = self.inputs()
        inputs.validate()
        layer, hm = self._sources()
        sdata = sensor_data(layer.metadata, hm=hm)
        ckpt, description = checkpoint_report(inputs.checkpoint, hm, sdata)
        return inputs, layer, hm, ckpt, sdata, description

    def check_checkpoint(self, *_):
        """Load the chosen checkpoint and report whether it fits the head model and data."""
        try:
            *_, description = self._prepare()
        except Exception as err:
            self.compatible = False
            self.check.setText(f"Not usable: {err}")
            return False
        self.compatible = True
        self.check.setText(f"Compatible: {description}")
        return True

    def predict(self):
        try:
            inputs, layer, hm, ckpt, sdata, description = self._prepare()
            self.compatible = True
            self.check.setText(f"Compatible: {description}")
            gen = iter_predict_data(
                ckpt, hm, sdata, device=inputs.device, batch_size=inputs.batch_size
            )
        except Exception as err:
            self.compatible = False
            self.fail(err)
            return None
        return self.run(gen, on_return=lambda probs: self._done(layer.name, hm, sdata, ckpt, probs))

    def _done(self, data_name, hm, sdata, ckpt, probs):
        hemi = ckpt["dataset_meta"]["hemi"]
        name = layers.prediction_name(ckpt["model_name"])
        meta = {
            "headmodel": hm, "simulation": sdata.simulation, "hemi": hemi, "rows": hm.rows(hemi),
            "data_layer": data_name, "checkpoint": ckpt.get("path"), "model": ckpt["model_name"],
            "labels": sdata.labels, **sdata.extra,
        }  # fmt: skip
        add_or_replace(
            self.viewer,
            layers.stack_layer(probs, name=name, sfreq=sdata.sfreq, tmin=sdata.tmin, metadata=meta),
        )
        place_all(self.viewer)
        show_on_cortex(self.viewer, hm, hemi=hemi, source=name, stack=probs,
                       extra={"simulation": sdata.simulation})  # fmt: skip
        self.status.setText(f"{name}: {probs.shape[0]} samples")
