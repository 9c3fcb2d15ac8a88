"""Exact earth mover's distance between an estimate and the true map."""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.optimize import linprog

from .._validation import check_int
from ._checks import _check_below_one, _check_map, _check_positions
from ._common import M_TO_MM


def _emd(p_positions, p_weights, q_positions, q_weights, max_pairs):
    """Exact EMD (mm) between two normalised point masses, by linear programming."""
    cost = M_TO_MM * np.linalg.norm(p_positions[:, np.newaxis] - q_positions[np.newaxis], axis=-1)
    n_p, n_q = cost.shape
    if n_p == 1:
        return float(cost[0] @ q_weights)
    if n_q == 1:
        return float(cost[:, 0] @ p_weights)
    if n_p * n_q > max_pairs:
        raise ValueError(
            f"The transport problem has {n_p} x {n_q} = {n_p * n_q} variables, more than "
            f"max_pairs={max_pairs}; raise threshold to shrink the supports or raise max_pairs."
        )
    # T (n_p x n_q) flattened row-major: row sums = p, column sums = q. One
    # column constraint is implied by the others (both masses sum to 1).
    row_sums = sparse.kron(sparse.eye(n_p), np.ones((1, n_q)))
    col_sums = sparse.kron(np.ones((1, n_p)), sparse.eye(n_q))
    a_eq = sparse.vstack([row_sums, col_sums.tocsr()[:-1]]).tocsc()
    b_eq = np.concatenate([p_weights, q_weights[:-1]])
    res = linprog(cost.ravel(), A_eq=a_eq, b_eq=b_eq, bounds=(0, None), method="highs")
    if res.status != 0:
        raise RuntimeError(f"The earth mover's distance LP failed: {res.message}")
    return float(res.fun)


def _support(amplitude, threshold):
    """Rows kept (>= threshold * max) and their normalised masses; None if no mass."""
    peak = amplitude.max() if amplitude.size else 0.0
    if peak <= 0:
        return None, None
    rows = np.flatnonzero(amplitude >= threshold * peak)
    weights = amplitude[rows]
    return rows, weights / weights.sum()


def earth_movers_distance(estimate, truth, positions, *, threshold=0.25, max_pairs=4_000_000):
    """Exact earth mover's distance between the estimate and the true map, in mm.

    Parameters
    ----------
    estimate : array, shape (n_rows,)
        The estimate map.
    truth : array, shape (n_rows,)
        The true source map.
    positions : array, shape (n_rows, 3)
        Row positions in metres; the ground cost is the Euclidean distance.
    threshold : float
        In each map, rows with ``|x| < threshold * max|x|`` are set to zero
        before normalising ``|x|`` to unit mass (this also keeps the linear
        program small).
    max_pairs : int
        Largest allowed number of transport variables (support sizes product).

    Returns
    -------
    emd : float
        :math:`\\min_{T \\ge 0, T1 = p, T^\\top 1 = q} \\sum_{ij} T_{ij} D_{ij}`
        in millimetres, solved exactly with :func:`scipy.optimize.linprog`
        (HiGHS). NaN when either map is all zero.
    """
    positions = _check_positions(positions)
    estimate = _check_map(estimate, len(positions))
    truth = _check_map(truth, len(positions), "truth")
    threshold = _check_below_one(threshold, "threshold")
    max_pairs = check_int(max_pairs, "max_pairs", minimum=1)
    q_rows, q_weights = _support(np.abs(estimate), threshold)
    p_rows, p_weights = _support(np.abs(truth), threshold)
    if q_rows is None or p_rows is None:
        return np.nan
    return _emd(positions[p_rows], p_weights, positions[q_rows], q_weights, max_pairs)
