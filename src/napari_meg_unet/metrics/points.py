"""Scores of point estimates: dipoles at continuous positions instead of a map over rows.

A dipole fit or RAP-MUSIC returns a few dipoles (positions in metres, head
coordinates, and an amplitude each), not a value on every row. They are scored
with the same definitions as a map, reading the dipoles as a map whose only
non-zero entries sit at the dipole positions:

``dle_mm``
    The ``n_sources`` strongest dipoles that lie more than ``peak_radius_mm``
    apart (greedy non-maximum suppression, as peaks of a map without mesh
    adjacency) are matched to the true sources by optimal assignment; the
    mean matched distance (sources left without a dipole get the nearest one).
    A single dipole against a single source: their distance.
``sd_mm``
    Molins' :math:`\\sqrt{\\sum_i d_i^2 a_i^2 / \\sum_i a_i^2}` over the dipoles,
    :math:`d_i` the distance of dipole :math:`i` to the nearest true source:
    the amplitude-weighted spread of the estimate around the truth. A point
    estimate has no spatial blur, so for one dipole this equals its DLE.
``sd_thesis_sqrtcm``
    The thesis SD around the estimated peaks (0 for a single dipole).
``oa``
    ``sum |a| / max |a|`` over the dipoles (1 for a single dipole).
``auc_close``, ``auc_far``, ``auc``
    Not defined (NaN, "n/a" in tables): the close/far AUC ranks every row of
    a map against the true active rows, and a point estimate has no value on
    the rows.

``tc_error``
    The time-course error of the dipoles' moments (:mod:`.timecourses`), when
    the estimator gives moments (NaN otherwise, and for maps).

An event without any dipole (e.g. a fit that failed) scores NaN everywhere,
like an all-zero map, except its time-course error: 1, nothing estimated.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._validation import check_int
from ._checks import _check_radius, _check_true_positions_per_map
from .dispersion import _sd_molins, _sd_thesis
from .peaks import _find_peaks, _match_peaks
from .timecourses import time_course_error

#: Score keys of :func:`score_points` that are not defined for point estimates.
UNDEFINED_FOR_POINTS = ("auc_close", "auc_far", "auc")


@dataclass
class PointEstimates:
    """Dipoles per event: what an estimator returns instead of maps.

    Attributes
    ----------
    positions : list of array, shape (m_i, 3)
        Dipole positions of each event, metres (head coordinates).
    amplitudes : list of array, shape (m_i,)
        A non-negative strength per dipole (e.g. the mean absolute moment in
        A·m); only its ranking and ratios matter for the scores.
    moments : list of array, shape (m_i, 3, n_times) | None
        The dipoles' moment time courses (A·m, head coordinates), scored by the
        time-course error (:mod:`.timecourses`); None when the estimator gives none.
    """

    positions: list
    amplitudes: list
    moments: list | None = None

    def __post_init__(self):
        if len(self.positions) != len(self.amplitudes):
            raise ValueError(
                f"PointEstimates needs one amplitude array per position array, got "
                f"{len(self.positions)} and {len(self.amplitudes)}."
            )
        pos, amp = [], []
        for i, (p, a) in enumerate(zip(self.positions, self.amplitudes, strict=True)):
            p = np.asarray(p, dtype=np.float64).reshape(-1, 3)
            a = np.abs(np.asarray(a, dtype=np.float64).reshape(-1))
            if len(a) != len(p):
                raise ValueError(
                    f"event {i}: {len(p)} dipole positions but {len(a)} amplitudes."
                )
            if not (np.isfinite(p).all() and np.isfinite(a).all()):
                raise ValueError(f"event {i}: dipole positions and amplitudes must be finite.")
            pos.append(p)
            amp.append(a)
        self.positions, self.amplitudes = pos, amp
        if self.moments is not None:
            if len(self.moments) != len(pos):
                raise ValueError(f"PointEstimates needs one moment array per event, got "
                                 f"{len(self.moments)} for {len(pos)} events.")  # fmt: skip
            self.moments = [_checked_moments(self.moments[i], len(p), i)
                            for i, p in enumerate(pos)]  # fmt: skip

    def __len__(self) -> int:
        return len(self.positions)

    def subset(self, index) -> PointEstimates:
        """The estimates of the events ``index`` (a slice or integer indices)."""
        idx = range(len(self))[index] if isinstance(index, slice) else np.asarray(index, int)
        moments = None if self.moments is None else [self.moments[i] for i in idx]
        return PointEstimates([self.positions[i] for i in idx], [self.amplitudes[i] for i in idx],
                              moments)  # fmt: skip

    @classmethod
    def concatenate(cls, parts) -> PointEstimates:
        """One :class:`PointEstimates` of the events of ``parts``, in order.

        Moments are kept when every part has them.
        """
        moments = None
        if all(part.moments is not None for part in parts):
            moments = [m for part in parts for m in part.moments]
        return cls([p for part in parts for p in part.positions],
                   [a for part in parts for a in part.amplitudes], moments)  # fmt: skip


def _checked_moments(moments, n_dipoles, event) -> np.ndarray:
    moments = np.asarray(moments, dtype=np.float64)
    if n_dipoles == 0 and moments.size == 0:
        return np.zeros((0, 3, 0))
    if moments.ndim != 3 or moments.shape[:2] != (n_dipoles, 3):
        raise ValueError(f"event {event}: moments must have shape ({n_dipoles}, 3, n_times), "
                         f"got {moments.shape}.")  # fmt: skip
    if not np.isfinite(moments).all():
        raise ValueError(f"event {event}: dipole moments must be finite.")
    return moments


def score_points(estimates, *, true_positions_per_map, peak_radius_mm=20.0,
                 true_moments_per_map=None, windows=None, visible=None) -> dict:  # fmt: skip
    """Score point estimates (dipoles) against their true sources.

    Parameters
    ----------
    estimates : PointEstimates
        The dipoles of each map (event).
    true_positions_per_map : array, shape (n_maps, 3) or (n_maps, n_sources, 3) | list
        True source positions (metres) of each map, as in :func:`score_maps`.
    peak_radius_mm : float
        Minimum distance between the dipoles counted as distinct peaks.
    true_moments_per_map : list of (array, shape (k_i, 3, n_times) | None) | None
        The true sources' moments (A·m) of each map, for the time-course error
        (an entry None: that map has none, e.g. a patch).
    windows : list of (int, int) | None
        The active window of each map (the samples the time-course error compares).
    visible : list of array, shape (k_i, 3, 3) | None
        Per map, the projectors onto the orientations seen at each true source
        (the time-course error compares those parts, :mod:`.timecourses`).

    Returns
    -------
    scores : dict of arrays, each shape (n_maps,)
        The keys of :func:`score_maps` (see the module docstring for their
        meaning here); the AUCs are NaN; ``tc_error`` the time-course error
        (NaN without the estimates' or the true moments).
    """
    if not isinstance(estimates, PointEstimates):
        raise TypeError(f"estimates must be PointEstimates, got {type(estimates).__name__}.")
    n_maps = len(estimates)
    check_int(n_maps, "number of events", minimum=1)
    single, true_positions = _check_true_positions_per_map(true_positions_per_map, n_maps)
    if single:
        true_positions = true_positions[:, np.newaxis]
    radius = _check_radius(peak_radius_mm)
    keys = ("dle_mm", "sd_mm", "sd_thesis_sqrtcm", "oa", *UNDEFINED_FOR_POINTS)
    scores = {key: np.full(n_maps, np.nan) for key in keys}
    scores["tc_error"] = _time_course_errors(estimates, true_positions, true_moments_per_map,
                                             windows, visible)  # fmt: skip
    for i, (pos, amp, tp) in enumerate(
        zip(estimates.positions, estimates.amplitudes, true_positions, strict=True)
    ):
        if len(pos) == 0:
            continue
        if not (amp > 0).any():  # all-zero amplitudes: every dipole counts the same
            amp = np.ones(len(amp))
        peaks = _find_peaks(amp, pos, len(tp), None, radius)
        scores["dle_mm"][i] = np.mean(_match_peaks(tp, pos[peaks])[0])
        scores["sd_mm"][i] = _sd_molins(amp, pos, tp)
        scores["sd_thesis_sqrtcm"][i] = _sd_thesis(amp, pos, pos[peaks])
        scores["oa"][i] = amp.sum() / amp.max()
    scores["n_sources"] = np.array([len(tp) for tp in true_positions], dtype=int)
    return scores


def _time_course_errors(estimates, true_positions, true_moments, windows, visible) -> np.ndarray:
    """Per-map time-course error (NaN without moments; an event without dipoles scores 1)."""
    out = np.full(len(estimates), np.nan)
    if estimates.moments is None or true_moments is None:
        return out
    if any(x is not None and len(x) != len(estimates) for x in (true_moments, windows, visible)):
        raise ValueError("true_moments_per_map, windows and visible need one entry per map.")
    for i, (pos, mom, tp, tm) in enumerate(zip(estimates.positions, estimates.moments,
                                               true_positions, true_moments, strict=True)):
        if tm is None:  # e.g. a patch: no one true moment
            continue
        window = None if windows is None else windows[i]
        proj = None if visible is None else visible[i]
        out[i] = time_course_error(pos, mom, tp, tm, visible=proj, window=window)
    return out

