"""Train dock widget: simulate learning sets on the current head model and fit a U-Net.

The napari ``thread_worker`` runs :func:`._training.iter_train`, which relays
the events of :func:`..train.fit` (one per batch) from a child process (so
that SciPy/MNE code holding the GIL cannot freeze the event loop); Stop sets
an event fit polls before every batch, so it is prompt and leaves ``last.pt``
to resume from. The worker never touches layers or widgets: events arrive in
the main thread, where the progress bar and the loss / validation-DLE plot
are updated (the plot is rendered in a helper thread, at most twice a second).

The training data are simulated like the data the network will be evaluated
on: SNR (or an SNR range), off-grid dipoles, time course, sampling rate and
samples per event default to the current simulation's (or recording's).
"""

from __future__ import annotations

import math
import threading
import time

from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, LineEdit, SpinBox
from qtpy.QtWidgets import QLabel

from ..configs import DatasetConfig, SimulationConfig, TrainingConfig
from ..models import PRESETS
from ..train import BatchDone, CheckpointWritten, EpochStarted, Finished, Stopped, Validated
from . import _settings
from ._common import DockWidget, ThreadedPlot, current_headmodel, option_widget, widen_combo
from ._inputs import MODELS, TrainInputs, available_devices, data_settings, spec
from ._training import STOP_TIMEOUT, ResumedHistory, iter_train

#: What the validation DLE is, next to what Evaluate reports.
DLE_DEFINITION = (
    "Validation DLE: for each validation event, the distance (mm) from each true source to the "
    "matched peak of the network's probability averaged over the event's active window, "
    "averaged per event, then over events — Evaluate's 'window' protocol on the validation set. "
    "It matches Evaluate on your own data only when the training data were simulated alike "
    "(SNR, off-grid, time course, hemisphere, sampling rate): these default to the current "
    "simulation's."
)


