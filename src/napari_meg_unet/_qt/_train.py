"""Train dock widget: simulate learning sets on the current head model and fit a U-Net.

The napari ``thread_worker`` runs :func:`._tasks.iter_train`, which relays
the events of :func:`..train.fit` (one per batch) from a child process (so
that SciPy/MNE code holding the GIL cannot freeze the event loop); Stop sets
an event fit polls before every batch, so it is prompt and leaves ``last.pt``
to resume from. The worker never touches layers or widgets: events arrive in
the main thread, where the progress bar and the loss / validation-DLE plot
are updated (the plot is rendered in a helper thread, at most twice a second).
"""

from __future__ import annotations

import math
import threading
import time

from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, LineEdit, SpinBox

from ..models import MODEL_NAMES, PRESETS
from ..train import BatchDone, CheckpointWritten, EpochStarted, Finished, Stopped, Validated
from ._common import DockWidget, ThreadedPlot, current_headmodel
from ._inputs import DESIGNS, HEMIS, TrainInputs, available_devices
from ._tasks import iter_train


class TrainWidget(DockWidget):
    """Fit the thesis or mesh U-Net; Start / Stop / Resume with live loss and DLE."""

    title = "Train"

    def __init__(self, napari_viewer):
        super().__init__(napari_viewer)
        d = TrainInputs()
        self.model = ComboBox(label="model", choices=MODEL_NAMES, value=d.model)
        self.preset = ComboBox(label="preset", choices=tuple(PRESETS[d.model]), value=d.preset)
        self.epochs = SpinBox(label="epochs", min=1, max=10_000, value=d.epochs)
        self.lr = LineEdit(label="learning rate", value=d.lr)
        self.lr.tooltip = "empty: the preset's; text such as 2e-3 or 1/500"
        self.batch_size = SpinBox(label="batch size", min=1, max=4096, value=d.batch_size)
        self.device = ComboBox(label="device", choices=available_devices(), value=d.device)
        self.out_dir = FileEdit(label="output folder", mode="d", value=d.out_dir or None)
        self.overwrite = CheckBox(label="overwrite an existing run", value=False)
        self.design = ComboBox(label="training design", choices=DESIGNS, value=d.design)
        self.hemi = ComboBox(label="hemisphere", choices=HEMIS, value=d.hemi)
        self.n_train = SpinBox(label="training events", min=1, max=10_000_000, value=d.n_train)
        self.n_val = SpinBox(label="validation events", min=1, max=1_000_000, value=d.n_val)
        self.lambda2 = LineEdit(label="λ²", value=d.lambda2)
        self.seed = SpinBox(label="seed", min=0, max=2**31 - 1, value=d.seed)
        self.form = Container(
            widgets=[self.model, self.preset, self.epochs, self.lr, self.batch_size, self.device,
                     self.out_dir, self.overwrite, self.design, self.hemi, self.n_train,
                     self.n_val, self.lambda2, self.seed]  # fmt: skip
        )
        self.add(self.form)
        self.start_button = self.button("Start", self.start)
        self.stop_button = self.button("Stop", self.stop, control=False)
        self.stop_button.setEnabled(False)
        self.resume_button = self.button("Resume", self.resume)
        self.plot = ThreadedPlot(_setup_plot, _update_plot)
        self.add(self.plot)
        self._last_plot = 0.0
        self.finish(self.form)
        self.model.changed.connect(self._presets)
        self._stop = threading.Event()
        self.losses: list[float] = []
        self.val_dle: list[tuple[int, float]] = []
        self.summary = None
        self.checkpoints: dict = {}

    def _presets(self, *_):
        self.preset.choices = tuple(PRESETS[self.model.value])

    def inputs(self) -> TrainInputs:
        out = self.out_dir.value
        return TrainInputs(
            model=self.model.value, preset=self.preset.value, epochs=self.epochs.value,
            lr=self.lr.value, batch_size=self.batch_size.value, device=self.device.value,
            out_dir="" if out is None or str(out) in ("", ".") else str(out),
            design=self.design.value, hemi=self.hemi.value, n_train=self.n_train.value,
            n_val=self.n_val.value, lambda2=self.lambda2.value, seed=self.seed.value,
        )  # fmt: skip

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

    def _launch(self, *, resume: bool):
        try:
            inputs = self.inputs()
            inputs.validate()
            hm = current_headmodel(self.viewer)
            if hm is None:
                raise ValueError("no head model: build one with the Head model widget first.")
            self._stop = threading.Event()
            gen = iter_train(
                hm, inputs, resume=resume, stop=self._stop, overwrite=self.overwrite.value
            )
        except Exception as err:
            self.fail(err)
            return None
        if not resume:
            self.losses, self.val_dle = [], []
        self.stop_button.setEnabled(True)
        worker = self.run(gen, on_return=self._done, on_event=self._event)
        worker.finished.connect(lambda: self.stop_button.setEnabled(False))
        return worker

    # ------------------------------------------------------------------ events
    def _event(self, event):
        if isinstance(event, EpochStarted):
            self.status.setText(f"epoch {event.epoch}/{event.n_epochs}")
            self._n_epochs = event.n_epochs
        elif isinstance(event, BatchDone):
            self.losses.append(float(event.loss))
            total = getattr(self, "_n_epochs", event.epoch) * event.n_batches
            self.progress.setRange(0, max(total, 1))
            self.progress.setValue((event.epoch - 1) * event.n_batches + event.batch)
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
        self.plot.submit((list(self.losses), list(self.val_dle)))


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
    losses, val_dle = data
    loss_line.set_data(range(1, len(losses) + 1), losses)
    if val_dle and losses:
        per_epoch = len(losses) / max(e for e, _ in val_dle)
        dle_line.set_data([e * per_epoch for e, _ in val_dle], [v for _, v in val_dle])
    else:
        dle_line.set_data([], [])
    for axis in (ax, ax2):
        axis.relim()
        axis.autoscale_view()
