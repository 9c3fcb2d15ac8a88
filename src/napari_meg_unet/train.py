"""Training engine: fit a U-Net on example sets, checkpoint, resume, predict.

:func:`fit` is a generator yielding small typed events (:class:`EpochStarted`,
:class:`BatchDone`, :class:`Validated`, :class:`CheckpointWritten`,
:class:`Stopped`, :class:`Finished`) and returning a summary dict; the CLI
draws a progress bar from them and the napari widget forwards them as worker
signals. Nothing here imports Qt.

Reproducibility
---------------
Everything random is seeded from ``seed``: weights (``torch.manual_seed``
before the model is built), the sample order (a
:class:`~torch.utils.data.DistributedSampler` seeded with ``seed`` and the
epoch, also in a single process), dropout (the global torch RNG). Checkpoints
store the model, optimiser, scheduler and every RNG state, and ``last.pt`` is
written after every epoch (and on a cooperative stop, mid-epoch, with the
position in the epoch), so a resumed run continues exactly where the
interrupted one was: with ``deterministic=True`` on a CPU the weights equal
those of an uninterrupted run.

Distributed training
--------------------
Under ``torchrun`` (``WORLD_SIZE > 1`` in the environment) the same
:func:`fit` initialises the process group (NCCL on CUDA, gloo otherwise),
wraps the model in :class:`~torch.nn.parallel.DistributedDataParallel` and
shards every global batch over the ranks: ``batch_size`` is the *global*
batch size and must be divisible by the world size, so one optimisation step
sees the same examples as a single-process step (the sampler's permutation
does not depend on the number of ranks). Only rank 0 yields events and writes
checkpoints. Batch normalisation is converted to
:class:`~torch.nn.SyncBatchNorm` on CUDA, so DDP equals single-process
training; PyTorch's SyncBatchNorm does not run on CPU, so on CPU (gloo) every
rank normalises with its own shard's statistics and results equal a
single-process run only for networks without batch normalisation (or with
``norm`` layers that do not depend on the batch).
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import random
import sys
import threading
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler

from . import __version__
from ._io import write_json
from .checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_FORMAT_VERSION,
    check_checkpoint_compatible,
    get_rng_state,
    load_checkpoint,
    save_checkpoint,
    set_rng_state,
)
from .dataset import ExampleSet, IncompatibleDataError, check_compatible, read_dataset
from .progress import Progress, run

#: Values accepted for ``amp``.
AMP_MODES = ("auto", "bf16", "off")
#: Examples read per chunk when computing class weights from targets.
_TARGET_CHUNK = 256


# =========================================================================== events
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


# =========================================================================== helpers
def resolve_device(device="auto", *, local_rank: int = 0) -> torch.device:
    """The torch device for ``device``.

    Parameters
    ----------
    device : str | torch.device
        ``"auto"`` (CUDA, then Apple MPS, then CPU; under DDP the rank's local
        GPU), or an explicit device such as ``"cpu"``, ``"cuda"``, ``"cuda:1"``,
        ``"mps"``.
    local_rank : int
        GPU index used by ``"auto"`` (and by a bare ``"cuda"``) under DDP.

    Returns
    -------
    device : torch.device
    """
    if isinstance(device, torch.device):
        dev = device
    elif device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    elif isinstance(device, str):
        try:
            dev = torch.device(device)
        except RuntimeError:
            raise ValueError(
                f"device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got {device!r}."
            ) from None
    else:
        raise ValueError(f"device must be a str or torch.device, got {type(device).__name__}.")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device={str(device)!r} was requested but CUDA is not available.")
        index = local_rank if dev.index is None else dev.index
        if index >= torch.cuda.device_count():
            raise ValueError(
                f"device={str(device)!r}: only {torch.cuda.device_count()} CUDA device(s) exist."
            )
        return torch.device("cuda", index)
    if dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ValueError("device='mps' was requested but MPS is not available.")
    elif dev.type != "cpu":
        raise ValueError(f"Unsupported device {str(device)!r}; use 'auto', 'cpu', 'cuda' or 'mps'.")
    return dev


def _amp_dtype(amp, device: torch.device):
    if amp is True:
        amp = "bf16"
    elif amp is False or amp is None:
        amp = "off"
    if amp not in AMP_MODES:
        raise ValueError(f"amp must be one of {AMP_MODES} (or True/False), got {amp!r}.")
    if amp == "off":
        return None
    if amp == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return None
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(f"amp='bf16' is not supported on {device}.")
    return torch.bfloat16


def _default_threads(local_world_size: int) -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS / Windows
        cores = os.cpu_count() or 1
    return max(1, min(cores // max(1, local_world_size), 16))


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    try:
        mne_version = version("mne")
    except PackageNotFoundError:  # pragma: no cover - mne is a dependency
        mne_version = None
    return {
        "napari_meg_unet": __version__,
        "torch": str(torch.__version__),
        "numpy": np.__version__,
        "mne": mne_version,
        "python": platform.python_version(),
    }


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - the legacy global state is what libraries use
    torch.manual_seed(seed)


def _check_int(value, name, *, minimum=1):
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def _check_lr(value, name="lr"):
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}.")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}.")
    return float(value)


def _stop_requested(stop) -> bool:
    if stop is None:
        return False
    if isinstance(stop, threading.Event):
        return stop.is_set()
    return bool(stop())


def _models():
    from . import models

    return models


def _build_model(name, *, preset, meta, mesh, overrides) -> torch.nn.Module:
    models = _models()
    kwargs = dict(
        in_channels=int(meta["in_channels"]),
        n_rows=int(meta["n_rows"]),
        n_times=int(meta["n_times"]),
        preset=preset,
    )
    if mesh is not None:
        kwargs["mesh"] = mesh
    return models.build_model(name, **kwargs, **overrides)


def _rebuild_model(checkpoint: dict, mesh) -> torch.nn.Module:
    """Rebuild a checkpoint's network from its stored config (weights not loaded)."""
    models = _models()
    config = dict(checkpoint["model_config"])
    name = config.pop("name", checkpoint["model_name"])
    kwargs = {}
    if mesh is not None:
        kwargs["mesh"] = mesh
    return models.build_model(name, **config, **kwargs)


