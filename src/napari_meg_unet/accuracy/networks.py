"""Training (or loading) the protocol's networks and predicting with them."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from ..configs import TrainingConfig
from ..progress import Progress
from .data import _reference_val_dle, iter_kind_sets, linear_kernels
from .spec import derive_seed

#: Points of the per-batch training-loss curve kept in the results.
_MAX_CURVE_POINTS = 400


def network_label(model: str) -> str:
    """Estimator name of a network in the tables (``"thesis U-Net"``, ``"mesh U-Net"``)."""
    return f"{model} U-Net"


def network_key(kind, model, preset, tag="") -> str:
    """Key of a trained network in the results (and its checkpoint sub-directory)."""
    return f"{kind}-{model}-{preset}" + (f"-{tag}" if tag else "")


def _fit_options(p, *, model, model_preset, epochs, device, seed, num_threads, overrides):
    """``(TrainingConfig, other fit overrides)`` of one network of ``p``."""
    overrides = {**({} if p.patience is None else {"patience": p.patience}), **(overrides or {})}
    names = set(TrainingConfig.option_names())
    config = TrainingConfig(
        model=model, preset=model_preset, epochs=epochs if epochs is not None else p.epochs,
        device=device, seed=seed, num_threads=num_threads,
        **{k: v for k, v in overrides.items() if k in names},
    )  # fmt: skip
    return config, {k: v for k, v in overrides.items() if k not in names}


def iter_network(
    *, model, model_preset, train_set, val_set, run_dir, mesh, p, device, seed, epochs,
    max_train_s, reference_dle, num_threads, overrides=None,
):  # fmt: skip
    """Train one network (generator of Progress); returns its info dict.

    ``overrides``: recipe or model hyper-parameters passed on to :func:`fit`.
    """
    from ..train import fit

    config, overrides = _fit_options(
        p, model=model, model_preset=model_preset, epochs=epochs, device=device, seed=seed,
        num_threads=num_threads, overrides=overrides,
    )  # fmt: skip
    started = time.perf_counter()
    validated = []

    def stop():
        # never before the first validated epoch: a run needs a best checkpoint
        return (
            max_train_s is not None
            and bool(validated)
            and time.perf_counter() - started > max_train_s
        )

    gen = fit(
        **config.as_kwargs(), train=train_set, val=val_set, out_dir=run_dir,
        mesh=mesh if model == "mesh" else None, stop=stop, overwrite=True, **overrides,
    )  # fmt: skip
    summary, rates, batch_curve = yield from _follow_training(gen, model, validated)
    if summary["best_checkpoint"] is None:
        raise RuntimeError(
            f"Training the {model} network produced no checkpoint (no epoch improved the "
            "validation DLE); train longer or check the data."
        )
    info = _history_info(summary["history"], reference_dle)
    info.update(
        model=model,
        preset=model_preset,
        checkpoint=summary["best_checkpoint"],
        loaded=False,
        best_epoch=summary["best_epoch"],
        best_val_dle_mm=summary["best_dle_mm"],
        epochs_done=summary["epochs_done"],
        stopped_by_time_limit=bool(summary["stopped"]),
        early_stopped=bool(summary["early_stopped"]),
        training=summary["training"],
        train_samples_per_s=float(np.median(rates)) if rates else None,
        wall_time_s=time.perf_counter() - started,
        batch_loss=_binned_curve(batch_curve),
    )
    return info


def _follow_training(gen, model, validated):
    """Relay :func:`fit`'s events as Progress; returns ``(summary, rates, batch curve)``.

    The epochs of the ``Validated`` events are appended to ``validated``.
    """
    from ..train import BatchDone, Validated

    rates, batch_curve, stage = [], [], f"train {network_label(model)}"
    while True:
        try:
            event = next(gen)
        except StopIteration as done:
            return done.value, rates, batch_curve
        if isinstance(event, BatchDone):
            rates.append(event.samples_per_s)
            batch_curve.append((event.epoch - 1 + event.batch / event.n_batches, event.loss))
            yield Progress(
                stage, event.batch, event.n_batches,
                f"epoch {event.epoch}, loss {event.loss:.3g}, {event.samples_per_s:.0f}/s",
            )  # fmt: skip
        elif isinstance(event, Validated):
            validated.append(event.epoch)
            yield Progress(stage, 1, 1, f"epoch {event.epoch}: val DLE {event.dle_mm:.1f} mm")


def _binned_curve(points, max_points=_MAX_CURVE_POINTS) -> dict:
    """``(x, y)`` points averaged in at most ``max_points`` consecutive bins."""
    if not points:
        return {"epoch": [], "loss": []}
    x, y = np.asarray(points, float).T
    bins = np.array_split(np.arange(len(x)), min(len(x), max_points))
    return {"epoch": [float(x[b[-1]]) for b in bins], "loss": [float(y[b].mean()) for b in bins]}


def _history_info(history, reference_dle) -> dict:
    """Training time and time-to-target (first epoch whose val DLE beats the reference)."""
    elapsed = np.cumsum([float(r.get("time_s", math.nan)) for r in history])
    time_to_target = None
    epochs_to_target = None
    if reference_dle is not None:
        for record, t in zip(history, elapsed, strict=True):
            if record["dle_mm"] < reference_dle:
                time_to_target, epochs_to_target = float(t), int(record["epoch"])
                break
    return {
        "history": [
            {k: r[k] for k in ("epoch", "train_loss", "val_loss", "dle_mm", "time_s", "lr")
             if k in r}
            for r in history
        ],  # fmt: skip
        "train_time_s": float(elapsed[-1]) if len(elapsed) else 0.0,
        "val_reference_dle_mm": reference_dle,
        "time_to_target_s": time_to_target,
        "epochs_to_target": epochs_to_target,
    }


def _load_network(path: Path, reference_dle) -> dict:
    from ..checkpoint import load_checkpoint

    ckpt = load_checkpoint(path)
    info = _history_info(ckpt.get("history", []), reference_dle)
    info.update(
        model=ckpt["model_name"],
        preset=ckpt.get("preset"),
        checkpoint=str(path),
        loaded=True,
        best_epoch=(ckpt.get("best") or {}).get("epoch"),
        best_val_dle_mm=(ckpt.get("best") or {}).get("dle_mm"),
        epochs_done=ckpt.get("epoch"),
        training=ckpt.get("training"),
        train_samples_per_s=None,
    )
    return info


def _n_parameters(checkpoint) -> int:
    from ..checkpoint import load_checkpoint

    state = load_checkpoint(checkpoint)["model"]
    return int(sum(v.numel() for k, v in state.items() if not k.endswith(
        ("running_mean", "running_var", "num_batches_tracked"))))  # fmt: skip


def _iter_predict(checkpoint, inputs, *, hm, device):
    """Probability maps of a network; returns (probs, samples per second)."""
    from ..device import resolve_device
    from ..train import iter_predict

    # small batches are faster per example on a CPU (cache-resident activations)
    batch_size = 16 if resolve_device(device).type == "cpu" else 64
    t0 = time.perf_counter()
    probs = yield from iter_predict(
        checkpoint, inputs, headmodel=hm, device=device, batch_size=batch_size
    )
    return probs, len(probs) / max(time.perf_counter() - t0, 1e-9)


def iter_kind_networks(
    hm, p, *, kind, kernels, work, checkpoint_dir, device, seed, epochs, max_train_s,
    num_threads, verbose, lambda2=None, tag="", networks=None,
):  # fmt: skip
    """Simulate the training/validation sets of ``kind`` and train (or load) its networks.

    Returns ``({key: info}, (train_set, val_set))``.
    """
    lambda2 = p.lambda2 if lambda2 is None else lambda2
    networks = p.networks if networks is None else networks
    train_set, val_set, va = yield from iter_kind_sets(
        hm, p, kind=kind, work=work, seed=seed, lambda2=lambda2, tag=tag, verbose=verbose
    )
    if lambda2 == p.lambda2:
        kernel = kernels["dSPM"]
    else:
        config = p.inverse_config(lambda2=lambda2, methods=("dSPM",))
        kernel = linear_kernels(hm, config, verbose=verbose)["dSPM"]
    reference = _reference_val_dle(
        kernel, va, hm, events=np.arange(p.n_val), rows=np.asarray(va.rows)
    )
    del va
    out = {}
    for model, model_preset in networks:
        key = network_key(kind, model, model_preset, tag)
        run_dir = (checkpoint_dir if checkpoint_dir is not None else work / "networks") / key
        if (run_dir / "best.pt").is_file() and checkpoint_dir is not None:
            info = _load_network(run_dir / "best.pt", reference)
        else:
            info = yield from iter_network(
                model=model, model_preset=model_preset, train_set=train_set, val_set=val_set,
                run_dir=run_dir, mesh=hm, p=p, device=device,
                seed=derive_seed(seed, "weights", key), epochs=epochs, max_train_s=max_train_s,
                reference_dle=reference, num_threads=num_threads,
            )  # fmt: skip
        info.update(kind=kind, lambda2=lambda2, estimator=network_label(model))
        info["n_parameters"] = _n_parameters(info["checkpoint"])
        out[key] = info
    return out, (train_set, val_set)
