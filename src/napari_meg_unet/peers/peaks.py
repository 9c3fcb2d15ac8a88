"""Sources read off a map on the mesh: its peaks, and their centres of mass off the grid.

:func:`propose_peaks` reads sources off a map (e.g. a network's window map,
:mod:`napari_meg_unet.accuracy.hybrids`): the local maxima over the mesh
adjacency (the peaks a map's DLE is scored with), strongest first, that reach
``threshold`` times the map's maximum, at most ``max_sources``.
:func:`centre_of_mass` moves each peak off the grid: the amplitude-weighted
mean position of the peak vertex and its mesh neighbours.
"""

from __future__ import annotations

import numpy as np

from .._validation import check_int, check_number
from ..metrics.peaks import _find_peaks


def propose_peaks(amplitude, adjacency, *, threshold=0.5, max_sources=5) -> np.ndarray:
    """Rows of the map's peaks proposed as sources, strongest first.

    Parameters
    ----------
    amplitude : array, shape (n_rows,)
        A non-negative map.
    adjacency : scipy.sparse matrix, shape (n_rows, n_rows)
        Mesh adjacency of the rows.
    threshold : float
        Keep the local maxima at or above ``threshold`` times the maximum (0-1].
    max_sources : int
        At most this many peaks.

    Returns
    -------
    rows : ndarray of int
        Empty for an all-zero map.
    """
    amplitude = np.asarray(amplitude, np.float64)
    if amplitude.ndim != 1 or adjacency.shape != (len(amplitude),) * 2:
        raise ValueError("amplitude must be one map over the adjacency's rows.")
    if not np.isfinite(amplitude).all() or (amplitude < 0).any():
        raise ValueError("amplitude must be finite and non-negative.")
    check_number(threshold, "threshold", minimum=0, maximum=1, strict=True)
    max_sources = check_int(max_sources, "max_sources", minimum=1)
    peaks = _find_peaks(amplitude, None, max_sources, adjacency.tocsr(), None)
    if len(peaks) == 0:
        return peaks
    return peaks[amplitude[peaks] >= threshold * amplitude[peaks[0]]]


def centre_of_mass(amplitude, rows, adjacency, positions) -> np.ndarray:
    """The amplitude-weighted mean position of each row and its mesh neighbours.

    Parameters
    ----------
    amplitude : array, shape (n_rows,)
        A non-negative map.
    rows : array of int, shape (m,)
        The peaks.
    adjacency : scipy.sparse matrix, shape (n_rows, n_rows)
        Mesh adjacency of the rows.
    positions : array, shape (n_rows, 3)
        Row positions (metres).

    Returns
    -------
    centres : ndarray, shape (m, 3)
        A row whose neighbourhood has no weight keeps its own position.
    """
    amplitude = np.asarray(amplitude, np.float64)
    adjacency = adjacency.tocsr()
    out = np.empty((len(rows), 3))
    for k, row in enumerate(np.asarray(rows, int)):
        hood = np.concatenate([[row], adjacency.indices[adjacency.indptr[row]:
                                                        adjacency.indptr[row + 1]]])
        w = amplitude[hood]
        out[k] = positions[row] if w.sum() <= 0 else w @ positions[hood] / w.sum()
    return out
