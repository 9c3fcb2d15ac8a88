"""From time courses to maps: time windows, window-mean maps and per-sample maps."""

from __future__ import annotations

import numbers

import numpy as np


def _check_window(window, n_times):
    if isinstance(window, slice):
        idx = np.arange(n_times)[window]
    elif isinstance(window, tuple) and len(window) == 2:
        start, stop = window
        if not all(isinstance(v, numbers.Integral) for v in window) or not (
            0 <= start < stop <= n_times
        ):
            raise ValueError(
                f"window=(start, stop) must be sample indices with 0 <= start < stop <= "
                f"n_times={n_times}, got {window!r}."
            )
        idx = np.arange(start, stop)
    else:
        window = np.asarray(window)
        if window.dtype == bool:
            if window.shape != (n_times,):
                raise ValueError(
                    f"A boolean window must have shape (n_times={n_times},), got {window.shape}."
                )
            idx = np.flatnonzero(window)
        elif window.ndim == 1 and np.issubdtype(window.dtype, np.integer):
            if ((window < -n_times) | (window >= n_times)).any():
                raise ValueError(f"window indices must be in [0, {n_times}), got {window}.")
            idx = window
        else:
            raise ValueError(
                "window must be a slice, a (start, stop) tuple of sample indices, an integer "
                f"index array or a boolean mask over the times; got {window!r}."
            )
    if len(idx) == 0:
        raise ValueError(f"window {window!r} selects no time sample.")
    return idx


def _check_time_courses(estimate_t, name="estimate_t"):
    estimate_t = np.asarray(estimate_t)
    if estimate_t.ndim not in (2, 3):
        raise ValueError(
            f"{name} must have shape (n_rows, n_times) or (n_events, n_rows, n_times), got "
            f"{estimate_t.shape}."
        )
    return estimate_t


def window_map(estimate_t, window):
    """Mean absolute estimate over a time window: the map the network sees.

    Parameters
    ----------
    estimate_t : array, shape (n_rows, n_times) or (n_events, n_rows, n_times)
        Estimate time courses.
    window : slice | tuple of int | array of int | array of bool
        The time samples (indices, not seconds): a slice, ``(start, stop)``
        (half-open), an index array or a boolean mask of length ``n_times``.

    Returns
    -------
    map : array, shape (n_rows,) or (n_events, n_rows)
        ``mean |estimate_t|`` over the window; its peak is the window's peak.
    """
    estimate_t = _check_time_courses(estimate_t)
    idx = _check_window(window, estimate_t.shape[-1])
    return np.abs(np.take(estimate_t, idx, axis=-1)).mean(axis=-1)


def sample_maps(estimate_t, *, samples=None):
    """One map per time sample (the thesis protocol scores each sample's map).

    Parameters
    ----------
    estimate_t : array, shape (n_rows, n_times) or (n_events, n_rows, n_times)
        Estimate time courses.
    samples : slice | tuple of int | array of int | array of bool | None
        The time samples to keep (as ``window`` in :func:`window_map`); all
        samples if None.

    Returns
    -------
    maps : array, shape (n_maps, n_rows)
        The maps, event by event then sample by sample.
    event_ids : array of int, shape (n_maps,)
        The event each map comes from (all 0 for a 2-D input), for
        :func:`aggregate`: maps of one event are correlated and must be
        averaged before the events are.
    """
    estimate_t = _check_time_courses(estimate_t)
    squeeze = estimate_t.ndim == 2
    if squeeze:
        estimate_t = estimate_t[np.newaxis]
    n_events, n_rows, n_times = estimate_t.shape
    idx = np.arange(n_times) if samples is None else _check_window(samples, n_times)
    maps = np.moveaxis(np.take(estimate_t, idx, axis=-1), -1, 1).reshape(-1, n_rows)
    event_ids = np.repeat(np.arange(n_events), len(idx))
    return maps, event_ids