class TrainWidget(DockWidget):
    """Fit the thesis or mesh U-Net; Start / Stop / Resume with live loss and DLE."""

    title = "Train"
    shutdown_timeout = STOP_TIMEOUT

    def __init__(self, napari_viewer):
        super().__init__(napari_viewer)
        saved = _settings.load("train")
        d = TrainInputs()
        self.model = ComboBox(
            label="model", choices=MODELS, value=d.model,
            tooltip=spec(TrainingConfig, "model")["help"],
        )  # fmt: skip
        self.preset = ComboBox(label="preset", choices=tuple(PRESETS[d.model]), value=d.preset)
        self.epochs = SpinBox(label="epochs", min=1, max=10_000, value=d.epochs)
        self.lr = LineEdit(label="learning rate", value=d.lr,
                           tooltip="empty: the preset's; text such as 2e-3 or 1/500")  # fmt: skip
        self.batch_size = SpinBox(label="batch size", min=1, max=4096, value=d.batch_size)
        devices = available_devices()
        device = saved.get("device") if saved.get("device") in devices else d.device
        self.device = ComboBox(label="device", choices=devices, value=device)
        self.out_dir = FileEdit(label="output folder", mode="d",
                                value=saved.get("out_dir") or d.out_dir or None)  # fmt: skip
        self.overwrite = CheckBox(label="overwrite an existing run", value=False)
        self.design = option_widget(SimulationConfig, "design", label="training design",
                                    default=d.design)  # fmt: skip
        self.hemi = option_widget(SimulationConfig, "hemi", label="hemisphere")
        self.n_train = option_widget(DatasetConfig, "n_train", label="training events")
        self.n_val = option_widget(DatasetConfig, "n_val", label="validation events")
        self.snr = LineEdit(
            label="SNR (or lo-hi)", value=d.snr, tooltip=spec(SimulationConfig, "snr")["help"]
        )
        self.off_grid = option_widget(SimulationConfig, "off_grid", label="off grid")
        self.timecourse = option_widget(SimulationConfig, "timecourse", label="time course")
        self.sfreq = LineEdit(
            label="sfreq (Hz)", value=d.sfreq,
            tooltip=spec(SimulationConfig, "sfreq")["help"] + "; 'auto': the time course's",
        )  # fmt: skip
        self.n_times = SpinBox(label="samples per event", min=4, max=100_000, value=d.n_times)
        self.lambda2 = LineEdit(label="λ²", value=d.lambda2)
        self.seed = option_widget(DatasetConfig, "seed")
        for combo in (self.model, self.preset, self.device):
            widen_combo(combo)
        self.form = Container(
            widgets=[self.model, self.preset, self.epochs, self.lr, self.batch_size, self.device,
                     self.out_dir, self.overwrite, self.design, self.hemi, self.n_train,
                     self.n_val, self.snr, self.off_grid, self.timecourse, self.sfreq,
                     self.n_times, self.lambda2, self.seed]  # fmt: skip
        )
        self.add(self.form)
        self.data_from = QLabel("")
        self.data_from.setWordWrap(True)
        self.add(self.data_from)
        self.match_button = self.button("Use the current data's settings", self.match_data)
        self.start_button = self.button("Start", self.start)
        self.stop_button = self.button("Stop", self.stop, while_busy=True)
        self.resume_button = self.button("Resume", self.resume)
        self.plot = ThreadedPlot(_setup_plot, _update_plot)
        self.add(self.plot)
        definition = QLabel(DLE_DEFINITION)
        definition.setWordWrap(True)
        self.add(definition)
        self._last_plot = 0.0
        self.finish(self.form, cancel=False)
        self.model.changed.connect(self._presets)
        self._stop = threading.Event()
        self.losses: list[tuple[int, float]] = []
        self.val_dle: list[tuple[int, float]] = []
        self.summary = None
        self.checkpoints: dict = {}
        self._n_epochs = None
        self._fresh = False
        napari_viewer.layers.events.inserted.connect(self._data_added)
        self.match_data()

    def _presets(self, *_):
        self.preset.choices = tuple(PRESETS[self.model.value])

    def inputs(self) -> TrainInputs:
        out = self.out_dir.value
        return TrainInputs(
            model=self.model.value, preset=self.preset.value, epochs=self.epochs.value,
            lr=self.lr.value, batch_size=self.batch_size.value, device=self.device.value,
            out_dir="" if out is None or str(out) in ("", ".") else str(out),
            design=self.design.value, hemi=self.hemi.value, n_train=self.n_train.value,
            n_val=self.n_val.value, lambda2=self.lambda2.value, snr=self.snr.value,
            off_grid=self.off_grid.value, timecourse=self.timecourse.value,
            sfreq=self.sfreq.value, n_times=self.n_times.value, seed=self.seed.value,
        )  # fmt: skip

    # ------------------------------------------------------------------ data settings
    def _data_added(self, event=None):
        layer = getattr(event, "value", None)
        if layer is not None and layer.metadata.get("napari_meg_unet", {}).get("role") == "sensor":
            self.match_data()

    def match_data(self, *_):
        """Set SNR, off-grid, time course, hemisphere, sfreq, n_times from the newest data."""
        for layer in reversed(list(self.viewer.layers)):
            meta = layer.metadata
            if meta.get("napari_meg_unet", {}).get("role") != "sensor":
                continue
            sim = meta.get("simulation")
            if sim is not None:
                values = data_settings(sim=sim)
            else:
                values = _recording_settings(layer)
            for name, value in values.items():
                getattr(self, name).value = value
            self.data_from.setText(f"Training data simulated like {layer.name!r}.")
            return values
        return {}

    # ------------------------------------------------------------------ actions
    def start(self):
        return self._launch(resume=False)

    def resume(self):
        return self._launch(resume=True)

    def stop(self):
        """Ask the training to stop after the current batch (it saves ``last.pt``)."""
        if self.busy:
            self._stop.set()
            self.status.setText("stopping after this batch…")

    cancel = stop

    def _launch(self, *, resume: bool):
        try:
            inputs = self.inputs()
            inputs.validate()
            hm = current_headmodel(self.viewer)
            if hm is None:
                raise ValueError("no head model: build one with the Head model widget first.")
            stop = threading.Event()
            gen = iter_train(hm, inputs, resume=resume, stop=stop,
                             overwrite=self.overwrite.value)  # fmt: skip
        except Exception as err:
            self.fail(err)
            return None
        _settings.save("train", {"out_dir": inputs.out_dir, "device": inputs.device})
        # the curve of the previous run stays until this one trains its first batch
        self._fresh = not resume
        worker = self.run(gen, on_return=self._done, on_event=self._event, stop=stop)
        self._stop = stop
        return worker

    # ------------------------------------------------------------------ events
    def _event(self, event):
        if isinstance(event, ResumedHistory):
            self._resumed(event.history)
        elif isinstance(event, EpochStarted):
            self.status.setText(f"epoch {event.epoch}/{event.n_epochs}")
            self._n_epochs = event.n_epochs
        elif isinstance(event, BatchDone):
            if self._fresh:
                self.losses, self.val_dle, self._fresh = [], [], False
            index = (event.epoch - 1) * event.n_batches + event.batch
            if not self.losses and getattr(self, "_history", None):
                # a resumed run: its past epochs as their mean loss at each epoch's end
                self.losses = [(e * event.n_batches, v) for e, v in self._history]
                self._history = None
            self.losses.append((index, float(event.loss)))
            self._batches_per_epoch = event.n_batches
            total = (self._n_epochs or event.epoch) * event.n_batches
            self.progress.setRange(0, max(total, 1))
            self.progress.setValue(index)
            self.status.setText(
                f"epoch {event.epoch}, batch {event.batch}/{event.n_batches}: loss "
                f"{event.loss:.4g} ({event.samples_per_s:.0f} samples/s)"
            )
            self._draw()
        elif isinstance(event, Validated):
            self.val_dle.append((event.epoch, float(event.dle_mm)))
            self._draw(force=True)
        elif isinstance(event, CheckpointWritten):
            self.checkpoints[event.kind] = event.path
        elif isinstance(event, Stopped):
            self.checkpoints["last"] = event.checkpoint
            self.status.setText(
                f"stopped in epoch {event.epoch} after {event.batch} batches; state saved to "
                f"{event.checkpoint} (Resume continues from it)"
            )
        elif isinstance(event, Finished):
            self.checkpoints["best"] = event.checkpoint

    def _resumed(self, history) -> None:
        """Show the resumed run's past epochs (mean training loss, validation DLE)."""
        if self.losses or not history:
            return
        self._history = [(int(h["epoch"]), float(h.get("train_loss", math.nan)))
                         for h in history]  # fmt: skip
        self.val_dle = [(int(h["epoch"]), float(h["dle_mm"])) for h in history if "dle_mm" in h]

    def _done(self, summary):
        self.summary = summary
        self._draw(force=True)
        if summary.get("stopped_before_training"):
            self.status.setText("stopped while making the data sets; nothing trained")
            return
        if summary.get("stopped"):
            return  # the Stopped event already said where the state is
        dle = summary.get("best_dle_mm")
        dle_text = f"{dle:.1f} mm" if isinstance(dle, float) and math.isfinite(dle) else "n/a"
        self.status.setText(
            f"done: {summary.get('epochs_done')} epochs, best validation DLE {dle_text} "
            f"(epoch {summary.get('best_epoch')}), {summary.get('best_checkpoint')}"
        )

    def _draw(self, *, force: bool = False):
        """Send the loss / DLE curves to the plot (rendered off the main thread)."""
        now = time.monotonic()
        if not force and now - self._last_plot < 0.5:
            return
        self._last_plot = now
        per_epoch = getattr(self, "_batches_per_epoch", None)
        self.plot.submit((list(self.losses), list(self.val_dle), per_epoch))


