"""Sensor data handed to the inverse: shapes, channel picking, NaN/Inf and flat channels."""

from __future__ import annotations

import sys
import warnings

import numpy as np

from .._validation import check_finite_data

#: Data are scanned in blocks of this many samples (memory-mapped data are never loaded whole).
_CHUNK = 1024


def _torch_if_loaded():
    return sys.modules.get("torch")


def _is_tensor(obj) -> bool:
    torch = _torch_if_loaded()
    return torch is not None and isinstance(obj, torch.Tensor)


def _like(xp, array, ref):
    """``array`` as an array of the library ``xp`` with the dtype and device of ``ref``."""
    if xp is np:
        return array
    return xp.as_tensor(array, dtype=ref.dtype, device=ref.device)


def _as_data(data, n_channels_expected: int, what: str = "data"):
    """Return ``data`` as float64 (numpy or torch), checked for shape and finiteness."""
    if _is_tensor(data):
        import torch

        if data.ndim < 2:
            raise ValueError(
                f"{what} must have shape (..., n_channels, n_times), got {tuple(data.shape)}."
            )
        data = data.to(torch.float64)
        finite = bool(torch.isfinite(data).all())
    else:
        data = np.asarray(data)
        if data.dtype.kind not in "fiu":
            raise ValueError(f"{what} must be a real numeric array, got dtype {data.dtype}.")
        data = data.astype(np.float64, copy=False)
        if data.ndim < 2:
            raise ValueError(
                f"{what} must have shape (..., n_channels, n_times), got {data.shape}."
            )
        finite = bool(np.isfinite(data).all())
    if data.shape[-2] != n_channels_expected:
        raise ValueError(
            f"{what} has {data.shape[-2]} channels (axis -2 of shape {tuple(data.shape)}) "
            f"but the kernel has {n_channels_expected}; pass ch_names to pick the "
            "kernel's channels from the data."
        )
    if not finite:
        raise ValueError(f"{what} contains NaN or infinite values.")
    return data


def _pick_data_channels(data, data_ch_names, kernel_ch_names):
    """Select (and reorder) the kernel's channels from data with ``data_ch_names``."""
    data_ch_names = list(data_ch_names)
    if len(data_ch_names) != data.shape[-2]:
        raise ValueError(
            f"ch_names has {len(data_ch_names)} names but data has {data.shape[-2]} "
            f"channels (axis -2 of shape {tuple(data.shape)})."
        )
    index = {name: ii for ii, name in enumerate(data_ch_names)}
    missing = [name for name in kernel_ch_names if name not in index]
    if missing:
        raise ValueError(
            f"{len(missing)} channels of the kernel are missing from the data ch_names: "
            f"{missing[:10]}{' ...' if len(missing) > 10 else ''}."
        )
    sel = [index[name] for name in kernel_ch_names]
    if sel == list(range(len(data_ch_names))):
        return data
    if _is_tensor(data):
        import torch

        return data[..., torch.as_tensor(sel, device=data.device), :]
    return np.asarray(data)[..., sel, :]


def _host_batch(data):
    """``data`` as a host array of shape (n_samples, ..., n_channels, n_times), not copied."""
    if _is_tensor(data):
        data = data.detach().cpu().numpy()
    elif not hasattr(data, "shape"):
        data = np.asarray(data)
    if data.ndim < 2:
        raise ValueError(
            f"data must have shape (..., n_channels, n_times), got {tuple(data.shape)}."
        )
    return data[np.newaxis] if data.ndim == 2 else data


def _used_channels(info) -> set[str]:
    """Channels of ``info`` an operator made from it can use (all but the bad ones)."""
    return set(info["ch_names"]) - set(info["bads"])


def check_data_finite(data, *, where: str, axis_name: str = "event", ch_names=None, used=None):
    """Refuse NaN/Inf in ``data`` naming ``where`` and the first bad sample (``axis_name``).

    With ``ch_names`` (the names of axis -2) and ``used`` (a set of names),
    only the channels an inverse would use are checked.
    """
    data = _host_batch(data)
    if ch_names is not None and used is not None:
        sel = [ii for ii, name in enumerate(ch_names) if name in used]
        if len(sel) < data.shape[-2]:
            data = data[..., sel, :]
    check_finite_data(data, where=where, axis_name=axis_name, chunk=_CHUNK)


def warn_flat_channels(data, ch_names, *, where: str, used=None) -> list[str]:
    """Warn about channels with zero variance over every sample and time of ``data``.

    Parameters
    ----------
    data : array-like | torch.Tensor, shape (..., n_channels, n_times)
        Sensor data (memory-mapped data are scanned in blocks).
    ch_names : list of str
        Names of axis -2.
    where : str
        What the data are (a file, "data"), for the message.
    used : set of str | None
        Only these channels are reported (those the inverse uses); None: all.

    Returns
    -------
    flat : list of str
        The flat channels (a :class:`RuntimeWarning` names them when any).
    """
    data = _host_batch(data)
    n_samples, n_times = data.shape[0], data.shape[-1]
    if n_samples * n_times < 2 or len(ch_names) != data.shape[-2]:
        return []
    other_axes = tuple(ax for ax in range(data.ndim) if ax != data.ndim - 2)
    lo = hi = None
    for start in range(0, n_samples, _CHUNK):
        block = np.asarray(data[start : start + _CHUNK])
        bmin, bmax = block.min(axis=other_axes), block.max(axis=other_axes)
        lo = bmin if lo is None else np.minimum(lo, bmin)
        hi = bmax if hi is None else np.maximum(hi, bmax)
    flat = [ch_names[ii] for ii in np.flatnonzero(lo == hi) if used is None or ch_names[ii] in used]
    if flat:
        more = f" and {len(flat) - 10} more" if len(flat) > 10 else ""
        warnings.warn(
            f"{where}: {len(flat)} channel(s) are flat (zero variance over every sample and "
            f"time): {', '.join(flat[:10])}{more}. They carry no signal; mark them bad "
            "(info['bads']) in the head model if they are broken.",
            RuntimeWarning,
            stacklevel=2,
        )
    return flat
