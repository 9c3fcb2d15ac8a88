"""Size guards: estimate what a step will hold in memory and write to disk before it starts.

A step calls :func:`check_resources` with its estimate; the estimate is logged,
and the step is refused with a clear message (naming the sizes, what is
available and ``force=True`` / ``--force``) when memory or the free disk space
of the output's file system is insufficient.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ._logging import logger as package_logger

#: The estimates are logged here; the command line shows this logger at INFO level.
logger = package_logger.getChild("resources")

#: Fraction of the available memory a step may plan to use.
MEMORY_FRACTION = 0.8
#: Free disk space kept in reserve after a step's output (bytes).
DISK_RESERVE = 256 * 2**20


class InsufficientResourcesError(MemoryError):
    """The estimated memory or disk use exceeds what is available."""


def format_bytes(n: float) -> str:
    """``1536`` -> ``'1.5 KiB'``."""
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError  # pragma: no cover


def available_memory() -> int | None:
    """Bytes of memory available to new allocations (``MemAvailable``), None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return None


def free_disk(path) -> int | None:
    """Free bytes on the file system that will hold ``path`` (its nearest existing parent)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return shutil.disk_usage(path).free
    except OSError:  # pragma: no cover
        return None


@dataclass(frozen=True)
class ResourceEstimate:
    """What a step will hold in memory and write to disk, in bytes."""

    what: str
    memory: int = 0
    disk: int = 0

    def describe(self) -> str:
        parts = [f"{format_bytes(self.memory)} in memory"]
        if self.disk:
            parts.append(f"{format_bytes(self.disk)} on disk")
        return f"{self.what}: about " + " and ".join(parts)


def check_resources(estimate: ResourceEstimate, *, out=None, force: bool = False) -> None:
    """Log ``estimate`` and refuse it when memory or disk would not suffice.

    With ``force`` the estimate is neither checked nor shown (DEBUG level): the
    caller has checked it already (e.g. the CLI before the core step) or the
    user overrides the guard.

    Parameters
    ----------
    estimate : ResourceEstimate
        The step's estimate.
    out : path-like | None
        Where the output will be written (its file system's free space is checked).
    force : bool
        Only log; never refuse (CLI: ``--force``).

    Raises
    ------
    InsufficientResourcesError
        Naming the estimate, what is available and how to proceed.
    """
    if force:  # the caller has checked already, or the user overrides the guard
        logger.debug(estimate.describe() + " (not checked: force)")
        return
    logger.info(estimate.describe())
    problems = []
    mem = available_memory()
    if mem is not None and estimate.memory > MEMORY_FRACTION * mem:
        problems.append(
            f"it needs {format_bytes(estimate.memory)} of memory but only "
            f"{format_bytes(mem)} is available"
        )
    if out is not None and estimate.disk:
        free = free_disk(out)
        if free is not None and estimate.disk + DISK_RESERVE > free:
            problems.append(
                f"it writes {format_bytes(estimate.disk)} but {str(out)!r} has only "
                f"{format_bytes(free)} free"
            )
    if problems:
        raise InsufficientResourcesError(
            f"{estimate.what}: " + "; ".join(problems) + ". Ask for less (fewer events, a "
            "coarser head model, float32) or pass force=True (CLI: --force) to try anyway."
        )
