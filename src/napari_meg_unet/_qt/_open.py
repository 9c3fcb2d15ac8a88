"""The plugin's npe2 reader and sample-data commands: reading in a worker thread.

napari calls a reader (or a sample-data function) in its main thread and
waits for the layer data, so reading a BIDS folder there froze the viewer for
seconds. These commands start the reading in a napari ``thread_worker``
(progress in napari's activity dock, problems as notifications naming the
file and the reason), return napari's "nothing to add" sentinel at once, and
add the layers when they are ready (:mod:`._layerqueue`), switching to 3D when
a cortex arrives. Without a viewer (scripts) they read in the caller's thread.
"""

from __future__ import annotations

import functools

from .. import _reader
from ..progress import Progress

#: Running reads (kept referenced until they finish).
_RUNNING: list = []


def _viewer():
    try:
        import napari

        return napari.current_viewer()
    except Exception:
        return None


def get_reader(path):
    """npe2 reader: what :func:`.._reader.get_reader` accepts, read asynchronously."""
    found = _reader.probe(path)
    if found is None:
        return None
    kind, items = found
    return functools.partial(_open, kind=kind, items=items)


def _open(path, *, kind, items):
    viewer = _viewer()
    if isinstance(path, list | tuple):
        path = path[0]
    read = functools.partial(
        _reader.iter_read, path, **({"recordings": items} if kind == "bids" else {"files": items})
    )
    if viewer is None:
        return _reader._run(read())
    start(viewer, read, f"Opening {path}")
    return [(None,)]


def start(viewer, make_gen, description: str, *, then=None):
    """Run the generator ``make_gen()`` (Progress, Notice, returns layer tuples) in a worker."""
    from napari.qt.threading import thread_worker
    from napari.utils import progress

    from ._common import _disconnect, make_layers
    from ._layerqueue import queue_for

    bar = progress(total=0, desc=description)

    def work():
        tuples = yield from make_gen()
        if len(tuples) == 1 and len(tuples[0]) == 1 and tuples[0][0] is None:
            return []  # napari's "nothing to add"
        return make_layers(tuples)

    def yielded(event):
        if isinstance(event, Progress):
            bar.total = max(int(event.total), 1)
            bar.n = int(event.done)
            bar.set_description(f"{description}: {event.message}")
            bar.refresh()
        else:
            _reader._notify(event.message, severity=event.severity)

    def returned(made):
        bar.close()
        if made:
            queue_for(viewer).add(made, then=then)

    def errored(err):
        bar.close()
        _reader._notify(f"napari-meg-unet: {description} failed: {err}", severity="error")

    worker = thread_worker(
        work, start_thread=False,
        connect={"yielded": yielded, "returned": returned, "errored": errored},
    )()  # fmt: skip
    def finished():
        if worker in _RUNNING:
            _RUNNING.remove(worker)
        # napari's task-status list of the window keeps every worker (its ``quit``):
        # drop the slots, whose closures hold the viewer, so a closed viewer can go
        _disconnect(worker)

    worker.finished.connect(finished)
    _RUNNING.append(worker)
    worker.start()
    return worker


def _sample(key: str):
    """Start making sample ``key`` in a worker process; return the (empty) titles layer.

    napari's ``open_sample`` refuses a sample returning no layer, so the canvas
    titles layer (filled when the other layers arrive) is returned at once.
    """
    from .._sample_data import sample_layers
    from ..layers import titles_layer
    from ._engine import CANCELLED, POOL
    from ._tasks import iter_sample_step

    viewer = _viewer()
    if viewer is None:
        return sample_layers(key)

    def gen():
        step = yield from POOL.iter_call(iter_sample_step, key)
        if isinstance(step, str) and step == CANCELLED:
            return [(None,)]
        return [t for t in step.layers if t[1]["name"] != "titles"]

    start(viewer, gen, f"Sample data ({key})")
    return [titles_layer()]


def single_dipoles() -> list:
    """npe2 sample: eight single-dipole events on the template head (read in a worker)."""
    return _sample("single")


def multi_dipoles() -> list:
    """npe2 sample: eight events of 2-4 dipoles on the template head (read in a worker)."""
    return _sample("multi")
