"""What :func:`~napari_meg_unet.train.fit` yields and raises.

Small frozen dataclasses, one per moment of a run; the CLI draws a progress
bar from them and the napari widget forwards them as worker signals.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class EpochStarted:
    """Epoch ``epoch`` (1-based) of ``n_epochs`` begins."""

    epoch: int
    n_epochs: int


@dataclass(frozen=True)
class BatchDone:
    """Optimisation step ``batch`` (1-based) of ``n_batches`` in ``epoch`` is done.

    ``loss`` is the training loss of the (global) batch, ``lr`` the learning
    rate used, ``samples_per_s`` the throughput of that step.
    """

    epoch: int
    batch: int
    n_batches: int
    loss: float
    lr: float
    samples_per_s: float


@dataclass(frozen=True)
class Validated:
    """Validation after ``epoch``: mean loss, per-event mean DLE (mm) and more metrics."""

    epoch: int
    loss: float
    dle_mm: float
    metrics: dict = field(default_factory=dict)


@dataclass(frozen=True)
class CheckpointWritten:
    """A checkpoint of ``kind`` (``"last"`` or ``"best"``) was written after ``epoch`` epochs."""

    path: str
    kind: str
    epoch: int


@dataclass(frozen=True)
class Stopped:
    """Training stopped on request during ``epoch`` after ``batch`` batches; state saved."""

    epoch: int
    batch: int
    checkpoint: str


@dataclass(frozen=True)
class Finished:
    """Training ended (all epochs or early stopping); ``checkpoint`` is the best one."""

    best_epoch: int
    best_dle_mm: float
    checkpoint: str


class TrainingError(RuntimeError):
    """Training cannot go on (the message says why and what to do)."""


class NonFiniteLossError(TrainingError):
    """The loss or the gradients became NaN or infinite."""


class DeviceMemoryError(TrainingError):
    """The accelerator ran out of memory."""