def _mesh_for(model_name, mesh, meta):
    """A MeshHierarchy for mesh models (from a HeadModel, a hierarchy or a description)."""
    if mesh is None:
        if model_name == "mesh":
            raise ValueError(
                "model='mesh' needs mesh=: pass the HeadModel the data were made with (or "
                "MeshHierarchy.from_headmodel(hm, hemi))."
            )
        return None
    from .headmodel import HeadModel
    from .models.mesh import MeshHierarchy

    if isinstance(mesh, HeadModel):
        if mesh.fingerprint != meta.get("headmodel_fingerprint"):
            raise IncompatibleDataError(
                f"mesh: the head model given ({mesh.fingerprint!r}) is not the one the data were "
                f"made with ({meta.get('headmodel_fingerprint')!r})."
            )
        mesh = MeshHierarchy.from_headmodel(mesh, meta["hemi"])
    elif isinstance(mesh, dict):
        mesh = MeshHierarchy.from_dict(mesh)
    elif not isinstance(mesh, MeshHierarchy):
        raise ValueError(
            f"mesh must be a HeadModel, a MeshHierarchy or its to_dict(), got "
            f"{type(mesh).__name__}."
        )
    if mesh.n_vertices[0] != int(meta["n_rows"]):
        raise IncompatibleDataError(
            f"mesh: the hierarchy has {mesh.n_vertices[0]} finest vertices but the data have "
            f"{meta['n_rows']} rows."
        )
    if mesh.hemi and mesh.hemi != meta.get("hemi"):
        raise IncompatibleDataError(
            f"mesh: the hierarchy is for hemi={mesh.hemi!r} but the data are hemi="
            f"{meta.get('hemi')!r}."
        )
    return mesh


def _class_weights(spec, targets: np.ndarray):
    """Loss class weights from the recipe's ``class_weighting``.

    ``"inverse-frequency"``: from the training targets (counted chunk by chunk);
    None or ``"none"``: unweighted; two numbers: those weights.
    """
    if spec is None or spec == "none":
        return None
    if isinstance(spec, str):
        if spec != "inverse-frequency":
            raise ValueError(
                "class_weighting must be 'inverse-frequency', 'none'/None or two numbers, "
                f"got {spec!r}."
            )
        return torch.as_tensor(_models().class_weights_from_targets(targets), dtype=torch.float32)
    weights = torch.as_tensor(spec, dtype=torch.float32).reshape(-1)
    if weights.numel() != 2 or not torch.all(weights > 0) or not torch.isfinite(weights).all():
        raise ValueError(f"class_weighting must be two positive numbers, got {spec!r}.")
    return weights


# =========================================================================== distributed
@dataclass
class _Dist:
    world: int = 1
    rank: int = 0
    local_rank: int = 0
    local_world: int = 1
    created: bool = False

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            torch.distributed.all_reduce(value)
            value = value / self.world
        return value

    def any(self, flag: bool, device) -> bool:
        if not self.enabled:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=device)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        return bool(t.item() > 0)

    def gather(self, obj) -> list:
        if not self.enabled:
            return [obj]
        out = [None] * self.world
        torch.distributed.all_gather_object(out, obj)
        return out


def _init_distributed(device) -> _Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    import torch.distributed as dist

    created = False
    if not dist.is_initialized():
        use_nccl = torch.cuda.is_available() and str(device) not in ("cpu", "mps")
        dist.init_process_group("nccl" if use_nccl else "gloo")
        created = True
    return _Dist(
        world=dist.get_world_size(),
        rank=dist.get_rank(),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        local_world=int(os.environ.get("LOCAL_WORLD_SIZE", str(world))),
        created=created,
    )


# =========================================================================== optimisation
def _hyperparameters(model, preset, *, epochs, lr, batch_size, overrides) -> tuple[dict, dict]:
    """Training hyper-parameters (defaults + explicit values) and the model overrides."""
    hp = dict(_models().training_defaults(model, preset))
    model_overrides = {}
    for key, value in overrides.items():
        if key in hp:
            hp[key] = value
        else:
            model_overrides[key] = value
    for key, value in (("epochs", epochs), ("lr", lr), ("batch_size", batch_size)):
        if value is not None:
            hp[key] = value
    hp["epochs"] = _check_int(hp["epochs"], "epochs")
    hp["batch_size"] = _check_int(hp["batch_size"], "batch_size")
    hp["lr"] = _check_lr(hp["lr"])
    if hp.get("optimizer") not in ("sgd", "adamw"):
        raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {hp.get('optimizer')!r}.")
    for key in ("weight_decay", "l1"):
        value = hp.get(key) or 0.0
        if not isinstance(value, int | float) or value < 0:
            raise ValueError(f"{key} must be a non-negative number, got {value!r}.")
        hp[key] = float(value)
    clip = hp.get("grad_clip_norm")
    if clip is not None and (not isinstance(clip, int | float) or not clip > 0):
        raise ValueError(f"grad_clip_norm must be None or a positive number, got {clip!r}.")
    decay = hp.get("lr_decay")
    if decay is not None and (not isinstance(decay, int | float) or not 0 < decay <= 1):
        raise ValueError(f"lr_decay must be None or a number in (0, 1], got {decay!r}.")
    patience = hp.get("patience")
    if patience is not None:
        hp["patience"] = _check_int(patience, "patience")
    return hp, model_overrides


def _make_optimizer(params, hp) -> torch.optim.Optimizer:
    if hp["optimizer"] == "sgd":
        momentum = hp.get("momentum")
        return torch.optim.SGD(
            params,
            lr=hp["lr"],
            momentum=0.0 if momentum is None else float(momentum),
            weight_decay=hp["weight_decay"],
        )
    return torch.optim.AdamW(params, lr=hp["lr"], weight_decay=hp["weight_decay"])


def _make_scheduler(optimizer, hp):
    """Per-epoch schedule: ``ExponentialLR(lr_decay)`` (constant if lr_decay is None)."""
    gamma = hp.get("lr_decay")
    return torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=1.0 if gamma is None else gamma)


@dataclass
class _Step:
    """What one optimisation step needs."""

    model: torch.nn.Module
    raw: torch.nn.Module
    optimizer: torch.optim.Optimizer
    class_weights: torch.Tensor | None
    l1: float
    clip: float | None
    amp_dtype: torch.dtype | None
    device: torch.device
    channels_last: bool
    dist: _Dist


def _to_device(ctx: _Step, x: torch.Tensor, y: torch.Tensor):
    non_blocking = ctx.device.type == "cuda"
    if ctx.channels_last:
        x = x.to(ctx.device, memory_format=torch.channels_last, non_blocking=non_blocking)
    else:
        x = x.to(ctx.device, non_blocking=non_blocking)
    return x, y.to(ctx.device, non_blocking=non_blocking).long()


