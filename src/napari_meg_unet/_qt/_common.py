"""What the dock widgets share: the base dock, workers, layer lookup and plots.

Long work runs in a napari ``thread_worker`` around a core generator; the
worker only yields events (``progress.Progress`` and the training events) and
returns a result. Everything that touches layers or widgets runs in the main
thread, in the handlers connected here.
"""

from __future__ import annotations

import time

import numpy as np
from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import (
    QFrame,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from .. import layers
from ..layers import META_KEY
from ..progress import Progress

#: Name of the one cortex layer whose values the widgets update.
CORTEX = "cortex"


def notify_error(message: str) -> None:
    from napari.utils.notifications import show_error

    show_error(message)


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


def add_or_replace(viewer, layer_data) -> object:
    """Add a layer data tuple, replacing (at the same position) a layer of the same name."""
    from napari.layers import Layer

    data, kwargs, layer_type = layer_data
    new = Layer.create(data, dict(kwargs), layer_type)
    name = kwargs["name"]
    if name in viewer.layers:
        index = viewer.layers.index(name)
        viewer.layers.pop(index)
        viewer.layers.insert(index, new)
    else:
        viewer.layers.append(new)
    return new


def place_all(viewer) -> None:
    """Re-run the plugin's layout (:func:`..layers.arrange`) over the viewer's layers."""
    layers.arrange(viewer.layers)


_MESH_CACHE: dict = {}


def cortex_mesh(hm, hemi: str, n_values: int):
    """Display mesh of ``hm`` for rows ``hm.rows(hemi)`` (full surface within budget)."""
    full = n_values <= layers.MAX_CORTEX_VALUES
    key = (hm.fingerprint, hemi, full)
    if key not in _MESH_CACHE:
        if len(_MESH_CACHE) > 8:
            _MESH_CACHE.clear()
        _MESH_CACHE[key] = layers.cortex_mesh_from_headmodel(hm, hemi=hemi, full=full)
    return _MESH_CACHE[key]


def show_on_cortex(viewer, hm, *, hemi: str, source: str, stack=None, per_row=None,
                   name: str = CORTEX, extra=None):  # fmt: skip
    """Show a stack (events x rows x times) or a per-row map on a cortex Surface layer.

    Replaces the layer ``name`` (default the shared ``cortex`` layer); its
    metadata records the head model, the hemisphere and what it shows.
    """
    kind = layers.display_kind(hm)
    n_vertices = sum(len(hm.surfaces[kind][h][0]) for h in ("lh", "rh"))
    size = n_vertices if stack is None else np.size(stack) // len(hm.rows(hemi)) * n_vertices
    mesh = cortex_mesh(hm, hemi, size)
    meta = {"headmodel": hm, "hemi": hemi, "shows": source, "rows": hm.rows(hemi)}
    meta.update(extra or {})
    if stack is not None:
        values = stack
        cmap = layers.colormap_for(source)
    elif per_row is not None:
        per_row = np.asarray(per_row, float)
        values = mesh.values(per_row[np.newaxis, :, np.newaxis])[0, 0]
        values = np.where(mesh.row_of_vertex >= 0, values, np.nan)
        cmap = layers.COLORMAPS["map"]
    else:
        values = None
        cmap = None
    data = layers.cortex_layer(mesh, values=values, name=name, colormap=cmap, metadata=meta)
    first = name not in viewer.layers
    layer = add_or_replace(viewer, data)
    layer.axis_labels = layers.AXIS_LABELS[-layer.ndim :]
    place_all(viewer)
    if first:
        viewer.dims.ndisplay = 3
    return layer


# =========================================================================== widgets
class WorkerError(Exception):
    """A RuntimeError raised in a worker thread, carried to the main thread."""


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

    For plots updated while something runs (training): drawing a figure in
    the main thread costs tens of milliseconds, more on a busy machine, which
    would stall napari's event loop. Here the main thread only submits the
    data; a single helper thread updates the artists and renders, and the
    image comes back through a queued Qt signal. Requests arriving while a
    render is under way are coalesced (only the newest is drawn).
    """

    rendered = Signal(object)

    def __init__(self, setup, update, *, width: float = 4.0, height: float = 2.6, dpi=80):
        super().__init__()
        import threading

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
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.rendered.connect(self._show)
        self.n_rendered = 0

    def submit(self, data) -> None:
        """Draw ``update(figure_artists, data)`` soon (off the main thread)."""
        import threading

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


class DockWidget(QWidget):
    """Base of the dock widgets: inputs on top, then buttons, progress and status.

    Subclasses build their controls, then call :meth:`finish`. :meth:`run`
    starts a core generator in a napari ``thread_worker``.
    """

    title = "napari-meg-unet"

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        # the controls keep their natural height and the dock scrolls when short
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        inner = QWidget()
        scroll.setWidget(inner)
        outer.addWidget(scroll)
        self.box = QVBoxLayout(inner)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.worker = None
        self.last_error: str | None = None
        self._controls: list = []

    # ------------------------------------------------------------ building
    def add(self, widget):
        """Add a Qt widget or a magicgui widget (its ``native``)."""
        native = getattr(widget, "native", widget)
        native.setMinimumHeight(max(native.minimumHeight(), native.sizeHint().height()))
        self.box.addWidget(native)
        return widget

    def button(self, text: str, slot, *, control: bool = True) -> QPushButton:
        btn = QPushButton(text)
        btn.clicked.connect(slot)
        self.box.addWidget(btn)
        if control:
            self._controls.append(btn)
        return btn

    def finish(self, *controls) -> None:
        """Add the progress bar and status line; ``controls`` are disabled while busy."""
        self._controls.extend(controls)
        self.box.addWidget(self.progress)
        self.box.addWidget(self.status)
        self.box.addStretch(1)

    # ------------------------------------------------------------ running
    @property
    def busy(self) -> bool:
        return self.worker is not None

    def _set_enabled(self, enabled: bool) -> None:
        for widget in self._controls:
            getattr(widget, "native", widget).setEnabled(enabled)

    def fail(self, err) -> None:
        """Show an error as a napari notification and in the status line."""
        message = str(err) if str(err) else type(err).__name__
        self.last_error = message
        self.status.setText(f"Error: {message}")
        notify_error(f"{self.title}: {message}")

    def run(self, gen, *, on_return, on_event=None, worker_class=None):
        """Run the generator ``gen`` in a worker thread.

        ``on_event`` gets every non-Progress event and ``on_return`` the
        generator's return value, both in the main thread. Errors are shown
        with :meth:`fail`; the controls are re-enabled when the worker ends.
        """
        from napari.qt.threading import thread_worker

        if self.busy:
            raise RuntimeError(f"{self.title} is already running.")

        def relay():
            try:
                return (yield from gen)
            except RuntimeError as err:
                # superqt takes a RuntimeError out of a generator worker for a deleted
                # worker: it is dropped and ``finished`` never comes. Re-raise it as
                # something else (core errors such as TrainingError are RuntimeErrors).
                raise WorkerError(str(err) or type(err).__name__) from err

        def yielded(event):
            if isinstance(event, Progress):
                self.progress.setRange(0, max(int(event.total), 1))
                self.progress.setValue(int(event.done))
                self.status.setText(f"{event.stage}: {event.message}".rstrip(": "))
            elif on_event is not None:
                on_event(event)

        def returned(value):
            try:
                on_return(value)
            except Exception as err:  # a failing step keeps earlier layers
                self.fail(err)

        def finished():
            self.worker = None
            self._set_enabled(True)

        self.last_error = None
        self._set_enabled(False)
        make = thread_worker(
            relay,
            start_thread=False,
            connect={"yielded": yielded, "returned": returned, "errored": self.fail,
                     "finished": finished},
        )  # fmt: skip
        self.worker = make()
        self.worker.start()
        return self.worker

    def guarded(self, func, *args, **kwargs):
        """Call ``func``; show an exception as an error instead of raising it."""
        try:
            return func(*args, **kwargs)
        except Exception as err:
            self.fail(err)
            return None


def layer_combo(viewer, predicate, *, label: str):
    """A magicgui ComboBox of the names of the layers satisfying ``predicate``, kept current."""
    from magicgui.widgets import ComboBox

    def names(_widget=None):
        return [layer.name for layer in viewer.layers if predicate(layer)]

    combo = ComboBox(label=label, choices=names)

    def refresh(_event=None):
        combo.reset_choices()

    for event in (viewer.layers.events.inserted, viewer.layers.events.removed):
        event.connect(refresh)
    return combo


def is_sensor_layer(layer) -> bool:
    """Sensor data made by the plugin (a recording or a simulation)."""
    lay = layer.metadata.get(META_KEY)
    return lay is not None and lay["role"] == "sensor"


def is_recording_layer(layer) -> bool:
    return is_sensor_layer(layer) and layer.metadata.get("recording") is not None
