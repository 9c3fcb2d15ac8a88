"""Small typed progress events yielded by long-running core generators.

Every long computation in the core (building a head model, simulating,
inverting, training) is a generator yielding these events; the CLI turns them
into a progress bar and the napari widgets into worker signals. Generators
return their result through ``StopIteration.value``; :func:`run` drives one to
completion.
"""

from __future__ import annotations

import functools
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


def every(seconds: float, log: Callable[[str], None]) -> Callable[[Any], None]:
    """A :func:`run` callback logging ``"stage: message"`` of a Progress at most every ``seconds``
    (for scripts that print instead of drawing a bar)."""
    import time

    last = [-float("inf")]

    def callback(event) -> None:
        now = time.perf_counter()
        if isinstance(event, Progress) and now - last[0] > seconds:
            log(f"{event.stage}: {event.message}")
            last[0] = now

    return callback


def _strip_section(doc: str, header: str) -> str:
    """Remove one numpydoc section (its header, underline and entries) from ``doc``."""
    lines = doc.splitlines()
    out, skipping = [], False
    for i, line in enumerate(lines):
        is_header = (
            i + 1 < len(lines)
            and line.strip()
            and set(lines[i + 1].strip()) == {"-"}
            and len(lines[i + 1].strip()) >= len(line.strip())
        )
        if is_header:
            skipping = line.strip() == header
        if not skipping:
            out.append(line)
    return "\n".join(out)


def plain(gen_func: Callable, *, name: str | None = None) -> Callable:
    """The plain function of an ``iter_<name>`` generator function.

    It takes the same arguments (its signature is the generator's), runs the
    generator to completion with :func:`run`, discarding the progress events,
    and returns the generator's result. Its docstring is the generator's
    without the ``Yields`` section.
    """
    gen_name = gen_func.__name__
    name = name or gen_name.removeprefix("iter_")

    @functools.wraps(gen_func)
    def func(*args, **kwargs):
        return run(gen_func(*args, **kwargs))

    func.__name__ = name
    func.__qualname__ = gen_func.__qualname__.replace(gen_name, name)
    doc = gen_func.__doc__ or ""
    summary, _, rest = doc.partition("\n")
    summary = summary.replace(", yielding progress", "").replace(" yielding progress", "")
    func.__doc__ = (
        f"{summary}\n\n    Runs :func:`{gen_name}` to completion (its progress events are "
        f"discarded) and returns its result.\n{_strip_section(rest, 'Yields')}"
    )
    return func
