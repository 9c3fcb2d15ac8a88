"""Evaluation metrics for source estimates: DLE, SD, OA, AUC, EMD and their aggregation.

Conventions
-----------
- An *estimate map* is an array over the image rows, shape ``(n_rows,)``; a
  time course of maps is ``(n_rows, n_times)`` and is turned into maps with
  :func:`sample_maps` (one map per time sample, the thesis protocol) or
  :func:`window_map` (mean absolute value over a window). A stack of maps to
  score together is ``(n_maps, n_rows)``.
- ``positions`` ``(n_rows, 3)`` are the positions of those rows in **metres**
  (head coordinates); true source positions are metres too and may lie off the
  grid.
- Distances are reported in **millimetres** (keys ending in ``_mm``); the
  thesis spatial dispersion is in :math:`\\sqrt{\\mathrm{cm}}`
  (``sd_thesis_sqrtcm``); amplitude ratios and AUCs are unitless.
- An optional ``adjacency`` (scipy sparse, ``n_rows x n_rows``, e.g.
  :meth:`HeadModel.adjacency`) makes multi-source peak finding use local maxima
  on the mesh; without it, peaks are found greedily with non-maximum
  suppression within ``peak_radius_mm``.

Definitions follow ``docs/inverse-math.md`` §4: Hauk et al. (2011) / Molins et
al. (2008) as implemented by :func:`mne.minimum_norm.resolution_metrics`
(``peak_err``, ``sd_ext``), the thesis variants (§4.4) and the deep-learning
metrics (§4.5: close/far AUC after Grova et al. 2006, exact earth mover's
distance).
"""

from __future__ import annotations

import numbers

import numpy as np
from scipy import sparse
from scipy.optimize import linear_sum_assignment, linprog
from scipy.spatial import cKDTree
from scipy.stats import rankdata

M_TO_MM = 1000.0
M_TO_CM = 100.0
# Elements per temporary (n_chunk, n_rows) array in the vectorised scorers.
_CHUNK_ELEMENTS = 1 << 22

SD_KINDS = ("molins", "thesis")
OA_KINDS = ("thesis", "sum")
NAN_POLICIES = ("propagate", "omit", "raise")


# --------------------------------------------------------------------------- validation
def _check_option(name, value, allowed):
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}.")
    return value


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


def _check_fraction(value, name, *, allow_zero=True):
    if not isinstance(value, numbers.Real) or not (
        (0 <= value < 1) if allow_zero else (0 < value <= 1)
    ):
        interval = "[0, 1)" if allow_zero else "(0, 1]"
        raise ValueError(f"{name} must be a number in {interval}, got {value!r}.")
    return float(value)


def _check_positive_int(value, name):
    if not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return int(value)


def _check_radius(peak_radius_mm):
    if not isinstance(peak_radius_mm, numbers.Real) or not peak_radius_mm >= 0:
        raise ValueError(f"peak_radius_mm must be a non-negative number, got {peak_radius_mm!r}.")
    return float(peak_radius_mm)


# --------------------------------------------------------------------------- peaks
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


