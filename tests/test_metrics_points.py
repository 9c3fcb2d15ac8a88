"""Scores of point estimates (dipoles) and of one estimate per event (metrics.points/events)."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose

from napari_meg_unet.metrics import (
    UNDEFINED_FOR_POINTS,
    PointEstimates,
    score_events,
    score_maps,
    score_points,
)

TRUE = np.array([[0.0, 0.0, 0.05], [0.03, 0.0, 0.05]])


def test_single_dipole_scores():
    est = PointEstimates([[[0.0, 0.004, 0.05]]], [[2.0]])
    s = score_points(est, true_positions_per_map=TRUE[:1])
    assert s["dle_mm"][0] == pytest.approx(4.0)
    assert s["sd_mm"][0] == pytest.approx(4.0)  # no blur: the spread is the error
    assert s["sd_thesis_sqrtcm"][0] == 0.0 and s["oa"][0] == 1.0
    for key in UNDEFINED_FOR_POINTS:
        assert np.isnan(s[key][0])
    assert s["n_sources"].tolist() == [1]


def test_several_dipoles_are_matched_after_suppression():
    # three dipoles: one 2 mm from source 0, a weaker one 5 mm from it (suppressed: closer
    # than 20 mm to a stronger one), one 3 mm from source 1
    pos = [[0.002, 0.0, 0.05], [0.0, 0.005, 0.05], [0.033, 0.0, 0.05]]
    est = PointEstimates([pos], [[3.0, 2.0, 1.0]])
    s = score_points(est, true_positions_per_map=[TRUE])
    assert s["dle_mm"][0] == pytest.approx((2.0 + 3.0) / 2)
    assert s["oa"][0] == pytest.approx(6.0 / 3.0)
    # order of the true sources does not matter; one dipole for two sources: nearest
    s2 = score_points(est, true_positions_per_map=[TRUE[::-1]])
    assert s2["dle_mm"][0] == pytest.approx(s["dle_mm"][0])
    one = score_points(PointEstimates([pos[:1]], [[1.0]]), true_positions_per_map=[TRUE])
    assert one["dle_mm"][0] == pytest.approx((2.0 + 28.0) / 2)


def test_empty_estimate_is_nan_and_inputs_are_checked():
    est = PointEstimates([np.empty((0, 3)), [[0.0, 0.0, 0.05]]], [np.empty(0), [1.0]])
    s = score_points(est, true_positions_per_map=TRUE[:1].repeat(2, axis=0))
    assert np.isnan(s["dle_mm"][0]) and s["dle_mm"][1] == 0.0
    assert len(est.subset([1])) == 1 and len(est.subset(slice(0, 2))) == 2
    both = PointEstimates.concatenate([est, est.subset([1])])
    assert len(both) == 3
    with pytest.raises(ValueError, match="amplitudes"):
        PointEstimates([[[0, 0, 0]]], [[1.0, 2.0]])
    with pytest.raises(ValueError, match="one amplitude array per"):
        PointEstimates([[[0, 0, 0]]], [])
    with pytest.raises(TypeError, match="PointEstimates"):
        score_points(np.zeros((1, 3)), true_positions_per_map=TRUE[:1])


def test_score_events_maps_match_score_maps():
    rng = np.random.default_rng(0)
    positions = rng.uniform(-0.05, 0.05, (40, 3))
    tc = rng.standard_normal((3, 40, 6))
    truth = [positions[[4]], positions[[9]], positions[[1]]]
    s = score_events(tc, positions=positions, true_positions=truth, seed=3)
    ref = score_maps(np.abs(tc).mean(axis=-1), positions=positions,
                     true_positions_per_map=np.concatenate(truth), seed=3)  # fmt: skip
    for key in ("dle_mm", "sd_mm", "oa", "auc"):
        assert_allclose(s[key], ref[key])
    assert s["index"].tolist() == [0, 1, 2]
    # one map per event: the same as its window map
    maps = score_events(np.abs(tc).mean(axis=-1), positions=positions, true_positions=truth,
                        seed=3)  # fmt: skip
    assert_allclose(maps["dle_mm"], s["dle_mm"])
    samples = score_events(tc, positions=positions, true_positions=truth, protocol="samples",
                           windows=[(0, 2), (1, 4), (5, 6)])  # fmt: skip
    assert samples["index"].tolist() == [0, 0, 1, 1, 1, 2]
    assert np.isnan(samples["auc"]).all()
    with pytest.raises(ValueError, match="no time axis"):
        score_events(np.abs(tc).mean(axis=-1), positions=positions, true_positions=truth,
                     protocol="samples", windows=[(0, 1)] * 3)  # fmt: skip
    with pytest.raises(ValueError, match="active window"):
        score_events(tc, positions=positions, true_positions=truth, protocol="samples")
    points = PointEstimates([t for t in truth], [[1.0]] * 3)
    with pytest.raises(ValueError, match="window"):
        score_events(points, positions=positions, true_positions=truth, protocol="samples")
    assert (score_events(points, positions=positions, true_positions=truth)["dle_mm"] == 0).all()
    with pytest.raises(ValueError, match="hold 3 events"):
        score_events(points, positions=positions, true_positions=truth[:2])
