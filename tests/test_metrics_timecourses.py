"""The time-course error: its definition on hand-made moments, and the dipoles' moments of peers."""

from __future__ import annotations

import numpy as np
import pytest

from napari_meg_unet import peers
from napari_meg_unet.evaluation import (
    add_source_time_course_errors,
    score_estimates,
    true_event_moments,
    visible_orientations,
)
from napari_meg_unet.metrics import PointEstimates, score_points
from napari_meg_unet.metrics.timecourses import time_course_error
from napari_meg_unet.peers import iter_run_peer
from napari_meg_unet.peers.dipole import own_conductor
from napari_meg_unet.peers.field import DipoleField, dipole_moments
from napari_meg_unet.progress import plain
from napari_meg_unet.simulate import simulate

#: Two sources on the x and y axes, their moments tangential (along z) with different courses.
POS = np.array([[0.05, 0.0, 0.0], [0.0, 0.05, 0.0]])
T = np.linspace(0, 1, 20)
COURSES = np.stack([np.sin(2 * np.pi * 3 * T), np.cos(2 * np.pi * 5 * T)]) * 1e-8
MOMENTS = np.zeros((2, 3, 20))
MOMENTS[:, 2] = COURSES
#: What a sphere around the origin sees of them: the orientations but the radial one.
SEEN = np.stack([np.eye(3) - np.outer(p, p) / (p @ p) for p in POS])


def test_a_perfect_estimate_scores_zero_in_any_order():
    assert time_course_error(POS, MOMENTS, POS, MOMENTS, visible=SEEN) == 0
    assert time_course_error(POS[::-1], MOMENTS[::-1], POS, MOMENTS, visible=SEEN) == 0


def test_nothing_scores_one_and_a_flipped_sign_two():
    assert time_course_error(np.empty((0, 3)), np.empty((0, 3, 0)), POS, MOMENTS) == 1
    assert time_course_error(POS, -MOMENTS, POS, MOMENTS) == pytest.approx(2)
    half = time_course_error(POS, 0.5 * MOMENTS, POS, MOMENTS)
    assert half == pytest.approx(0.5)


def test_missed_and_extra_dipoles_count_their_whole_moment():
    energy = np.sum(MOMENTS**2, axis=(1, 2))
    # only the first source estimated: the second's moment is missed
    missed = time_course_error(POS[:1], MOMENTS[:1], POS, MOMENTS)
    assert missed == pytest.approx(np.sqrt(energy[1] / energy.sum()))
    # a third dipole far away, with the first's course: counted in full
    extra = np.vstack([POS, [[0.0, 0.0, 0.09]]])
    extra_moments = np.concatenate([MOMENTS, MOMENTS[:1]])
    assert time_course_error(extra, extra_moments, POS, MOMENTS) == pytest.approx(
        np.sqrt(energy[0] / energy.sum()))  # fmt: skip


def test_the_part_the_sensors_cannot_see_is_left_out():
    radial = MOMENTS.copy()
    radial[0, 0] = 5e-9  # source 0 sits on the x axis: x is its radial direction
    assert time_course_error(POS, radial, POS, MOMENTS, visible=SEEN) == pytest.approx(0)
    assert time_course_error(POS, radial, POS, MOMENTS) > 0.1
    true_radial = radial.copy()  # the truth's unseen part is not asked for either
    assert time_course_error(POS, MOMENTS, POS, true_radial, visible=SEEN) == pytest.approx(0)
    with pytest.raises(ValueError, match="visible must have shape"):
        time_course_error(POS, MOMENTS, POS, MOMENTS, visible=SEEN[:1])


def test_the_window_limits_the_samples_compared():
    wrong_outside = MOMENTS.copy()
    wrong_outside[..., 10:] *= -1
    assert time_course_error(POS, wrong_outside, POS, MOMENTS, window=(0, 10)) == 0
    assert time_course_error(POS, wrong_outside, POS, MOMENTS) > 0.5
    with pytest.raises(ValueError, match="samples"):
        time_course_error(POS, MOMENTS[..., :5], POS, MOMENTS)