# --------------------------------------------------------------------------- single map
def peak_localisation_error(
    estimate, positions, true_positions, *, adjacency=None, peak_radius_mm=20.0
):
    """Dipole (peak) localisation error of one estimate map.

    Parameters
    ----------
    estimate : array, shape (n_rows,)
        The estimate map; its absolute value is used.
    positions : array, shape (n_rows, 3)
        Positions of the rows in metres.
    true_positions : array, shape (3,) or (n_sources, 3)
        True source positions in metres (they may lie off the grid).
    adjacency : scipy.sparse matrix, shape (n_rows, n_rows) | None
        Mesh adjacency. With several sources, peaks are the strongest local
        maxima of ``|estimate|`` on this graph (a row is a local maximum when it
        beats all its neighbours; ties go to the lower row index).
    peak_radius_mm : float
        Without ``adjacency``, several peaks are found greedily: the strongest
        row, then the strongest row farther than this radius from every peak
        found so far, and so on (non-maximum suppression).

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


def _sd_molins(amplitude, positions, true_positions):
    """Molins SD (mm) of one map around the nearest true source."""
    power = amplitude**2
    total = power.sum()
    if total == 0:
        return np.nan
    d2 = np.min(
        np.sum((positions[:, np.newaxis] - true_positions[np.newaxis]) ** 2, axis=-1), axis=1
    )
    return float(M_TO_MM * np.sqrt(np.sum(d2 * power) / total))


def _sd_thesis(amplitude, positions, centres):
    """Thesis SD (sqrt(cm)) of one map around the nearest of ``centres``."""
    power = amplitude**2
    total = power.sum()
    if total == 0 or len(centres) == 0:
        return np.nan
    d_cm = M_TO_CM * np.min(
        np.linalg.norm(positions[:, np.newaxis] - centres[np.newaxis], axis=-1), axis=1
    )
    return float(np.sqrt(np.sum(d_cm * power) / total))


def spatial_dispersion(
    estimate,
    positions,
    true_positions,
    *,
    kind="molins",
    adjacency=None,
    peak_radius_mm=20.0,
):
    r"""Spatial dispersion of one estimate map.

    Parameters
    ----------
    estimate : array, shape (n_rows,)
        The estimate map :math:`a`; its absolute value is used.
    positions : array, shape (n_rows, 3)
        Positions of the rows in metres.
    true_positions : array, shape (3,) or (n_sources, 3)
        True source positions in metres.
    kind : ``"molins"`` | ``"thesis"``
        ``"molins"`` (Molins et al. 2008 eq. 12; Hauk et al. 2011; MNE's
        ``sd_ext``): :math:`\sqrt{\sum_i d_i^2 a_i^2 / \sum_i a_i^2}` with
        :math:`d_i` the distance from row :math:`i` to the nearest **true**
        source; **millimetres**. ``"thesis"`` (MEG-inverse-UNet, 2017):
        :math:`\sqrt{\sum_i d_i a_i^2 / \sum_i a_i^2}` with :math:`d_i` the
        distance, in cm and **not squared**, from row :math:`i` to the nearest
        **estimated peak** (the ``n_sources`` peaks of
        :func:`peak_localisation_error`); units :math:`\sqrt{\mathrm{cm}}`.
    adjacency : scipy.sparse matrix | None
        Used by ``kind="thesis"`` to find several peaks; see
        :func:`peak_localisation_error`.
    peak_radius_mm : float
        Non-maximum-suppression radius for several peaks without adjacency.

    Returns
    -------
    sd : float
        Millimetres for ``"molins"``, :math:`\sqrt{\mathrm{cm}}` for
        ``"thesis"`` (``sd_mm`` / ``sd_thesis_sqrtcm`` in :func:`score_maps`).
        NaN for an all-zero map.
    """
    _check_option("kind", kind, SD_KINDS)
    positions = _check_positions(positions)
    estimate = _check_map(estimate, len(positions))
    true_positions = _check_true_positions(true_positions)
    adjacency = _check_adjacency(adjacency, len(positions))
    peak_radius_mm = _check_radius(peak_radius_mm)
    amplitude = np.abs(estimate)
    if kind == "molins":
        return _sd_molins(amplitude, positions, true_positions)
    peaks = _find_peaks(amplitude, positions, len(true_positions), adjacency, peak_radius_mm)
    return _sd_thesis(amplitude, positions, positions[peaks])


def overall_amplitude(estimate, *, kind="thesis"):
    r"""Overall amplitude of one estimate map.

    Parameters
    ----------
    estimate : array, shape (n_rows,)
        The estimate map :math:`a`.
    kind : ``"thesis"`` | ``"sum"``
        ``"thesis"``: :math:`\sum_i |a_i| / \max_i |a_i|`, normalised by the
        map's own peak (unitless, in :math:`[1, n_{rows}]`; 1 for a single
        active row). ``"sum"``: :math:`\sum_i |a_i|`, absolute, in the units of
        the estimate (Hauk et al. 2011; MNE's ``sum_amp`` further divides this
        by its maximum over sources).

    Returns
    -------
    oa : float
        The overall amplitude; NaN for an all-zero map with ``kind="thesis"``.
    """
    _check_option("kind", kind, OA_KINDS)
    amplitude = np.abs(_check_map(estimate))
    total = float(amplitude.sum())
    if kind == "sum":
        return total
    peak = amplitude.max()
    return total / peak if peak > 0 else np.nan


# --------------------------------------------------------------------------- AUC
def roc_auc(scores, labels):
    """Area under the ROC curve by the rank (Mann-Whitney) formula.

    Parameters
    ----------
    scores : array, shape (n,)
        Scores; higher means more likely positive.
    labels : array of bool, shape (n,)
        True for positives.

    Returns
    -------
    auc : float
        :math:`(\\sum_{i \\in P} r_i - |P|(|P|+1)/2) / (|P|\\,|N|)` with
        :math:`r_i` the average ranks of the scores (ties count one half), i.e.
        the probability that a random positive outscores a random negative.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels)
    if scores.ndim != 1 or labels.shape != scores.shape:
        raise ValueError(
            f"scores and labels must be 1-D of the same length, got {scores.shape} and "
            f"{labels.shape}."
        )
    if not np.isfinite(scores).all():
        raise ValueError("scores must be finite.")
    if labels.dtype != bool:
        if not np.isin(labels, (0, 1)).all():
            raise ValueError("labels must be boolean (or 0/1).")
        labels = labels.astype(bool)
    n_pos = int(labels.sum())
    n_neg = labels.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError(
            f"roc_auc needs both positives and negatives, got {n_pos} positives and {n_neg} "
            "negatives."
        )
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def _auc_against_draws(positive_scores, negative_scores):
    """AUC of fixed positives against each row of negatives (n_draws, n_neg), ties 1/2."""
    sorted_pos = np.sort(positive_scores)
    below_or_equal = np.searchsorted(sorted_pos, negative_scores, side="right")
    below = np.searchsorted(sorted_pos, negative_scores, side="left")
    wins = (len(sorted_pos) - below_or_equal) + 0.5 * (below_or_equal - below)
    return wins.sum(axis=-1) / (len(sorted_pos) * negative_scores.shape[-1])