def _train_step(ctx: _Step, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """One optimisation step on a (local) batch; returns the global loss and gradient norm.

    The loss is all-reduced before the step so every rank takes the same
    decision on a non-finite loss; nothing is updated in that case.
    """
    models = _models()
    x, y = _to_device(ctx, x, y)
    ctx.model.train()
    ctx.optimizer.zero_grad(set_to_none=True)
    with torch.autocast(
        device_type=ctx.device.type, dtype=ctx.amp_dtype, enabled=ctx.amp_dtype is not None
    ):
        logits = ctx.model(x)
    loss = models.loss_fn(logits.float(), y, class_weights=ctx.class_weights)
    if ctx.dist.enabled and ctx.class_weights is not None:
        # loss_fn is the weighted mean sum(w CE) / sum(w) over this rank's shard; rescale
        # it to sum(w CE) / (mean over ranks of sum(w)) so that DDP's gradient average is
        # the weighted mean over the whole global batch, as in one process.
        local = ctx.class_weights[y].sum().reshape(1)
        loss = loss * (local / ctx.dist.mean(local.detach().clone())).squeeze(0)
    if ctx.l1:
        loss = loss + ctx.l1 * models.l1_penalty(ctx.raw)
    loss.backward()
    value = ctx.dist.mean(loss.detach().float().reshape(1))
    loss_value = float(value.item())
    if not math.isfinite(loss_value):
        raise NonFiniteLossError(f"the loss became {loss_value}")
    max_norm = ctx.clip if ctx.clip else math.inf
    grad_norm = float(torch.nn.utils.clip_grad_norm_(ctx.raw.parameters(), max_norm))
    if not math.isfinite(grad_norm):
        raise NonFiniteLossError(f"the gradient norm became {grad_norm}")
    ctx.optimizer.step()
    return loss_value, grad_norm


_OOM_ERRORS = tuple(
    {getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError), torch.cuda.OutOfMemoryError}
)


def _free_accelerator_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps" and hasattr(torch, "mps"):
        torch.mps.empty_cache()


# =========================================================================== validation
def _example_dle(prob_t, target_t, true_positions, positions) -> float:
    """DLE (mm) of one example: window-mean probability map vs the true sources."""
    from .metrics import peak_localisation_error, window_map

    true_positions = true_positions[~np.isnan(true_positions).any(axis=1)]
    if len(true_positions) == 0:
        return math.nan
    active = target_t.any(axis=0)
    window = active if active.any() else slice(None)
    estimate = window_map(prob_t, window)
    return float(peak_localisation_error(estimate, positions, true_positions)["dle_mm"])


def _validate(ctx: _Step, examples: ExampleSet, dataset, *, batch_size: int) -> dict:
    """Validation loss and DLE on this rank's shard, combined over ranks."""
    from .metrics import aggregate

    models = _models()
    model = ctx.raw
    model.eval()
    indices = np.arange(ctx.dist.rank, len(examples), ctx.dist.world)
    positions = np.asarray(examples.positions)
    # The loss is accumulated as numerator and denominator of the (weighted) pixel mean,
    # so it is the loss of the whole set, whatever the batching or sharding.
    local = {"index": [], "loss_num": [], "loss_den": [], "dle": []}
    try:
        with torch.inference_mode():
            for start in range(0, len(indices), batch_size):
                batch_idx = indices[start : start + batch_size]
                x, y, _ = dataset[batch_idx]
                x, y = _to_device(ctx, x, y)
                with torch.autocast(
                    device_type=ctx.device.type,
                    dtype=ctx.amp_dtype,
                    enabled=ctx.amp_dtype is not None,
                ):
                    logits = model(x)
                logits = logits.float()
                for j in range(len(batch_idx)):
                    loss = models.loss_fn(
                        logits[j : j + 1], y[j : j + 1], class_weights=ctx.class_weights
                    )
                    if ctx.class_weights is None:
                        weight = float(y[j].numel())
                    else:
                        weight = float(ctx.class_weights[y[j]].sum())
                    local["loss_num"].append(float(loss) * weight)
                    local["loss_den"].append(weight)
                probs = _class1(models.probabilities(logits)).cpu().numpy()
                targets = y.cpu().numpy().astype(bool)
                true_pos = np.asarray(examples.true_positions[np.sort(batch_idx)])
                true_pos = true_pos[np.argsort(np.argsort(batch_idx))]
                for j, i in enumerate(batch_idx):
                    local["index"].append(int(i))
                    local["dle"].append(_example_dle(probs[j], targets[j], true_pos[j], positions))
    finally:
        model.train()
    parts = ctx.dist.gather(local)
    index = np.concatenate([np.asarray(p["index"], int) for p in parts])
    loss_num = np.concatenate([np.asarray(p["loss_num"], float) for p in parts])
    loss_den = np.concatenate([np.asarray(p["loss_den"], float) for p in parts])
    dle = np.concatenate([np.asarray(p["dle"], float) for p in parts])
    order = np.argsort(index)
    index, dle = index[order], dle[order]
    events = np.asarray(examples.events)[index]
    metrics = {
        "loss": float(loss_num[order].sum() / loss_den[order].sum()),
        "n_examples": int(len(index)),
        "n_events": int(len(np.unique(events))),
    }
    if np.isnan(dle).all():
        metrics.update(dle_mm=math.nan, dle_ci_low=math.nan, dle_ci_high=math.nan)
        metrics["dle_median_mm"] = math.nan
    else:
        agg = aggregate(dle, events, n_boot=200, seed=0, nan_policy="omit")
        keep = ~np.isnan(dle)
        _, inverse = np.unique(events[keep], return_inverse=True)
        per_event = np.bincount(inverse, weights=dle[keep]) / np.bincount(inverse)
        metrics.update(
            dle_mm=agg["mean"],
            dle_ci_low=agg["ci_low"],
            dle_ci_high=agg["ci_high"],
            dle_median_mm=float(np.median(per_event)),
        )
    return metrics


def _class1(probs: torch.Tensor) -> torch.Tensor:
    """Probability of the active class, (B, n_rows, n_times), from ``probabilities``' output."""
    if probs.ndim == 4:
        return probs[:, 1]
    return probs


# =========================================================================== sync batch norm
class _AllReduceSum(torch.autograd.Function):
    """Differentiable sum over the ranks: the gradient is summed over the ranks too."""

    @staticmethod
    def forward(ctx, tensor, group):
        ctx.group = group
        out = tensor.clone()
        torch.distributed.all_reduce(out, group=group)
        return out

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone()
        torch.distributed.all_reduce(grad, group=ctx.group)
        return grad, None


