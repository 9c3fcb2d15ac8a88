"""Training checkpoints: atomic writing, safe loading and compatibility checks.

A checkpoint is a :func:`torch.save` dictionary holding only tensors and plain
Python containers (no pickled classes), so it is loaded with
``torch.load(weights_only=True)``: a checkpoint from an untrusted source
cannot run code. Its fields:

``format``, ``format_version``, ``kind``
    ``"napari-meg-unet-checkpoint"``, the layout version and ``"last"`` or
    ``"best"``.
``model_name``, ``model_config``, ``model``
    How to rebuild the network (``build_model(**model_config)`` plus the mesh
    for mesh models) and its ``state_dict``.
``dataset_fingerprint``, ``dataset_meta``, ``val_fingerprint``
    The training set it was fitted on (its whole ``meta.json``) and the
    validation set.
``headmodel_fingerprint``, ``mesh_fingerprint``, ``ch_names``, ``hemi``,
``inverse``, ``normalisation``
    Copied from the dataset meta (the mesh fingerprint only for mesh models),
    so that :func:`check_checkpoint_compatible` can refuse other data.
``training``, ``seed``, ``versions``
    Hyper-parameters, seed, package versions.
``epoch``, ``batch``, ``sampler_epoch``, ``history``, ``best``, ``bad_epochs``
    Progress: ``epoch`` is the number of completed epochs, ``batch`` the
    number of batches of the next epoch already done (non-zero only after a
    cooperative stop mid-epoch), ``sampler_epoch`` the epoch index seeding
    the sample order of that next epoch.
``optimizer``, ``scheduler``, ``rng``, ``class_weights``, ``partial``
    Everything needed to resume bit-for-bit (``rng`` holds one entry per
    rank: Python, NumPy, torch and, when initialised, CUDA generator states).
"""

from __future__ import annotations

import pickle
import random
import zipfile
from pathlib import Path

import numpy as np
import torch

from ._io import atomic_path
from .dataset import COMPATIBILITY_KEYS, IncompatibleDataError, check_compatible

CHECKPOINT_FORMAT = "napari-meg-unet-checkpoint"
CHECKPOINT_FORMAT_VERSION = 1
CHECKPOINT_KINDS = ("last", "best")

#: Fields every checkpoint must carry.
REQUIRED_FIELDS = (
    "format",
    "format_version",
    "kind",
    "model_name",
    "model_config",
    "model",
    "dataset_meta",
    "epoch",
)


class CheckpointError(ValueError):
    """A file that is not a readable, complete napari-meg-unet checkpoint."""