def _draw(rng, pool, n, n_draws):
    """``n_draws`` draws of ``n`` rows of ``pool``; without replacement when possible."""
    if len(pool) < n:
        return rng.choice(pool, size=(n_draws, n), replace=True)
    return np.stack([rng.choice(pool, size=n, replace=False) for _ in range(n_draws)])


def _auc_close_far(
    amplitude, truth_amplitude, positions, threshold, n_draws, rng, close_fraction, far_fraction
):
    peak = truth_amplitude.max()
    nan = {"auc_close": np.nan, "auc_far": np.nan, "auc": np.nan}
    if peak <= 0:
        return nan
    positive = truth_amplitude > threshold * peak
    inactive = np.flatnonzero(~positive)
    if len(inactive) == 0:
        return nan
    positive_rows = np.flatnonzero(positive)
    if len(positive_rows) <= 8:
        coords = np.ascontiguousarray(positions[inactive].T)
        distance = np.sqrt(_squared_distances(coords, positions[positive_rows]).min(axis=0))
    else:
        distance = cKDTree(positions[positive_rows]).query(positions[inactive])[0]
    by_distance = inactive[np.argsort(distance, kind="stable")]
    n_close = max(1, int(round(close_fraction * len(inactive))))
    n_far = max(1, int(round(far_fraction * len(inactive))))
    n_pos = len(positive_rows)
    scores_pos = amplitude[positive_rows]
    auc_close = _auc_against_draws(
        scores_pos, amplitude[_draw(rng, by_distance[:n_close], n_pos, n_draws)]
    ).mean()
    auc_far = _auc_against_draws(
        scores_pos, amplitude[_draw(rng, by_distance[-n_far:], n_pos, n_draws)]
    ).mean()
    return {
        "auc_close": float(auc_close),
        "auc_far": float(auc_far),
        "auc": float((auc_close + auc_far) / 2.0),
    }


