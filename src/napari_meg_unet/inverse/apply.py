"""Applying imaging kernels to batches of sensor data (numpy or torch)."""

from __future__ import annotations

import numpy as np

from .._logging import verbose as _verbose
from .._validation import check_choice
from ..device import resolve_device
from ._common import BACKENDS, NOISE_NORMALISED, PICK_ORIS, _check_methods
from ._data import _as_data, _is_tensor, _like, _pick_data_channels, _torch_if_loaded
from ._docs import fill_doc
from .kernels import InverseKernel, compute_kernel


def _combine(xp, kernel, y, pick_ori):
    """Turn ``y = K @ data`` (..., n_components, n_times) into the ``pick_ori`` output."""
    n_sources = kernel.n_sources
    if kernel.n_orient == 1:
        if pick_ori == "vector":
            nn = _like(xp, kernel.source_nn, y)
            return y[..., :, None, :] * nn[:, :, None]
        return y
    y3 = y.reshape(*y.shape[:-2], n_sources, 3, y.shape[-1])
    if pick_ori is None:
        return xp.sqrt((y3 * y3).sum(-2))
    if pick_ori == "normal":
        if kernel.frame != "local":
            raise ValueError(
                "pick_ori='normal' needs a kernel in the surface frame; this kernel's rows are "
                "head x, y, z. Compute it with compute_kernel(..., pick_ori='normal')."
            )
        return y3[..., 2, :]
    frames = _like(xp, kernel.source_nn.reshape(n_sources, 3, 3), y)
    return xp.einsum("icd,...ict->...idt", frames, y3)


def _kernel_product(K, data):
    """``K @ data`` over any leading batch dimensions, as one large matrix product.

    ``np.matmul`` on a stack runs one small product per batch entry; folding
    the batch and time axes into one (B * n_times, n_channels) matrix is about
    twice as fast. The result is a strided view with the usual shape
    (..., n_components, n_times).
    """
    if data.ndim == 2:
        return K @ data
    *lead, n_channels, n_times = data.shape
    flat = np.swapaxes(data, -1, -2).reshape(-1, n_channels)
    y = flat @ K.T
    return np.swapaxes(y.reshape(*lead, n_times, K.shape[0]), -1, -2)


def _kernel_device(device):
    """The torch device of the ``torch`` backend (float64: ``auto`` never picks MPS)."""
    import torch

    if device is None or device == "auto":
        dev = resolve_device("auto")
        return torch.device("cpu") if dev.type == "mps" else dev
    dev = resolve_device(device)
    if dev.type == "mps":
        raise ValueError(
            "device='mps' cannot hold the float64 kernels (Apple MPS has no float64); "
            "use device='cpu'."
        )
    return dev


@fill_doc
def apply_kernel(kernel, data, *, pick_ori=None, ch_names=None, backend="numpy", device=None):
    """Apply an imaging kernel to a batch of sensor data.

    Parameters
    ----------
    kernel : InverseKernel
        From :func:`compute_kernel`.
    data : array-like | torch.Tensor, shape (..., n_channels, n_times)
        Sensor data in SI units, any leading batch dimensions (e.g. events).
    pick_ori : None | 'normal' | 'vector'
        Output per location, as :func:`mne.minimum_norm.apply_inverse`:
        None gives the signed value of a 1-component kernel and the magnitude
        over the 3 components otherwise; ``'normal'`` the signed normal
        component; ``'vector'`` the current vector in head x, y, z.
    %(data_ch_names)s
    %(kernel_backend)s
    %(kernel_device)s

    Returns
    -------
    estimate : ndarray | torch.Tensor, shape (..., n_sources[, 3], n_times)
        float64 source estimates; a torch tensor (on ``device``) when
        ``data`` is a tensor, else a numpy array.
    """
    if not isinstance(kernel, InverseKernel):
        raise ValueError(f"kernel must be an InverseKernel, got {type(kernel).__name__}.")
    pick_ori = check_choice(pick_ori, "pick_ori", PICK_ORIS)
    check_choice(backend, "backend", BACKENDS)
    if ch_names is not None:
        data = _pick_data_channels(data, ch_names, kernel.ch_names)
    is_tensor = _is_tensor(data)
    data = _as_data(data, kernel.n_channels)
    if backend == "numpy":
        if is_tensor:
            data = data.detach().cpu().numpy()
        out = _combine(np, kernel, _kernel_product(kernel.K, data), pick_ori)
        if is_tensor:
            import torch

            return torch.from_numpy(np.ascontiguousarray(out))
        return out
    import torch

    dev = _kernel_device(device)
    x = data.to(dev) if is_tensor else torch.from_numpy(np.ascontiguousarray(data)).to(dev)
    K = torch.as_tensor(kernel.K, dtype=torch.float64, device=dev)
    out = _combine(torch, kernel, torch.matmul(K, x), pick_ori)
    return out if is_tensor else out.cpu().numpy()


@fill_doc
@_verbose
def apply_inverse_batch(
    inv,
    data,
    *,
    methods=("MNE", "dSPM", "sLORETA"),
    lambda2=1.0 / 9.0,
    nave=1,
    pick_ori=None,
    ch_names=None,
    backend="numpy",
    device=None,
    method_params=None,
    verbose=None,
) -> dict:
    """Apply several inverse methods to a batch of data.

    Parameters
    ----------
    %(inv_operator)s
    data : array-like, shape (..., n_channels, n_times)
        Sensor data (see :func:`apply_kernel`).
    %(methods)s
        In output order.
    %(lambda2)s
    %(nave)s
    pick_ori : None | 'normal' | 'vector'
        Output per location (see :func:`apply_kernel`).
    %(data_ch_names)s
    %(kernel_backend)s
    %(kernel_device)s
    %(method_params)s
    %(verbose)s

    Returns
    -------
    estimates : dict
        ``{method: array (..., n_sources[, 3], n_times)}``.
    """
    methods = _check_methods(methods)
    kernels = {
        method: compute_kernel(
            inv,
            method=method,
            lambda2=lambda2,
            nave=nave,
            pick_ori="normal" if pick_ori == "normal" else None,
            method_params=method_params,
            verbose=verbose,
        )
        for method in dict.fromkeys(methods + ("MNE",))
    }
    apply = dict(pick_ori=pick_ori, ch_names=ch_names, backend=backend, device=device)
    out = {}
    # dSPM and sLORETA are the MNE estimate scaled per location by the noise
    # normalisation (§1.10, also after combining 3 components), so one kernel
    # product serves all three.
    family = [m for m in methods if m in NOISE_NORMALISED or m == "MNE"]
    if len(family) > 1:
        base = apply_kernel(kernels["MNE"], data, **apply)
        n_trailing = 2 if pick_ori == "vector" else 1  # (..., n_sources[, 3], n_times)
        for method in family:
            norm = kernels[method].noise_norm
            if norm is None:
                out[method] = base
                continue
            norm = _like(_torch_if_loaded() if _is_tensor(base) else np, norm, base)
            out[method] = base * norm.reshape(norm.shape + (1,) * n_trailing)
    for method in methods:
        if method not in out:
            out[method] = apply_kernel(kernels[method], data, **apply)
    return {method: out[method] for method in methods}
