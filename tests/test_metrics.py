"""Tests of napari_meg_unet.metrics, cross-checked against MNE-Python where definitions coincide."""

from __future__ import annotations

import mne
import numpy as np
import pytest
from mne.surface import _get_ico_surface
from scipy import sparse
from scipy.stats import wasserstein_distance

from napari_meg_unet.headmodel import HeadModel
from napari_meg_unet.metrics import (
    aggregate,
    auc_close_far,
    bootstrap_ci,
    dle_density,
    dle_density_grid,
    earth_movers_distance,
    overall_amplitude,
    peak_localisation_error,
    per_event_mean,
    per_vertex_mean,
    roc_auc,
    sample_maps,
    score_event,
    score_maps,
    spatial_dispersion,
    window_map,
)


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """A tiny two-hemisphere surface source space with a real MNE EEG forward/inverse.

    Each "hemisphere" is an ellipsoid (ico2 mesh, 162 sources, all used) inside
    a sphere head model with the biosemi64 montage; all offline.
    """
    subjects_dir = tmp_path_factory.mktemp("subjects")
    surf = subjects_dir / "toy" / "surf"
    surf.mkdir(parents=True)
    ico = _get_ico_surface(2)
    for hemi, x in (("lh", -0.03), ("rh", 0.03)):
        white = ico["rr"] * [0.025, 0.05, 0.035] + [x, 0.0, 0.04]
        mne.write_surface(surf / f"{hemi}.white", white * 1000, ico["tris"])
    src = mne.setup_source_space(
        "toy", spacing="all", subjects_dir=subjects_dir, add_dist=False, verbose=False
    )
    for s in src:  # spacing="all" leaves no use_tris; HeadModel.adjacency() needs them
        s["use_tris"], s["nuse_tri"] = s["tris"], s["ntri"]
    montage = mne.channels.make_standard_montage("biosemi64")
    info = mne.create_info(montage.ch_names, 1000.0, "eeg")
    info.set_montage(montage)
    info = (
        mne.io.RawArray(np.zeros((len(info.ch_names), 1)), info, verbose=False)
        .set_eeg_reference(projection=True, verbose=False)
        .info
    )
    sphere = mne.make_sphere_model(r0=(0, 0, 0.04), head_radius=0.09, verbose=False)
    fwd = mne.make_forward_solution(
        info, trans=None, src=src, bem=sphere, meg=False, eeg=True, verbose=False
    )
    fwd = mne.convert_forward_solution(fwd, surf_ori=True, verbose=False)
    fwd_fixed = mne.convert_forward_solution(fwd, surf_ori=True, force_fixed=True, verbose=False)
    cov = mne.make_ad_hoc_cov(info, verbose=False)
    inv = mne.minimum_norm.make_inverse_operator(
        info, fwd, cov, fixed=True, depth=0.8, verbose=False
    )
    resmats = {
        method: mne.minimum_norm.make_inverse_resolution_matrix(
            fwd_fixed, inv, method=method, lambda2=1.0 / 9.0, verbose=False
        )
        for method in ("MNE", "dSPM", "sLORETA")
    }
    hm = HeadModel(info=info, src=fwd["src"], fwd=fwd, fwd_fixed=fwd_fixed, noise_cov=cov)
    return {"hm": hm, "inv": inv, "resmats": resmats}


def _brute_force_auc(scores, labels):
    pos, neg = scores[labels], scores[~labels]
    diff = pos[:, None] - neg[None, :]
    return ((diff > 0) + 0.5 * (diff == 0)).mean()


def _line_positions(n, step_m=0.001):
    positions = np.zeros((n, 3))
    positions[:, 0] = np.arange(n) * step_m
    return positions


