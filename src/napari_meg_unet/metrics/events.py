"""Scoring one estimate per event (maps, time courses or dipoles) with a protocol.

:func:`score_events` is the one place where the estimates of any estimator —
a linear inverse's time courses, a network's probability map, a sparse
solver's map or a dipole fit's dipoles — become per-map scores; the evaluation
of a :class:`~napari_meg_unet.simulate.Simulation`
(:func:`napari_meg_unet.evaluation.score_estimates`) and the validation search
of the peers (:mod:`napari_meg_unet.peers.search`) both call it.
"""

from __future__ import annotations

import numpy as np

from .._validation import check_choice
from ..configs import PROTOCOLS
from .points import PointEstimates, score_points
from .scoring import score_maps
from .timing import sample_maps, window_map


def _maps_of(estimates, protocol, windows):
    """``(maps, event index of each map)`` of time courses or maps under ``protocol``."""
    if estimates.ndim == 2:
        if protocol != "window":
            raise ValueError(
                'maps (n_events, n_rows) have no time axis: only protocol="window" applies.'
            )
        return estimates, np.arange(len(estimates))
    if protocol == "window":
        return window_map(estimates, slice(None)), np.arange(len(estimates))
    maps, index = [], []
    for k, window in enumerate(windows):
        maps.append(sample_maps(estimates[k], samples=window)[0])
        index.append(np.full(len(maps[-1]), k))
    return np.concatenate(maps), np.concatenate(index)


def score_events(
    estimates, *, positions, true_positions, adjacency=None, protocol="window", windows=None,
    seed=0, true_moments=None, visible=None,
) -> dict:  # fmt: skip
    """Per-map scores of one estimate per event.

    Parameters
    ----------
    estimates : array | PointEstimates
        ``(n_events, n_rows, n_times)`` time courses, ``(n_events, n_rows)``
        maps (already one map per event: the window protocol only), or
        :class:`PointEstimates` (dipoles; the window protocol only: one
        estimate per event).
    positions : array, shape (n_rows, 3)
        Positions of the rows (metres); unused for point estimates.
    true_positions : list of array, shape (k_i, 3)
        True source positions of each event (metres).
    adjacency : scipy.sparse matrix | None
        Mesh adjacency of the rows (multi-source peak finding on maps).
    protocol : ``"window"`` | ``"samples"``
        ``"window"``: one map per event, the mean ``|estimate|`` over the
        epoch; ``"samples"``: every sample of ``windows[k]`` is a map (no AUC).
    windows : list of (int, int) | None
        The active window of each event (``"samples"``; for point estimates,
        the samples their time-course error compares).
    seed : int
        Seed of the AUC negative draws (see :func:`score_maps`).
    true_moments : list of array, shape (k_i, 3, n_times) | None
        The true sources' moments (A·m) of each event: point estimates with
        moments get a time-course error (``tc_error``, :mod:`.timecourses`).
    visible : list of array, shape (k_i, 3, 3) | None
        Projectors onto the orientations seen at each true source of each
        event (the time-course error's, :mod:`.timecourses`).

    Returns
    -------
    scores : dict of arrays
        :func:`score_maps`' (or :func:`score_points`') keys, plus ``index``:
        the position in ``estimates`` of the event of each map.
    """
    check_choice(protocol, "protocol", PROTOCOLS)
    n_events = len(true_positions)
    if len(estimates) != n_events:
        raise ValueError(
            f"estimates hold {len(estimates)} events but true_positions {n_events}."
        )
    if isinstance(estimates, PointEstimates):
        if protocol != "window":
            raise ValueError('point estimates (dipoles) are scored with protocol="window" only.')
        scores = score_points(estimates, true_positions_per_map=list(true_positions),
                              true_moments_per_map=true_moments, windows=windows,
                              visible=visible)  # fmt: skip
        scores["index"] = np.arange(n_events)
        return scores
    if protocol == "samples" and (windows is None or len(windows) != n_events):
        raise ValueError('protocol="samples" needs the active window of every event.')
    maps, index = _maps_of(np.asarray(estimates), protocol, windows)
    per_map = [true_positions[k] for k in index]
    n_src = {len(np.reshape(tp, (-1, 3))) for tp in per_map}
    if n_src == {1}:
        per_map = np.stack([np.reshape(tp, (-1, 3))[0] for tp in per_map])
    # The close/far AUC draws negatives per map: affordable for one map per event, not for
    # every sample of every event, so the per-sample protocol reports no AUC.
    scores = score_maps(
        maps, positions=positions, true_positions_per_map=per_map, adjacency=adjacency,
        auc=protocol == "window", seed=seed,
    )  # fmt: skip
    scores["index"] = index
    return scores
