"""Distributed data parallel training: the process group and synchronised batch norm.

Under ``torchrun`` (``WORLD_SIZE > 1``) :func:`~napari_meg_unet.train.fit`
initialises the process group (NCCL on CUDA, gloo otherwise) and wraps the
model in :class:`~torch.nn.parallel.DistributedDataParallel`. Batch
normalisation is synchronised over the ranks: :class:`torch.nn.SyncBatchNorm`
on CUDA, :class:`_AllReduceBatchNorm2d` (a differentiable all-reduce that also
runs on gloo) elsewhere, so DDP equals single-process training.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


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