# --------------------------------------------------------------------------- parity with MNE
@pytest.mark.parametrize("method", ["MNE", "dSPM", "sLORETA"])
@pytest.mark.parametrize("function", ["psf", "ctf"])
def test_dle_sd_equal_mne_resolution_metrics(toy, method, function):
    """Our DLE/SD of PSFs and CTFs are MNE's peak_err/sd_ext (cm -> mm)."""
    resmat = toy["resmats"][method]
    src = toy["inv"]["src"]
    positions = np.vstack([s["rr"][s["vertno"]] for s in src])
    np.testing.assert_array_equal(positions, toy["hm"].positions)
    maps = resmat.T if function == "psf" else resmat  # map j = function of source j
    ours = score_maps(maps, positions=positions, true_positions_per_map=positions)
    for metric, key in (("peak_err", "dle_mm"), ("sd_ext", "sd_mm")):
        ref = mne.minimum_norm.resolution_metrics(
            resmat, src, function=function, metric=metric, verbose=False
        ).data[:, 0]
        # non-trivial reference, except sLORETA PSFs which peak at the source (§4.1)
        assert ref.max() > 0 or (metric, method, function) == ("peak_err", "sLORETA", "psf")
        np.testing.assert_allclose(ours[key] / 10.0, ref, rtol=1e-10, atol=0)
    # the single-map functions agree with the vectorised batch
    for j in (0, 17, 200):
        dle = peak_localisation_error(maps[j], positions, positions[j])
        assert dle["dle_mm"] == ours["dle_mm"][j]
        sd = spatial_dispersion(maps[j], positions, positions[j], kind="molins")
        np.testing.assert_allclose(sd, ours["sd_mm"][j], rtol=1e-12)


def test_sloreta_psf_peaks_at_true_vertex(toy):
    """No off-by-one vertex bug: maps peaking exactly at the true vertex have DLE 0."""
    positions = toy["hm"].positions
    psfs = toy["resmats"]["sLORETA"].T
    # fixed-orientation sLORETA PSFs peak at the true source (inverse-math.md §4.1)
    assert np.array_equal(np.abs(psfs).argmax(axis=1), np.arange(len(positions)))
    scores = score_maps(psfs, positions=positions, true_positions_per_map=positions)
    np.testing.assert_array_equal(scores["dle_mm"], 0.0)
    # the thesis bug: coordinates of vertex j + 1 paired with the map of vertex j
    shifted = np.roll(positions, -1, axis=0)
    wrong = score_maps(psfs, positions=positions, true_positions_per_map=shifted)
    assert (wrong["dle_mm"] > 1.0).all()
    # an exact delta map also has DLE 0 and OA 1
    delta = np.zeros(len(positions))
    delta[123] = -2.5
    assert peak_localisation_error(delta, positions, positions[123])["dle_mm"] == 0.0
    assert overall_amplitude(delta) == 1.0


def test_template_headmodel_rows_match_mne(template_hm):
    """On the template head model, hm.positions / rows follow MNE's source order."""
    hm = template_hm
    inv = mne.minimum_norm.make_inverse_operator(
        hm.info, hm.fwd, hm.noise_cov, fixed=True, depth=0.8, verbose=False
    )
    resmat = mne.minimum_norm.make_inverse_resolution_matrix(
        hm.fwd_fixed, inv, method="dSPM", lambda2=1.0 / 9.0, verbose=False
    )
    ours = score_maps(resmat.T, positions=hm.positions, true_positions_per_map=hm.positions)
    for metric, key in (("peak_err", "dle_mm"), ("sd_ext", "sd_mm")):
        ref = mne.minimum_norm.resolution_metrics(
            resmat, inv["src"], function="psf", metric=metric, verbose=False
        ).data[:, 0]
        np.testing.assert_allclose(ours[key] / 10.0, ref, rtol=1e-10, atol=0)
    # two point sources in different hemispheres: local maxima on the real mesh
    lh, rh = hm.rows("lh"), hm.rows("rh")
    estimate = np.zeros(hm.n_sources)
    estimate[[lh[100], rh[200]]] = [1.0, 0.3]
    res = peak_localisation_error(
        estimate, hm.positions, hm.positions[[rh[200], lh[100]]], adjacency=hm.adjacency()
    )
    np.testing.assert_array_equal(res["peak_rows"], [rh[200], lh[100]])
    assert res["dle_mm"] == 0.0