def auc_close_far(
    estimate,
    truth,
    positions,
    *,
    threshold=0.25,
    n_draws=25,
    close_fraction=0.2,
    far_fraction=0.5,
    seed=0,
):
    """Close/far ROC-AUC of one estimate map (Grova et al. 2006; ConvDip).

    Parameters
    ----------
    estimate : array, shape (n_rows,)
        The estimate map; ``|estimate|`` is the score.
    truth : array, shape (n_rows,)
        The true source map.
    positions : array, shape (n_rows, 3)
        Row positions in metres (for the distances to the active rows).
    threshold : float
        Positives are the rows with ``|truth| > threshold * max|truth|``; all
        other rows are inactive.
    n_draws : int
        Number of negative draws averaged per AUC.
    close_fraction, far_fraction : float
        The inactive rows sorted by distance to the nearest positive row:
        "close" negatives are drawn from the first ``close_fraction`` of them
        (default: the 20% closest), "far" negatives from the last
        ``far_fraction`` (default: the 50% farthest).
    seed : None | int | array_like | numpy.random.SeedSequence | numpy.random.Generator
        Seed of :func:`numpy.random.default_rng`; the result is deterministic
        for a fixed seed.

    Returns
    -------
    result : dict
        ``auc_close``, ``auc_far`` (each averaged over ``n_draws``) and
        ``auc = (auc_close + auc_far) / 2``, all unitless. NaN when ``truth`` is
        all zero or every row is positive.

    Notes
    -----
    Each draw takes as many negatives as there are positives, without
    replacement (with replacement if the pool is smaller than that), and
    computes the ROC-AUC of ``|estimate|`` on positives + negatives with ties
    counted one half (:func:`roc_auc`). Scaling the estimate does not change
    the AUC, and an all-zero estimate scores 0.5.
    """
    positions = _check_positions(positions)
    estimate = _check_map(estimate, len(positions))
    truth = _check_map(truth, len(positions), "truth")
    threshold = _check_fraction(threshold, "threshold")
    n_draws = _check_positive_int(n_draws, "n_draws")
    close_fraction = _check_fraction(close_fraction, "close_fraction", allow_zero=False)
    far_fraction = _check_fraction(far_fraction, "far_fraction", allow_zero=False)
    return _auc_close_far(
        np.abs(estimate),
        np.abs(truth),
        positions,
        threshold,
        n_draws,
        np.random.default_rng(seed),
        close_fraction,
        far_fraction,
    )


# --------------------------------------------------------------------------- EMD
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
    threshold = _check_fraction(threshold, "threshold")
    max_pairs = _check_positive_int(max_pairs, "max_pairs")
    q_rows, q_weights = _support(np.abs(estimate), threshold)
    p_rows, p_weights = _support(np.abs(truth), threshold)
    if q_rows is None or p_rows is None:
        return np.nan
    return _emd(positions[p_rows], p_weights, positions[q_rows], q_weights, max_pairs)


# --------------------------------------------------------------------------- time handling
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


# --------------------------------------------------------------------------- batch scoring
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


