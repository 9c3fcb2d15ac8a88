"""Networks: the thesis 2D U-Net and a mesh-aware icosahedral U-Net.

Every network maps ``(batch, channels, n_rows, n_times)`` float images (rows in
``HeadModel.rows(hemi)`` order) to ``(batch, 2, n_rows, n_times)`` logits (class 1 =
active source), has a JSON-friendly ``config`` with
``build_model(**model.config, mesh=mesh)`` rebuilding it, and is used in
``model.eval()`` mode at inference (batch norm with running statistics, no dropout).
"""

from .losses import (
    class_weights_from_targets,
    l1_penalty,
    loss_fn,
    probabilities,
    unwrap_model,
)
from .mesh import MeshHierarchy
from .mesh_unet import MESH_PRESETS, MeshConv, MeshPool, MeshUNet, MeshUnpool
from .registry import MODEL_NAMES, PRESETS, build_model, model_summary, training_defaults
from .thesis_unet import THESIS_PRESETS, ThesisUNet

__all__ = [
    "MESH_PRESETS",
    "MODEL_NAMES",
    "PRESETS",
    "THESIS_PRESETS",
    "MeshConv",
    "MeshHierarchy",
    "MeshPool",
    "MeshUNet",
    "MeshUnpool",
    "ThesisUNet",
    "build_model",
    "class_weights_from_targets",
    "l1_penalty",
    "loss_fn",
    "model_summary",
    "probabilities",
    "training_defaults",
    "unwrap_model",
]
