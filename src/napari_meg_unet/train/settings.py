"""Run settings: devices' mixed precision, CPU threads, determinism, seeding, versions."""

from __future__ import annotations

import contextlib
import os
import platform
import random
import sys

import numpy as np
import torch

from .. import __version__
from ..configs import AMP_MODES


def _amp_dtype(amp, device: torch.device):
    if amp is True:
        amp = "bf16"
    elif amp is False or amp is None:
        amp = "off"
    if amp not in AMP_MODES:
        raise ValueError(f"amp must be one of {AMP_MODES} (or True/False), got {amp!r}.")
    if amp == "off":
        return None
    if amp == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return None
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(f"amp='bf16' is not supported on {device}.")
    return torch.bfloat16


def _default_threads(local_world_size: int) -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS / Windows
        cores = os.cpu_count() or 1
    return max(1, min(cores // max(1, local_world_size), 16))


def _set_deterministic(mode: bool, *, compile: bool) -> None:
    """``torch.use_deterministic_algorithms`` without importing inductor when unused.

    The public function imports ``torch._inductor`` (seconds) only to set its
    ``deterministic`` flag, which matters only for ``torch.compile``.
    """
    if compile or "torch._inductor.config" in sys.modules:
        torch.use_deterministic_algorithms(mode)
    else:
        torch._C._set_deterministic_algorithms(mode)


@contextlib.contextmanager
def _torch_settings(*, device, deterministic, num_threads, local_world, compile=False):
    """Thread count and determinism for the run, restored afterwards."""
    saved = (
        torch.get_num_threads(),
        torch.are_deterministic_algorithms_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )
    try:
        if num_threads is not None:
            torch.set_num_threads(num_threads)
        elif "OMP_NUM_THREADS" not in os.environ:
            torch.set_num_threads(_default_threads(local_world))
        if deterministic:
            if device.type == "cuda":
                os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            _set_deterministic(True, compile=compile)
            torch.backends.cudnn.deterministic = True
            torch.backends.cudnn.benchmark = False
        elif device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        yield
    finally:
        torch.set_num_threads(saved[0])
        if torch.are_deterministic_algorithms_enabled() != saved[1]:
            _set_deterministic(saved[1], compile=compile)
        torch.backends.cudnn.deterministic = saved[2]
        torch.backends.cudnn.benchmark = saved[3]


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - the legacy global state is what libraries use
    torch.manual_seed(seed)


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    try:
        mne_version = version("mne")
    except PackageNotFoundError:  # pragma: no cover - mne is a dependency
        mne_version = None
    return {
        "napari_meg_unet": __version__,
        "torch": str(torch.__version__),
        "numpy": np.__version__,
        "mne": mne_version,
        "python": platform.python_version(),
    }
