"""Scoring stacks of maps (vectorised for one source per map) and single events."""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from .._validation import check_choice, check_int
from ..configs import PROTOCOLS
from ._checks import (
    _check_adjacency,
    _check_below_one,
    _check_maps,
    _check_positions,
    _check_radius,
    _check_true_positions,
    _check_true_positions_per_map,
    _check_truth_maps,
)
from ._common import _CHUNK_ELEMENTS, M_TO_CM, M_TO_MM, _squared_distances
from ._docs import fill_doc
from .auc import _auc_close_far
from .dispersion import _sd_molins, _sd_thesis
from .emd import _emd, _support
from .peaks import _find_peaks, _match_peaks
from .timing import sample_maps, window_map


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


def _score_multi_source(maps, positions, true_positions, adjacency, peak_radius_mm):
    """DLE, Molins SD, thesis SD and thesis OA map by map (a list of (k_i, 3) sources)."""
    dle, sd, sd_thesis, oa = (np.empty(len(maps)) for _ in range(4))
    for i, (estimate, tp) in enumerate(zip(maps, true_positions, strict=True)):
        amplitude = np.abs(estimate)
        peaks = _find_peaks(amplitude, positions, len(tp), adjacency, peak_radius_mm)
        dle[i] = np.mean(_match_peaks(tp, positions[peaks])[0])
        sd[i] = _sd_molins(amplitude, positions, tp)
        sd_thesis[i] = _sd_thesis(amplitude, positions, positions[peaks])
        peak = amplitude.max()
        oa[i] = amplitude.sum() / peak if peak > 0 else np.nan
    return dle, sd, sd_thesis, oa


class _TruthMaps:
    """The true map of each scored map, for the AUC and the EMD.

    Without ``truth_maps`` each true source is represented by its nearest row
    with unit amplitude, and the EMD uses unit masses at the exact positions.
    """

    def __init__(self, positions, truth_maps, true_positions):
        self.positions = positions
        self.truth_maps = truth_maps
        self.true_positions = true_positions  # per map, (k_i, 3)
        if truth_maps is None:
            tree = cKDTree(positions)
            self.nearest_rows = [tree.query(tp)[1] for tp in true_positions]

    def amplitude(self, i):
        """``|truth|`` of map ``i``, shape (n_rows,)."""
        if self.truth_maps is not None:
            return np.abs(self.truth_maps[i])
        amplitude = np.zeros(len(self.positions))
        amplitude[self.nearest_rows[i]] = 1.0
        return amplitude

    def masses(self, i, threshold):
        """Positions and normalised weights of the true mass of map ``i`` (None, None if none)."""
        if self.truth_maps is None:
            p_positions = self.true_positions[i]
            return p_positions, np.full(len(p_positions), 1.0 / len(p_positions))
        p_rows, p_weights = _support(self.amplitude(i), threshold)
        return (None, None) if p_rows is None else (self.positions[p_rows], p_weights)


def _auc_scores(maps, truths, threshold, n_draws, seed, *, enabled):
    """``auc_close``, ``auc_far`` and ``auc`` per map (NaN unless ``enabled``).

    Map ``i`` draws its negatives with ``SeedSequence(seed).spawn(n_maps)[i]``.
    """
    n_maps = len(maps)
    scores = {key: np.full(n_maps, np.nan) for key in ("auc_close", "auc_far", "auc")}
    if not enabled:
        return scores
    rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(n_maps)]
    for i in range(n_maps):
        result = _auc_close_far(
            np.abs(maps[i]), truths.amplitude(i), truths.positions, threshold, n_draws,
            rngs[i], 0.2, 0.5,
        )  # fmt: skip
        for key, value in result.items():
            scores[key][i] = value
    return scores


def _emd_scores(maps, truths, threshold):
    """Earth mover's distance (mm) per map; NaN where either map has no mass."""
    emd_mm = np.empty(len(maps))
    for i in range(len(maps)):
        q_rows, q_weights = _support(np.abs(maps[i]), threshold)
        p_positions, p_weights = truths.masses(i, threshold)
        if q_rows is None or p_positions is None:
            emd_mm[i] = np.nan
        else:
            q_positions = truths.positions[q_rows]
            emd_mm[i] = _emd(p_positions, p_weights, q_positions, q_weights, 4_000_000)
    return emd_mm


@fill_doc
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
    %(metrics_positions)s
    true_positions_per_map : array, shape (n_maps, 3) or (n_maps, n_sources, 3) | list
        True source positions (metres) of each map; a list of ``n_maps`` arrays
        ``(n_sources_i, 3)`` when the number of sources varies.
    truth_maps : array, shape (n_maps, n_rows) | None
        The true source maps, for the AUC and EMD. If None, each true source
        is represented by its nearest row with unit amplitude (AUC positives)
        and the EMD uses unit masses at the exact true positions.
    %(metrics_adjacency)s
    threshold : float
        Relative threshold of the AUC positives and of the EMD supports.
    n_draws : int
        Negative draws per close/far AUC.
    %(metrics_peak_radius_mm)s
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
    truth_maps = _check_truth_maps(truth_maps, n_rows, n_maps)
    adjacency = _check_adjacency(adjacency, n_rows)
    threshold = _check_below_one(threshold, "threshold")
    n_draws = check_int(n_draws, "n_draws", minimum=1)
    peak_radius_mm = _check_radius(peak_radius_mm)
    seed = check_int(seed, "seed", minimum=0)

    if single:
        peak_scores = _score_single_source(maps, positions, true_positions)
        true_positions = true_positions[:, np.newaxis]
    else:
        peak_scores = _score_multi_source(
            maps, positions, true_positions, adjacency, peak_radius_mm
        )
    scores = dict(zip(("dle_mm", "sd_mm", "sd_thesis_sqrtcm", "oa"), peak_scores, strict=True))
    truths = _TruthMaps(positions, truth_maps, true_positions)
    scores.update(_auc_scores(maps, truths, threshold, n_draws, seed, enabled=auc))
    scores["n_sources"] = np.array([len(tp) for tp in true_positions], dtype=int)
    if emd:
        scores["emd_mm"] = _emd_scores(maps, truths, threshold)
    return scores


@fill_doc
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
    %(metrics_positions)s
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
    check_choice(protocol, "protocol", PROTOCOLS)
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