def test_score_points_reports_it_only_with_moments():
    est = PointEstimates([POS, POS[:1]], [[1.0, 1.0], [1.0]], [MOMENTS, -MOMENTS[:1]])
    truth = [MOMENTS, MOMENTS[:1]]
    scores = score_points(est, true_positions_per_map=[POS, POS[:1]], true_moments_per_map=truth,
                          visible=[SEEN, SEEN[:1]])  # fmt: skip
    np.testing.assert_allclose(scores["tc_error"], [0.0, 2.0])
    without = score_points(PointEstimates([POS], [[1.0, 1.0]]), true_positions_per_map=[POS])
    assert np.isnan(without["tc_error"]).all()
    patch = score_points(est, true_positions_per_map=[POS, POS[:1]],
                         true_moments_per_map=[MOMENTS, None])  # fmt: skip
    assert scores["tc_error"][0] == patch["tc_error"][0] and np.isnan(patch["tc_error"][1])
    with pytest.raises(ValueError, match="moments must have shape"):
        PointEstimates([POS], [[1.0, 1.0]], [MOMENTS[:1]])
    with pytest.raises(ValueError, match="one moment array per event"):
        PointEstimates([POS], [[1.0, 1.0]], [MOMENTS, MOMENTS])
    assert est.subset([1]).moments[0].shape == (1, 3, 20)
    both = PointEstimates.concatenate([est, est.subset([0])])
    assert len(both.moments) == 3
    assert PointEstimates.concatenate([est, PointEstimates([POS], [[1, 1]])]).moments is None


@pytest.fixture(scope="module")
def clean_multi(template_hm):
    """Noiseless off-grid pairs of dipoles."""
    return simulate(template_hm, design="multi", n_events=3, n_dipoles=(2, 2), hemi="rh",
                    noise=None, snr=1.0, seed=8, timecourse="realistic", off_grid=True)  # fmt: skip


def test_the_truth_scores_zero_and_the_unseen_orientation_is_nearly_radial(template_hm,
                                                                          clean_multi):
    sim = clean_multi
    seen = visible_orientations(template_hm, template_hm.positions[::50])
    assert seen.shape == (len(template_hm.positions[::50]), 3, 3)
    # MNE's rule leaves out one orientation at these cortical sources, close to radial
    # from the brain's centre (a sphere's blind direction)
    np.testing.assert_allclose(np.trace(seen, axis1=1, axis2=2), 2, atol=1e-9)
    radial = template_hm.positions[::50] - template_hm.positions.mean(axis=0)
    radial /= np.linalg.norm(radial, axis=1, keepdims=True)
    assert np.median(np.einsum("ka,kab,kb->k", radial, seen, radial)) < 0.1
    positions = [sim.sources["position"][sim.event_sources(i)] for i in range(len(sim))]
    moments = [true_event_moments(sim, i) for i in range(len(sim))]
    est = PointEstimates(positions, [np.ones(2)] * len(sim), moments)
    scores = score_estimates(est, sim, template_hm)
    np.testing.assert_allclose(scores["tc_error"], 0, atol=1e-12)
    np.testing.assert_allclose(scores["dle_mm"], 0, atol=1e-9)
    # one dipole of each pair, with its moment: the other source's moment is missed
    one = PointEstimates([p[:1] for p in positions], [np.ones(1)] * len(sim),
                         [m[:1] for m in moments])  # fmt: skip
    assert (score_estimates(one, sim, template_hm)["tc_error"] > 0.2).all()


def test_dipoles_fixed_at_the_true_positions_recover_the_true_moments(template_hm, clean_multi):
    sim = clean_multi
    field = DipoleField(template_hm.info, *own_conductor(template_hm))
    w = peers.base.whitener(peers.get_peer("rap-music").prepare(
        template_hm, sim.info, params={}))  # fmt: skip
    for i in range(len(sim)):
        pos = sim.sources["position"][sim.event_sources(i)]
        fitted = dipole_moments(field, w, sim.data[i], pos)
        error = time_course_error(pos, fitted, pos, true_event_moments(sim, i),
                                  visible=visible_orientations(template_hm, pos),
                                  window=sim.window(i))  # fmt: skip
        assert error < 1e-6
    assert dipole_moments(field, w, sim.data[0], np.empty((0, 3))).shape == (0, 3, 32)


