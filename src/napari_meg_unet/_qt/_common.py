"""What the dock widgets share: the base dock (run, Cancel, close), config-driven fields, plots.

Long work runs in a worker process (:mod:`._engine`) driven by a napari
``thread_worker``; the worker thread also turns the returned layer data into
napari layers. The main thread only shows progress and hands the layers to
:mod:`._layerqueue`, which adds them one per event-loop turn.
"""

from __future__ import annotations

import threading
import time

from qtpy.QtCore import QEvent, Qt, Signal
from qtpy.QtWidgets import (
    QComboBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from ..layers import META_KEY
from ..progress import Progress
from ._engine import CANCELLED, POOL
from ._prepare import CORTEX


def notify_error(message: str) -> None:
    from napari.utils.notifications import show_error

    show_error(message)


def notify_info(message: str) -> None:
    from napari.utils.notifications import show_info

    show_info(message)


# =========================================================================== layers
def current_headmodel(viewer):
    """The head model of the ``cortex`` layer, else of the newest layer carrying one."""
    if CORTEX in viewer.layers and viewer.layers[CORTEX].metadata.get("headmodel") is not None:
        return viewer.layers[CORTEX].metadata["headmodel"]
    for layer in reversed(list(viewer.layers)):
        hm = layer.metadata.get("headmodel")
        if hm is not None:
            return hm
    return None


def make_layers(tuples, viewer=None) -> list:
    """napari layers from layer data tuples (called in a worker thread: no Qt involved).

    With ``viewer``, the tuples are first placed among the viewer's layers
    (:func:`..layers.layout_tuples`), so that adding them moves nothing.
    """
    from napari.layers import Layer

    from .. import layers as L

    if viewer is not None:
        among = [dict(layer.metadata[META_KEY]) for layer in list(viewer.layers)
                 if META_KEY in layer.metadata]  # fmt: skip
        tuples = L.layout_tuples(list(tuples), among=among)
    return [Layer.create(data, dict(kwargs), kind) for data, kwargs, kind in tuples]


def is_sensor_layer(layer) -> bool:
    """Sensor data made by the plugin (a recording or a simulation)."""
    lay = layer.metadata.get(META_KEY)
    return lay is not None and lay["role"] == "sensor"


def is_recording_layer(layer) -> bool:
    return is_sensor_layer(layer) and layer.metadata.get("recording") is not None


def is_stack_layer(layer) -> bool:
    lay = layer.metadata.get(META_KEY)
    return lay is not None and lay["role"] == "stack"


# =========================================================================== fields
def option_widget(cls, name: str, *, label: str | None = None, **overrides):
    """A magicgui widget for one option of a step config: default, choices, bounds, help.

    ``overrides`` replace the spec (e.g. ``default=``, ``choices=``); choices
    become a ComboBox, ints a SpinBox, floats a FloatSpinBox, booleans a
    CheckBox, anything else (fractions, ranges) a LineEdit.
    """
    from magicgui.widgets import CheckBox, ComboBox, FloatSpinBox, LineEdit, SpinBox

    from ._inputs import spec

    s = dict(spec(cls, name), **overrides)
    label = label or name.replace("_", " ")
    tip = s["help"]
    default = s["default"]
    if s.get("choices") and s["kind"] in ("choice", "str"):
        w = ComboBox(label=label, choices=s["choices"], value=default, tooltip=tip)
        widen_combo(w)
        return w
    if s["kind"] == "bool":
        return CheckBox(label=label, value=bool(default), tooltip=tip)
    if s["kind"] == "int" and not isinstance(default, tuple):
        lo = s["minimum"] if s["minimum"] is not None else 0
        hi = s["maximum"] if s["maximum"] is not None else 10**7
        return SpinBox(label=label, min=lo, max=hi, value=default if default else lo, tooltip=tip)
    if s["kind"] == "float" and default is not None:
        lo = s["minimum"] if s["minimum"] is not None else -1e9
        hi = s["maximum"] if s["maximum"] is not None else 1e9
        return FloatSpinBox(label=label, min=lo, max=hi, step=0.1, value=default, tooltip=tip)
    text = "" if default is None else (
        "-".join(f"{v:g}" for v in default) if isinstance(default, tuple) else str(default)
    )  # fmt: skip
    return LineEdit(label=label, value=text, tooltip=tip)


def widen_combo(combo) -> None:
    """Show full item names: popup as wide as the longest, the current text as tooltip."""
    native = getattr(combo, "native", combo)
    native.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    native.setMinimumContentsLength(12)
    view = native.view()

    def update(*_):
        texts = [native.itemText(i) for i in range(native.count())]
        width = max((native.fontMetrics().horizontalAdvance(t) for t in texts), default=0)
        view.setMinimumWidth(width + 40)
        native.setToolTip(native.currentText())

    native.currentTextChanged.connect(update)
    native.model().rowsInserted.connect(update)
    update()


def layer_combo(viewer, predicate, *, label: str):
    """A magicgui ComboBox of the names of the layers satisfying ``predicate``, kept current."""
    from magicgui.widgets import ComboBox

    def names(_widget=None):
        return [layer.name for layer in viewer.layers if predicate(layer)]

    combo = ComboBox(label=label, choices=names)
    widen_combo(combo)

    def refresh(_event=None):
        combo.reset_choices()

    for event in (viewer.layers.events.inserted, viewer.layers.events.removed):
        event.connect(refresh)
    return combo


# =========================================================================== plots
class PlotCanvas(QWidget):
    """A small matplotlib figure in a Qt widget (redraws throttled)."""

    def __init__(self, *, height: float = 2.4, min_interval: float = 0.25,
                 layout: str = "constrained"):  # fmt: skip
        super().__init__()
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=(4, height), layout=layout, dpi=80)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(int(height * 60))
        self.canvas.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        box = QVBoxLayout(self)
        box.setContentsMargins(0, 0, 0, 0)
        box.addWidget(self.canvas)
        self._min_interval = min_interval
        self._last_draw = 0.0

    def due(self) -> bool:
        """Whether a throttled redraw would happen now."""
        return time.monotonic() - self._last_draw >= self._min_interval

    def draw(self, *, force: bool = False) -> None:
        if force or self.due():
            self._last_draw = time.monotonic()
            self.canvas.draw_idle()


