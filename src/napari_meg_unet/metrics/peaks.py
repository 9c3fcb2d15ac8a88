"""Peak finding on a map and the (dipole) peak localisation error."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from ._checks import (
    _check_adjacency,
    _check_map,
    _check_positions,
    _check_radius,
    _check_true_positions,
)
from ._common import M_TO_MM
from ._docs import fill_doc


def _find_peaks(amplitude, positions, n_peaks, adjacency, peak_radius_mm):
    """Rows of the ``n_peaks`` strongest peaks of a non-negative map, strongest first.

    Ties in amplitude are broken by the lower row index, like ``np.argmax``, so
    the first peak is always the global ``argmax``. Fewer rows are returned if
    the map has fewer peaks (an all-zero map has none).
    """
    n_rows = amplitude.shape[0]
    if adjacency is not None:
        order = np.lexsort((np.arange(n_rows), -amplitude))
        key = np.empty(n_rows)
        key[order] = np.arange(n_rows, 0, -1)  # unique, larger = stronger
        # strongest neighbour key per row, straight from the CSR structure
        starts = adjacency.indptr[:-1]
        has_neighbours = adjacency.indptr[1:] > starts
        neighbour_max = np.zeros(n_rows)
        if has_neighbours.any():
            neighbour_max[has_neighbours] = np.maximum.reduceat(
                key[adjacency.indices], starts[has_neighbours]
            )
        is_peak = (key > neighbour_max) & (amplitude > 0)
        return order[is_peak[order]][:n_peaks]
    radius_m = peak_radius_mm / M_TO_MM
    available = amplitude > 0
    peaks = []
    while len(peaks) < n_peaks and available.any():
        row = int(np.argmax(np.where(available, amplitude, -1.0)))
        peaks.append(row)
        available &= np.linalg.norm(positions - positions[row], axis=1) > radius_m
        available[row] = False
    return np.array(peaks, dtype=int)


def _match_peaks(true_positions, peak_positions):
    """Per-true-source distance (mm) and matched peak index after optimal assignment.

    Each peak explains at most one source (Hungarian assignment on the distance
    matrix); sources left without a peak (fewer peaks than sources) get their
    nearest peak.
    """
    n_true = len(true_positions)
    if len(peak_positions) == 0:
        return np.full(n_true, np.nan), np.full(n_true, -1)
    dist = M_TO_MM * np.linalg.norm(
        true_positions[:, np.newaxis] - peak_positions[np.newaxis], axis=-1
    )
    match = np.argmin(dist, axis=1)
    rows, cols = linear_sum_assignment(dist)
    match[rows] = cols
    return dist[np.arange(n_true), match], match


@fill_doc
def peak_localisation_error(
    estimate, positions, true_positions, *, adjacency=None, peak_radius_mm=20.0
):
    """Dipole (peak) localisation error of one estimate map.

    Parameters
    ----------
    estimate : array, shape (n_rows,)
        The estimate map; its absolute value is used.
    %(metrics_positions)s
    true_positions : array, shape (3,) or (n_sources, 3)
        True source positions in metres (they may lie off the grid).
    %(metrics_adjacency)s
    %(metrics_peak_radius_mm)s

    Returns
    -------
    result : dict
        ``dle_mm`` (float): mean over sources of the distance between each true
        source and its matched peak, in mm. ``dle_per_source_mm`` (array,
        (n_sources,)): those distances. ``peak_rows`` (int array,
        (n_sources,)): the row of the peak matched to each source.

    Notes
    -----
    One source: the distance from the true position to the row of
    ``argmax |estimate|``, i.e. MNE's ``peak_err`` (in mm instead of cm). Several
    sources: the ``n_sources`` strongest peaks are matched to the true sources
    by optimal assignment (:func:`scipy.optimize.linear_sum_assignment`), so
    the result does not depend on the order of ``true_positions``. If the map
    has fewer peaks than sources, the unmatched sources are scored against
    their nearest peak. An all-zero map has no peak: the distances are NaN and
    ``peak_rows`` is -1.
    """
    positions = _check_positions(positions)
    estimate = _check_map(estimate, len(positions))
    true_positions = _check_true_positions(true_positions)
    adjacency = _check_adjacency(adjacency, len(positions))
    peak_radius_mm = _check_radius(peak_radius_mm)
    amplitude = np.abs(estimate)
    peaks = _find_peaks(amplitude, positions, len(true_positions), adjacency, peak_radius_mm)
    per_source, match = _match_peaks(true_positions, positions[peaks])
    peak_rows = peaks[match] if len(peaks) else match
    return {
        "dle_mm": float(np.mean(per_source)),
        "dle_per_source_mm": per_source,
        "peak_rows": peak_rows,
    }
