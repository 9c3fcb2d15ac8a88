"""Display orders of vertex rows in which cortical neighbours are image neighbours.

The documented row order (``HeadModel.rows(hemi)``: lh vertices by vertex
number, then rh) is what the networks are trained on and what every array of
the core uses. For *display* only, the rows of a stack can be permuted so that
a cortical blob shows as a blob instead of stripes scattered over the image:

``"source"``
    The documented order (the default; the networks rely on it).
``"spectral"``
    Each hemisphere sorted by the Fiedler vector of its mesh graph (the
    eigenvector of the second smallest eigenvalue of the graph Laplacian): a
    smooth 1-D coordinate along the hemisphere's longest extent.
``"bisection"``
    Recursive spectral bisection: each hemisphere split at the median of its
    Fiedler vector, each half ordered the same way down to a few vertices —
    a space-filling order that keeps small patches in few runs of rows.

:func:`edge_spread` and :func:`patch_runs` measure how readable an order is
(``benchmarks/row_order.py`` prints them for the template head model).
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

ORDERS = ("source", "spectral", "bisection")
#: Subsets at most this large are ordered by their Fiedler vector directly.
LEAF = 8


def _fiedler(adjacency) -> np.ndarray:
    """Fiedler vector of a (possibly disconnected) graph given by a sparse adjacency."""
    n = adjacency.shape[0]
    if n <= 2:
        return np.arange(n, dtype=float)
    laplacian = sparse.csgraph.laplacian(adjacency.astype(float), normed=True)
    if n <= 2000:
        from scipy.linalg import eigh

        _, vectors = eigh(laplacian.toarray(), subset_by_index=(0, 1))
    else:
        from scipy.sparse.linalg import eigsh

        _, vectors = eigsh(laplacian, k=2, sigma=-1e-3, which="LM")
    vector = vectors[:, 1]
    # a deterministic sign: the first vertex gets the smaller value
    return vector if vector[0] <= vector[-1] else -vector


def _bisect(adjacency, index: np.ndarray) -> list:
    if len(index) <= LEAF:
        sub = adjacency[index][:, index]
        return list(index[np.argsort(_fiedler(sub), kind="stable")])
    sub = adjacency[index][:, index]
    order = np.argsort(_fiedler(sub), kind="stable")
    half = len(index) // 2
    return _bisect(adjacency, index[order[:half]]) + _bisect(adjacency, index[order[half:]])


def hemisphere_order(adjacency, kind: str) -> np.ndarray:
    """Order of the vertices of one hemisphere's mesh graph (``adjacency``: n x n)."""
    adjacency = sparse.csr_matrix(adjacency)
    n = adjacency.shape[0]
    if kind == "source":
        return np.arange(n)
    if kind == "spectral":
        return np.argsort(_fiedler(adjacency), kind="stable")
    if kind == "bisection":
        return np.asarray(_bisect(adjacency, np.arange(n)), dtype=np.int64)
    raise ValueError(f"row order must be one of {ORDERS}, got {kind!r}.")


def row_order(hm, hemi: str, kind: str) -> np.ndarray | None:
    """Display order of the rows ``hm.rows(hemi)`` (None for the documented order).

    Each hemisphere is ordered on its own (lh rows stay before rh rows).
    """
    if kind == "source":
        return None
    hemis = ("lh", "rh") if hemi == "both" else (hemi,)
    parts, offset = [], 0
    for h in hemis:
        adjacency = hm.adjacency(h)
        parts.append(offset + hemisphere_order(adjacency, kind))
        offset += adjacency.shape[0]
    return np.concatenate(parts).astype(np.int64)


def _position(order, n) -> np.ndarray:
    position = np.empty(n, dtype=np.int64)
    position[np.arange(n) if order is None else np.asarray(order)] = np.arange(n)
    return position


def edge_spread(adjacency, order) -> dict:
    """How far apart mesh neighbours are in display order (mean and median of ``|Δrow|``)."""
    adjacency = sparse.coo_matrix(adjacency)
    position = _position(order, adjacency.shape[0])
    gap = np.abs(position[adjacency.row] - position[adjacency.col])
    return {"mean": float(gap.mean()), "median": float(np.median(gap))}


def patch_runs(positions, order, *, radius_m=0.01) -> dict:
    """How a patch of radius ``radius_m`` around each vertex looks in the image rows.

    Returns, over patch centres, the mean and 90th percentile of ``runs`` (runs
    of consecutive rows: 1 is one blob, ``n`` are ``n`` stripes) and of
    ``span`` (rows from the patch's first to its last, as a fraction of all
    rows: how far apart the stripes are).
    """
    from scipy.spatial import cKDTree

    positions = np.asarray(positions, float)
    n = len(positions)
    position = _position(order, n)
    runs, span = [], []
    for members in cKDTree(positions).query_ball_point(positions, radius_m):
        rows = np.sort(position[np.asarray(members)])
        runs.append(1 + int(np.count_nonzero(np.diff(rows) > 1)))
        span.append((rows[-1] - rows[0] + 1) / n)
    runs, span = np.asarray(runs), np.asarray(span)
    return {
        "mean": float(runs.mean()), "p90": float(np.percentile(runs, 90)),
        "span_mean": float(span.mean()), "span_p90": float(np.percentile(span, 90)),
    }  # fmt: skip
