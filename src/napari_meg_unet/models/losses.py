"""Training loss, class weights, weight penalty and output probabilities of the networks.

The networks output *logits*; the only softmax is the one inside the
cross-entropy during training and the one in :func:`probabilities` at
inference (the thesis applied a softmax as output activation and then a
softmax cross-entropy on top of it, i.e. two).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

#: Rows of the target array processed at once when counting classes.
_COUNT_CHUNK = 256


def class_weights_from_targets(targets, *, n_classes: int = 2) -> torch.Tensor:
    """Inverse-class-frequency weights ``w_c = N / (n_classes * N_c)``.

    With these weights every class contributes the same total weight, and the
    average weight over all ``N`` target pixels is 1.

    Parameters
    ----------
    targets : array-like or Tensor of int | bool
        Class labels of any shape (e.g. ``(n_samples, n_rows, n_times)``); memory-
        mapped arrays are counted chunk by chunk along the first axis.
    n_classes : int
        Number of classes (labels must lie in ``[0, n_classes)``).

    Returns
    -------
    weights : Tensor, shape (n_classes,), float32
    """
    if isinstance(targets, torch.Tensor):
        targets = targets.detach().cpu().numpy()
    targets = np.asarray(targets) if not isinstance(targets, np.ndarray) else targets
    if targets.size == 0:
        raise ValueError("targets is empty; cannot compute class frequencies.")
    if targets.dtype.kind not in "biuf":
        raise ValueError(f"targets must hold integer class labels, got dtype {targets.dtype}.")
    counts = np.zeros(n_classes, np.int64)
    chunks = (
        [targets]
        if targets.ndim == 0
        else (targets[i : i + _COUNT_CHUNK] for i in range(0, len(targets), _COUNT_CHUNK))
    )
    for chunk in chunks:
        chunk = np.asarray(chunk).ravel()
        labels = chunk.astype(np.int64)
        if chunk.dtype.kind == "f" and np.any(labels != chunk):
            raise ValueError("targets must hold integer class labels; got non-integer floats.")
        if labels.min() < 0 or labels.max() >= n_classes:
            raise ValueError(
                f"targets must lie in [0, {n_classes}); got values in "
                f"[{labels.min()}, {labels.max()}]."
            )
        counts += np.bincount(labels, minlength=n_classes)
    if np.any(counts == 0):
        raise ValueError(
            f"Class counts {counts.tolist()}: every class must occur in the targets to "
            "compute inverse-frequency weights."
        )
    weights = counts.sum() / (n_classes * counts.astype(np.float64))
    return torch.as_tensor(weights, dtype=torch.float32)


def loss_fn(
    logits: torch.Tensor, target: torch.Tensor, *, class_weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Pixel-wise (class-weighted) softmax cross-entropy on logits.

    Parameters
    ----------
    logits : Tensor, shape (batch, n_classes, n_rows, n_times)
        Network output (no softmax applied).
    target : Tensor, shape (batch, n_rows, n_times)
        Integer (or bool) class labels.
    class_weights : Tensor, shape (n_classes,) | None
        Per-class weights (:func:`class_weights_from_targets`). The loss is the
        weighted mean ``sum_i w_{y_i} CE_i / sum_i w_{y_i}``.

    Returns
    -------
    loss : Tensor
        Scalar (float32, also under bf16 autocast).
    """
    if logits.ndim != 4 or target.ndim != 3 or logits.shape[:1] + logits.shape[2:] != target.shape:
        raise ValueError(
            "Expected logits (batch, n_classes, n_rows, n_times) and target "
            f"(batch, n_rows, n_times), got {tuple(logits.shape)} and {tuple(target.shape)}."
        )
    if class_weights is not None:
        class_weights = torch.as_tensor(class_weights, dtype=torch.float32, device=logits.device)
        if class_weights.shape != (logits.shape[1],):
            raise ValueError(
                f"class_weights must have shape ({logits.shape[1]},), "
                f"got {tuple(class_weights.shape)}."
            )
    return F.cross_entropy(logits.float(), target.long(), weight=class_weights)


def probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Probability of class 1 (active source): ``softmax(logits, dim=1)[:, 1]``."""
    return torch.softmax(logits.float(), dim=1)[:, 1]


def unwrap_model(model: nn.Module) -> nn.Module:
    """The network inside ``DistributedDataParallel`` / :func:`torch.compile` wrappers."""
    while True:
        inner = getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            inner = getattr(model, "module", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def l1_penalty(model: nn.Module) -> torch.Tensor:
    """Sum of absolute values of the model's penalised weights (the thesis' L1 term).

    Uses ``model.l1_parameters()`` when the model defines it (the convolution
    kernels; biases and batch-norm parameters are never penalised), otherwise
    every parameter with two or more dimensions. Wrappers such as
    ``DistributedDataParallel`` (``.module``) and :func:`torch.compile`
    (``._orig_mod``) are looked through. Multiply by ``training_defaults(...)["l1"]``.
    """
    model = unwrap_model(model)
    if hasattr(model, "l1_parameters"):
        params = list(model.l1_parameters())
    else:
        params = [p for p in model.parameters() if p.ndim > 1]
    if not params:
        return torch.zeros(())
    return torch.stack([p.abs().sum() for p in params]).sum()
