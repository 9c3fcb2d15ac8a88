"""Building and rebuilding the networks (thesis and mesh U-Nets) for training and prediction."""

from __future__ import annotations

import torch

from ..dataset import IncompatibleDataError


def _models():
    """The models package, imported on first use."""
    from .. import models

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
    from ..headmodel import HeadModel
    from ..models.mesh import MeshHierarchy

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


def _class1(probs: torch.Tensor) -> torch.Tensor:
    """Probability of the active class, (B, n_rows, n_times), from ``probabilities``' output."""
    if probs.ndim == 4:
        return probs[:, 1]
    return probs
