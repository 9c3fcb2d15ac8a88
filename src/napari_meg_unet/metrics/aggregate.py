"""Per-event aggregation: bootstrap CIs, per-vertex means and their text form."""

from __future__ import annotations

import numpy as np

from .._validation import check_choice, check_int
from ._checks import _check_below_one
from ._common import _CHUNK_ELEMENTS

NAN_POLICIES = ("propagate", "omit", "raise")


def bootstrap_ci(values, *, n_boot=2000, ci=0.95, seed=0):
    """Percentile bootstrap confidence interval of the mean of independent values.

    Parameters
    ----------
    values : array, shape (n,)
        Independent observations (e.g. per-event means, see :func:`aggregate`).
    n_boot : int
        Number of bootstrap resamples.
    ci : float
        Coverage of the interval, in (0, 1).
    seed : None | int | numpy.random.Generator
        Seed of :func:`numpy.random.default_rng`.

    Returns
    -------
    low, high : float
        The ``(1 - ci) / 2`` and ``(1 + ci) / 2`` quantiles of the resampled
        means (NaN if ``values`` contains NaN).
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"values must be a non-empty 1-D array, got shape {values.shape}.")
    n_boot = check_int(n_boot, "n_boot", minimum=1)
    ci = _check_below_one(ci, "ci", allow_zero=False)
    rng = np.random.default_rng(seed)
    n = values.size
    means = np.empty(n_boot)
    chunk = max(1, _CHUNK_ELEMENTS // n)
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        means[start:stop] = values[rng.integers(0, n, size=(stop - start, n))].mean(axis=1)
    if np.isnan(means).any():
        return np.nan, np.nan
    low, high = np.quantile(means, [(1 - ci) / 2, (1 + ci) / 2])
    return float(low), float(high)


def aggregate(values, event_ids, *, n_boot=2000, ci=0.95, seed=0, nan_policy="propagate"):
    """Mean over events, with a bootstrap CI that resamples events.

    Samples (maps) of one event are correlated: the thesis treated them as
    independent, which shrinks confidence intervals. Here the samples of each
    event are averaged first, and the events are the bootstrap units.

    Parameters
    ----------
    values : array, shape (n_maps,)
        A per-map metric (e.g. ``scores["dle_mm"]``).
    event_ids : array, shape (n_maps,)
        The event of each map (any hashable labels, e.g. from
        :func:`sample_maps`).
    n_boot, ci, seed
        See :func:`bootstrap_ci`.
    nan_policy : ``"propagate"`` | ``"omit"`` | ``"raise"``
        What to do with NaN values (e.g. all-zero maps): keep them (the mean
        and CI become NaN), drop them (events left without values are
        dropped), or raise a ValueError.

    Returns
    -------
    result : dict
        ``mean`` (mean of the per-event means, in the units of ``values``),
        ``ci_low``, ``ci_high``, ``ci`` (the coverage), ``n_events`` and
        ``n_maps`` (counts used).
    """
    check_choice(nan_policy, "nan_policy", NAN_POLICIES)
    values = np.asarray(values, dtype=np.float64)
    event_ids = np.asarray(event_ids)
    if values.ndim != 1 or event_ids.shape != values.shape or values.size == 0:
        raise ValueError(
            f"values and event_ids must be non-empty 1-D arrays of the same length, got "
            f"{values.shape} and {event_ids.shape}."
        )
    missing = np.isnan(values)
    if missing.any():
        if nan_policy == "raise":
            raise ValueError(f"values contains {int(missing.sum())} NaN (nan_policy='raise').")
        if nan_policy == "omit":
            values, event_ids = values[~missing], event_ids[~missing]
            if values.size == 0:
                raise ValueError("values has no non-NaN entry (nan_policy='omit').")
    events, inverse = np.unique(event_ids, return_inverse=True)
    event_means = np.bincount(inverse, weights=values) / np.bincount(inverse)
    low, high = bootstrap_ci(event_means, n_boot=n_boot, ci=ci, seed=seed)
    return {
        "mean": float(event_means.mean()),
        "ci_low": low,
        "ci_high": high,
        "ci": float(ci),
        "n_events": int(events.size),
        "n_maps": int(values.size),
    }


def per_event_mean(values, event_ids):
    """Mean of a per-map metric for each event, NaNs dropped (e.g. for DLE densities).

    Parameters
    ----------
    values : array, shape (n_maps,)
        A per-map metric (e.g. ``scores["dle_mm"]``).
    event_ids : array, shape (n_maps,)
        The event of each map.

    Returns
    -------
    means : array, shape (n_events,)
        The mean of each event's finite values, in sorted event order; events
        without a finite value are left out.
    """
    values = np.asarray(values, dtype=np.float64)
    event_ids = np.asarray(event_ids)
    if values.ndim != 1 or event_ids.shape != values.shape:
        raise ValueError(
            f"values and event_ids must be 1-D of the same length, got {values.shape} and "
            f"{event_ids.shape}."
        )
    keep = np.isfinite(values)
    _, inverse = np.unique(event_ids[keep], return_inverse=True)
    return np.bincount(inverse, weights=values[keep]) / np.bincount(inverse)


def per_vertex_mean(values, true_rows, n_rows):
    """Mean of a per-map metric for each true source row, for heat maps.

    Parameters
    ----------
    values : array, shape (n_maps,)
        A per-map metric.
    true_rows : array of int, shape (n_maps,)
        The row of the true source of each map.
    n_rows : int
        Number of image rows.

    Returns
    -------
    mean : array, shape (n_rows,)
        Mean metric per row; NaN for rows that are no map's true source.
    """
    values = np.asarray(values, dtype=np.float64)
    true_rows = np.asarray(true_rows)
    n_rows = check_int(n_rows, "n_rows", minimum=1)
    if values.ndim != 1 or true_rows.shape != values.shape:
        raise ValueError(
            f"values and true_rows must be 1-D of the same length, got {values.shape} and "
            f"{true_rows.shape}."
        )
    if not np.issubdtype(true_rows.dtype, np.integer) or (
        true_rows.size and (true_rows.min() < 0 or true_rows.max() >= n_rows)
    ):
        raise ValueError(f"true_rows must be integers in [0, {n_rows}).")
    counts = np.bincount(true_rows, minlength=n_rows)
    sums = np.bincount(true_rows, weights=values, minlength=n_rows)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def format_aggregate(agg, *, digits=None) -> str:
    """``"mean [ci_low, ci_high]"`` of an aggregate dict, or ``"n/a"``.

    Parameters
    ----------
    agg : dict | None
        From :func:`napari_meg_unet.metrics.aggregate`.
    digits : int | None
        Decimals; None uses 1 for values of at least 10 and 3 otherwise.

    Returns
    -------
    text : str
    """
    if agg is None:
        return "n/a"
    mean = agg.get("mean", np.nan)
    if mean is None or not np.isfinite(mean):
        return "n/a"
    if digits is None:
        digits = 1 if abs(mean) >= 10 else 3
    low, high = agg.get("ci_low"), agg.get("ci_high")
    if low is None or high is None or not (np.isfinite(low) and np.isfinite(high)):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"
