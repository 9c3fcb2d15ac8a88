"""Model names, presets, construction from a JSON config, and training recipes."""

from __future__ import annotations

import copy
import inspect

import torch
from torch import nn

from .mesh import MeshHierarchy
from .mesh_unet import MESH_PRESETS, MeshUNet
from .thesis_unet import THESIS_PRESETS, ThesisUNet

#: Networks known to :func:`build_model`.
MODEL_NAMES = ("thesis", "mesh")

#: Hyper-parameter presets per network name.
PRESETS = {"thesis": THESIS_PRESETS, "mesh": MESH_PRESETS}

_CLASSES = {"thesis": ThesisUNet, "mesh": MeshUNet}

# Training recipes. Keys (all presets): optimizer ("sgd" | "adamw"), lr, momentum (SGD
# only, else None), lr_decay (multiplicative, per epoch), weight_decay (decoupled for AdamW,
# L2 for SGD), l1 (factor of l1_penalty(model), added to the loss), grad_clip_norm (max
# global gradient L2 norm, clip_grad_norm_), batch_size, epochs, class_weighting
# ("inverse-frequency": class_weights_from_targets on the training targets), patience
# (early stopping: epochs without validation-loss improvement).
_THESIS_RECIPE = dict(
    optimizer="sgd",
    lr=0.02,
    momentum=0.9,
    lr_decay=0.95,
    weight_decay=0.0,
    l1=0.005,
    grad_clip_norm=1.0,
    class_weighting="inverse-frequency",
)
_MESH_RECIPE = dict(
    optimizer="adamw",
    momentum=None,
    lr_decay=0.97,
    weight_decay=1e-4,
    l1=0.0,
    grad_clip_norm=1.0,
    class_weighting="inverse-frequency",
)
_TRAINING_DEFAULTS = {
    "thesis": {
        "thesis": dict(_THESIS_RECIPE, batch_size=16, epochs=350, patience=20),
        "small": dict(_THESIS_RECIPE, l1=1e-5, batch_size=16, epochs=30, patience=8),
        "benchmark": dict(_THESIS_RECIPE, l1=1e-5, batch_size=16, epochs=50, patience=10),
    },
    "mesh": {
        "small": dict(_MESH_RECIPE, lr=2e-3, batch_size=16, epochs=30, patience=8),
        # the small recipe at twice the learning rate with the positive class weighted 20x
        # instead of by its inverse frequency (~360-1300x): with inverse-frequency weights
        # the network paints broad blobs, and in 2-5-dipole maps the weaker sources' peaks
        # drown in the stronger ones' (docs/benchmark.md, "mesh U-Net, second recipe")
        "cpu": dict(
            _MESH_RECIPE, lr=4e-3, class_weighting=(1.0, 20.0), batch_size=16, epochs=30,
            patience=8,
        ),  # fmt: skip
        "benchmark": dict(_MESH_RECIPE, lr=1e-3, batch_size=32, epochs=50, patience=10),
    },
}
# the centre head adds centre_loss to the cpu recipe's cross-entropy
_TRAINING_DEFAULTS["mesh"]["cpu-centre"] = _TRAINING_DEFAULTS["mesh"]["cpu"]


def _check_name_preset(name, preset) -> None:
    if name not in MODEL_NAMES:
        raise ValueError(f"name must be one of {MODEL_NAMES}, got {name!r}.")
    if preset not in PRESETS[name]:
        raise ValueError(
            f"preset for the {name!r} model must be one of {tuple(PRESETS[name])}, got {preset!r}."
        )


def build_model(
    name: str,
    *,
    in_channels: int,
    n_rows: int,
    n_times: int,
    preset: str = "small",
    mesh: MeshHierarchy | None = None,
    **overrides,
) -> nn.Module:
    """Build a network by name from a preset and optional hyper-parameter overrides.

    Parameters
    ----------
    name : ``"thesis"`` | ``"mesh"``
        :class:`~.thesis_unet.ThesisUNet` or :class:`~.mesh_unet.MeshUNet`.
    in_channels : int
        Input channels (inverse solutions stacked).
    n_rows : int
        Vertex rows (``len(hm.rows(hemi))``).
    n_times : int
        Time samples of the training images (both networks accept any length).
    preset : str
        Key of ``PRESETS[name]`` (thesis: ``"thesis"``, ``"small"``, ``"benchmark"``;
        mesh: ``"small"``, ``"cpu"``, ``"cpu-centre"``, ``"benchmark"``).
    mesh : MeshHierarchy | None
        Required for ``"mesh"``; ignored by ``"thesis"``.
    **overrides
        Hyper-parameters replacing the preset's (see the model classes).

    Returns
    -------
    model : nn.Module
        In training mode, with ``model.config`` such that
        ``build_model(**model.config, mesh=mesh)`` rebuilds the same architecture.
    """
    _check_name_preset(name, preset)
    cls = _CLASSES[name]
    allowed = [
        p
        for p in inspect.signature(cls).parameters
        if p not in ("in_channels", "n_rows", "n_times", "mesh")
    ]
    unknown = sorted(set(overrides) - set(allowed))
    if unknown:
        raise ValueError(
            f"Unknown hyper-parameters {unknown} for the {name!r} model; expected some of "
            f"{allowed}."
        )
    params = {**PRESETS[name][preset], **overrides}
    if name == "mesh":
        if mesh is None:
            raise ValueError(
                "The 'mesh' model needs mesh=MeshHierarchy.from_headmodel(hm, hemi=...)."
            )
        params["mesh"] = mesh
    model = cls(in_channels=in_channels, n_rows=n_rows, n_times=n_times, **params)
    model.config["preset"] = preset
    return model


def training_defaults(name: str, preset: str = "small") -> dict:
    """The training recipe for a network and preset.

    Returns a new dict with keys ``optimizer`` (``"sgd"`` | ``"adamw"``), ``lr``,
    ``momentum`` (SGD; ``None`` for AdamW), ``lr_decay`` (learning-rate factor per
    epoch), ``weight_decay``, ``l1`` (factor of :func:`~.losses.l1_penalty` added
    to the loss), ``grad_clip_norm`` (max global gradient norm), ``batch_size``,
    ``epochs``, ``class_weighting`` (``"inverse-frequency"``) and ``patience``
    (early-stopping epochs). The thesis recipe is SGD with momentum 0.9,
    lr 0.02 x 0.95 per epoch and an L1 weight penalty (``docs/thesis-deviations.md``).
    """
    _check_name_preset(name, preset)
    return copy.deepcopy(_TRAINING_DEFAULTS[name][preset])


def model_summary(model: nn.Module, *, batch_size: int = 1, n_times: int | None = None) -> dict:
    """Parameter count and forward FLOPs of ``model`` on a zero input.

    FLOPs are those counted by :class:`torch.utils.flop_counter.FlopCounterMode`
    (convolutions and matrix products, one multiply-add = 2 FLOPs); the mesh
    gathers are memory operations and not counted.
    """
    from torch.utils.flop_counter import FlopCounterMode

    from .losses import unwrap_model

    model = unwrap_model(model)
    config = model.config
    n_times = config["n_times"] if n_times is None else n_times
    param = next(model.parameters())
    x = torch.zeros(
        batch_size,
        config["in_channels"],
        config["n_rows"],
        n_times,
        dtype=param.dtype,
        device=param.device,
    )
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    return {
        "name": config["name"],
        "preset": config.get("preset"),
        "n_parameters": int(sum(p.numel() for p in model.parameters())),
        "forward_flops": int(counter.get_total_flops()),
        "input_shape": list(x.shape),
    }