def _score_single_source(maps, positions, true_positions):
    """Vectorised DLE (mm), Molins SD (mm), thesis SD (sqrt cm), thesis OA; one source/map."""
    n_maps, n_rows = maps.shape
    amplitude = np.abs(maps)
    peaks = amplitude.argmax(axis=1)
    peak_amplitude = amplitude[np.arange(n_maps), peaks]
    empty = peak_amplitude == 0
    dle = M_TO_MM * np.linalg.norm(positions[peaks] - true_positions, axis=1)
    sd = np.empty(n_maps)
    sd_thesis = np.empty(n_maps)
    coords = np.ascontiguousarray(positions.T)
    chunk = max(1, _CHUNK_ELEMENTS // n_rows)
    for start in range(0, n_maps, chunk):
        sl = slice(start, start + chunk)
        power = amplitude[sl] ** 2
        total = power.sum(axis=1)
        total[total == 0] = 1.0  # all-zero maps are set to NaN below
        d2_true = _squared_distances(coords, true_positions[sl])
        d_peak = np.sqrt(_squared_distances(coords, positions[peaks[sl]]))
        sd[sl] = M_TO_MM * np.sqrt(np.einsum("ij,ij->i", d2_true, power) / total)
        sd_thesis[sl] = np.sqrt(M_TO_CM * np.einsum("ij,ij->i", d_peak, power) / total)
    with np.errstate(invalid="ignore", divide="ignore"):
        oa = amplitude.sum(axis=1) / peak_amplitude
    for values in (dle, sd, sd_thesis, oa):
        values[empty] = np.nan
    return dle, sd, sd_thesis, oa


def score_maps(
    maps,
    *,
    positions,
    true_positions_per_map,
    truth_maps=None,
    adjacency=None,
    threshold=0.25,
    n_draws=25,
    peak_radius_mm=20.0,
    auc=True,
    emd=False,
    seed=0,
):
    """Score a stack of estimate maps against their true sources.

    Parameters
    ----------
    maps : array, shape (n_maps, n_rows)
        The estimate maps (see :func:`sample_maps`, :func:`window_map`).
    positions : array, shape (n_rows, 3)
        Row positions in metres.
    true_positions_per_map : array, shape (n_maps, 3) or (n_maps, n_sources, 3) | list
        True source positions (metres) of each map; a list of ``n_maps`` arrays
        ``(n_sources_i, 3)`` when the number of sources varies.
    truth_maps : array, shape (n_maps, n_rows) | None
        The true source maps, for the AUC and EMD. If None, each true source
        is represented by its nearest row with unit amplitude (AUC positives)
        and the EMD uses unit masses at the exact true positions.
    adjacency : scipy.sparse matrix | None
        Mesh adjacency for multi-source peak finding
        (:func:`peak_localisation_error`).
    threshold : float
        Relative threshold of the AUC positives and of the EMD supports.
    n_draws : int
        Negative draws per close/far AUC.
    peak_radius_mm : float
        Non-maximum-suppression radius for multi-source peaks without adjacency.
    auc : bool
        Compute the close/far AUC (a loop over maps with random draws; the
        per-sample protocol over thousands of maps may skip it). When False
        the ``auc*`` entries are NaN.
    emd : bool
        Also compute the earth mover's distance (``emd_mm``; an LP per map).
    seed : int
        Map ``i`` draws its AUC negatives with
        ``numpy.random.SeedSequence(seed).spawn(n_maps)[i]``.

    Returns
    -------
    scores : dict of arrays, each shape (n_maps,)
        ``dle_mm`` (mean matched peak error, mm), ``sd_mm`` (Molins SD around
        the true sources, mm), ``sd_thesis_sqrtcm`` (thesis SD around the
        estimated peaks, sqrt(cm)), ``oa`` (thesis overall amplitude
        ``sum|a| / max|a|``, unitless), ``auc_close``, ``auc_far``, ``auc``
        (close/far ROC-AUC, unitless), ``n_sources`` (int) and, if ``emd``,
        ``emd_mm``. Distances and OA are NaN for all-zero maps.

    Notes
    -----
    Maps with one source are scored with vectorised numpy (no per-map loop);
    for them DLE is exactly MNE's ``peak_err`` and SD its ``sd_ext`` (in mm).
    """
    positions = _check_positions(positions)
    n_rows = len(positions)
    maps = _check_maps(maps, n_rows)
    n_maps = len(maps)
    single, true_positions = _check_true_positions_per_map(true_positions_per_map, n_maps)
    if truth_maps is not None:
        truth_maps = _check_maps(truth_maps, n_rows, "truth_maps")
        if len(truth_maps) != n_maps:
            raise ValueError(f"truth_maps has {len(truth_maps)} maps but maps has {n_maps}.")
    adjacency = _check_adjacency(adjacency, n_rows)
    threshold = _check_fraction(threshold, "threshold")
    n_draws = _check_positive_int(n_draws, "n_draws")
    peak_radius_mm = _check_radius(peak_radius_mm)
    if not isinstance(seed, numbers.Integral):
        raise ValueError(f"seed must be an int, got {seed!r}.")

    if single:
        dle, sd, sd_thesis, oa = _score_single_source(maps, positions, true_positions)
        true_positions = true_positions[:, np.newaxis]
    else:
        dle, sd, sd_thesis, oa = (np.empty(n_maps) for _ in range(4))
        for i, (estimate, tp) in enumerate(zip(maps, true_positions, strict=True)):
            amplitude = np.abs(estimate)
            peaks = _find_peaks(amplitude, positions, len(tp), adjacency, peak_radius_mm)
            dle[i] = np.mean(_match_peaks(tp, positions[peaks])[0])
            sd[i] = _sd_molins(amplitude, positions, tp)
            sd_thesis[i] = _sd_thesis(amplitude, positions, positions[peaks])
            peak = amplitude.max()
            oa[i] = amplitude.sum() / peak if peak > 0 else np.nan

    rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(int(seed)).spawn(n_maps)]
    if truth_maps is None:
        tree = cKDTree(positions)
        nearest_rows = [tree.query(tp)[1] for tp in true_positions]
    auc_scores = {key: np.full(n_maps, np.nan) for key in ("auc_close", "auc_far", "auc")}
    emd_mm = np.empty(n_maps)
    for i in range(n_maps if (auc or emd) else 0):
        amplitude = np.abs(maps[i])
        if truth_maps is None:
            truth_amplitude = np.zeros(n_rows)
            truth_amplitude[nearest_rows[i]] = 1.0
        else:
            truth_amplitude = np.abs(truth_maps[i])
        if auc:
            result = _auc_close_far(
                amplitude, truth_amplitude, positions, threshold, n_draws, rngs[i], 0.2, 0.5
            )
            for key, value in result.items():
                auc_scores[key][i] = value
        if emd:
            q_rows, q_weights = _support(amplitude, threshold)
            if truth_maps is None:
                p_positions = true_positions[i]
                p_weights = np.full(len(p_positions), 1.0 / len(p_positions))
            else:
                p_rows, p_weights = _support(truth_amplitude, threshold)
                p_positions = None if p_rows is None else positions[p_rows]
            if q_rows is None or p_positions is None:
                emd_mm[i] = np.nan
            else:
                emd_mm[i] = _emd(p_positions, p_weights, positions[q_rows], q_weights, 4_000_000)
    scores = {
        "dle_mm": dle,
        "sd_mm": sd,
        "sd_thesis_sqrtcm": sd_thesis,
        "oa": oa,
        **auc_scores,
        "n_sources": np.array([len(tp) for tp in true_positions], dtype=int),
    }
    if emd:
        scores["emd_mm"] = emd_mm
    return scores