class _AllReduceBatchNorm2d(torch.nn.BatchNorm2d):
    """BatchNorm2d normalising with statistics over all ranks, on any backend (gloo too).

    :class:`torch.nn.SyncBatchNorm` only runs on GPUs; this one uses the
    differentiable all-reduce :class:`_AllReduceSum`, so the
    forward pass and the gradients equal those of one process seeing the whole
    global batch. Mean and variance are computed in two passes (sum, then
    squared deviations) for accuracy. Used by :func:`fit` under DDP off CUDA.
    """

    group = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and torch.distributed.is_initialized()):
            return super().forward(x)
        self._check_input_dim(x)
        dims = (0, 2, 3)
        xf = x.float()
        n_local = torch.tensor([xf.numel() / xf.shape[1]], dtype=torch.float32, device=x.device)
        total = _AllReduceSum.apply(torch.cat([xf.sum(dims), n_local]), self.group)
        n = total[-1]
        mean = total[:-1] / n
        centred = xf - mean[None, :, None, None]
        var = _AllReduceSum.apply((centred * centred).sum(dims), self.group) / n
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                if self.momentum is None:
                    factor = 1.0 / float(self.num_batches_tracked)
                else:
                    factor = self.momentum
                self.running_mean.mul_(1 - factor).add_(factor * mean.detach())
                unbiased = var.detach() * (n / (n - 1)).clamp_min(0)
                self.running_var.mul_(1 - factor).add_(factor * unbiased)
        y = centred * torch.rsqrt(var + self.eps)[None, :, None, None]
        if self.affine:
            y = y * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return y.to(x.dtype)