class ThreadedPlot(QLabel):
    """A matplotlib figure rendered by Agg in a background thread, shown as a pixmap.

    For plots updated while something runs (training, spectra): drawing a
    figure in the main thread costs tens of milliseconds, more on a busy
    machine, which would stall napari's event loop. Here the main thread only
    submits the data; a single helper thread updates the artists and renders,
    and the image comes back through a queued Qt signal. Requests arriving
    while a render is under way are coalesced (only the newest is drawn).
    """

    rendered = Signal(object)

    def __init__(self, setup, update, *, width: float = 4.0, height: float = 2.6, dpi=80):
        super().__init__()
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=(width, height), dpi=dpi)
        self._canvas = FigureCanvasAgg(self.figure)
        self._setup, self._update = setup, update
        self._artists = None
        self._lock = threading.Lock()
        self._pending = None
        self._busy = False
        self.setMinimumHeight(int(height * dpi))
        self.setMinimumWidth(int(width * dpi * 0.6))
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.rendered.connect(self._show)
        self.n_rendered = 0

    def submit(self, data) -> None:
        """Draw ``update(figure_artists, data)`` soon (off the main thread)."""
        with self._lock:
            self._pending = data
            if self._busy:
                return
            self._busy = True
        threading.Thread(target=self._render_loop, daemon=True).start()

    def _render_loop(self) -> None:
        while True:
            with self._lock:
                data, self._pending = self._pending, None
                if data is None:
                    self._busy = False
                    return
            if self._artists is None:
                self._artists = self._setup(self.figure)
            self._update(self._artists, data)
            self._canvas.draw()
            width, height = self._canvas.get_width_height()
            self.rendered.emit((bytes(self._canvas.buffer_rgba()), width, height))

    def _show(self, image) -> None:
        from qtpy.QtGui import QImage, QPixmap

        buffer, width, height = image
        qimage = QImage(buffer, width, height, QImage.Format.Format_RGBA8888)
        self.setPixmap(QPixmap.fromImage(qimage.copy()))
        self.n_rendered += 1

    def wait(self, timeout: float = 10.0) -> bool:
        """Block until no render is pending (for tests and scripts)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self._busy:
                    return True
            time.sleep(0.01)
        return False


# =========================================================================== dock
def _disconnect(worker) -> None:
    """Drop every slot of a finished worker (PyQt keeps slots alive with their sender)."""
    if worker is None:
        return
    for name in ("started", "yielded", "returned", "errored", "warned", "aborted", "finished"):
        signal = getattr(worker, name, None)
        try:
            signal.disconnect()
        except (TypeError, RuntimeError, AttributeError):
            pass


class WorkerError(Exception):
    """A RuntimeError raised in a worker thread, carried to the main thread."""


class DockWidget(QWidget):
    """Base of the dock widgets: inputs on top, then buttons, progress and status.

    Subclasses build their controls, then call :meth:`finish`. :meth:`run`
    starts a generator in a napari ``thread_worker``; :meth:`run_step` runs a
    generator function of :mod:`._tasks` in a worker process and makes the
    napari layers of its result in the worker thread. **Cancel** stops the
    running step at its next progress event (cooperatively, nothing half
    added); closing the viewer (or the dock) does the same and waits for the
    step to end (training saves ``last.pt``).
    """

    title = "napari-meg-unet"
    #: Seconds :meth:`shutdown` waits for a running step to end.
    shutdown_timeout = 10.0

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        # the controls keep their natural height and the dock scrolls when short
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        inner = QWidget()
        scroll.setWidget(inner)
        outer.addWidget(scroll)
        self._scroll = scroll
        self.box = QVBoxLayout(inner)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop this step at its next progress event.")
        self.cancel_button.clicked.connect(self.cancel)
        self.cancel_button.setEnabled(False)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.worker = None
        self.last_error: str | None = None
        self.cancelled = False
        self._controls: list = []
        #: Widgets enabled only while a step runs (Cancel, Train's Stop).
        self._while_busy: list = [self.cancel_button]
        self._stop = threading.Event()
        self._ended = threading.Event()
        self._ended.set()
        self._closed = False
        POOL.prewarm()

    # ------------------------------------------------------------ building
    def add(self, widget):
        """Add a Qt widget or a magicgui widget (its ``native``)."""
        native = getattr(widget, "native", widget)
        native.setMinimumHeight(max(native.minimumHeight(), native.sizeHint().height()))
        self.box.addWidget(native)
        return widget

    def button(self, text: str, slot, *, control: bool = True,
               while_busy: bool = False) -> QPushButton:  # fmt: skip
        """A push button; a ``control`` is off while busy, a ``while_busy`` one only on then."""
        btn = QPushButton(text)
        btn.clicked.connect(slot)
        self.box.addWidget(btn)
        if while_busy:
            btn.setEnabled(False)
            self._while_busy.append(btn)
        elif control:
            self._controls.append(btn)
        return btn

    def finish(self, *controls, cancel: bool = True) -> None:
        """Add the progress bar, Cancel and the status line; ``controls`` are off while busy."""
        self._controls.extend(controls)
        row = QHBoxLayout()
        row.addWidget(self.progress, 1)
        if cancel:
            row.addWidget(self.cancel_button)
        self.box.addLayout(row)
        self.box.addWidget(self.status)
        self.box.addStretch(1)
        inner = self._scroll.widget()
        # the dock is never narrower than its controls (no clipping on the right)
        self.setMinimumWidth(min(inner.sizeHint().width() + 24, 520))

    # ------------------------------------------------------------ running
    @property
    def busy(self) -> bool:
        return self.worker is not None

    def _set_enabled(self, enabled: bool) -> None:
        for widget in self._controls:
            getattr(widget, "native", widget).setEnabled(enabled)
        for widget in self._while_busy:
            widget.setEnabled(not enabled)

    def fail(self, err) -> None:
        """Show an error as a napari notification and in the status line."""
        message = str(err) if str(err) else type(err).__name__
        self.last_error = message
        self.status.setText(f"Error: {message}")
        notify_error(f"{self.title}: {message}")

    def cancel(self) -> None:
        """Ask the running step to stop at its next progress event."""
        if self.busy:
            self._stop.set()
            self.status.setText("cancelling…")

    def run(self, gen, *, on_return, on_event=None, stop=None):
        """Run the generator ``gen`` in a worker thread.

        ``on_event`` gets every non-Progress event and ``on_return`` the
        generator's return value, both in the main thread (a cancelled step
        returns :data:`._engine.CANCELLED` and ``on_return`` is not called).
        Errors are shown with :meth:`fail`; the controls are re-enabled when
        the worker ends. ``stop`` is the event :meth:`cancel` sets (the
        generator must watch it).
        """
        from napari.qt.threading import thread_worker

        if self.busy:
            raise RuntimeError(f"{self.title} is already running.")
        ended = threading.Event()

        def relay():
            try:
                return (yield from gen)
            except RuntimeError as err:
                # superqt takes a RuntimeError out of a generator worker for a deleted
                # worker: it is dropped and ``finished`` never comes. Re-raise it as
                # something else (core errors such as TrainingError are RuntimeErrors).
                raise WorkerError(str(err) or type(err).__name__) from err
            finally:
                ended.set()

        def returned(value):
            if self._closed:
                return
            if isinstance(value, str) and value == CANCELLED:
                self.cancelled = True
                self.status.setText("cancelled")
                return
            try:
                on_return(value)
            except Exception as err:  # a failing step keeps earlier layers
                self.fail(err)

        def finished():
            worker, self.worker = self.worker, None
            if not self._closed:  # the dock may already be deleted (viewer closed)
                self._set_enabled(True)
            _disconnect(worker)  # its slots hold this widget: release them

        # a viewer that was never shown closes too: its widgets are deleted with it
        self._watch_window()
        self.last_error = None
        self.cancelled = False
        self._stop = stop if stop is not None else threading.Event()
        self._ended = ended
        self._set_enabled(False)
        make = thread_worker(
            relay,
            start_thread=False,
            connect={"yielded": lambda e: self._yielded(e, on_event), "returned": returned,
                     "errored": self._errored, "finished": finished},
        )  # fmt: skip
        self.worker = make()
        self.worker.start()
        return self.worker

    def _errored(self, err) -> None:
        if not self._closed:
            self.fail(err)

    def _yielded(self, event, on_event) -> None:
        if self._closed:
            return
        if isinstance(event, Progress):
            self.progress.setRange(0, max(int(event.total), 1))
            self.progress.setValue(int(event.done))
            if not self._stop.is_set():
                self.status.setText(f"{event.stage}: {event.message}".rstrip(": "))
        elif on_event is not None:
            on_event(event)

    def call(self, func, *args, **kwargs):
        """Generator: ``func(*args, **kwargs)`` run in a worker process, cancelled by Cancel.

        For use inside the generator run by :meth:`run_work` (in the worker thread).
        """
        return POOL.iter_call(func, *args, stop=self._stop, **kwargs)

    def run_work(self, work, *, on_done):
        """Run the generator function ``work()`` in a worker thread; layers of its Step too.

        ``work`` prepares its inputs (reading, epoching) in the worker thread
        and ``yield from``s :meth:`call`; it returns a :class:`._tasks.Step` (or
        :data:`._engine.CANCELLED`). ``on_done(step, made)`` gets the step and
        the napari layers made from its layer data (in the worker thread), in
        the main thread.
        """
        stop = threading.Event()

        def gen():
            step = yield from work()
            if isinstance(step, str) and step == CANCELLED:
                return CANCELLED
            if stop.is_set():
                return CANCELLED
            return step, make_layers(step.layers, self.viewer)

        return self.run(gen(), on_return=lambda result: on_done(*result), stop=stop)

    def run_step(self, func, *args, on_done, **kwargs):
        """:meth:`run_work` of one :mod:`._tasks` generator function."""
        return self.run_work(lambda: self.call(func, *args, **kwargs), on_done=on_done)

    # ------------------------------------------------------------ closing
    def _watch_window(self) -> None:
        """Watch the main window: closing the viewer stops this widget's step first."""
        window = self.window()
        if window is not self and getattr(self, "_watched", None) is not window:
            window.installEventFilter(self)
            self._watched = window

    def showEvent(self, event):  # noqa: N802 (Qt)
        self._watch_window()
        super().showEvent(event)

    def eventFilter(self, obj, event):  # noqa: N802 (Qt)
        if obj is getattr(self, "_watched", None) and event.type() == QEvent.Type.Close:
            self._closed = True  # the widgets go with the window: results are not shown
            self.shutdown()
            # the window holds napari's QtViewer: this widget must not keep it alive
            obj.removeEventFilter(self)
            self._watched = None
        return False

    def shutdown(self, timeout: float | None = None) -> bool:
        """Stop the running step (closing the viewer or the dock) and wait for it to end.

        Returns whether it ended within ``timeout`` (default
        :attr:`shutdown_timeout`) seconds. Training stops after its batch and
        writes ``last.pt`` before this returns.
        """
        self._stop.set()
        return self._ended.wait(self.shutdown_timeout if timeout is None else timeout)

    def closeEvent(self, event):  # noqa: N802 (Qt)
        self._closed = True
        self.shutdown()
        super().closeEvent(event)
