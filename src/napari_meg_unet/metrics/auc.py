"""ROC-AUC by ranks and the close/far AUC of one map (Grova et al. 2006)."""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree
from scipy.stats import rankdata

from .._validation import check_fraction, check_int
from ._checks import _check_below_one, _check_map, _check_positions
from ._common import _squared_distances


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
    threshold = _check_below_one(threshold, "threshold")
    n_draws = check_int(n_draws, "n_draws", minimum=1)
    close_fraction = check_fraction(close_fraction, "close_fraction", allow_zero=False)
    far_fraction = check_fraction(far_fraction, "far_fraction", allow_zero=False)
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