def test_peak_error_vs_mne_peak_position_error(toy):
    """MNE's peak_position_error (CoG of the >50% estimate) equals our DLE iff one row survives."""
    hm = toy["hm"]
    positions = hm.positions
    src = hm.fwd["src"]
    vertno = hm.vertno
    n_lh = len(vertno[0])
    true_row, peak_row = 10, 12
    # the second lobe: the row farthest from the true source (in the other hemisphere)
    other_row = int(np.argmax(np.linalg.norm(positions - positions[true_row], axis=1)))
    stc_true = mne.SourceEstimate(
        np.ones((1, 1)), [vertno[0][[true_row]], np.array([], int)], tmin=0, tstep=1
    )

    def mne_ppe_mm(estimate):
        stc = mne.SourceEstimate(estimate[:, None], [vertno[0], vertno[1]], tmin=0, tstep=1)
        return 1000 * mne.simulation.metrics.peak_position_error(stc_true, stc, src)[0]

    rng = np.random.default_rng(0)
    estimate = rng.uniform(0, 0.45, len(positions))  # everything below 50 % of the peak ...
    estimate[peak_row] = 1.0  # ... except the peak: CoG == peak position
    ours = peak_localisation_error(estimate, positions, positions[true_row])["dle_mm"]
    assert ours > 0
    np.testing.assert_allclose(mne_ppe_mm(estimate), ours, rtol=1e-10)

    # Two strong lobes: our DLE is the distance to the strongest one, MNE's the
    # distance to their amplitude-weighted centre of gravity.
    estimate[other_row] = 0.9
    assert other_row >= n_lh
    ours_two = peak_localisation_error(estimate, positions, positions[true_row])["dle_mm"]
    assert ours_two == ours
    cog = (positions[peak_row] + 0.9 * positions[other_row]) / 1.9
    expected = 1000 * np.linalg.norm(cog - positions[true_row])
    np.testing.assert_allclose(mne_ppe_mm(estimate), expected, rtol=1e-10)
    assert abs(expected - ours) > 20.0


