"""Saving and loading imaging kernels (``.npy`` plus a JSON sidecar)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .._io import check_output_path, read_json, save_npy, write_json
from ._docs import fill_doc
from .kernels import InverseKernel


def _kernel_paths(path) -> tuple[Path, Path]:
    path = Path(path)
    stem = path.with_suffix("") if path.suffix == ".npy" else path
    return stem.with_name(stem.name + ".npy"), stem.with_name(stem.name + ".json")


@fill_doc
def save_kernel(kernel, path, *, overwrite=False) -> Path:
    """Save a kernel as ``<path>.npy`` (float64 ``K``) plus a ``<path>.json`` sidecar.

    Parameters
    ----------
    kernel : InverseKernel
        The kernel.
    path : path-like
        Output path, with or without the ``.npy`` suffix.
    %(overwrite)s

    Returns
    -------
    path : Path
        The ``.npy`` path. The sidecar holds :meth:`InverseKernel.metadata`
        (method, lambda2, nave, ch_names, vertno, source_nn, noise_norm,
        fingerprint if known).
    """
    if not isinstance(kernel, InverseKernel):
        raise ValueError(f"kernel must be an InverseKernel, got {type(kernel).__name__}.")
    npy, sidecar = _kernel_paths(path)
    check_output_path(npy, overwrite=overwrite, what="kernel")
    check_output_path(sidecar, overwrite=overwrite, what="kernel sidecar")
    save_npy(npy, kernel.K)
    write_json(sidecar, kernel.metadata())
    return npy


def load_kernel(path, *, mmap_mode=None) -> InverseKernel:
    """Read a kernel written by :func:`save_kernel`.

    Parameters
    ----------
    path : path-like
        The ``.npy`` path, with or without its suffix.
    mmap_mode : None | 'r' | 'r+' | 'c'
        As in :func:`numpy.load` (``'r'`` maps ``K`` read-only).

    Returns
    -------
    kernel : InverseKernel
    """
    npy, sidecar = _kernel_paths(path)
    if not npy.is_file():
        raise FileNotFoundError(f"Expected a kernel file at {str(npy)!r}; it does not exist.")
    meta = read_json(sidecar)
    K = np.load(npy, mmap_mode=mmap_mode, allow_pickle=False)
    if list(K.shape) != meta["shape"]:
        raise ValueError(
            f"{str(npy)!r} has shape {K.shape} but its sidecar says {tuple(meta['shape'])}."
        )
    return InverseKernel(
        K=K,
        method=meta["method"],
        lambda2=float(meta["lambda2"]),
        nave=int(meta["nave"]),
        n_orient=int(meta["n_orient"]),
        ch_names=list(meta["ch_names"]),
        source_nn=np.asarray(meta["source_nn"], np.float64),
        vertno=[np.asarray(v, int) for v in meta["vertno"]],
        noise_norm=None if meta["noise_norm"] is None else np.asarray(meta["noise_norm"]),
        pick_ori=meta["pick_ori"],
        frame=meta["frame"],
        method_params=dict(meta["method_params"]),
        fingerprint=meta["fingerprint"],
    )