def score_event(
    estimate_t,
    *,
    positions,
    true_positions,
    truth_t=None,
    protocol="samples",
    samples=None,
    window=None,
    **kwargs,
):
    """Score one event's estimate time course with the per-sample or window protocol.

    Parameters
    ----------
    estimate_t : array, shape (n_rows, n_times)
        The estimate time course of the event.
    positions : array, shape (n_rows, 3)
        Row positions in metres.
    true_positions : array, shape (3,) or (n_sources, 3)
        True source positions of the event in metres (the same for all its
        samples).
    truth_t : array, shape (n_rows, n_times) | None
        True source time course (for AUC/EMD), treated like ``estimate_t``.
    protocol : ``"samples"`` | ``"window"``
        ``"samples"``: each time sample in ``samples`` is a map (the thesis
        protocol; see :func:`sample_maps`). ``"window"``: a single map, the
        mean ``|estimate|`` over ``window`` (:func:`window_map`).
    samples : see :func:`sample_maps`
        Samples scored by the ``"samples"`` protocol (all if None).
    window : see :func:`window_map`
        Required by the ``"window"`` protocol.
    **kwargs
        Passed to :func:`score_maps` (``adjacency``, ``threshold``,
        ``n_draws``, ``peak_radius_mm``, ``emd``, ``seed``).

    Returns
    -------
    scores : dict of arrays
        As :func:`score_maps`, one entry per scored map.
    """
    _check_option("protocol", protocol, ("samples", "window"))
    estimate_t = np.asarray(estimate_t)
    if estimate_t.ndim != 2:
        raise ValueError(
            f"estimate_t must have shape (n_rows, n_times) for one event, got {estimate_t.shape}."
        )
    if truth_t is not None:
        truth_t = np.asarray(truth_t)
        if truth_t.shape != estimate_t.shape:
            raise ValueError(
                f"truth_t must have the shape of estimate_t {estimate_t.shape}, got "
                f"{truth_t.shape}."
            )
    if protocol == "window":
        if window is None:
            raise ValueError('protocol="window" needs window (sample indices).')
        maps = window_map(estimate_t, window)[np.newaxis]
        truth_maps = None if truth_t is None else window_map(truth_t, window)[np.newaxis]
    else:
        if window is not None:
            raise ValueError('window is only used by protocol="window"; use samples.')
        maps = sample_maps(estimate_t, samples=samples)[0]
        truth_maps = None if truth_t is None else sample_maps(truth_t, samples=samples)[0]
    true_positions = _check_true_positions(true_positions)
    return score_maps(
        maps,
        positions=positions,
        true_positions_per_map=np.broadcast_to(true_positions, (len(maps),) + true_positions.shape),
        truth_maps=truth_maps,
        **kwargs,
    )


# --------------------------------------------------------------------------- aggregation
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
    n_boot = _check_positive_int(n_boot, "n_boot")
    if not isinstance(ci, numbers.Real) or not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1), got {ci!r}.")
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
    _check_option("nan_policy", nan_policy, NAN_POLICIES)
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
    n_rows = _check_positive_int(n_rows, "n_rows")
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
