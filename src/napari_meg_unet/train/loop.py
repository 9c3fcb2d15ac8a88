"""The training loop: :func:`fit` as a small state object and named steps.

A run (:class:`~.state._Run`) goes through :func:`~.state._plan` (device,
recipe or the resumed run's settings, mesh, batch geometry),
:func:`~.state._prepare_out_dir`, :func:`~.state._start_or_resume` (network,
optimiser, scheduler, class weights, RNG states, position), then per epoch
:func:`_run_epoch` (the batches; a stop request saves ``last.pt`` mid-epoch)
and :func:`_finish_epoch` (validation, history, early stopping,
checkpoints), and ends with :func:`_summary`.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Generator
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from .._config import takes_config
from .._docs import fill_doc
from .._io import write_json
from ..checkpoint import save_checkpoint
from ..configs import TrainingConfig
from ..dataset import ExampleSet, check_compatible, read_dataset
from ..dataset.streaming import StreamSpec
from ..progress import plain
from .checkpointing import _checkpoint_state, _last_good, _rng_states
from .distributed import _init_distributed
from .events import (
    BatchDone,
    CheckpointWritten,
    DeviceMemoryError,
    EpochStarted,
    Finished,
    NonFiniteLossError,
    Stopped,
    Validated,
)
from .settings import _torch_settings
from .state import (
    _check_out_dir,
    _new_partial,
    _plan,
    _prepare_out_dir,
    _Run,
    _start_or_resume,
)
from .step import _OOM_ERRORS, _free_accelerator_memory, _train_step
from .validation import _validate


# =========================================================================== fit
@fill_doc
@takes_config(TrainingConfig)
def fit(
    *, train, val, out_dir, config, resume=False, stop=None, mesh=None, overwrite=False,
    **overrides,
) -> Generator:  # fmt: skip
    """Train a network on an example set, yielding progress.

    Parameters
    ----------
    train : path-like | ExampleSet | StreamSpec
        The training example set, or a stream of examples simulated on the fly
        on the training device (:class:`~napari_meg_unet.dataset.StreamSpec`:
        head model, simulation and inverse configs, examples per epoch); a
        stream's position (global batches consumed) is stored in the
        checkpoints, so a resumed run sees exactly the batches an uninterrupted
        one would have.
    val : path-like | ExampleSet
        The validation set (fixed, on disk; e.g. :meth:`StreamSpec.make_val_set`);
        it must be compatible with the training data
        (:func:`~napari_meg_unet.dataset.check_compatible`).
    out_dir : path-like
        Receives ``last.pt`` (after every epoch, and mid-epoch on a stop),
        ``best.pt`` (lowest validation DLE) and ``history.json``.
    resume : bool
        Continue the run saved in ``out_dir/last.pt`` (model, optimiser,
        scheduler, RNG states, position); ``epochs`` may extend it, and the
        run's own model, preset and seed are kept.
    %(stop)s
        Here: before every batch; the state is saved to ``last.pt`` and the
        run ends with :class:`Stopped`.
    mesh : HeadModel | MeshHierarchy | None
        Needed by ``model="mesh"`` (the head model the data were made with).
    %(overwrite)s
    %(options)s
    **overrides
        Recipe keys (``optimizer``, ``momentum``, ``lr_decay``,
        ``weight_decay``, ``l1``, ``grad_clip_norm``, ``class_weighting``,
        ``patience``) or model hyper-parameters (e.g. ``root_features``,
        ``levels``, ``dropout``).

    Yields
    ------
    event : EpochStarted | BatchDone | Validated | CheckpointWritten | Stopped | Finished
        Only on rank 0 under DDP.

    Returns
    -------
    summary : dict
        ``best_epoch``, ``best_dle_mm``, ``best_checkpoint``, ``last_checkpoint``,
        ``epochs_done``, ``stopped``, ``early_stopped``, ``history``, ``training``
        (the generator returns it through ``StopIteration.value``).

    Raises
    ------
    NonFiniteLossError
        The loss or gradient became NaN/Inf (the weights are not updated and
        the last checkpoint is left as it was).
    DeviceMemoryError
        Out of accelerator memory (try a smaller ``batch_size``).
    IncompatibleDataError
        Train and val sets (or the resumed run and the data) do not match.

    Notes
    -----
    ``model``/``preset`` None mean ``"thesis"``/``"small"`` for a new run; the
    preset selects the recipe (:func:`napari_meg_unet.models.training_defaults`),
    which ``epochs``, ``lr``, ``batch_size`` and ``**overrides`` override.
    ``num_threads`` None uses the cores up to 16, divided among the local ranks
    (a set ``OMP_NUM_THREADS`` is kept); threads and determinism are restored
    afterwards. Validation, ``best.pt`` and early stopping follow the validation
    set's per-event mean DLE (:mod:`napari_meg_unet.train.validation`).
    """
    if stop is not None and not (isinstance(stop, threading.Event) or callable(stop)):
        raise ValueError("stop must be None, a threading.Event or a callable returning a bool.")
    train_set, val_set = _read_sets(train, val)
    out_dir = Path(out_dir)
    _check_out_dir(out_dir, resume=resume, overwrite=overwrite)
    dist = _init_distributed(config.device)
    try:
        run = _plan(config, train_set, val_set, out_dir, stop=stop, resume=resume, mesh=mesh,
                    overrides=overrides, dist=dist)  # fmt: skip
        _prepare_out_dir(run, overwrite=overwrite)
        with _torch_settings_for(run):
            _start_or_resume(run)
            return (yield from _epochs(run))
    finally:
        if dist.created and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


#: Alias following the package's ``iter_<name>`` convention for generators.
iter_fit = fit

train = plain(fit, name="train")


def _read_sets(train, val) -> tuple[ExampleSet | StreamSpec, ExampleSet]:
    """The training set (or stream) and the validation set, which must be compatible."""
    streaming = isinstance(train, StreamSpec)
    train_set = train if streaming else read_dataset(train)
    val_set = read_dataset(val)
    names = ("the training stream" if streaming else "the training set", "the validation set")
    check_compatible(train_set.meta, val_set.meta, names=names)
    return train_set, val_set


def _torch_settings_for(run: _Run):
    """:func:`~.settings._torch_settings` for the run (restored when the block ends)."""
    config = run.config
    return _torch_settings(
        device=run.device, deterministic=config.deterministic, num_threads=config.num_threads,
        local_world=run.dist.local_world, compile=config.compile,
    )  # fmt: skip


# =========================================================================== epochs
def _epochs(run: _Run) -> Generator:
    """Train the remaining epochs; returns the summary."""
    for epoch_index in range(run.epochs_done, run.hp["epochs"]):
        stopped = yield from _run_epoch(run, epoch_index)
        if stopped:
            return _summary(run, stopped=True)
        yield from _finish_epoch(run, epoch_index + 1)
        if run.early_stopped:
            break
    result = _summary(run, stopped=False)
    if run.main:
        yield Finished(
            best_epoch=run.best["epoch"],
            best_dle_mm=run.best["dle_mm"],
            checkpoint=result["best_checkpoint"],
        )
    return result


def _run_epoch(run: _Run, epoch_index: int) -> Generator:
    """The batches of one epoch (from ``run.batch`` on); returns True when stopped on request."""
    epoch = epoch_index + 1
    start = run.batch
    if run.main:
        yield EpochStarted(epoch=epoch, n_epochs=run.hp["epochs"])
    loader = _epoch_loader(run, epoch_index, start)
    run.epoch_start = time.perf_counter()
    for k, (x, y, idx, *positions) in enumerate(loader, start=start):
        if run.dist.any(_stop_requested(run.stop), run.device):
            run.batch = k
            path = _checkpoint(run, "last")
            if run.main:
                yield CheckpointWritten(path=path, kind="last", epoch=epoch_index)
                yield Stopped(epoch=epoch, batch=k, checkpoint=path)
            return True
        t0 = time.perf_counter()
        loss, grad_norm = _guarded_train_step(run, epoch, k, x, y, idx, positions)
        elapsed = time.perf_counter() - t0
        run.partial["loss_sum"] += loss
        run.partial["grad_norm_sum"] += grad_norm
        run.partial["n_batches"] += 1
        run.batch = k + 1
        if run.main:
            yield BatchDone(
                epoch=epoch, batch=k + 1, n_batches=run.n_batches, loss=loss,
                lr=float(run.step.optimizer.param_groups[0]["lr"]),
                samples_per_s=run.global_batch / elapsed if elapsed > 0 else math.inf,
            )  # fmt: skip
    return False


def _guarded_train_step(run: _Run, epoch: int, k: int, x, y, idx, positions
                        ) -> tuple[float, float]:  # fmt: skip
    """:func:`_train_step`, with errors that say where it failed and what is kept.

    ``positions``: the stream batch's true positions (``[tensor]``), or ``[]``
    for a set's batch, whose positions a centre head looks up by ``idx``.
    """
    true_positions = None
    if run.step.centre is not None:
        true_positions = (positions[0] if positions
                          else run.train_set.true_positions[idx.numpy()])  # fmt: skip
    try:
        return _train_step(run.step, x, y, true_positions)
    except NonFiniteLossError as err:
        raise NonFiniteLossError(
            _nonfinite_message(err, epoch, k + 1, x, idx, run.train_set, run.last_path)
        ) from None
    except _OOM_ERRORS:
        _free_accelerator_memory(run.device)
        global_batch, half = run.global_batch, max(1, run.global_batch // 2)
        raise DeviceMemoryError(
            f"Out of memory on {run.device} in epoch {epoch}, batch {k + 1} with "
            f"batch_size={global_batch} ({run.local_batch} per process). Use a smaller "
            f"batch size (e.g. batch_size={half}, CLI --batch-size {half}), amp='bf16' or a "
            "smaller preset; " + _last_good(run.last_path)
        ) from None


def _finish_epoch(run: _Run, epoch: int) -> Generator:
    """Step the schedule, validate, record the epoch and write the checkpoints and history."""
    lr_used = float(run.step.optimizer.param_groups[0]["lr"])
    run.scheduler.step()
    metrics = _validate_epoch(run, epoch)
    improved = _record_epoch(run, epoch, metrics, lr_used)
    if run.main:
        yield Validated(
            epoch=epoch, loss=metrics["loss"], dle_mm=metrics["dle_mm"], metrics=metrics
        )
    path = _checkpoint(run, "last")
    if run.main:
        yield CheckpointWritten(path=path, kind="last", epoch=epoch)
    if improved:
        path = _checkpoint(run, "best")
        if run.main:
            yield CheckpointWritten(path=path, kind="best", epoch=epoch)
    if run.main:
        write_json(run.history_path, _summary(run, stopped=False))
    run.dist.barrier()


def _validate_epoch(run: _Run, epoch: int) -> dict:
    try:
        return _validate(run.step, run.val_set, run.val_data, batch_size=max(run.local_batch, 1))
    except _OOM_ERRORS:
        _free_accelerator_memory(run.device)
        raise DeviceMemoryError(
            f"Out of memory on {run.device} while validating after epoch {epoch}; use a "
            "smaller batch size; " + _last_good(run.last_path)
        ) from None


def _record_epoch(run: _Run, epoch: int, metrics: dict, lr_used: float) -> bool:
    """Append the epoch to the history, track the best epoch and early stopping.

    Returns whether the validation DLE improved.
    """
    part = run.partial
    dle = metrics["dle_mm"]
    improved = math.isfinite(dle) and dle < run.best["dle_mm"]
    run.history.append(
        {
            "epoch": epoch,
            "train_loss": part["loss_sum"] / max(1, part["n_batches"]),
            "grad_norm_mean": part["grad_norm_sum"] / max(1, part["n_batches"]),
            "lr": lr_used,
            "val_loss": metrics["loss"],
            "dle_mm": dle,
            "val": metrics,
            "time_s": time.perf_counter() - run.epoch_start,
        }
    )
    run.epochs_done = epoch
    run.batch = 0
    run.partial = _new_partial()
    if improved:
        run.best = {"epoch": epoch, "dle_mm": dle}
        run.bad_epochs = 0
    else:
        run.bad_epochs += 1
    patience = run.hp.get("patience")
    if run.config.early_stopping and patience is not None and run.bad_epochs >= patience:
        run.early_stopped = True
    return improved


# =========================================================================== output
def _checkpoint(run: _Run, kind: str) -> str | None:
    """Write ``last.pt`` or ``best.pt`` (rank 0); every rank takes part (RNG states)."""
    rng = _rng_states(run.dist)  # collective: every rank takes part
    if not run.main:
        return None
    path = run.last_path if kind == "last" else run.best_path
    save_checkpoint(path, _checkpoint_state(run, kind, rng))
    return str(path)


def _summary(run: _Run, *, stopped: bool) -> dict:
    """What :func:`fit` returns (and ``history.json`` holds)."""
    return {
        "out_dir": str(run.out_dir),
        "best_checkpoint": str(run.best_path) if run.best_path.exists() else None,
        "last_checkpoint": str(run.last_path) if run.last_path.exists() else None,
        "best_epoch": run.best["epoch"],
        "best_dle_mm": run.best["dle_mm"],
        "epochs_done": run.epochs_done,
        "stopped": stopped,
        "early_stopped": run.early_stopped,
        "history": run.history,
        "training": run.hp,
        "model_config": dict(run.net.config),
        "device": str(run.device),
        "world_size": run.dist.world,
    }


# =========================================================================== helpers
def _stop_requested(stop) -> bool:
    if stop is None:
        return False
    if isinstance(stop, threading.Event):
        return stop.is_set()
    return bool(stop())


def _nonfinite_message(err, epoch, batch, x, idx, train_set, last_path) -> str:
    bad = ~torch.isfinite(x.reshape(len(x), -1)).all(dim=1)
    if bool(bad.any()):
        examples = idx[bad].tolist()[:5]
        if isinstance(train_set, StreamSpec):
            where = (
                f" The batch holds non-finite inputs (stream examples {examples} of "
                f"{train_set.describe()}); check the head model and the simulation options."
            )
        else:
            where = (
                f" The batch holds non-finite inputs (examples {examples} of "
                f"{str(train_set.path)!r}); rebuild or clean the dataset."
            )
    else:
        where = " Try a lower learning rate or gradient clipping (grad_clip_norm)."
    return (
        f"Training stopped in epoch {epoch}, batch {batch}: {err}. The weights were not "
        f"updated with it and {_last_good(last_path)}" + where
    )


def _epoch_loader(run: _Run, epoch_index: int, start: int):
    """(inputs, targets, ids) of the epoch's batches from ``start`` on (set or stream)."""
    if run.streaming:
        return _stream_batches(run, epoch_index, start)
    run.sampler.set_epoch(epoch_index)
    order = list(run.sampler)
    size = run.local_batch
    batches = [order[k * size : (k + 1) * size] for k in range(run.n_batches)]
    return _batches(
        run.train_data, batches[start:], run.config.num_workers, run.device, run.seed, epoch_index
    )


def _stream_batches(run: _Run, epoch_index: int, start: int):
    """The stream's local batches of this epoch from ``start`` on (global batch counters).

    Made on the training device in this process, or on the CPU in
    ``num_workers`` DataLoader workers (each takes every ``num_workers``-th
    batch; the loader returns them in order, so the batches do not depend on it).
    """
    first = epoch_index * run.n_batches
    workers = run.config.num_workers
    stream = run.train_set.stream_dataset(
        batch_size=run.local_batch, rank=run.dist.rank, world=run.dist.world,
        start=first + start, stop=first + run.n_batches, device=run.stream_device,
    )  # fmt: skip
    if workers == 0:
        return iter(stream)
    return iter(DataLoader(stream, batch_size=None, num_workers=workers,
                           pin_memory=run.device.type == "cuda"))  # fmt: skip


def _batches(dataset, batches, num_workers, device, seed, epoch_index):
    """Iterate (inputs, targets, indices) over precomputed index batches."""
    if num_workers == 0:
        return (dataset[b] for b in batches)
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch_index)
    return iter(
        DataLoader(
            dataset,
            sampler=batches,
            batch_size=None,
            num_workers=num_workers,
            pin_memory=device.type == "cuda",
            generator=generator,
        )
    )
