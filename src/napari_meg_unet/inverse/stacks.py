"""Network input stacks in the thesis layout: (samples, methods, rows, times)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .._config import takes_config
from .._logging import verbose as _verbose
from .._validation import check_choice
from ..configs import NORMALISATIONS, PRECISIONS, InverseConfig
from ..progress import Progress, plain
from ._common import PICK_ORIS, _inverse_ch_names
from ._data import _is_tensor, _used_channels, check_data_finite, warn_flat_channels
from ._docs import fill_doc
from .apply import _kernel_device, apply_kernel
from .kernels import InverseKernel, compute_kernel
from .operator import make_inverse


def _normalise(block, normalisation):
    """Normalise (n_samples, n_rows, n_times) estimates of one method in place."""
    if normalisation == "none":
        return block
    if normalisation == "column-max":
        scale = np.abs(block).max(axis=-2, keepdims=True)
    else:
        scale = np.abs(block).max(axis=(-2, -1), keepdims=True)
    scale[scale == 0] = 1.0
    block /= scale
    return block


def _as_kernel_list(kernels_or_dict) -> list[InverseKernel]:
    """The kernels of ``kernels_or_dict``, in order, all on the same sources."""
    if isinstance(kernels_or_dict, Mapping):
        kernels = list(kernels_or_dict.values())
    elif isinstance(kernels_or_dict, InverseKernel):
        kernels = [kernels_or_dict]
    elif isinstance(kernels_or_dict, Sequence):
        kernels = list(kernels_or_dict)
    else:
        raise ValueError(
            "kernels_or_dict must be an InverseKernel, a sequence of them or a dict, "
            f"got {type(kernels_or_dict).__name__}."
        )
    if not kernels:
        raise ValueError("kernels_or_dict is empty; give at least one kernel.")
    for kernel in kernels:
        if not isinstance(kernel, InverseKernel):
            raise ValueError(
                f"kernels_or_dict must hold InverseKernel objects, got {type(kernel).__name__}."
            )
    n_sources = kernels[0].n_sources
    if any(k.n_sources != n_sources for k in kernels):
        raise ValueError(
            f"All kernels must have the same sources, got {[k.n_sources for k in kernels]} sources."
        )
    return kernels


def _check_rows(rows, n_sources: int) -> np.ndarray:
    rows = np.asarray(rows)
    if rows.ndim != 1 or rows.dtype.kind not in "iu" or len(rows) == 0:
        raise ValueError(f"rows must be a non-empty 1-D integer array, got {rows!r}.")
    if rows.min() < 0 or rows.max() >= n_sources:
        raise ValueError(
            f"rows must index the {n_sources} sources, got range [{rows.min()}, {rows.max()}]."
        )
    return rows


def _as_batch(data):
    """``data`` (numpy or torch) as (n_samples, n_channels, n_times)."""
    data = np.asarray(data) if not _is_tensor(data) else data
    if data.ndim == 2:
        data = data[np.newaxis]
    if data.ndim != 3:
        raise ValueError(
            "data must have shape (n_samples, n_channels, n_times) or (n_channels, n_times), "
            f"got {tuple(data.shape)}."
        )
    return data


@fill_doc
def make_input_stack(
    kernels_or_dict,
    data,
    *,
    rows,
    normalisation="column-max",
    pick_ori=None,
    ch_names=None,
    backend="numpy",
    device=None,
    precision="float64",
    chunk=256,
) -> np.ndarray:
    """Source images in the thesis layout: (n_samples, n_methods, n_rows, n_times).

    Each method is one image channel, in the given order; rows are sources
    (``rows`` indexes the kernel's source order, e.g. ``HeadModel.rows(hemi)``)
    and columns are time samples.

    Parameters
    ----------
    kernels_or_dict : sequence of InverseKernel | dict
        Kernels (channel order = sequence order, or dict insertion order).
    data : array-like, shape (n_samples, n_channels, n_times) | (n_channels, n_times)
        Sensor data (2-D data is one sample).
    rows : array-like of int
        Source indices forming the image rows, in order.
    normalisation : 'column-max' | 'global-max' | 'none'
        How each (sample, method) image is scaled:

        ``'column-max'``
            The thesis's choice: every time column is divided by its maximum
            of ``|value|`` over the rows, so each column peaks at 1 and the
            time course of the amplitude is discarded.
        ``'global-max'``
            The whole image is divided by its maximum ``|value|`` over rows
            and times, which keeps relative amplitudes across time.
        ``'none'``
            Raw estimates (A·m for MNE/eLORETA, unitless for dSPM/sLORETA).

        All-zero columns/images stay zero.
    pick_ori : None | 'normal'
        Per-location output (see :func:`apply_kernel`); None gives signed
        values for fixed kernels and magnitudes for loose ones.
    %(data_ch_names)s
    %(kernel_backend)s
    %(kernel_device)s
    precision : 'float64' | 'float32'
        ``'float32'``: every kernel in one float32 torch product per ``chunk``
        samples (:class:`~napari_meg_unet.inverse.torch_stack.KernelStack`, the
        training stream's path; ``backend`` is ignored, ``pick_ori`` must be None).
    chunk : int
        Samples per product of the float32 path.

    Returns
    -------
    stack : ndarray of float32, shape (n_samples, n_methods, n_rows, n_times)
    """
    check_choice(normalisation, "normalisation", NORMALISATIONS)
    if pick_ori == "vector":
        raise ValueError("pick_ori must be None or 'normal' for input stacks, got 'vector'.")
    check_choice(pick_ori, "pick_ori", PICK_ORIS)
    check_choice(precision, "precision", PRECISIONS)
    kernels = _as_kernel_list(kernels_or_dict)
    rows = _check_rows(rows, kernels[0].n_sources)
    data = _as_batch(data)
    if precision == "float32":
        return _float32_stack(kernels, data, rows=rows, normalisation=normalisation,
                              pick_ori=pick_ori, ch_names=ch_names, device=device, chunk=chunk)
    n_samples, _, n_times = data.shape
    stack = np.empty((n_samples, len(kernels), len(rows), n_times), np.float32)
    for mi, kernel in enumerate(kernels):
        est = apply_kernel(
            kernel, data, pick_ori=pick_ori, ch_names=ch_names, backend=backend, device=device
        )
        if _is_tensor(est):
            est = est.cpu().numpy()
        stack[:, mi] = _normalise(est[:, rows], normalisation)
    return stack


def _float32_stack(kernels, data, *, rows, normalisation, pick_ori, ch_names, device, chunk):
    """:func:`make_input_stack` on the float32 torch path."""
    from .torch_stack import KernelStack

    if pick_ori is not None:
        raise ValueError("precision='float32' makes stacks with pick_ori=None only.")
    methods = [k.method for k in kernels]
    if len(set(methods)) != len(methods):
        raise ValueError(f"precision='float32' needs distinct methods, got {methods}.")
    names = kernels[0].ch_names if ch_names is None else list(ch_names)
    if len(names) != data.shape[1]:
        raise ValueError(
            f"data has {data.shape[1]} channels but the kernels have {len(names)}; pass "
            "ch_names to pick the kernels' channels from the data."
        )
    dev = _kernel_device(device) if device is not None else "cpu"
    stacker = KernelStack(dict(zip(methods, kernels, strict=True)), methods, rows, names,
                          normalisation=normalisation, device=dev)  # fmt: skip
    if _is_tensor(data):
        data = data.detach().cpu().numpy()
    return stacker.stack_numpy(data, chunk=chunk)


@fill_doc
@takes_config(InverseConfig)
@_verbose
def iter_inverse_stack(
    hm,
    data,
    *,
    config,
    method_params=None,
    ch_names=None,
    backend="numpy",
    device=None,
    verbose=None,
):
    """Thesis-layout input stack for a head model and sensor data, yielding progress.

    Makes the operator (:func:`make_inverse` with ``loose``/``depth``), the
    kernels of ``methods`` and returns :func:`make_input_stack` on the rows
    ``hm.rows(hemi)`` (thesis: MNE, dSPM, sLORETA on the right hemisphere,
    fixed orientation, depth 0.8); a ``nave`` of None is 1 and a ``hemi`` of
    None is ``'rh'``. The data are checked for NaN/Inf before any work; flat
    channels are named in a :class:`RuntimeWarning`.

    Parameters
    ----------
    %(hm)s
        Its ``info`` channels are the data channels unless ``ch_names`` is given.
    data : array-like, shape (n_samples, n_channels, n_times)
        Sensor data.
    %(options)s
    %(method_params)s
    %(data_ch_names)s
    %(kernel_backend)s
    %(kernel_device)s
    %(verbose)s

    Yields
    ------
    %(progress_yields)s

    Returns
    -------
    stack : ndarray of float32, shape (n_samples, n_methods, n_rows, n_times)
    """
    methods = config.methods
    nave = 1 if config.nave is None else config.nave
    hemi = "rh" if config.hemi is None else config.hemi
    used = None if ch_names is None else _used_channels(hm.info)
    check_data_finite(data, where="data", ch_names=ch_names, used=used)
    total = len(methods) + 2
    yield Progress("inverse", 0, total, "operator")
    inv = make_inverse(hm, loose=config.loose, depth=config.depth, verbose=verbose)
    names = _inverse_ch_names(inv)
    warn_flat_channels(data, names if ch_names is None else list(ch_names), where="data",
                       used=set(names))  # fmt: skip
    kernels = {}
    for ii, method in enumerate(methods):
        yield Progress("inverse", ii + 1, total, method)
        kernels[method] = compute_kernel(
            inv, method=method, lambda2=config.lambda2, nave=nave, method_params=method_params,
            fingerprint=hm.fingerprint, verbose=verbose,
        )  # fmt: skip
    yield Progress("inverse", total - 1, total, "stack")
    stack = make_input_stack(
        kernels, data, rows=hm.rows(hemi), normalisation=config.normalisation,
        ch_names=ch_names, backend=backend, device=device, precision=config.precision,
    )  # fmt: skip
    yield Progress("inverse", total, total, "done")
    return stack


inverse_stack = plain(iter_inverse_stack)
