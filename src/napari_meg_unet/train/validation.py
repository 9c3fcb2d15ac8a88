"""Validation after every epoch: the loss and the per-event mean DLE of the validation set.

Validation scores each example by its DLE: the network's probability of an
active source, averaged over the active time window of the example (all
samples if it has none), is a map whose peak(s) are compared with the true
source positions (:func:`napari_meg_unet.metrics.peak_localisation_error`);
examples are averaged per event, then over events
(:func:`napari_meg_unet.metrics.aggregate`). ``best.pt`` holds the epoch with
the lowest validation DLE, which also drives early stopping. Under DDP each
rank scores its shard and the results are gathered.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..dataset import ExampleSet
from .network import _class1, _models
from .step import _Step, _to_device


def _example_dle(prob_t, target_t, true_positions, positions) -> float:
    """DLE (mm) of one example: window-mean probability map vs the true sources."""
    from ..metrics import peak_localisation_error, window_map

    true_positions = true_positions[~np.isnan(true_positions).any(axis=1)]
    if len(true_positions) == 0:
        return math.nan
    active = target_t.any(axis=0)
    window = active if active.any() else slice(None)
    estimate = window_map(prob_t, window)
    return float(peak_localisation_error(estimate, positions, true_positions)["dle_mm"])


def _validate(ctx: _Step, examples: ExampleSet, dataset, *, batch_size: int) -> dict:
    """Validation loss and DLE on this rank's shard, combined over ranks."""
    from ..metrics import aggregate

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
