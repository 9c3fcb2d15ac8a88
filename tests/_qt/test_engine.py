"""The worker processes of the widgets: events relayed, results and errors back, Cancel."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from napari_meg_unet._qt._engine import CANCELLED, Engine
from napari_meg_unet.progress import Progress


def count_to(n, *, delay=0.0, payload=None):
    """A generator function the child imports from this module."""
    for i in range(n):
        time.sleep(delay)
        yield Progress("count", i + 1, n, "")
    return {"n": n, "payload": payload}


def fail_after_one():
    yield Progress("fail", 0, 1, "")
    raise ValueError("bad input: lambda2 must be positive")


def same_object(obj):
    yield Progress("same", 1, 1, "")
    return {"obj": obj, "again": obj}


class Shared:
    """Stands in for a head model: shared by fingerprint."""

    def __init__(self, fingerprint):
        self.fingerprint = fingerprint


Shared.__name__ = "HeadModel"  # the engine shares HeadModel and Simulation objects


def drive(gen):
    events = []
    while True:
        try:
            events.append(next(gen))
        except StopIteration as done:
            return events, done.value


@pytest.fixture(scope="module")
def engine():
    engine = Engine()
    yield engine
    engine.stop()


def test_events_and_result(engine):
    events, value = drive(engine.iter_call(count_to, 3, payload=np.arange(4)))
    assert [e.done for e in events] == [1, 2, 3]
    assert value["n"] == 3 and np.array_equal(value["payload"], np.arange(4))


def test_errors_come_back_as_themselves(engine):
    with pytest.raises(ValueError, match="lambda2 must be positive"):
        drive(engine.iter_call(fail_after_one))
    # the engine stays usable
    assert drive(engine.iter_call(count_to, 1))[1]["n"] == 1


def test_cancel_is_cooperative(engine):
    stop = threading.Event()
    gen = engine.iter_call(count_to, 1000, delay=0.01, stop=stop)
    next(gen)
    stop.set()
    start = time.monotonic()
    events, value = drive(gen)
    assert value == CANCELLED and len(events) < 900
    assert time.monotonic() - start < 5
    assert drive(engine.iter_call(count_to, 2))[1]["n"] == 2


def test_shared_objects_keep_their_identity(engine):
    obj = Shared("abc")
    _, value = drive(engine.iter_call(same_object, obj))
    assert value["obj"] is obj and value["again"] is obj
    # sent once: the second call sends a reference only
    assert list(engine._sent) == [("HeadModel", "abc")]
    _, value = drive(engine.iter_call(same_object, obj))
    assert value["obj"] is obj
