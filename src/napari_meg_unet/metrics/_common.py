"""Units, the chunk size of the vectorised scorers and exact squared distances."""

from __future__ import annotations

import numpy as np

M_TO_MM = 1000.0
M_TO_CM = 100.0
# Elements per temporary (n_chunk, n_rows) array in the vectorised scorers.
_CHUNK_ELEMENTS = 1 << 22


def _squared_distances(coords, points):
    """Squared distances (n_points, n_rows) from ``points`` (n_points, 3) to ``coords`` (3, n_rows).

    Coordinate by coordinate on contiguous (n_points, n_rows) arrays: exact
    differences (no |p|^2 - 2 p.q + |q|^2 cancellation) and fast.
    """
    d2 = np.zeros((len(points), coords.shape[1]))
    for axis in range(3):
        diff = coords[axis][np.newaxis] - points[:, axis, np.newaxis]
        d2 += diff * diff
    return d2
