"""Small typed progress events yielded by long-running core generators.

Every long computation in the core (building a head model, simulating,
inverting, training) is a generator yielding these events; the CLI turns them
into a progress bar and the napari widgets into worker signals. Generators
return their result through ``StopIteration.value``; :func:`run` drives one to
completion.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Progress:
    """``done`` of ``total`` units of the stage ``stage`` are finished."""

    stage: str
    done: int
    total: int
    message: str = ""
    info: dict = field(default_factory=dict)

    @property
    def fraction(self) -> float:
        return 1.0 if self.total <= 0 else min(1.0, self.done / self.total)


def run(gen: Generator[Any, Any, T], callback: Callable[[Any], None] | None = None) -> T:
    """Exhaust a progress generator, passing each event to ``callback``, and return its value."""
    while True:
        try:
            event = next(gen)
        except StopIteration as stop:
            return stop.value
        if callback is not None:
            callback(event)
