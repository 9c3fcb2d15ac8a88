"""Child processes that run the widgets' work, so that napari's event loop never stalls.

SciPy's LAPACK wrappers (the SVD inside MNE's inverse operator, eigendecompositions
of covariances) hold the GIL for seconds; run in a thread of the napari process
they freeze the event loop (measured: 2.3 s for the template operator). So every
step runs in an :class:`Engine`, a spawned child process that imports the core
once and then runs generator functions on request. :meth:`Engine.iter_call`
(run by the widget's napari ``thread_worker``) only relays the child's events
and returns the generator's return value.

Objects with a ``fingerprint`` (head models, simulations) are sent to a child
once and afterwards by reference; objects coming back that the parent sent are
replaced by the parent's own objects, so identities survive a round trip.

Cancelling is cooperative: the child closes the generator at its next event
(``GeneratorExit`` in the core generator), and :meth:`iter_call` returns
:data:`CANCELLED`. A child that does not answer within :data:`CANCEL_GRACE`
seconds (inside one long SciPy call) is terminated; the next call starts a new one.

This module imports no Qt: the relay is testable without a display.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import importlib
import os
import queue
import sys
import threading
import time
from collections import OrderedDict

#: Returned by :meth:`Engine.iter_call` when the call was cancelled.
CANCELLED = "cancelled"
#: Seconds a cancelled child may take to reach its next event before it is terminated.
CANCEL_GRACE = 5.0
#: Objects by reference kept in each child (oldest forgotten first).
MAX_SHARED = 8
#: CPU priority decrease of the child (POSIX ``nice``): napari's event loop keeps precedence.
CHILD_NICENESS = 5
#: Modules a new child imports before its first request.
PRELOAD = ("napari_meg_unet._qt._tasks",)


class Cancelled(Exception):
    """The call was cancelled (raised inside a relay that must not return)."""


class _Ref:
    """A reference to an object the child already holds."""

    __slots__ = ("key",)

    def __init__(self, key):
        self.key = key

    def __reduce__(self):
        return (_Ref, (self.key,))


def _key(obj):
    """The sharing key of an object (its fingerprint), or None."""
    if type(obj).__name__ not in ("HeadModel", "Simulation"):
        return None
    try:
        return (type(obj).__name__, obj.fingerprint)
    except Exception:
        return None


def _container(obj) -> bool:
    """A dataclass of the widgets' own (Step, SensorData...) whose fields are walked."""
    return (
        dataclasses.is_dataclass(obj) and not isinstance(obj, type)
        and type(obj).__module__.startswith("napari_meg_unet._qt")
    )  # fmt: skip


def _walk(obj, fn):
    """``obj`` with ``fn`` applied inside its containers, recursively.

    Containers are plain dicts, lists and tuples (not subclasses such as
    ``mne.Info``) and the dataclasses of this package's ``_qt`` modules.
    """
    replaced = fn(obj)
    if replaced is not obj:
        return replaced
    kind = type(obj)
    if kind is dict:
        return {k: _walk(v, fn) for k, v in obj.items()}
    if kind is list:
        return [_walk(v, fn) for v in obj]
    if kind is tuple:
        return tuple(_walk(v, fn) for v in obj)
    if _container(obj):
        changed = {}
        for f in dataclasses.fields(obj):
            if f.init:
                value = getattr(obj, f.name)
                new = _walk(value, fn)
                if new is not value:
                    changed[f.name] = new
        return dataclasses.replace(obj, **changed) if changed else obj
    return obj


@contextlib.contextmanager
def spawn_without_main_script():
    """Keep a spawned child from re-running the ``__main__`` script.

    ``multiprocessing``'s spawn start method re-imports the parent's main
    script in the child, running its top level again: a script that opens a
    viewer without an ``if __name__ == "__main__":`` guard would open one in
    the child too. The child's target lives in an importable module, so it
    does not need ``__main__``; hiding the script's path while the child
    starts makes spawn skip it.
    """
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if main is None or getattr(main, "__spec__", None) is not None or path is None:
        yield
        return
    del main.__file__
    try:
        yield
    finally:
        main.__file__ = path


# =========================================================================== child side
def _resolve(name: str):
    module, _, qualname = name.partition(":")
    obj = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _serve(requests, messages, cancel) -> None:
    """The child's loop: run each requested generator function, stream its events."""
    if hasattr(os, "nice"):
        os.nice(CHILD_NICENESS)
    for name in PRELOAD:
        importlib.import_module(name)
    shared: OrderedDict = OrderedDict()
    while True:
        request = requests.get()
        if request is None:
            return
        name, args, kwargs, new_shared = request
        for key, obj in new_shared:
            shared[key] = obj
            while len(shared) > MAX_SHARED:
                shared.popitem(last=False)
        _run_one(name, args, kwargs, shared, messages, cancel)


def _run_one(name, args, kwargs, shared, messages, cancel) -> None:
    ids = {id(obj): key for key, obj in shared.items()}

    def resolve(obj):
        return shared[obj.key] if isinstance(obj, _Ref) else obj

    def to_refs(obj):
        return _Ref(ids[id(obj)]) if id(obj) in ids else obj

    try:
        args = _walk(args, resolve)
        kwargs = _walk(kwargs, resolve)
        gen = _resolve(name)(*args, **kwargs)
        while True:
            if cancel.is_set():
                gen.close()
                messages.put(("cancelled", None))
                return
            try:
                event = next(gen)
            except StopIteration as done:
                messages.put(("return", _walk(done.value, to_refs)))
                return
            messages.put(("event", event))
    except BaseException as err:  # reported to the parent, which raises it again
        messages.put(("error", _portable(err)))