def _recording_settings(layer) -> dict:
    """sfreq and samples per event of a recording layer (raw: the Inverse default -0.1..0.3 s)."""
    meta = layer.metadata
    sfreq = float(meta["sfreq"])
    if layer.ndim == 4:  # evoked conditions or epochs
        n_times = int(layer.data.shape[-1])
    else:
        n_times = int(round(0.4 * sfreq)) + 1
    return dict(sfreq=repr(sfreq), n_times=n_times)


def _setup_plot(figure):
    # fixed margins: a layout engine would re-measure every text on every draw
    figure.subplots_adjust(left=0.17, right=0.83, bottom=0.19, top=0.96)
    ax = figure.add_subplot()
    ax.set_xlabel("batch")
    ax.set_ylabel("training loss", color="C0")
    ax2 = ax.twinx()
    ax2.set_ylabel("validation DLE (mm)", color="C3")
    return ax, ax.plot([], [], lw=1, color="C0")[0], ax2, ax2.plot([], [], "o-", color="C3")[0]


def _update_plot(artists, data):
    ax, loss_line, ax2, dle_line = artists
    losses, val_dle, per_epoch = data
    loss_line.set_data([i for i, _ in losses], [v for _, v in losses])
    if val_dle:
        if per_epoch is None:
            per_epoch = max(1, len(losses) // max(e for e, _ in val_dle)) if losses else 1
        dle_line.set_data([e * per_epoch for e, _ in val_dle], [v for _, v in val_dle])
    else:
        dle_line.set_data([], [])
    for axis in (ax, ax2):
        axis.relim()
        axis.autoscale_view()
