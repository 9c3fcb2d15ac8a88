"""The training recipe: hyper-parameters, optimiser, learning-rate schedule, class weights."""

from __future__ import annotations

import numpy as np
import torch

from .. import _validation as V
from .network import _models

#: Optimisers a recipe may name.
OPTIMIZERS = ("sgd", "adamw")


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
    hp["epochs"] = V.check_int(hp["epochs"], "epochs", minimum=1)
    hp["batch_size"] = V.check_int(hp["batch_size"], "batch_size", minimum=1)
    hp["lr"] = V.check_number(hp["lr"], "lr", minimum=0.0)
    V.check_choice(hp.get("optimizer"), "optimizer", OPTIMIZERS)
    for key in ("weight_decay", "l1"):
        hp[key] = V.check_number(hp.get(key) or 0.0, key, minimum=0.0, strict=False)
    if hp.get("grad_clip_norm") is not None:
        V.check_number(hp["grad_clip_norm"], "grad_clip_norm", minimum=0.0)
    if hp.get("lr_decay") is not None:
        V.check_number(hp["lr_decay"], "lr_decay", minimum=0.0, maximum=1.0)
    if hp.get("patience") is not None:
        hp["patience"] = V.check_int(hp["patience"], "patience", minimum=1)
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