def _portable(err: BaseException):
    """The exception itself when it pickles, else a RuntimeError with its text."""
    import pickle

    try:
        pickle.loads(pickle.dumps(err))
        return err
    except Exception:
        return RuntimeError(f"{type(err).__name__}: {err}")


# =========================================================================== parent side
class Engine:
    """A spawned child process running generator functions on request (one call at a time)."""

    def __init__(self):
        import multiprocessing

        self._ctx = multiprocessing.get_context("spawn")
        self._process = None
        self._sent: OrderedDict = OrderedDict()  # key -> the parent's object
        self._lock = threading.Lock()

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    def start(self) -> None:
        """Start the child (returns at once; the child imports the core in the background)."""
        if self.alive:
            return
        self._requests, self._messages = self._ctx.Queue(), self._ctx.Queue()
        self._cancel = self._ctx.Event()
        self._sent.clear()
        self._process = self._ctx.Process(
            target=_serve, args=(self._requests, self._messages, self._cancel), daemon=True
        )
        with spawn_without_main_script():
            self._process.start()

    def stop(self, timeout: float = 5.0) -> None:
        """End the child (after its current call, else terminated after ``timeout`` s)."""
        if self._process is None:
            return
        if self._process.is_alive():
            self._cancel.set()
            self._requests.put(None)
            self._process.join(timeout)
            if self._process.is_alive():
                self._process.terminate()
                self._process.join(5)
        self._process = None

    def _share(self, args, kwargs):
        """Arguments with already-sent objects replaced by references, and the new objects."""
        new = []

        def ref(obj):
            key = _key(obj)
            if key is None:
                return obj
            if key in self._sent:  # first in, first out on both sides: no reordering
                return _Ref(key)
            new.append((key, obj))
            self._sent[key] = obj
            while len(self._sent) > MAX_SHARED:
                self._sent.popitem(last=False)
            return _Ref(key)

        return _walk(args, ref), _walk(kwargs, ref), new

    def iter_call(self, func, *args, stop=None, **kwargs):
        """Run the generator function ``func(*args, **kwargs)`` in the child; relay its events.

        Parameters
        ----------
        func : callable
            A generator function importable by its module and qualified name.
        stop : threading.Event | None
            Set it to cancel: the child closes the generator at its next event.

        Returns
        -------
        value
            The generator's return value, or :data:`CANCELLED`.
        """
        if not self._lock.acquire(blocking=False):
            raise RuntimeError("this engine is already running a call.")
        try:
            self.start()
            self._cancel.clear()
            args, kwargs, new = self._share(args, kwargs)
            # the child keeps objects in the order they were sent, like self._sent
            self._requests.put((f"{func.__module__}:{func.__qualname__}", args, kwargs, new))
            return (yield from self._relay(stop))
        finally:
            self._lock.release()

    def _relay(self, stop):
        cancel_time = None
        while True:
            if stop is not None and stop.is_set() and cancel_time is None:
                self._cancel.set()
                cancel_time = time.monotonic()
            if cancel_time is not None and time.monotonic() - cancel_time > CANCEL_GRACE:
                self.stop(timeout=0.1)
                return CANCELLED
            try:
                kind, payload = self._messages.get(timeout=0.05)
            except queue.Empty:
                if not self.alive:
                    code = None if self._process is None else self._process.exitcode
                    self._process = None
                    raise RuntimeError(
                        f"the worker process ended unexpectedly (exit code {code})"
                    ) from None
                continue
            if kind == "event":
                yield payload
            elif kind == "return":
                return _walk(payload, self._own)
            elif kind == "cancelled":
                return CANCELLED
            else:
                raise payload


    def _own(self, obj):
        """The parent's object behind a reference coming back from the child."""
        return self._sent.get(obj.key, obj) if isinstance(obj, _Ref) else obj


class EnginePool:
    """Engines shared by the dock widgets: an idle one is reused, a new one started if none."""

    def __init__(self):
        self._idle: list[Engine] = []
        self._all: list[Engine] = []
        self._lock = threading.Lock()

    def prewarm(self) -> None:
        """Start one engine now, so that the first step does not wait for the child's imports."""
        with self._lock:
            if not self._idle:
                engine = Engine()
                self._idle.append(engine)
                self._all.append(engine)
            self._idle[0].start()

    def iter_call(self, func, *args, stop=None, **kwargs):
        """:meth:`Engine.iter_call` on an idle engine (started if needed)."""
        with self._lock:
            engine = self._idle.pop() if self._idle else None
            if engine is None:
                engine = Engine()
                self._all.append(engine)
        try:
            return (yield from engine.iter_call(func, *args, stop=stop, **kwargs))
        finally:
            with self._lock:
                self._idle.append(engine)

    def shutdown(self) -> None:
        """Stop every engine (at exit)."""
        with self._lock:
            engines, self._all, self._idle = list(self._all), [], []
        for engine in engines:
            engine.stop(timeout=2.0)


#: The engines of this process.
POOL = EnginePool()


atexit.register(POOL.shutdown)