def _sync_batch_norm(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Make every BatchNorm2d synchronise its statistics over the ranks."""
    if device.type == "cuda":
        return torch.nn.SyncBatchNorm.convert_sync_batchnorm(module)
    group = torch.distributed.new_group(backend="gloo")

    def convert(mod):
        if isinstance(mod, torch.nn.BatchNorm2d) and not isinstance(mod, _AllReduceBatchNorm2d):
            new = _AllReduceBatchNorm2d(
                mod.num_features,
                eps=mod.eps,
                momentum=mod.momentum,
                affine=mod.affine,
                track_running_stats=mod.track_running_stats,
            ).to(device)
            new.group = group
            if mod.affine:
                new.weight = mod.weight
                new.bias = mod.bias
            if mod.track_running_stats:
                new.running_mean = mod.running_mean
                new.running_var = mod.running_var
                new.num_batches_tracked = mod.num_batches_tracked
            new.train(mod.training)
            return new
        for name, child in mod.named_children():
            mod.add_module(name, convert(child))
        return mod

    return convert(module)


# =========================================================================== checkpoints
def _rng_states(dctx: _Dist) -> list:
    return dctx.gather(get_rng_state())


def _restore_rng(states: list, dctx: _Dist) -> None:
    state = states[dctx.rank] if len(states) == dctx.world else states[0]
    set_rng_state(state)


def _inverse_params(meta: dict) -> dict:
    return {key: meta.get(key) for key in ("methods", "lambda2", "nave", "loose", "depth")}


# =========================================================================== fit
def fit(
    *,
    model=None,
    preset=None,
    train,
    val,
    out_dir,
    epochs=None,
    lr=None,
    batch_size=None,
    device="auto",
    amp="auto",
    seed=0,
    deterministic=False,
    resume=False,
    stop=None,
    mesh=None,
    early_stopping=True,
    compile=False,
    num_threads=None,
    num_workers=0,
    overwrite=False,
    **overrides,
) -> Generator:
    """Train a network on an example set, yielding typed events (a generator).

    Parameters
    ----------
    model : ``"thesis"`` | ``"mesh"`` | None
        Network (:func:`napari_meg_unet.models.build_model`); None means
        ``"thesis"`` for a new run and the run's network when resuming.
    preset : str | None
        Model preset, which also selects the training recipe
        (:func:`napari_meg_unet.models.training_defaults`); None means
        ``"small"`` for a new run and the run's preset when resuming.
    train, val : path-like | ExampleSet
        Training and validation example sets; they must be compatible
        (:func:`~napari_meg_unet.dataset.check_compatible`).
    out_dir : path-like
        Directory receiving ``last.pt``, ``best.pt`` and ``history.json``.
    epochs, lr, batch_size : int, float, int | None
        Override the recipe. ``batch_size`` is the global batch (split over
        the ranks under DDP); training needs at least one full batch.
    device : str
        ``"auto"`` (CUDA, MPS, CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"``.
    amp : ``"auto"`` | ``"bf16"`` | ``"off"``
        Mixed precision: ``"auto"`` uses bf16 autocast on CUDA only.
    seed : int
        Seed of the weights, the sample order and dropout (a resumed run keeps
        its own).
    deterministic : bool
        Use deterministic algorithms only (``torch.use_deterministic_algorithms``).
    resume : bool
        Continue the run saved in ``out_dir/last.pt`` (model, optimiser,
        scheduler, RNG states, position); ``epochs`` may extend it.
    stop : threading.Event | callable | None
        Polled before every batch; when set (or returning True) the state is
        saved to ``last.pt`` and training ends with :class:`Stopped`.
    mesh : HeadModel | MeshHierarchy | None
        Needed by ``model="mesh"`` (the head model the data were made with).
    early_stopping : bool
        Stop when the validation DLE has not improved for ``patience`` epochs.
    compile : bool
        Use :func:`torch.compile` for the training forward pass.
    num_threads : int | None
        CPU threads (default: the available cores up to 16, divided among the
        local ranks; left alone when ``OMP_NUM_THREADS`` is set). Restored
        afterwards.
    num_workers : int
        DataLoader worker processes (0 reads in the main process).
    overwrite : bool
        Start over in an ``out_dir`` that already holds a run.
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
        Through ``StopIteration.value`` (see :func:`train`): ``best_epoch``,
        ``best_dle_mm``, ``best_checkpoint``, ``last_checkpoint``, ``epochs_done``,
        ``stopped``, ``early_stopped``, ``history``, ``training``.

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
    Validation scores each example by its DLE: the network's probability of
    an active source, averaged over the active time window of the example
    (all samples if it has none), is a map whose peak(s) are compared with the
    true source positions (:func:`napari_meg_unet.metrics.peak_localisation_error`);
    examples are averaged per event, then over events
    (:func:`napari_meg_unet.metrics.aggregate`). ``best.pt`` holds the epoch
    with the lowest validation DLE, which also drives early stopping.

    Under DDP the class-weighted loss of each rank is rescaled by the ratio of
    its shard's weight sum to the mean over the ranks, so that the averaged
    gradient is that of the weighted mean over the global batch, as in one
    process.
    """
    seed = _check_int(seed, "seed", minimum=0)
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if value is not None:
            _check_int(value, name)
    if lr is not None:
        _check_lr(lr)
    if num_threads is not None:
        _check_int(num_threads, "num_threads")
    num_workers = _check_int(num_workers, "num_workers", minimum=0)
    if stop is not None and not (isinstance(stop, threading.Event) or callable(stop)):
        raise ValueError("stop must be None, a threading.Event or a callable returning a bool.")
    train_set = read_dataset(train)
    val_set = read_dataset(val)
    check_compatible(train_set.meta, val_set.meta, names=("the training set", "the validation set"))
    out_dir = Path(out_dir)
    last_path, best_path = out_dir / "last.pt", out_dir / "best.pt"
    if resume:
        if not last_path.is_file():
            raise FileNotFoundError(
                f"resume=True but {str(last_path)!r} does not exist; nothing to resume "
                "(train without resume to start a run)."
            )
    elif (last_path.exists() or best_path.exists()) and not overwrite:
        raise FileExistsError(
            f"{str(out_dir)!r} already holds a training run; pass resume=True to continue it "
            "or overwrite=True to start over (CLI: --resume / --overwrite)."
        )
    dctx = _init_distributed(device)
    try:
        return (
            yield from _fit(
                model_name=model, preset=preset, train_set=train_set, val_set=val_set,
                out_dir=out_dir, epochs=epochs, lr=lr, batch_size=batch_size, device=device,
                amp=amp, seed=seed, deterministic=deterministic, resume=resume, stop=stop,
                mesh=mesh, early_stopping=early_stopping, compile=compile,
                num_threads=num_threads, num_workers=num_workers, overwrite=overwrite,
                overrides=overrides, dctx=dctx,
            )
        )  # fmt: skip
    finally:
        if dctx.created and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


#: Alias following the package's ``iter_<name>`` convention for generators.
iter_fit = fit


def train(**kwargs) -> dict:
    """Run :func:`fit` to completion and return its summary (events are discarded)."""
    return run(fit(**kwargs))


def _set_deterministic(mode: bool, *, compile: bool) -> None:
    """``torch.use_deterministic_algorithms`` without importing inductor when unused.

    The public function imports ``torch._inductor`` (seconds) only to set its
    ``deterministic`` flag, which matters only for ``torch.compile``.
    """
    if compile or "torch._inductor.config" in sys.modules:
        torch.use_deterministic_algorithms(mode)
    else:
        torch._C._set_deterministic_algorithms(mode)


@contextlib.contextmanager
def _torch_settings(*, device, deterministic, num_threads, local_world, compile=False):
    """Thread count and determinism for the run, restored afterwards."""
    saved = (
        torch.get_num_threads(),
        torch.are_deterministic_algorithms_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )
    try:
        if num_threads is not None:
            torch.set_num_threads(num_threads)
        elif "OMP_NUM_THREADS" not in os.environ:
            torch.set_num_threads(_default_threads(local_world))
        if deterministic:
            if device.type == "cuda":
                os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            _set_deterministic(True, compile=compile)
            torch.backends.cudnn.deterministic = True
            torch.backends.cudnn.benchmark = False
        elif device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        yield
    finally:
        torch.set_num_threads(saved[0])
        if torch.are_deterministic_algorithms_enabled() != saved[1]:
            _set_deterministic(saved[1], compile=compile)
        torch.backends.cudnn.deterministic = saved[2]
        torch.backends.cudnn.benchmark = saved[3]


def _check_resume(ckpt, *, model_name, preset, train_set, val_set, hp_explicit, overrides):
    """Refuse to resume a run with other data or settings."""
    problems = []
    if model_name is not None and model_name != ckpt["model_name"]:
        problems.append(f"model={model_name!r} but the run trains {ckpt['model_name']!r}")
    if preset is not None and preset != ckpt.get("preset"):
        problems.append(f"preset={preset!r} but the run uses {ckpt.get('preset')!r}")
    if train_set.fingerprint != ckpt["dataset_fingerprint"]:
        problems.append(
            f"the training set {train_set.fingerprint!r} is not the run's "
            f"{ckpt['dataset_fingerprint']!r}"
        )
    if val_set.fingerprint != ckpt.get("val_fingerprint"):
        problems.append(
            f"the validation set {val_set.fingerprint!r} is not the run's "
            f"{ckpt.get('val_fingerprint')!r}"
        )
    stored = dict(ckpt["training"])
    config = ckpt["model_config"]
    for key, value in {**hp_explicit, **overrides}.items():
        if value is None:
            continue
        if key in stored:
            if key != "epochs" and stored[key] != value:
                problems.append(f"{key}={value!r} but the run uses {stored[key]!r}")
        elif config.get(key) != value:
            problems.append(f"{key}={value!r} but the run's model has {config.get(key)!r}")
    if problems:
        raise ValueError(
            f"Cannot resume {ckpt.get('path')!r}: " + "; ".join(problems) + ". Start a new run "
            "(another out_dir, or overwrite=True) to change them."
        )


def _fit(
    *, model_name, preset, train_set, val_set, out_dir, epochs, lr, batch_size, device, amp,
    seed, deterministic, resume, stop, mesh, early_stopping, compile, num_threads, num_workers,
    overwrite, overrides, dctx,
):  # fmt: skip
    dev = resolve_device(device, local_rank=dctx.local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    amp_dtype = _amp_dtype(amp, dev)
    last_path, best_path = out_dir / "last.pt", out_dir / "best.pt"
    history_path = out_dir / "history.json"
    meta = train_set.meta

    ckpt = None
    if resume:
        dctx.barrier()
        ckpt = load_checkpoint(last_path)
        _check_resume(
            ckpt, model_name=model_name, preset=preset, train_set=train_set, val_set=val_set,
            hp_explicit={"epochs": epochs, "lr": lr, "batch_size": batch_size},
            overrides=overrides,
        )  # fmt: skip
        model_name, preset = ckpt["model_name"], ckpt["preset"]
        seed = int(ckpt["seed"])  # the sample order and RNG streams are the run's
        hp = dict(ckpt["training"])
        if epochs is not None:
            hp["epochs"] = epochs
        if mesh is None and ckpt.get("mesh") is not None:
            mesh = ckpt["mesh"]
    else:
        model_name = "thesis" if model_name is None else model_name
        preset = "small" if preset is None else preset
        hp, model_overrides = _hyperparameters(
            model_name, preset, epochs=epochs, lr=lr, batch_size=batch_size, overrides=overrides
        )
    mesh_h = _mesh_for(model_name, mesh, meta)
    if ckpt is not None and mesh_h is not None and mesh_h.fingerprint != ckpt["mesh_fingerprint"]:
        raise IncompatibleDataError(
            f"Cannot resume {ckpt.get('path')!r}: the mesh given ({mesh_h.fingerprint!r}) is not "
            f"the run's ({ckpt['mesh_fingerprint']!r})."
        )

    global_batch = hp["batch_size"]
    if global_batch % dctx.world:
        raise ValueError(
            f"batch_size={global_batch} is the global batch and must be divisible by the "
            f"{dctx.world} processes."
        )
    local_batch = global_batch // dctx.world
    if len(train_set) < global_batch:
        raise ValueError(
            f"The training set {str(train_set.path)!r} has {len(train_set)} example(s), fewer "
            f"than one batch (batch_size={global_batch}); use a smaller batch size or more "
            "examples."
        )
    n_batches = (len(train_set) // dctx.world) // local_batch
    if dctx.main and not resume:
        out_dir.mkdir(parents=True, exist_ok=True)
        if overwrite:
            for path in (last_path, best_path, history_path):
                path.unlink(missing_ok=True)
    dctx.barrier()

    with _torch_settings(
        device=dev, deterministic=deterministic, num_threads=num_threads,
        local_world=dctx.local_world, compile=compile,
    ):  # fmt: skip
        _seed_everything(seed)
        if ckpt is None:
            net = _build_model(
                model_name, preset=preset, meta=meta, mesh=mesh_h, overrides=model_overrides
            )
        else:
            net = _rebuild_model(ckpt, mesh_h)
            net.load_state_dict(ckpt["model"])
        channels_last = dev.type == "cuda" and model_name == "thesis"
        net = net.to(dev)
        if channels_last:
            net = net.to(memory_format=torch.channels_last)
        if dctx.enabled:
            net = _sync_batch_norm(net, dev)
        optimizer = _make_optimizer(net.parameters(), hp)
        scheduler = _make_scheduler(optimizer, hp)
        if ckpt is not None:
            optimizer.load_state_dict(ckpt["optimizer"])
            scheduler.load_state_dict(ckpt["scheduler"])
            class_weights = ckpt.get("class_weights")
        else:
            class_weights = _class_weights(hp.get("class_weighting"), train_set.targets)
        if class_weights is not None:
            class_weights = class_weights.to(dev)
        forward = net
        if dctx.enabled:
            from torch.nn.parallel import DistributedDataParallel

            forward = DistributedDataParallel(
                net, device_ids=[dev.index] if dev.type == "cuda" else None
            )
        if compile:
            forward = torch.compile(forward)
        if ckpt is not None:
            _restore_rng(ckpt["rng"], dctx)
        elif dctx.enabled:
            torch.manual_seed(seed + dctx.rank)  # distinct dropout masks per shard

        step = _Step(
            model=forward, raw=net, optimizer=optimizer, class_weights=class_weights,
            l1=hp["l1"], clip=hp.get("grad_clip_norm"), amp_dtype=amp_dtype, device=dev,
            channels_last=channels_last, dist=dctx,
        )  # fmt: skip
        train_data = train_set.torch_dataset()
        val_data = val_set.torch_dataset()
        sampler = DistributedSampler(
            train_data, num_replicas=dctx.world, rank=dctx.rank, shuffle=True, seed=seed,
            drop_last=True,
        )  # fmt: skip

        if ckpt is None:
            progress = dict(
                epochs_done=0, batch=0, history=[], best={"epoch": 0, "dle_mm": math.inf},
                bad_epochs=0, partial=_new_partial(), early_stopped=False,
            )  # fmt: skip
        else:
            progress = dict(
                epochs_done=int(ckpt["epoch"]), batch=int(ckpt.get("batch", 0)),
                history=list(ckpt.get("history", [])), best=dict(ckpt["best"]),
                bad_epochs=int(ckpt.get("bad_epochs", 0)),
                partial=dict(ckpt.get("partial") or _new_partial()), early_stopped=False,
            )  # fmt: skip

        def checkpoint(kind):
            rng = _rng_states(dctx)  # collective: every rank takes part
            if not dctx.main:
                return None
            state = {
                "format": CHECKPOINT_FORMAT,
                "format_version": CHECKPOINT_FORMAT_VERSION,
                "kind": kind,
                "model_name": model_name,
                "preset": preset,
                "model_config": dict(net.config),
                "model": {k: v.detach().cpu() for k, v in net.state_dict().items()},
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": rng,
                "class_weights": None if class_weights is None else class_weights.cpu(),
                "dataset_fingerprint": train_set.fingerprint,
                "dataset_meta": meta,
                "val_fingerprint": val_set.fingerprint,
                "headmodel_fingerprint": meta.get("headmodel_fingerprint"),
                "mesh_fingerprint": None if mesh_h is None else mesh_h.fingerprint,
                "mesh": None if mesh_h is None else mesh_h.to_dict(),
                "ch_names": meta.get("ch_names"),
                "hemi": meta.get("hemi"),
                "inverse": _inverse_params(meta),
                "normalisation": meta.get("normalisation"),
                "sfreq": meta.get("sfreq"),
                "seed": seed,
                "deterministic": bool(deterministic),
                "world_size": dctx.world,
                "training": hp,
                "versions": _versions(),
                "epoch": progress["epochs_done"],
                "batch": progress["batch"],
                "sampler_epoch": progress["epochs_done"],
                "partial": progress["partial"],
                "history": progress["history"],
                "best": progress["best"],
                "bad_epochs": progress["bad_epochs"],
            }
            path = last_path if kind == "last" else best_path
            save_checkpoint(path, state)
            return str(path)

        def summary(*, stopped):
            best = progress["best"]
            return {
                "out_dir": str(out_dir),
                "best_checkpoint": str(best_path) if best_path.exists() else None,
                "last_checkpoint": str(last_path) if last_path.exists() else None,
                "best_epoch": best["epoch"],
                "best_dle_mm": best["dle_mm"],
                "epochs_done": progress["epochs_done"],
                "stopped": stopped,
                "early_stopped": progress["early_stopped"],
                "history": progress["history"],
                "training": hp,
                "model_config": dict(net.config),
                "device": str(dev),
                "world_size": dctx.world,
            }

        n_epochs = hp["epochs"]
        patience = hp.get("patience")
        for epoch_index in range(progress["epochs_done"], n_epochs):
            epoch = epoch_index + 1
            sampler.set_epoch(epoch_index)
            order = list(sampler)
            batches = [order[k * local_batch : (k + 1) * local_batch] for k in range(n_batches)]
            start = progress["batch"] if epoch_index == progress["epochs_done"] else 0
            if dctx.main:
                yield EpochStarted(epoch=epoch, n_epochs=n_epochs)
            loader = _batches(train_data, batches[start:], num_workers, dev, seed, epoch_index)
            epoch_start = time.perf_counter()
            for k, (x, y, idx) in enumerate(loader, start=start):
                if dctx.any(_stop_requested(stop), dev):
                    progress["batch"] = k
                    path = checkpoint("last")
                    if dctx.main:
                        yield CheckpointWritten(path=path, kind="last", epoch=epoch_index)
                        yield Stopped(epoch=epoch, batch=k, checkpoint=path)
                    return summary(stopped=True)
                t0 = time.perf_counter()
                try:
                    loss, grad_norm = _train_step(step, x, y)
                except NonFiniteLossError as err:
                    raise NonFiniteLossError(
                        _nonfinite_message(err, epoch, k + 1, x, idx, train_set, last_path)
                    ) from None
                except _OOM_ERRORS:
                    _free_accelerator_memory(dev)
                    raise DeviceMemoryError(
                        f"Out of memory on {dev} in epoch {epoch}, batch {k + 1} with "
                        f"batch_size={global_batch} ({local_batch} per process). Use a smaller "
                        f"batch size (e.g. batch_size={max(1, global_batch // 2)}, CLI "
                        f"--batch-size {max(1, global_batch // 2)}), amp='bf16' or a smaller "
                        "preset; " + _last_good(last_path)
                    ) from None
                elapsed = time.perf_counter() - t0
                part = progress["partial"]
                part["loss_sum"] += loss
                part["grad_norm_sum"] += grad_norm
                part["n_batches"] += 1
                progress["batch"] = k + 1
                if dctx.main:
                    yield BatchDone(
                        epoch=epoch, batch=k + 1, n_batches=n_batches, loss=loss,
                        lr=float(optimizer.param_groups[0]["lr"]),
                        samples_per_s=global_batch / elapsed if elapsed > 0 else math.inf,
                    )  # fmt: skip
            lr_used = float(optimizer.param_groups[0]["lr"])
            scheduler.step()
            try:
                val_metrics = _validate(step, val_set, val_data, batch_size=max(local_batch, 1))
            except _OOM_ERRORS:
                _free_accelerator_memory(dev)
                raise DeviceMemoryError(
                    f"Out of memory on {dev} while validating after epoch {epoch}; use a "
                    "smaller batch size; " + _last_good(last_path)
                ) from None
            part = progress["partial"]
            dle = val_metrics["dle_mm"]
            improved = math.isfinite(dle) and dle < progress["best"]["dle_mm"]
            record = {
                "epoch": epoch,
                "train_loss": part["loss_sum"] / max(1, part["n_batches"]),
                "grad_norm_mean": part["grad_norm_sum"] / max(1, part["n_batches"]),
                "lr": lr_used,
                "val_loss": val_metrics["loss"],
                "dle_mm": dle,
                "val": val_metrics,
                "time_s": time.perf_counter() - epoch_start,
            }
            progress["history"].append(record)
            progress["epochs_done"] = epoch
            progress["batch"] = 0
            progress["partial"] = _new_partial()
            if improved:
                progress["best"] = {"epoch": epoch, "dle_mm": dle}
                progress["bad_epochs"] = 0
            else:
                progress["bad_epochs"] += 1
            if early_stopping and patience is not None and progress["bad_epochs"] >= patience:
                progress["early_stopped"] = True
            if dctx.main:
                yield Validated(
                    epoch=epoch, loss=val_metrics["loss"], dle_mm=dle, metrics=val_metrics
                )
            path = checkpoint("last")
            if dctx.main:
                yield CheckpointWritten(path=path, kind="last", epoch=epoch)
            if improved:
                path = checkpoint("best")
                if dctx.main:
                    yield CheckpointWritten(path=path, kind="best", epoch=epoch)
            if dctx.main:
                write_json(history_path, summary(stopped=False))
            dctx.barrier()
            if progress["early_stopped"]:
                break
        result = summary(stopped=False)
        if dctx.main:
            yield Finished(
                best_epoch=progress["best"]["epoch"],
                best_dle_mm=progress["best"]["dle_mm"],
                checkpoint=result["best_checkpoint"],
            )
        return result


def _new_partial() -> dict:
    return {"loss_sum": 0.0, "grad_norm_sum": 0.0, "n_batches": 0}


def _last_good(last_path: Path) -> str:
    if last_path.is_file():
        return f"the last good checkpoint {str(last_path)!r} is intact."
    return "no checkpoint had been written yet."


def _nonfinite_message(err, epoch, batch, x, idx, train_set, last_path) -> str:
    bad = ~torch.isfinite(x.reshape(len(x), -1)).all(dim=1)
    where = ""
    if bool(bad.any()):
        examples = idx[bad].tolist()[:5]
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


# =========================================================================== predict
def load_model(checkpoint, *, mesh=None, device="cpu"):
    """Rebuild a checkpoint's network with its weights, in eval mode.

    Parameters
    ----------
    checkpoint : path-like | dict
        A ``.pt`` file, a training directory (its ``best.pt``) or a loaded checkpoint.
    mesh : HeadModel | MeshHierarchy | None
        For mesh networks: checked against (or, for older checkpoints without a
        stored hierarchy, used to rebuild) the network's mesh.
    device : str
        See :func:`resolve_device`.

    Returns
    -------
    model : torch.nn.Module
    checkpoint : dict
    """
    ckpt = checkpoint if isinstance(checkpoint, dict) else load_checkpoint(checkpoint)
    mesh_h = None
    if ckpt["model_name"] == "mesh" or ckpt.get("mesh") is not None:
        stored = ckpt.get("mesh")
        given = None if mesh is None else _mesh_for("mesh", mesh, ckpt["dataset_meta"])
        if given is not None and given.fingerprint != ckpt.get("mesh_fingerprint"):
            raise IncompatibleDataError(
                f"The mesh given ({given.fingerprint!r}) is not the network's "
                f"({ckpt.get('mesh_fingerprint')!r})."
            )
        mesh_h = given if stored is None else _mesh_for("mesh", stored, ckpt["dataset_meta"])
    dev = resolve_device(device)
    model = _rebuild_model(ckpt, mesh_h)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as err:
        raise IncompatibleDataError(
            f"The weights in {ckpt.get('path')!r} do not fit the network described by its "
            f"config: {str(err).splitlines()[0]}"
        ) from None
    return model.to(dev).eval(), ckpt


def _as_inputs(inputs_or_dataset, ckpt, *, headmodel, hemi):
    """The input array (memory map or ndarray) after compatibility checks."""
    meta = ckpt["dataset_meta"]
    if hemi is not None and hemi != ckpt.get("hemi"):
        raise IncompatibleDataError(
            f"hemi={hemi!r} but the network was trained on hemi={ckpt.get('hemi')!r}."
        )
    if headmodel is not None:
        partial = {
            "headmodel_fingerprint": headmodel.fingerprint,
            "ch_names": headmodel.ch_names,
        }
        check_checkpoint_compatible(ckpt, partial, what="head model")
    if isinstance(inputs_or_dataset, ExampleSet | str | os.PathLike):
        examples = read_dataset(inputs_or_dataset)
        check_checkpoint_compatible(ckpt, examples.meta, what=f"data set {str(examples.path)!r}")
        return examples.inputs
    array = inputs_or_dataset
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().numpy()
    array = np.asarray(array)
    if array.ndim == 3:
        array = array[np.newaxis]
    expected = (len(meta["methods"]), int(meta["n_rows"]))
    if array.ndim != 4 or tuple(array.shape[1:3]) != expected:
        raise IncompatibleDataError(
            f"inputs must have shape (n, {expected[0]}, {expected[1]}, n_times) for this network "
            f"(methods {meta['methods']}, {expected[1]} rows of hemi={meta.get('hemi')!r}), got "
            f"{array.shape}."
        )
    if not np.isfinite(array).all():
        raise ValueError("inputs contain NaN or infinite values.")
    return array


def iter_predict(
    checkpoint, inputs_or_dataset, *, headmodel=None, hemi=None, batch_size=64, device="auto"
):
    """Generator form of :func:`predict`, yielding :class:`~.progress.Progress`."""
    batch_size = _check_int(batch_size, "batch_size")
    model, ckpt = load_model(checkpoint, mesh=headmodel, device=device)
    inputs = _as_inputs(inputs_or_dataset, ckpt, headmodel=headmodel, hemi=hemi)
    dev = next(model.parameters()).device
    models = _models()
    n = inputs.shape[0]
    out = np.empty((n, inputs.shape[2], inputs.shape[3]), np.float32)
    yield Progress("predict", 0, n, f"{n} examples")
    with torch.inference_mode():
        for start in range(0, n, batch_size):
            x = torch.from_numpy(np.array(inputs[start : start + batch_size], np.float32))
            try:
                logits = model(x.to(dev))
            except _OOM_ERRORS:
                _free_accelerator_memory(dev)
                raise DeviceMemoryError(
                    f"Out of memory on {dev} predicting with batch_size={batch_size}; use a "
                    f"smaller batch size (e.g. {max(1, batch_size // 2)})."
                ) from None
            out[start : start + len(x)] = _class1(models.probabilities(logits)).float().cpu()
            yield Progress("predict", min(n, start + batch_size), n, f"{n} examples")
    return out


def predict(
    checkpoint, inputs_or_dataset, *, headmodel=None, hemi=None, batch_size=64, device="auto"
) -> np.ndarray:
    """Probability maps of a trained network.

    Parameters
    ----------
    checkpoint : path-like | dict
        A checkpoint (``best.pt``), a training directory or a loaded checkpoint.
    inputs_or_dataset : path-like | ExampleSet | array, shape (n, C, n_rows, n_times)
        An example set (checked with :func:`~.checkpoint.check_checkpoint_compatible`:
        head model, channels, methods, inverse parameters, normalisation, hemi,
        size) or input images made the same way as the training set.
    headmodel : HeadModel | None
        If given, must be the head model the network was trained for (also
        rebuilds the mesh of mesh networks when needed).
    hemi : str | None
        If given, must be the network's hemisphere.
    batch_size : int
        Examples per forward pass.
    device : str
        See :func:`resolve_device`.

    Returns
    -------
    probs : ndarray, shape (n, n_rows, n_times), float32
        Probability of an active source at every row and time sample.
    """
    return run(
        iter_predict(
            checkpoint, inputs_or_dataset, headmodel=headmodel, hemi=hemi,
            batch_size=batch_size, device=device,
        )
    )  # fmt: skip


def to_source_estimate(probs_i, hm, hemi, tmin, sfreq, *, subject=None):
    """One example's probability map as an :class:`mne.SourceEstimate`.

    Parameters
    ----------
    probs_i : array, shape (n_rows, n_times)
        Rows ``hm.rows(hemi)`` (as returned by :func:`predict` for one example).
    hm : HeadModel
        The head model (its vertices become the estimate's).
    hemi : ``"lh"`` | ``"rh"`` | ``"both"``
        Which rows ``probs_i`` covers; rows of the other hemisphere are zero.
    tmin : float
        Time of the first sample (s).
    sfreq : float
        Sampling rate (Hz).
    subject : str | None
        Subject name (default ``hm.subject``).

    Returns
    -------
    stc : mne.SourceEstimate
    """
    import mne

    from .headmodel import check_hemi

    check_hemi(hemi)
    probs_i = np.asarray(probs_i, dtype=np.float64)
    rows = hm.rows(hemi)
    if probs_i.ndim != 2 or probs_i.shape[0] != len(rows):
        raise ValueError(
            f"probs_i must have shape ({len(rows)}, n_times) for hemi={hemi!r}, got "
            f"{probs_i.shape}."
        )
    if not (isinstance(sfreq, int | float) and sfreq > 0):
        raise ValueError(f"sfreq must be a positive number, got {sfreq!r}.")
    data = np.zeros((hm.n_sources, probs_i.shape[1]))
    data[rows] = probs_i
    return mne.SourceEstimate(
        data,
        vertices=[np.asarray(v).copy() for v in hm.vertno],
        tmin=float(tmin),
        tstep=1.0 / float(sfreq),
        subject=hm.subject if subject is None else subject,
    )
