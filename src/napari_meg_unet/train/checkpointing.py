"""What a training checkpoint holds, and the checks before resuming from one.

The file format itself (atomic writing, safe loading, compatibility checks) is
:mod:`napari_meg_unet.checkpoint`.
"""

from __future__ import annotations

from pathlib import Path

from ..checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_FORMAT_VERSION,
    get_rng_state,
    set_rng_state,
)
from .distributed import _Dist
from .settings import _versions


def _checkpoint_state(run, kind: str, rng: list) -> dict:
    """Everything :func:`~napari_meg_unet.checkpoint.save_checkpoint` writes for ``run``.

    ``run`` is the loop's ``_Run``; ``rng`` holds every rank's RNG states
    (:func:`_rng_states`). The fields are described in
    :mod:`napari_meg_unet.checkpoint`; a run on a stream also stores
    ``stream_position`` (global batches consumed) and its ``dataset_meta`` /
    ``dataset_fingerprint`` are the stream's (configs + head model hash).
    """
    meta, mesh, net = run.train_set.meta, run.mesh, run.net
    return {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "kind": kind,
        "model_name": run.model_name,
        "preset": run.preset,
        "model_config": dict(net.config),
        "model": {k: v.detach().cpu() for k, v in net.state_dict().items()},
        "optimizer": run.step.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "rng": rng,
        "class_weights": None if run.class_weights is None else run.class_weights.cpu(),
        "dataset_fingerprint": run.train_set.fingerprint,
        "dataset_meta": meta,
        "val_fingerprint": run.val_set.fingerprint,
        "headmodel_fingerprint": meta.get("headmodel_fingerprint"),
        "mesh_fingerprint": None if mesh is None else mesh.fingerprint,
        "mesh": None if mesh is None else mesh.to_dict(),
        "ch_names": meta.get("ch_names"),
        "hemi": meta.get("hemi"),
        "inverse": _inverse_params(meta),
        "normalisation": meta.get("normalisation"),
        "sfreq": meta.get("sfreq"),
        "seed": run.seed,
        "deterministic": bool(run.config.deterministic),
        "world_size": run.dist.world,
        "training": run.hp,
        "versions": _versions(),
        "epoch": run.epochs_done,
        "batch": run.batch,
        "sampler_epoch": run.epochs_done,
        "stream_position": run.stream_position if run.streaming else None,
        "partial": run.partial,
        "history": run.history,
        "best": run.best,
        "bad_epochs": run.bad_epochs,
    }


def _rng_states(dctx: _Dist) -> list:
    """Every rank's RNG states (a collective call: every rank takes part)."""
    return dctx.gather(get_rng_state())


def _restore_rng(states: list, dctx: _Dist) -> None:
    """Restore this rank's RNG states (rank 0's when the world size changed)."""
    state = states[dctx.rank] if len(states) == dctx.world else states[0]
    set_rng_state(state)


def _inverse_params(meta: dict) -> dict:
    return {key: meta.get(key) for key in ("methods", "lambda2", "nave", "loose", "depth")}


def _check_resume(ckpt, *, model_name, preset, train_set, val_set, hp_explicit, overrides):
    """Refuse to resume a run with other data or settings."""
    problems = []
    if model_name is not None and model_name != ckpt["model_name"]:
        problems.append(f"model={model_name!r} but the run trains {ckpt['model_name']!r}")
    if preset is not None and preset != ckpt.get("preset"):
        problems.append(f"preset={preset!r} but the run uses {ckpt.get('preset')!r}")
    if train_set.fingerprint != ckpt["dataset_fingerprint"]:
        what = "stream" if ckpt.get("stream_position") is not None else "set"
        problems.append(
            f"the training {what} {train_set.fingerprint!r} is not the run's "
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


def _last_good(last_path: Path) -> str:
    """What is left on disk after a failure, for error messages."""
    if last_path.is_file():
        return f"the last good checkpoint {str(last_path)!r} is intact."
    return "no checkpoint had been written yet."