@pytest.mark.parametrize("name", ["rap-music", "dipole-sphere-window", "mxne"])
def test_point_peers_give_moments_scored_by_the_time_course_error(template_hm, name):
    counts = (1, 2) if name == "rap-music" else (1, 1)
    sim = simulate(template_hm, design="multi", n_events=3, n_dipoles=counts, hemi="rh",
                   snr=10.0, seed=3, timecourse="realistic")  # fmt: skip
    peer = peers.get_peer(name)
    state = peer.prepare(template_hm, sim.info, params=peer.defaults)
    run = plain(iter_run_peer)(peer, state, sim, np.arange(3))
    points = run.estimates if peer.output == "points" else run.sources
    assert (run.sources is None) == (peer.output == "points")
    assert points.moments is not None
    assert all(m.shape[1:] == (3, 32) for m in points.moments)
    scores = score_estimates(run.estimates, sim, template_hm, events=run.events)
    add_source_time_course_errors(scores, run, sim, template_hm)
    # at SNR 10 every estimate is better than estimating nothing (1), some nearly exact
    assert np.isfinite(scores["tc_error"]).all() and (scores["tc_error"] < 1).all()
    assert scores["tc_error"].min() < 0.1


def test_nearly_collinear_dipoles_do_not_report_large_opposite_moments(template_hm, monkeypatch):
    from napari_meg_unet.peers import field as field_module

    hm = template_hm
    row = int(hm.rows("rh")[100])
    course = 20e-9 * np.sin(np.linspace(0, 3 * np.pi, 32))
    rng = np.random.default_rng(0)
    sim_w = peers.base.whitener(peers.get_peer("rap-music").prepare(hm, hm.info, params={}))
    noise = np.linalg.pinv(sim_w) @ rng.standard_normal((sim_w.shape[0], 32))
    data = np.outer(hm.gain[:, row], course) + noise
    pair = hm.positions[[row, row]] + np.array([[0, 0, 0], [0.001, 0, 0]])  # 1 mm apart
    field = DipoleField(hm.info, *own_conductor(hm))
    reported = dipole_moments(field, sim_w, data, pair)
    # the pair shares the one source's moment; neither dipole takes a large moment of its own
    assert np.linalg.norm(reported, axis=(1, 2)).max() < 2 * np.linalg.norm(course)
    monkeypatch.setattr(field_module, "MOMENT_RCOND", 1e-12)  # the exact least squares
    exact = dipole_moments(field, sim_w, data, pair)
    assert np.linalg.norm(exact, axis=(1, 2)).max() > 3 * np.linalg.norm(course)


def test_reported_fit_residual_is_the_full_least_squares_one(template_hm):
    from napari_meg_unet.peers.field import MOMENT_RCOND, dipole_basis, reported_fit

    rng = np.random.default_rng(1)
    rows = template_hm.rows("rh")[[100, 100, 300]]
    # the first two columns' sources 1 mm apart: a joint direction far weaker than the rest
    gains = [template_hm.fwd["sol"]["data"][:, 3 * r:3 * r + 3] for r in rows]
    gains[1] = gains[0] + 0.01 * rng.standard_normal(gains[0].shape) * np.abs(gains[0]).max()
    parts = [dipole_basis(g) for g in gains]
    y = rng.standard_normal((gains[0].shape[0], 5))
    moments, residual = reported_fit(parts, y)
    b = np.concatenate([u for u, _ in parts], axis=1)
    exact, *_ = np.linalg.lstsq(b, y, rcond=None)
    np.testing.assert_allclose(residual, np.sum((y - b @ exact) ** 2, axis=0), rtol=1e-9)
    s = np.linalg.svd(b, compute_uv=False)
    assert s.min() < MOMENT_RCOND * s.max()  # a direction the moments leave out
    truncated = np.linalg.pinv(b, rcond=MOMENT_RCOND) @ y
    expected = [to_moment @ truncated[3 * k:3 * k + 3] for k, (_, to_moment) in enumerate(parts)]
    np.testing.assert_allclose(moments, np.stack(expected), rtol=1e-9,
                               atol=1e-12 * np.abs(moments).max())  # fmt: skip
