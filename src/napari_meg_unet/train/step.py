"""One optimisation step, and the accelerator's out-of-memory errors."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .distributed import _Dist
from .events import NonFiniteLossError
from .network import _models


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
    centre: object = None  # models.centre.CentreTarget of a network with a centre head


def _to_device(ctx: _Step, x: torch.Tensor, y: torch.Tensor):
    non_blocking = ctx.device.type == "cuda"
    if ctx.channels_last:
        x = x.to(ctx.device, memory_format=torch.channels_last, non_blocking=non_blocking)
    else:
        x = x.to(ctx.device, non_blocking=non_blocking)
    return x, y.to(ctx.device, non_blocking=non_blocking).long()


def _train_step(ctx: _Step, x: torch.Tensor, y: torch.Tensor, true_positions=None
                ) -> tuple[float, float]:  # fmt: skip
    """One optimisation step on a (local) batch; returns the global loss and gradient norm.

    The loss is all-reduced before the step so every rank takes the same
    decision on a non-finite loss; nothing is updated in that case. A network
    with a centre head (``ctx.centre``) adds
    :func:`~napari_meg_unet.models.centre.centre_loss` of the batch's
    ``true_positions`` (m, NaN-padded), with its rings also centred on the
    peaks of the batch's own (detached) probability maps.
    """
    models = _models()
    x, y = _to_device(ctx, x, y)
    ctx.model.train()
    ctx.optimizer.zero_grad(set_to_none=True)
    with torch.autocast(
        device_type=ctx.device.type, dtype=ctx.amp_dtype, enabled=ctx.amp_dtype is not None
    ):
        out = ctx.model(x, centre=True) if ctx.centre is not None else ctx.model(x)
    logits = out[0] if ctx.centre is not None else out
    loss = models.loss_fn(logits.float(), y, class_weights=ctx.class_weights)
    if ctx.dist.enabled and ctx.class_weights is not None:
        # loss_fn is the weighted mean sum(w CE) / sum(w) over this rank's shard; rescale
        # it to sum(w CE) / (mean over ranks of sum(w)) so that DDP's gradient average is
        # the weighted mean over the whole global batch, as in one process.
        local = ctx.class_weights[y].sum().reshape(1)
        loss = loss * (local / ctx.dist.mean(local.detach().clone())).squeeze(0)
    if ctx.centre is not None:
        from ..models.centre import CENTRE_LOSS_WEIGHT, centre_loss

        if true_positions is None:
            raise ValueError("A network with a centre head needs the batch's true positions.")
        source_map = models.probabilities(logits.detach()).mean(dim=-1)
        loss = loss + CENTRE_LOSS_WEIGHT * centre_loss(
            out[1], true_positions, ctx.centre, source_map=source_map
        )
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


#: What an accelerator raises when it runs out of memory.
_OOM_ERRORS = tuple(
    {getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError), torch.cuda.OutOfMemoryError}
)


def _free_accelerator_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps" and hasattr(torch, "mps"):
        torch.mps.empty_cache()