def test_roc_auc_equals_mne_and_brute_force():
    rng = np.random.default_rng(1)
    n = 300
    truth = np.zeros(n)
    truth[rng.choice(n, 20, replace=False)] = rng.uniform(0.5, 1, 20)
    estimate = np.round(truth + rng.normal(0, 0.3, n), 1)  # rounding creates ties
    labels = truth != 0
    ours = roc_auc(np.abs(estimate), labels)
    np.testing.assert_allclose(ours, _brute_force_auc(np.abs(estimate), labels), rtol=1e-12)
    try:
        import sklearn  # noqa: F401
    except ImportError:
        return  # MNE's roc_auc_score needs scikit-learn; the brute force above still ran
    vertices = [np.arange(n // 2), np.arange(n - n // 2)]
    stc_true = mne.SourceEstimate(truth[:, None], vertices, tmin=0, tstep=1)
    stc_est = mne.SourceEstimate(estimate[:, None], vertices, tmin=0, tstep=1)
    ref = mne.simulation.metrics.roc_auc_score(stc_true, stc_est)[0]
    np.testing.assert_allclose(ours, ref, rtol=1e-12)


def test_roc_auc_validation():
    assert roc_auc([0.1, 0.9], [0, 1]) == 1.0
    assert roc_auc([1.0, 1.0, 1.0], [0, 1, 1]) == 0.5
    with pytest.raises(ValueError, match="both positives and negatives"):
        roc_auc([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match="same length"):
        roc_auc([0.1, 0.2], [1])


# --------------------------------------------------------------------------- multi-source DLE
def test_multi_source_permutation_invariant_and_optimal(toy):
    hm = toy["hm"]
    positions = hm.positions
    adjacency = hm.adjacency()
    # four rows pairwise > 30 mm apart (so 20 mm suppression keeps them all)
    rows = [5]
    for row in range(len(positions)):
        if np.linalg.norm(positions[rows] - positions[row], axis=1).min() > 0.03:
            rows.append(row)
    rows = np.array(rows[:4])
    assert len(rows) == 4
    true_positions = positions[rows] + 0.002  # off the grid
    estimate = np.zeros(len(positions))
    estimate[rows] = [1.0, -0.8, 0.6, 0.5]
    for adj in (None, adjacency):
        ref = peak_localisation_error(estimate, positions, true_positions, adjacency=adj)
        np.testing.assert_array_equal(np.sort(ref["peak_rows"]), np.sort(rows))
        expected = 1000 * np.linalg.norm([0.002] * 3)
        np.testing.assert_allclose(ref["dle_per_source_mm"], expected, rtol=1e-12)
        for perm in ([3, 2, 1, 0], [1, 3, 0, 2]):
            res = peak_localisation_error(estimate, positions, true_positions[perm], adjacency=adj)
            np.testing.assert_allclose(res["dle_mm"], ref["dle_mm"], rtol=1e-14)
            np.testing.assert_array_equal(res["peak_rows"], ref["peak_rows"][perm])

    # Hungarian vs greedy: on a line, peaks at 0 and 10 mm, sources at 6 and 20 mm.
    # Greedy nearest-first pairs 6->10 (4 mm) then 20->0 (20 mm): mean 12 mm.
    # The optimal assignment pairs 6->0 and 20->10: mean 8 mm.
    line = _line_positions(25)
    estimate = np.zeros(25)
    estimate[[0, 10]] = [1.0, 0.9]
    res = peak_localisation_error(
        estimate, line, [[0.006, 0, 0], [0.020, 0, 0]], peak_radius_mm=3.0
    )
    np.testing.assert_allclose(res["dle_per_source_mm"], [6.0, 10.0], atol=1e-9)
    np.testing.assert_array_equal(res["peak_rows"], [0, 10])


def test_peak_finding_adjacency_and_suppression():
    line = _line_positions(30)
    adjacency = sparse.diags([1.0, 1.0], [-1, 1], shape=(30, 30), format="csr")
    estimate = np.exp(-0.5 * ((np.arange(30) - 8) / 2.0) ** 2)
    estimate += 0.7 * np.exp(-0.5 * ((np.arange(30) - 22) / 2.0) ** 2)
    truth = line[[8, 22]]
    # local maxima on the graph: rows 8 and 22, DLE 0
    res = peak_localisation_error(estimate, line, truth, adjacency=adjacency)
    np.testing.assert_array_equal(res["peak_rows"], [8, 22])
    assert res["dle_mm"] == 0.0
    # suppression radius wide enough to keep the second blob's peak
    res = peak_localisation_error(estimate, line, truth, peak_radius_mm=5.0)
    np.testing.assert_array_equal(res["peak_rows"], [8, 22])
    # a tiny radius picks the shoulder of the first blob (row 7 or 9) instead
    res = peak_localisation_error(estimate, line, truth, peak_radius_mm=0.5)
    assert res["dle_mm"] > 0
    # a single blob has one local maximum: both sources are scored against it
    single = np.exp(-0.5 * ((np.arange(30) - 15) / 3.0) ** 2)
    res = peak_localisation_error(single, line, line[[12, 19]], adjacency=adjacency)
    np.testing.assert_array_equal(res["peak_rows"], [15, 15])
    np.testing.assert_allclose(res["dle_per_source_mm"], [3.0, 4.0], atol=1e-9)


# --------------------------------------------------------------------------- SD and OA
def test_spatial_dispersion_definitions():
    line = _line_positions(11, step_m=0.01)  # 1 cm apart
    estimate = np.zeros(11)
    estimate[[2, 3, 6]] = [1.0, -2.0, 1.0]  # peak at row 3
    true = line[4]
    power = estimate**2
    d_true_mm = np.abs(np.arange(11) - 4) * 10.0
    d_peak_cm = np.abs(np.arange(11) - 3) * 1.0
    molins = spatial_dispersion(estimate, line, true)
    np.testing.assert_allclose(molins, np.sqrt((d_true_mm**2 * power).sum() / power.sum()))
    thesis = spatial_dispersion(estimate, line, true, kind="thesis")
    np.testing.assert_allclose(thesis, np.sqrt((d_peak_cm * power).sum() / power.sum()))
    # units: Molins is a length, the thesis SD a square root of a length
    scaled = line * 4.0
    np.testing.assert_allclose(spatial_dispersion(estimate, scaled, true * 4), 4 * molins)
    np.testing.assert_allclose(
        spatial_dispersion(estimate, scaled, true * 4, kind="thesis"), 2 * thesis
    )
    # several sources: distance to the nearest true source
    two = spatial_dispersion(estimate, line, line[[2, 6]])
    d_two_mm = np.minimum(np.abs(np.arange(11) - 2), np.abs(np.arange(11) - 6)) * 10.0
    np.testing.assert_allclose(two, np.sqrt((d_two_mm**2 * power).sum() / power.sum()))
    with pytest.raises(ValueError, match="kind must be one of"):
        spatial_dispersion(estimate, line, true, kind="hauk")


def test_overall_amplitude():
    estimate = np.array([0.5, -2.0, 1.0, 0.0])
    assert overall_amplitude(estimate) == pytest.approx(3.5 / 2.0)
    assert overall_amplitude(estimate, kind="sum") == pytest.approx(3.5)
    assert overall_amplitude(np.ones(7)) == 7.0  # upper bound N
    assert np.isnan(overall_amplitude(np.zeros(4)))
    with pytest.raises(ValueError, match="kind must be one of"):
        overall_amplitude(estimate, kind="max")


def test_vectorised_scores_match_per_map_functions(toy):
    positions = toy["hm"].positions
    rng = np.random.default_rng(3)
    maps = rng.normal(size=(40, len(positions)))
    maps[7] = 0.0
    true_positions = positions[rng.integers(0, len(positions), 40)] + rng.normal(0, 3e-3, (40, 3))
    scores = score_maps(maps, positions=positions, true_positions_per_map=true_positions)
    for i in (0, 11, 39):
        assert scores["dle_mm"][i] == pytest.approx(
            peak_localisation_error(maps[i], positions, true_positions[i])["dle_mm"], rel=1e-12
        )
        for kind, key in (("molins", "sd_mm"), ("thesis", "sd_thesis_sqrtcm")):
            assert scores[key][i] == pytest.approx(
                spatial_dispersion(maps[i], positions, true_positions[i], kind=kind), rel=1e-12
            )
        assert scores["oa"][i] == pytest.approx(overall_amplitude(maps[i]), rel=1e-12)
    for key in ("dle_mm", "sd_mm", "sd_thesis_sqrtcm", "oa"):
        assert np.isnan(scores[key][7])
        assert np.isfinite(np.delete(scores[key], 7)).all()
    # the loop path (one source per map given as (n_maps, k, 3) with k = 2) is consistent too
    pairs = np.stack([true_positions, true_positions[::-1]], axis=1)
    multi = score_maps(maps[:5], positions=positions, true_positions_per_map=pairs[:5])
    for i in range(5):
        assert multi["dle_mm"][i] == pytest.approx(
            peak_localisation_error(maps[i], positions, pairs[i])["dle_mm"], rel=1e-12
        )
        assert multi["sd_mm"][i] == pytest.approx(
            spatial_dispersion(maps[i], positions, pairs[i]), rel=1e-12
        )
    np.testing.assert_array_equal(multi["n_sources"], 2)


# --------------------------------------------------------------------------- close/far AUC
def test_auc_close_far(toy):
    positions = toy["hm"].positions
    n = len(positions)
    truth = np.zeros(n)
    truth[[3, 40]] = [1.0, 0.5]
    rng = np.random.default_rng(4)
    # perfect estimate
    res = auc_close_far(truth * 3.0, truth, positions, seed=0)
    assert res == {"auc_close": 1.0, "auc_far": 1.0, "auc": 1.0}
    # an estimate leaking onto the close inactive rows fails close, passes far
    d = np.min(np.linalg.norm(positions[:, None] - positions[[3, 40]][None], axis=-1), axis=1)
    inactive = np.setdiff1d(np.arange(n), [3, 40])
    by_distance = inactive[np.argsort(d[inactive], kind="stable")]
    n_close = round(0.2 * len(inactive))
    leaky = np.zeros(n)
    leaky[by_distance[:n_close]] = 2.0  # the 20 % closest inactive rows outshine ...
    leaky[[3, 40]] = 1.0  # ... the true sources, the far ones are silent
    res = auc_close_far(leaky, truth, positions, seed=0, n_draws=50)
    assert (res["auc_close"], res["auc_far"], res["auc"]) == (0.0, 1.0, 0.5)
    # the complement: everything but the close pool leaks -> close 1, far 0
    leaky = np.full(n, 2.0)
    leaky[by_distance[:n_close]] = 0.0
    leaky[[3, 40]] = 1.0
    res = auc_close_far(leaky, truth, positions, seed=1, n_draws=50)
    assert (res["auc_close"], res["auc_far"]) == (1.0, 0.0)
    # deterministic for a seed, different for another one
    noisy = truth + rng.normal(0, 0.4, n)
    a = auc_close_far(noisy, truth, positions, seed=5)
    assert a == auc_close_far(noisy, truth, positions, seed=5)
    assert a != auc_close_far(noisy, truth, positions, seed=6)
    # a close pool as large as the positives is drawn whole: equals a plain ROC-AUC
    n_inactive = n - 2
    closest = inactive[np.argsort(d[inactive], kind="stable")[:2]]
    res = auc_close_far(noisy, truth, positions, close_fraction=2 / n_inactive, n_draws=3)
    rows = np.r_[3, 40, closest]
    labels = np.r_[True, True, False, False]
    assert res["auc_close"] == roc_auc(np.abs(noisy[rows]), labels)
    # threshold 0.6: row 40 (0.5) is inactive; the close pool is the row nearest to row 3
    res = auc_close_far(noisy, truth, positions, threshold=0.6, close_fraction=1 / (n - 1))
    d3 = np.linalg.norm(positions - positions[3], axis=1)
    d3[3] = np.inf
    rows = np.r_[3, np.argsort(d3, kind="stable")[0]]
    assert res["auc_close"] == roc_auc(np.abs(noisy[rows]), np.r_[True, False])
    # degenerate cases
    assert np.isnan(auc_close_far(noisy, np.zeros(n), positions)["auc"])
    assert auc_close_far(np.zeros(n), truth, positions)["auc"] == 0.5


# --------------------------------------------------------------------------- EMD
def test_emd_exact_on_a_line():
    """On a line the EMD is the 1-D Wasserstein distance (independent closed form)."""
    rng = np.random.default_rng(6)
    line = _line_positions(40, step_m=0.002)
    truth = np.zeros(40)
    truth[rng.choice(40, 6, replace=False)] = rng.uniform(0.5, 1.0, 6)
    estimate = np.zeros(40)
    estimate[rng.choice(40, 9, replace=False)] = -rng.uniform(0.5, 1.0, 9)
    ours = earth_movers_distance(estimate, truth, line, threshold=0.0)
    x_mm = line[:, 0] * 1000
    ref = wasserstein_distance(x_mm, x_mm, np.abs(truth), np.abs(estimate))
    np.testing.assert_allclose(ours, ref, rtol=1e-7)
    # thresholding drops the rows below threshold * max before normalising
    thr = earth_movers_distance(estimate, truth, line, threshold=0.8)
    keep_t = np.where(np.abs(truth) >= 0.8 * np.abs(truth).max(), np.abs(truth), 0)
    keep_e = np.where(np.abs(estimate) >= 0.8 * np.abs(estimate).max(), np.abs(estimate), 0)
    np.testing.assert_allclose(thr, wasserstein_distance(x_mm, x_mm, keep_t, keep_e), rtol=1e-7)


def test_emd_translation_and_point_masses(toy):
    positions = toy["hm"].positions
    n = len(positions)
    # point masses: the distance between the two rows
    a, b = np.zeros(n), np.zeros(n)
    a[5], b[77] = 1.0, 3.0
    expected = 1000 * np.linalg.norm(positions[5] - positions[77])
    np.testing.assert_allclose(earth_movers_distance(a, b, positions), expected, rtol=1e-12)
    # a translated distribution: EMD = the translation length
    rng = np.random.default_rng(7)
    pts = rng.normal(0, 0.01, (12, 3))
    shift = np.array([0.004, -0.002, 0.001])
    grid = np.vstack([pts, pts + shift])
    weights = rng.uniform(0.3, 1.0, 12)
    est, tru = np.r_[np.zeros(12), weights], np.r_[weights, np.zeros(12)]
    np.testing.assert_allclose(
        earth_movers_distance(est, tru, grid, threshold=0.0),
        1000 * np.linalg.norm(shift),
        rtol=1e-7,
    )
    assert earth_movers_distance(tru, tru, grid, threshold=0.0) == pytest.approx(0, abs=1e-9)
    assert np.isnan(earth_movers_distance(np.zeros(24), tru, grid))
    with pytest.raises(ValueError, match="max_pairs"):
        earth_movers_distance(est + 0.5, tru + 0.5, grid, threshold=0.0, max_pairs=100)


# --------------------------------------------------------------------------- time handling
def test_sample_and_window_maps():
    rng = np.random.default_rng(8)
    data = rng.normal(size=(3, 5, 7))  # events x rows x times
    maps, event_ids = sample_maps(data, samples=(2, 5))
    assert maps.shape == (9, 5)
    np.testing.assert_array_equal(event_ids, np.repeat([0, 1, 2], 3))
    np.testing.assert_array_equal(maps[4], data[1, :, 3])
    maps2, ids2 = sample_maps(data[0])
    np.testing.assert_array_equal(maps2, data[0].T)
    np.testing.assert_array_equal(ids2, 0)
    win = window_map(data[0], (2, 5))
    np.testing.assert_allclose(win, np.abs(data[0, :, 2:5]).mean(axis=1))
    np.testing.assert_allclose(window_map(data, slice(2, 5))[0], win)
    mask = np.zeros(7, bool)
    mask[[1, 6]] = True
    np.testing.assert_allclose(window_map(data[0], mask), np.abs(data[0][:, [1, 6]]).mean(1))
    with pytest.raises(ValueError, match="start < stop"):
        window_map(data[0], (5, 2))
    with pytest.raises(ValueError, match="selects no time sample"):
        window_map(data[0], slice(3, 3))
    with pytest.raises(ValueError, match="n_rows, n_times"):
        window_map(data[0, 0], (0, 1))


def test_score_event_protocols():
    line = _line_positions(20)
    n_times = 6
    truth_t = np.zeros((20, n_times))
    truth_t[8] = np.hanning(n_times + 2)[1:-1]
    estimate_t = np.zeros((20, n_times))
    estimate_t[9, :3] = 1.0  # early samples peak 1 mm away ...
    estimate_t[8, 3:] = 0.5  # ... late samples at the true row
    per_sample = score_event(
        estimate_t, positions=line, true_positions=line[8], truth_t=truth_t, emd=True
    )
    np.testing.assert_allclose(per_sample["dle_mm"], [1, 1, 1, 0, 0, 0], atol=1e-12)
    np.testing.assert_allclose(per_sample["emd_mm"], [1, 1, 1, 0, 0, 0], atol=1e-12)
    window = score_event(
        estimate_t, positions=line, true_positions=line[8], protocol="window", window=(0, 6)
    )
    assert window["dle_mm"].shape == (1,)
    assert window["dle_mm"][0] == pytest.approx(
        1.0, rel=1e-12
    )  # mean |estimate|: 0.5 at row 9 beats 0.25 at row 8
    with pytest.raises(ValueError, match="needs window"):
        score_event(estimate_t, positions=line, true_positions=line[8], protocol="window")


def test_score_maps_auc_emd_and_seeds(toy):
    positions = toy["hm"].positions
    n = len(positions)
    rng = np.random.default_rng(9)
    rows = rng.integers(0, n, 6)
    maps = rng.normal(0, 0.2, (6, n))
    maps[np.arange(6), rows] += 2.0
    truth_maps = np.zeros((6, n))
    truth_maps[np.arange(6), rows] = 1.0
    scores = score_maps(
        maps, positions=positions, true_positions_per_map=positions[rows], emd=True, seed=3
    )
    with_truth = score_maps(
        maps,
        positions=positions,
        true_positions_per_map=positions[rows],
        truth_maps=truth_maps,
        emd=True,
        seed=3,
    )
    for key in ("auc_close", "auc_far", "auc", "emd_mm", "dle_mm"):
        np.testing.assert_allclose(scores[key], with_truth[key], rtol=1e-12)
    children = np.random.SeedSequence(3).spawn(6)
    for i in range(6):
        single = auc_close_far(maps[i], truth_maps[i], positions, seed=children[i])
        assert single["auc"] == scores["auc"][i]
        assert scores["emd_mm"][i] == pytest.approx(
            earth_movers_distance(maps[i], truth_maps[i], positions), rel=1e-7
        )
    assert (scores["auc"] == 1.0).all()
    np.testing.assert_array_equal(scores["dle_mm"], 0.0)
    with pytest.raises(ValueError, match="true_positions_per_map"):
        score_maps(maps, positions=positions, true_positions_per_map=positions[:3])


# --------------------------------------------------------------------------- aggregation
def test_aggregate_is_per_event():
    rng = np.random.default_rng(10)
    event_means = rng.normal(10, 3, 30)
    n_samples = rng.integers(1, 6, 30)
    event_ids = np.repeat(np.arange(30), n_samples)
    values = event_means[event_ids] + rng.normal(0, 0.5, event_ids.size)
    res = aggregate(values, event_ids, seed=1)
    expected_means = np.array([values[event_ids == e].mean() for e in range(30)])
    assert res["mean"] == pytest.approx(expected_means.mean(), rel=1e-12)
    assert (res["n_events"], res["n_maps"]) == (30, event_ids.size)
    assert (res["ci_low"], res["ci_high"]) == bootstrap_ci(expected_means, seed=1)
    assert res["ci_low"] < res["mean"] < res["ci_high"]
    # duplicating the samples of an event (10x more correlated samples) changes nothing
    dup_values = np.r_[values, np.tile(values[event_ids == 4], 10)]
    dup_ids = np.r_[event_ids, np.full(10 * (event_ids == 4).sum(), 4)]
    dup = aggregate(dup_values, dup_ids, seed=1)
    for key in ("mean", "ci_low", "ci_high"):
        assert dup[key] == pytest.approx(res[key], rel=1e-12)
    # ... whereas treating every sample as independent would shrink the CI
    all_dup = np.tile(values, 10)
    naive = bootstrap_ci(all_dup, seed=1)
    assert naive[1] - naive[0] < 0.5 * (res["ci_high"] - res["ci_low"])
    res_all = aggregate(all_dup, np.tile(event_ids, 10), seed=1)
    for key in ("mean", "ci_low", "ci_high"):
        assert res_all[key] == pytest.approx(res[key], rel=1e-12)


def test_aggregate_nan_policy_and_bootstrap():
    values = np.array([1.0, np.nan, 3.0, 5.0])
    ids = np.array([0, 0, 1, 2])
    assert np.isnan(aggregate(values, ids)["mean"])
    omit = aggregate(values, ids, nan_policy="omit")
    assert omit["mean"] == 3.0 and omit["n_maps"] == 3
    with pytest.raises(ValueError, match="NaN"):
        aggregate(values, ids, nan_policy="raise")
    # the percentile bootstrap of a mean is close to the normal-theory interval
    rng = np.random.default_rng(11)
    x = rng.normal(0, 1, 400)
    low, high = bootstrap_ci(x, n_boot=4000, seed=0)
    half = 1.96 * x.std(ddof=1) / np.sqrt(x.size)
    assert low == pytest.approx(x.mean() - half, abs=0.02)
    assert high == pytest.approx(x.mean() + half, abs=0.02)
    assert bootstrap_ci(x, seed=2) == bootstrap_ci(x, seed=2)
    with pytest.raises(ValueError, match="ci must be"):
        bootstrap_ci(x, ci=95)


def test_per_vertex_mean():
    values = np.array([1.0, 3.0, 10.0, 4.0])
    rows = np.array([2, 2, 0, 4])
    out = per_vertex_mean(values, rows, 6)
    np.testing.assert_array_equal(out[[0, 2, 4]], [10.0, 2.0, 4.0])
    assert np.isnan(out[[1, 3, 5]]).all()
    with pytest.raises(ValueError, match="true_rows must be integers"):
        per_vertex_mean(values, rows, 4)


def test_per_event_mean_drops_nan():
    values = np.array([1.0, 3.0, np.nan, np.nan, 5.0])
    events = np.array([7, 7, 2, 4, 4])
    np.testing.assert_array_equal(per_event_mean(values, events), [5.0, 2.0])  # events 4, 7
    with pytest.raises(ValueError, match="same length"):
        per_event_mean(values, events[:3])


def test_dle_density_is_reflected_kde_integrating_to_one_on_positive_axis():
    values = np.random.default_rng(0).gamma(2.0, 5.0, size=300)
    grid = np.linspace(0, 200, 20001)
    out_grid, density = dle_density(values, grid)
    np.testing.assert_array_equal(out_grid, grid)
    assert np.trapezoid(density, grid) == pytest.approx(1.0, abs=1e-3)
    assert density[0] > 0  # no artificial drop to zero at the boundary
    # Scott's rule: bandwidth s * n^(-1/5), s the sample standard deviation
    h = values.std(ddof=1) * values.size ** (-1 / 5)
    x = grid[::1000, np.newaxis]
    kernel = np.exp(-0.5 * ((x - values) / h) ** 2) + np.exp(-0.5 * ((x + values) / h) ** 2)
    expected = kernel.sum(axis=1) / (values.size * h * np.sqrt(2 * np.pi))
    np.testing.assert_allclose(density[::1000], expected, rtol=1e-10)
    # default grid: 0 to just past the 99th percentile
    default_grid, _ = dle_density(values)
    assert default_grid[0] == 0 and default_grid[-1] == pytest.approx(
        1.1 * np.percentile(values, 99) + 1
    )
    np.testing.assert_array_equal(default_grid, dle_density_grid(values))
    assert dle_density(np.full(4, 2.0))[1] is None  # undefined for one distinct value
    assert dle_density(np.array([2.0]))[1] is None
    with pytest.raises(ValueError, match="negative"):
        dle_density(np.array([-1.0, 2.0]))
    with pytest.raises(ValueError, match="finite"):
        dle_density(np.array([np.nan, 2.0]))


def test_input_validation():
    line = _line_positions(5)
    with pytest.raises(ValueError, match="sample_maps"):
        peak_localisation_error(np.zeros((5, 2)), line, line[0])
    with pytest.raises(ValueError, match="positions must have shape"):
        peak_localisation_error(np.zeros(5), line[:, :2], line[0])
    with pytest.raises(ValueError, match="has 4 rows but positions has 5"):
        peak_localisation_error(np.zeros(4), line, line[0])
    with pytest.raises(ValueError, match="finite"):
        peak_localisation_error(np.array([0, np.nan, 0, 0, 0]), line, line[0])
    with pytest.raises(ValueError, match="adjacency must have shape"):
        peak_localisation_error(np.ones(5), line, line[0], adjacency=sparse.eye(4))
    with pytest.raises(ValueError, match="threshold must be"):
        auc_close_far(np.ones(5), np.ones(5), line, threshold=1.5)
    res = peak_localisation_error(np.zeros(5), line, line[:2])
    assert np.isnan(res["dle_mm"]) and (res["peak_rows"] == -1).all()
