"""Checks of the metric inputs: maps, positions, true sources, adjacency, fractions.

Generic checks (integers, numbers, choices) come from
:mod:`napari_meg_unet._validation`; these add the shapes and units of the
metrics' own arrays.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

from .._validation import check_number


def _check_positions(positions, name="positions"):
    positions = np.asarray(positions, dtype=np.float64)
    if positions.ndim != 2 or positions.shape[1] != 3:
        raise ValueError(f"{name} must have shape (n_rows, 3) in metres, got {positions.shape}.")
    if not np.isfinite(positions).all():
        raise ValueError(f"{name} must be finite.")
    return positions


def _check_map(estimate, n_rows=None, name="estimate"):
    estimate = np.asarray(estimate)
    if estimate.ndim != 1 or estimate.size == 0:
        raise ValueError(
            f"{name} must be one non-empty map of shape (n_rows,), got shape {estimate.shape}; "
            "turn a time course into maps with sample_maps() or window_map()."
        )
    if n_rows is not None and estimate.shape[0] != n_rows:
        raise ValueError(f"{name} has {estimate.shape[0]} rows but positions has {n_rows}.")
    estimate = estimate.astype(np.float64, copy=False)
    if not np.isfinite(estimate).all():
        raise ValueError(f"{name} must be finite.")
    return estimate


def _check_maps(maps, n_rows, name="maps"):
    maps = np.asarray(maps)
    if maps.ndim != 2 or maps.shape[1] != n_rows:
        raise ValueError(f"{name} must have shape (n_maps, n_rows={n_rows}), got {maps.shape}.")
    maps = maps.astype(np.float64, copy=False)
    if not np.isfinite(maps).all():
        raise ValueError(f"{name} must be finite.")
    return maps


def _check_truth_maps(truth_maps, n_rows, n_maps):
    if truth_maps is None:
        return None
    truth_maps = _check_maps(truth_maps, n_rows, "truth_maps")
    if len(truth_maps) != n_maps:
        raise ValueError(f"truth_maps has {len(truth_maps)} maps but maps has {n_maps}.")
    return truth_maps


def _check_true_positions(true_positions, name="true_positions"):
    true_positions = np.asarray(true_positions, dtype=np.float64)
    if true_positions.ndim == 1:
        true_positions = true_positions[np.newaxis]
    if true_positions.ndim != 2 or true_positions.shape[1] != 3 or len(true_positions) == 0:
        raise ValueError(
            f"{name} must have shape (3,) or (n_sources, 3) in metres, got {true_positions.shape}."
        )
    if not np.isfinite(true_positions).all():
        raise ValueError(f"{name} must be finite.")
    return true_positions


def _check_true_positions_per_map(true_positions_per_map, n_maps):
    """Return ``(single, tp)``: ``tp`` is (n_maps, 3) if single else a list of (k_i, 3)."""
    name = "true_positions_per_map"
    if isinstance(true_positions_per_map, np.ndarray) or not isinstance(
        true_positions_per_map, list | tuple
    ):
        tp = np.asarray(true_positions_per_map, dtype=np.float64)
        if tp.ndim == 2 and tp.shape == (n_maps, 3):
            if not np.isfinite(tp).all():
                raise ValueError(f"{name} must be finite.")
            return True, tp
        if tp.ndim == 3 and tp.shape[0] == n_maps and tp.shape[2] == 3 and tp.shape[1] > 0:
            if tp.shape[1] == 1:
                return _check_true_positions_per_map(tp[:, 0], n_maps)
            return False, [_check_true_positions(t, name) for t in tp]
        raise ValueError(
            f"{name} must have shape (n_maps={n_maps}, 3) or (n_maps, n_sources, 3), or be a "
            f"list of n_maps arrays of shape (n_sources_i, 3); got shape {tp.shape}."
        )
    if len(true_positions_per_map) != n_maps:
        raise ValueError(
            f"{name} has {len(true_positions_per_map)} entries but there are {n_maps} maps."
        )
    tp = [_check_true_positions(t, f"{name}[{i}]") for i, t in enumerate(true_positions_per_map)]
    if all(len(t) == 1 for t in tp):
        return True, np.concatenate(tp, axis=0) if tp else np.empty((0, 3))
    return False, tp


def _check_adjacency(adjacency, n_rows):
    if adjacency is None:
        return None
    if not sparse.issparse(adjacency):
        raise ValueError(
            f"adjacency must be a scipy sparse matrix (n_rows x n_rows), got {type(adjacency)}."
        )
    if adjacency.shape != (n_rows, n_rows):
        raise ValueError(f"adjacency must have shape ({n_rows}, {n_rows}), got {adjacency.shape}.")
    adjacency = sparse.csr_matrix(adjacency)
    # only the sparsity structure is used: drop self-loops and explicit zeros
    if adjacency.diagonal().any() or (adjacency.data == 0).any():
        adjacency = adjacency.copy()
        adjacency.setdiag(0)
        adjacency.eliminate_zeros()
    return adjacency


def _check_below_one(value, name, *, allow_zero=True):
    """A number in ``[0, 1)`` (``(0, 1)`` without ``allow_zero``).

    Used for relative thresholds and CI coverages, where 1 would leave nothing
    above the threshold or make the interval the whole range.
    """
    value = check_number(value, name, minimum=0.0, strict=not allow_zero)
    if value >= 1:
        raise ValueError(f"{name} must be < 1, got {value!r}.")
    return value


def _check_radius(peak_radius_mm):
    return check_number(peak_radius_mm, "peak_radius_mm", minimum=0.0, strict=False)