# --------------------------------------------------------------------------- RNG states
def get_rng_state() -> dict:
    """RNG states of Python, NumPy (legacy global), torch and CUDA as plain containers."""
    py_version, py_state, py_gauss = random.getstate()
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state(legacy=True)  # noqa: NPY002
    state = {
        "python": {"version": py_version, "state": list(py_state), "gauss": py_gauss},
        "numpy": {
            "kind": str(np_kind),
            "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "gauss": float(np_gauss),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore the states saved by :func:`get_rng_state`."""
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    nps = state["numpy"]
    np.random.set_state(  # noqa: NPY002
        (
            nps["kind"],
            np.asarray(nps["keys"], dtype=np.int64).astype(np.uint32),
            nps["pos"],
            nps["has_gauss"],
            nps["gauss"],
        )
    )
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)


# --------------------------------------------------------------------------- I/O
def save_checkpoint(path, checkpoint: dict) -> Path:
    """Write ``checkpoint`` atomically (temp file + rename); an old file survives a failure."""
    missing = [key for key in REQUIRED_FIELDS if key not in checkpoint]
    if missing:
        raise ValueError(f"checkpoint lacks the required field(s) {missing}.")
    if checkpoint["kind"] not in CHECKPOINT_KINDS:
        raise ValueError(f"checkpoint kind must be one of {CHECKPOINT_KINDS}.")
    path = Path(path)
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save(_plain(checkpoint), tmp)
    return path


def _plain(obj):
    """``obj`` with only types ``torch.load(weights_only=True)`` accepts.

    Subclasses of str/int/float (e.g. ``torch.__version__``), NumPy scalars and
    arrays, and paths are converted; anything else is refused.
    """
    if isinstance(obj, torch.Tensor) or obj is None:
        return obj
    if isinstance(obj, dict):
        return {_plain(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, tuple):
        return tuple(_plain(v) for v in obj)
    if isinstance(obj, list):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, np.generic):
        return obj.item()
    for kind in (bool, int, float, str):
        if isinstance(obj, kind):
            return kind(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(
        f"Cannot store a {type(obj).__name__} in a checkpoint (only tensors and plain "
        "Python containers, so that it loads with weights_only=True)."
    )


def _first_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    for line in lines:
        if "WeightsUnpickler error" in line:
            return line[:300]
    return lines[0][:300] if lines else ""


def load_checkpoint(path, *, map_location="cpu") -> dict:
    """Load and validate a checkpoint written by :func:`save_checkpoint`.

    Parameters
    ----------
    path : path-like
        The ``.pt`` file (or a training output directory, meaning its
        ``best.pt``).
    map_location : str | torch.device
        Where tensors are loaded.

    Returns
    -------
    checkpoint : dict

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    CheckpointError
        If it is truncated, corrupt, not a torch file, or not a checkpoint
        of this package (naming the file and what is wrong).
    """
    path = Path(path)
    if path.is_dir():
        path = path / "best.pt"
    if not path.is_file():
        raise FileNotFoundError(f"No checkpoint at {str(path)!r}.")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except (
        RuntimeError,
        EOFError,
        OSError,
        ValueError,
        pickle.UnpicklingError,
        zipfile.BadZipFile,
        KeyError,
        IndexError,
        TypeError,
        AttributeError,
    ) as err:
        raise CheckpointError(
            f"{str(path)!r} is not a readable napari-meg-unet checkpoint: it is truncated, "
            f"corrupt or not a torch file ({type(err).__name__}: {_first_line(err)})."
            " Use another checkpoint (e.g. best.pt instead of last.pt) or retrain."
        ) from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{str(path)!r} is a torch file but not a napari-meg-unet checkpoint "
            f"(format={checkpoint.get('format') if isinstance(checkpoint, dict) else None!r})."
        )
    if checkpoint.get("format_version", 0) > CHECKPOINT_FORMAT_VERSION:
        raise CheckpointError(
            f"{str(path)!r} has checkpoint format version {checkpoint['format_version']}, newer "
            f"than this package understands ({CHECKPOINT_FORMAT_VERSION}); upgrade napari-meg-unet."
        )
    missing = [key for key in REQUIRED_FIELDS if key not in checkpoint]
    if missing:
        raise CheckpointError(f"{str(path)!r} is incomplete: it lacks {missing}.")
    checkpoint["path"] = str(path)
    return checkpoint


def check_checkpoint_compatible(
    checkpoint: dict, meta: dict, *, keys=COMPATIBILITY_KEYS, what: str = "data"
) -> None:
    """Refuse data made differently from the network's training set.

    Parameters
    ----------
    checkpoint : dict
        From :func:`load_checkpoint`.
    meta : dict
        The data's meta (``ExampleSet.meta``), or a partial dict with the keys
        that are known (missing keys are not compared).
    keys : sequence of str
        Fields compared (default: head-model fingerprint, channel names,
        hemisphere, image size, methods, inverse parameters, normalisation).
    what : str
        How to call the data in the message.

    Raises
    ------
    IncompatibleDataError
    """
    keys = [key for key in keys if key in meta]
    try:
        check_compatible(
            checkpoint["dataset_meta"], meta, keys=keys, names=("the network's training set", what)
        )
    except IncompatibleDataError as err:
        source = checkpoint.get("path", "the checkpoint")
        raise IncompatibleDataError(f"Refusing to use {source!r} on this {what}: {err}") from None


def summary(checkpoint: dict) -> dict:
    """A JSON-friendly summary of a checkpoint (no tensors)."""
    return {
        "path": checkpoint.get("path"),
        "kind": checkpoint["kind"],
        "model_name": checkpoint["model_name"],
        "model_config": checkpoint["model_config"],
        "epoch": checkpoint["epoch"],
        "batch": checkpoint.get("batch", 0),
        "best": checkpoint.get("best"),
        "dataset_fingerprint": checkpoint.get("dataset_fingerprint"),
        "headmodel_fingerprint": checkpoint.get("headmodel_fingerprint"),
        "mesh_fingerprint": checkpoint.get("mesh_fingerprint"),
        "hemi": checkpoint.get("hemi"),
        "inverse": checkpoint.get("inverse"),
        "normalisation": checkpoint.get("normalisation"),
        "versions": checkpoint.get("versions"),
    }
