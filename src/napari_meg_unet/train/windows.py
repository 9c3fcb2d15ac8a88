"""Sliding a network over a recording of any length: windows in, one stitched map out.

A network is trained on images of ``n_times`` samples (its window). A longer
recording is cut into windows of that length starting every ``hop`` samples
(``hop = round(window * (1 - overlap))``, the last window ending on the last
sample); each window is normalised as the training images were (column-max,
global-max or none) and predicted alone; the per-window maps are averaged
with triangular weights (largest at a window's centre, where the network
sees the most context), so every sample gets one value.
"""

from __future__ import annotations

import numpy as np

from .._validation import check_int, check_number
from ..inverse.stacks import _normalise


def window_starts(n_times: int, window: int, overlap: float = 0.5) -> np.ndarray:
    """First sample of every window covering ``n_times`` samples (the last ends at the end)."""
    n_times = check_int(n_times, "n_times", minimum=1)
    window = check_int(window, "window", minimum=1)
    overlap = check_number(overlap, "overlap", minimum=0.0, maximum=0.9, strict=False)
    if n_times < window:
        raise ValueError(
            f"The data have {n_times} samples, fewer than the network's window of {window}."
        )
    hop = max(1, int(round(window * (1.0 - overlap))))
    starts = list(range(0, n_times - window + 1, hop))
    if starts[-1] + window < n_times:
        starts.append(n_times - window)
    return np.asarray(starts, dtype=int)


def window_weights(window: int) -> np.ndarray:
    """Triangular weights (peak at the centre, > 0 at both ends) of one window's samples."""
    t = np.arange(window)
    return np.minimum(t + 1, window - t).astype(np.float64)


def cut_windows(images, starts, window: int, normalisation: str) -> np.ndarray:
    """``images`` (n_methods, n_rows, n_times) as normalised windows (n_win, n_methods, n_rows, W).

    Each window is normalised per method, as :func:`~napari_meg_unet.inverse.make_input_stack`
    normalises a training image.
    """
    images = np.asarray(images)
    out = np.stack([images[..., s : s + window] for s in starts]).astype(np.float32)
    for m in range(out.shape[1]):
        out[:, m] = _normalise(out[:, m], normalisation)
    return out


def stitch(maps, starts, n_times: int) -> np.ndarray:
    """Per-window maps (n_win, n_rows, W) averaged into one (n_rows, n_times) map."""
    maps = np.asarray(maps, dtype=np.float64)
    window = maps.shape[-1]
    w = window_weights(window)
    total = np.zeros(maps.shape[1:-1] + (n_times,))
    weight = np.zeros(n_times)
    for start, m in zip(starts, maps, strict=True):
        total[..., start : start + window] += m * w
        weight[start : start + window] += w
    if (weight == 0).any():
        raise ValueError("The windows do not cover every sample.")
    return total / weight
