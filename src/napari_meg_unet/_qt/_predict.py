"""Predict dock widget: a trained network's source maps for simulated or recorded data."""

from __future__ import annotations

from magicgui.widgets import ComboBox, Container, FileEdit, SpinBox
from qtpy.QtWidgets import QLabel

from ..configs import SimulationConfig
from . import _settings
from ._checks import checkpoint_report, hemisphere_problem, recording_report
from ._common import (
    DockWidget,
    current_headmodel,
    is_sensor_layer,
    layer_combo,
    option_widget,
    widen_combo,
)
from ._inputs import PredictInputs, available_devices
from ._layerqueue import queue_for
from ._sensors import sensor_data
from ._tasks import iter_predict_recording_step, iter_predict_step
from ._view import current_row_order


def _child_data(sdata):
    import dataclasses

    return dataclasses.replace(sdata, extra={})


def _is_recording(metadata) -> bool:
    return metadata.get("simulation") is None and metadata.get("recording") is not None


class PredictWidget(DockWidget):
    """Run a checkpoint on the chosen sensor layer.

    Choosing a checkpoint loads it (in a worker thread) and checks it against
    the current head model and data. On a simulation: head-model fingerprint,
    channels, sampling rate, image size and the hemisphere of its sources; a
    network is refused with every reason, and the inputs are made exactly as
    for its training set (methods, λ², nave, loose, depth, normalisation,
    hemisphere). On a recording the core applies the network
    (:func:`..train.recording.iter_predict_recording`): the check says what is
    adapted (resampling, windows, head-model mapping, nave) and refuses, with
    the core's message, what cannot be (missing or bad channels, data
    shorter than one window...). The probabilities become the layer
    ``prediction (<model>)`` and are shown on the cortex.

    **hemisphere** (as in the Simulate widget) shows the hemisphere(s) whose
    sources the network predicts, set from the checkpoint when it is chosen.
    A network predicts only the hemisphere it was trained on: choosing
    another one, or a simulation whose sources lie in another hemisphere, is
    refused with a notification saying which (as the Evaluate widget refuses
    a prediction made for other rows).
    """

    title = "Predict"

    def __init__(self, napari_viewer):
        super().__init__(napari_viewer)
        saved = _settings.load("predict")
        d = PredictInputs()
        self.data_layer = layer_combo(napari_viewer, is_sensor_layer, label="data")
        self.checkpoint = FileEdit(
            label="checkpoint", mode="r", filter="*.pt",
            value=saved.get("checkpoint") or d.checkpoint or None,
        )  # fmt: skip
        devices = available_devices()
        device = saved.get("device") if saved.get("device") in devices else d.device
        self.device = ComboBox(label="device", choices=devices, value=device)
        widen_combo(self.device)
        self.batch_size = SpinBox(label="batch size", min=1, max=4096, value=d.batch_size)
        self.hemi = option_widget(
            SimulationConfig, "hemi", label="hemisphere",
            help="the hemisphere(s) whose sources the network predicts (set from the "
            "checkpoint; a network predicts only the hemisphere it was trained on)",
        )  # fmt: skip
        self.form = Container(
            widgets=[self.data_layer, self.checkpoint, self.hemi, self.device, self.batch_size]
        )
        self.add(self.form)
        self.check = QLabel("No checkpoint chosen.")
        self.check.setWordWrap(True)
        self.add(self.check)
        self.predict_button = self.button("Predict", self.predict)
        self.finish(self.form)
        self.compatible = False
        #: The hemisphere of the last checked network (None before a check).
        self.network_hemi = None
        #: Whether the hemisphere was chosen by hand since the checkpoint changed.
        self.hemi_chosen = False
        self._checker = None
        self._check_id = 0
        self.checkpoint.changed.connect(self._checkpoint_changed)
        self.data_layer.changed.connect(self.check_checkpoint)
        self.hemi.changed.connect(self._hemi_changed)
        if self.inputs().checkpoint and self.data_layer.value:
            self._checkpoint_changed()  # the saved checkpoint on the data shown

    def inputs(self) -> PredictInputs:
        value = self.checkpoint.value
        return PredictInputs(
            checkpoint="" if value is None or str(value) in ("", ".") else str(value),
            device=self.device.value, batch_size=self.batch_size.value,
        )  # fmt: skip

    def _sources(self):
        if not self.data_layer.value:
            raise ValueError("no sensor data: simulate, open a sample or a recording.")
        layer = self.viewer.layers[self.data_layer.value]
        hm = layer.metadata.get("headmodel") or current_headmodel(self.viewer)
        if hm is None:
            raise ValueError("no head model: build one with the Head model widget first.")
        return layer, hm

    def _report(self, inputs, metadata, hm, source="the data", hemi=None):
        """In a worker thread: the data and the checked checkpoint (predicting ``hemi``)."""
        from ..dataset import IncompatibleDataError

        if _is_recording(metadata):
            sdata, ckpt, description = recording_report(inputs.checkpoint, hm, metadata,
                                                        source=source)  # fmt: skip
        else:
            sdata = sensor_data(metadata, hm=hm)
            ckpt, description = checkpoint_report(inputs.checkpoint, hm, sdata)
        problem = hemisphere_problem(hemi, ckpt["dataset_meta"].get("hemi"))
        if problem:
            raise IncompatibleDataError(problem + ".")
        return sdata, ckpt, description

    def _checkpoint_changed(self, *_):
        """A new checkpoint: the hemisphere control follows the network's, then the check."""
        self.hemi_chosen = False
        return self.check_checkpoint()

    def _hemi_changed(self, *_):
        self.hemi_chosen = True
        return self.check_checkpoint()

    def _chosen_hemi(self):
        """The hemisphere chosen by hand, or None (the network's)."""
        return self.hemi.value if self.hemi_chosen else None

    def check_checkpoint(self, *_):
        """Load the chosen checkpoint (worker thread); say whether it fits head model and data.

        Only the newest check is shown (an earlier one may end later). Until a
        hemisphere is chosen by hand, the hemisphere control shows the
        network's; a chosen one is checked against it.
        """
        from napari.qt.threading import thread_worker

        from ..checkpoint import load_checkpoint

        self._check_id += 1
        check_id = self._check_id

        def shown(outcome):
            if check_id == self._check_id and not self._closed:
                if isinstance(outcome, tuple):
                    network_hemi, outcome = outcome
                    self._set_network_hemi(network_hemi, follow=chosen is None)
                self._checked(outcome)

        try:
            inputs = self.inputs()
            inputs.validate()
            layer, hm = self._sources()
        except Exception as err:
            self._checked(err)
            return None
        self.check.setText("checking the checkpoint…")
        self.compatible = False
        metadata = layer.metadata
        chosen = self._chosen_hemi()

        def check():
            network_hemi = load_checkpoint(inputs.checkpoint)["dataset_meta"].get("hemi")
            try:
                report = self._report(inputs, metadata, hm, layer.name,
                                      hemi=chosen or network_hemi)  # fmt: skip
            except Exception as err:
                return network_hemi, err
            return network_hemi, report[2]

        self._checker = thread_worker(
            check, connect={"returned": shown, "errored": shown},
        )()  # fmt: skip
        return self._checker

    def _set_network_hemi(self, network_hemi, *, follow: bool) -> None:
        self.network_hemi = network_hemi
        if follow and network_hemi in self.hemi.choices:
            with self.hemi.changed.blocked():  # shown, not a new choice to check
                self.hemi.value = network_hemi

    def _checked(self, outcome) -> None:
        if isinstance(outcome, BaseException):
            self.compatible = False
            self.check.setText(f"Not usable: {outcome}")
        else:
            self.compatible = True
            self.check.setText(f"Compatible: {outcome}")

    def predict(self):
        try:
            inputs = self.inputs()
            inputs.validate()
            layer, hm = self._sources()
            order = current_row_order(self.viewer)
        except Exception as err:
            self.compatible = False
            self.fail(err)
            return None
        problem = hemisphere_problem(self._chosen_hemi(), self.network_hemi)
        if problem:  # known from the last check: refused before any work
            self.fail(ValueError(f"Not usable: {problem}."))
            return None
        _settings.save("predict", {"checkpoint": inputs.checkpoint, "device": inputs.device})
        self._check_id += 1  # a check still running is not shown over this one
        metadata, name = layer.metadata, layer.name
        hemi = self._chosen_hemi()  # None: the network's (a check may still be running)
        step_func = iter_predict_recording_step if _is_recording(metadata) else iter_predict_step

        def work():
            try:
                sdata, _ckpt, description = self._report(inputs, metadata, hm, name, hemi=hemi)
            except Exception as err:
                raise type(err)(f"Not usable: {err}") from err
            step = yield from self.call(
                step_func, inputs.checkpoint, hm, _child_data(sdata), data_layer=name,
                device=inputs.device, batch_size=inputs.batch_size, row_order=order,
            )  # fmt: skip
            if not isinstance(step, str):
                step.context.update(sdata=sdata, description=description)
            return step

        self.check.setText("checking the checkpoint…")
        return self.run_work(work, on_done=self._done)

    def fail(self, err) -> None:
        if str(err).startswith("Not usable"):
            self.compatible = False
            self.check.setText(str(err))
        super().fail(err)

    def _done(self, step, made):
        sdata = step.context["sdata"]
        self.compatible = True
        self.check.setText(f"Compatible: {step.context['description']}")
        for layer in made:
            layer.metadata.update(sdata.extra)
        queue_for(self.viewer).add(made)
        self.status.setText("; ".join(step.notes))
