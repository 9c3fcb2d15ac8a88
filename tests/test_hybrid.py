"""Network-based estimators: continuous-position forward, dipole refinement, centre of mass,
the hybrids as peers, and in the accuracy protocol."""

from __future__ import annotations

import mne
import numpy as np
import pytest
from scipy import sparse

from napari_meg_unet.accuracy.hybrids import (
    NetworkCentreOfMass,
    NetworkDipoleFit,
    NetworkMaps,
    make_hybrid,
)
from napari_meg_unet.peers import (
    DipoleField,
    centre_of_mass,
    iter_run_peer,
    propose_peaks,
    refine_dipoles,
    validation_dle,
)
from napari_meg_unet.peers.dipole import fit_conductor
from napari_meg_unet.peers.field import THIRD_ORIENTATION_RATIO, CandidateScan, dipole_basis
from napari_meg_unet.progress import plain
from napari_meg_unet.simulate import simulate

run_peer = plain(iter_run_peer)


@pytest.fixture(scope="module")
def field(template_hm):
    bem, trans = fit_conductor(template_hm, "bem")
    return DipoleField(template_hm.info, bem, trans)


@pytest.fixture(scope="module")
def whitener(template_hm):
    w, _ = mne.cov.compute_whitener(template_hm.noise_cov, template_hm.info, pca=True,
                                    verbose=False)  # fmt: skip
    return w


@pytest.fixture(scope="module")
def pretrained(template_hm):
    from napari_meg_unet.checkpoint import load_checkpoint
    from napari_meg_unet.train.pretrained import pretrained_checkpoint

    path = pretrained_checkpoint()
    assert load_checkpoint(path)["dataset_meta"]["headmodel_fingerprint"] == template_hm.fingerprint
    return path


def _data(field, positions, orientations, time_courses):
    """Noiseless data of fixed dipoles computed with the same forward."""
    gain = field.gain(positions)
    pairs = enumerate(zip(orientations, time_courses, strict=True))
    return sum(np.outer(gain[:, 3 * i : 3 * i + 3] @ o, tc) for i, (o, tc) in pairs)


def _off_grid(hm, rows, shift_mm):
    return hm.positions[rows] + np.asarray(shift_mm, float) / 1e3


def test_field_matches_the_head_models_forward(template_hm, field):
    rows = np.array([3, 400, 900])
    gain = field.gain(template_hm.positions[rows])
    assert gain.shape == (len(template_hm.ch_names), 9)
    fixed = np.stack([gain[:, 3 * k : 3 * k + 3] @ template_hm.normals[r]
                      for k, r in enumerate(rows)], axis=1)  # fmt: skip
    ref = template_hm.gain[:, rows]
    assert np.linalg.norm(fixed - ref) / np.linalg.norm(ref) < 1e-5


def test_refinement_recovers_an_off_grid_dipole(template_hm, field, whitener):
    true = _off_grid(template_hm, [700], [[2.0, -1.5, 1.0]])
    tc = 20e-9 * np.sin(np.linspace(0, 3 * np.pi, 32))[None]
    data = _data(field, true, [template_hm.normals[700]], tc)
    start = true + np.array([6.0, -5.0, 4.0]) / 1e3  # 8.8 mm away
    fit = refine_dipoles(field, whitener, data, start)
    assert np.linalg.norm(fit.positions - true) * 1e3 < 1.0
    assert fit.gof > 0.999 and fit.nfev <= 30
    # the moment: the true dipole's mean |moment| less its poorly seen radial part
    assert 0.1 < fit.amplitudes[0] / np.abs(tc).mean() <= 1.001


def _two_dipoles(hm, field):
    """Two off-grid dipoles 64 mm apart: positions, data, normals and time courses."""
    rows = [720, 1100]
    true = _off_grid(hm, rows, [[1.5, 1.0, -2.0], [-1.0, 2.0, 1.0]])
    t = np.linspace(0, 1, 32)
    tc = 20e-9 * np.stack([np.sin(2 * np.pi * 5 * t), np.cos(2 * np.pi * 3 * t)])
    return true, _data(field, true, hm.normals[rows], tc), hm.normals[rows], tc


def test_refinement_separates_two_dipoles(template_hm, field, whitener):
    true, data, _, _ = _two_dipoles(template_hm, field)
    start = true + np.array([[5.0, -4.0, 3.0], [-4.0, -5.0, 3.0]]) / 1e3
    fit = refine_dipoles(field, whitener, data, start)
    assert (np.linalg.norm(fit.positions - true, axis=1) * 1e3 < 1.0).all()
    assert fit.moments.shape == (2, 3, 32)


def test_selection_keeps_the_dipoles_the_data_need(template_hm, field, whitener):
    true, data, normals, tc = _two_dipoles(template_hm, field)
    spurious = template_hm.positions[[300]]  # a third proposal far from both
    start = np.vstack([true + 3e-3, spurious])
    fit = refine_dipoles(field, whitener, data, start, select=True)
    assert len(fit.positions) == 2
    assert (np.linalg.norm(fit.positions - true, axis=1) * 1e3 < 1.0).all()
    # one noisy dipole and two more proposals: the fit keeps one dipole
    one = _data(field, true[:1], normals[:1], tc[:1] * 5)
    noise = np.linalg.pinv(whitener) @ np.random.default_rng(0).standard_normal((len(whitener), 32))
    start = np.vstack([true[:1] + 3e-3, template_hm.positions[[300, 1200]]])
    fit = refine_dipoles(field, whitener, one + noise, start, select=True)
    assert len(fit.positions) == 1 and np.linalg.norm(fit.positions - true[:1]) * 1e3 < 3.0
    assert len(refine_dipoles(field, whitener, one + noise, start).positions) == 3
    # a lighter BIC penalty keeps dipoles fitted to the noise; a heavier one drops real ones
    light = refine_dipoles(field, whitener, one + noise, start, select=True, bic_weight=1e-3)
    assert len(light.positions) == 3
    heavy = refine_dipoles(field, whitener, data, np.vstack([true + 3e-3, spurious]),
                           select=True, bic_weight=1e6)  # fmt: skip
    assert len(heavy.positions) == 1
    with pytest.raises(ValueError, match="bic_weight"):
        refine_dipoles(field, whitener, data, start, select=True, bic_weight=0)


def test_a_missed_dipole_is_added_from_the_residual(template_hm, field, whitener):
    true, data, normals, tc = _two_dipoles(template_hm, field)
    scan = CandidateScan(field, whitener, template_hm.positions)
    start = true[:1] + 3e-3  # the second dipole was not proposed
    assert len(refine_dipoles(field, whitener, data, start, select=True).positions) == 1
    fit = refine_dipoles(field, whitener, data, start, select=True, candidates=scan,
                         max_dipoles=5)  # fmt: skip
    assert len(fit.positions) == 2
    assert (np.linalg.norm(fit.positions - true, axis=1) * 1e3 < 1.0).all()
    # one noisy dipole: nothing is added
    one = _data(field, true[:1], normals[:1], tc[:1] * 5)
    noise = np.linalg.pinv(whitener) @ np.random.default_rng(1).standard_normal((len(whitener), 32))
    fit = refine_dipoles(field, whitener, one + noise, start, select=True, candidates=scan,
                         max_dipoles=5)  # fmt: skip
    assert len(fit.positions) == 1 and np.linalg.norm(fit.positions - true[:1]) * 1e3 < 3.0


def test_a_known_number_of_dipoles_is_fitted_exactly(template_hm, field, whitener):
    true, data, normals, tc = _two_dipoles(template_hm, field)
    scan = CandidateScan(field, whitener, template_hm.positions)
    # one proposal, two sources: the scan starts the second
    fit = refine_dipoles(field, whitener, data, true[:1] + 3e-3, candidates=scan, n_dipoles=2)
    assert len(fit.positions) == 2
    assert (np.linalg.norm(fit.positions - true, axis=1) * 1e3 < 1.0).all()
    # three proposals, two sources: the first two, even where the BIC would keep fewer
    start = np.vstack([true + 3e-3, template_hm.positions[[300]]])
    fit = refine_dipoles(field, whitener, data, start, n_dipoles=2)
    assert (np.linalg.norm(fit.positions - true, axis=1) * 1e3 < 1.0).all()
    one = _data(field, true[:1], normals[:1], tc[:1] * 5)
    noise = np.linalg.pinv(whitener) @ np.random.default_rng(2).standard_normal((len(whitener), 32))
    assert len(refine_dipoles(field, whitener, one + noise, start, n_dipoles=3).positions) == 3
    with pytest.raises(ValueError, match="need candidates"):
        refine_dipoles(field, whitener, data, true[:1], n_dipoles=2)
    with pytest.raises(ValueError, match="cannot be used with select"):
        refine_dipoles(field, whitener, data, true, n_dipoles=2, select=True)


def test_mne_orientations_leave_out_the_weak_third(template_hm, field, whitener):
    gw = whitener @ field.gain(template_hm.positions[[700]])
    s = np.linalg.svd(gw, compute_uv=False)
    assert s[2] / s[0] < THIRD_ORIENTATION_RATIO  # a cortical dipole: the radial one is weak
    u_free, m_free = dipole_basis(gw, "free")
    u_mne, m_mne = dipole_basis(gw, "mne")
    assert u_free.shape[1] == 3 and u_mne.shape[1] == 2 and m_mne.shape == (3, 2)
    np.testing.assert_allclose(u_mne, u_free[:, :2])
    # both still find a noiseless off-grid dipole with the exact forward
    true = _off_grid(template_hm, [700], [[2.0, -1.5, 1.0]])
    tc = 20e-9 * np.sin(np.linspace(0, 3 * np.pi, 32))[None]
    data = _data(field, true, [template_hm.normals[700]], tc)
    fit = refine_dipoles(field, whitener, data, true + 4e-3, orientations="mne")
    assert np.linalg.norm(fit.positions - true) * 1e3 < 2.0
    with pytest.raises(ValueError, match="orientations must be one of"):
        refine_dipoles(field, whitener, data, true, orientations="radial")


def test_refinement_refuses_bad_input(field, whitener):
    data = np.zeros((whitener.shape[1], 32))
    with pytest.raises(ValueError, match="initial must have shape"):
        refine_dipoles(field, whitener, data, np.zeros(3))
    with pytest.raises(ValueError, match="initial must have shape"):
        refine_dipoles(field, whitener, data, np.zeros((0, 3)))
    with pytest.raises(ValueError, match="finite"):
        refine_dipoles(field, whitener, data, np.full((1, 3), np.nan))
    with pytest.raises(ValueError, match="data must have shape"):
        refine_dipoles(field, whitener, data[:5], np.zeros((1, 3)))
    with pytest.raises(ValueError, match="max_shift_mm must be > 0"):
        refine_dipoles(field, whitener, data, np.zeros((1, 3)), max_shift_mm=0)


def _star(n_neighbours=4):
    """Row 0 joined to rows 1..n on a unit square in the x-y plane."""
    n = n_neighbours + 1
    rows = np.r_[np.zeros(n_neighbours, int), np.arange(1, n)]
    cols = np.r_[np.arange(1, n), np.zeros(n_neighbours, int)]
    adjacency = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    positions = np.array([[0, 0, 0], [1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0]], float)
    return adjacency, positions * 1e-3


def test_centre_of_mass_falls_between_vertices_towards_the_heavier_neighbour():
    adjacency, positions = _star()
    amplitude = np.array([1.0, 0.5, 0.1, 0.1, 0.1])
    (centre,) = centre_of_mass(amplitude, [0], adjacency, positions)
    assert centre[0] > 0 and abs(centre[1]) < 1e-12  # towards row 1, on its axis
    assert np.linalg.norm(positions - centre, axis=1).min() > 1e-4  # not a vertex
    heavier = centre_of_mass(amplitude + np.array([0, 0.4, 0, 0, 0]), [0], adjacency, positions)
    assert heavier[0, 0] > centre[0]
    # no weight: the vertex itself
    np.testing.assert_array_equal(
        centre_of_mass(np.zeros(5), [2], adjacency, positions)[0], positions[2]
    )


def test_centre_of_mass_on_the_template_mesh(template_hm):
    rows = template_hm.rows("rh")
    adjacency = template_hm.adjacency("rh")
    positions = template_hm.positions[rows]
    amplitude = np.zeros(len(rows))
    amplitude[50] = 1.0
    neighbour = adjacency[50].indices[0]
    amplitude[neighbour] = 0.8
    (centre,) = centre_of_mass(amplitude, [50], adjacency, positions)
    segment = positions[neighbour] - positions[50]
    along = (centre - positions[50]) @ segment / (segment @ segment)
    assert along == pytest.approx(0.8 / 1.8)


def test_propose_peaks_threshold_and_count():
    adjacency = sparse.diags([np.ones(5), np.ones(5)], [-1, 1], shape=(6, 6), format="csr")
    amplitude = np.array([0.9, 0.1, 0.5, 0.2, 0.3, 0.0])  # peaks at rows 0, 2, 4
    assert propose_peaks(amplitude, adjacency, threshold=0.1).tolist() == [0, 2, 4]
    assert propose_peaks(amplitude, adjacency, threshold=0.5).tolist() == [0, 2]
    assert propose_peaks(amplitude, adjacency, threshold=0.1, max_sources=2).tolist() == [0, 2]
    assert propose_peaks(np.zeros(6), adjacency).tolist() == []
    with pytest.raises(ValueError, match="non-negative"):
        propose_peaks(-amplitude, adjacency)
    with pytest.raises(ValueError, match="one map"):
        propose_peaks(amplitude[:4], adjacency)
    with pytest.raises(ValueError, match="threshold must be > 0"):
        propose_peaks(amplitude, adjacency, threshold=0.0)
    with pytest.raises(ValueError, match="max_sources"):
        propose_peaks(amplitude, adjacency, max_sources=0)


def test_network_maps_are_the_protocols(template_hm, pretrained, tmp_path):
    """The hybrids' map of raw data equals the protocol's: set builder + iter_predict."""
    from napari_meg_unet.accuracy.data import _build_set
    from napari_meg_unet.accuracy.networks import _iter_predict
    from napari_meg_unet.bench.accuracy import get_preset

    sim = simulate(template_hm, design="multi", n_events=3, n_dipoles=(1, 2), hemi="both",
                   snr=1.0, seed=8, timecourse="realistic", sfreq=150.0, verbose=False)  # fmt: skip
    p = get_preset("small", hemi="both")
    examples = plain(_build_set)(template_hm, sim, p, n=3, out=tmp_path / "set", event_offset=0,
                                 lambda2=p.lambda2, verbose=False)  # fmt: skip
    probs, _ = plain(_iter_predict)(pretrained, examples, hm=template_hm, device="cpu")
    maps = NetworkMaps(pretrained, template_hm, sim.info).window_maps(np.asarray(sim.data))
    np.testing.assert_allclose(maps, probs.mean(axis=-1), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="data must have shape"):
        NetworkMaps(pretrained, template_hm, sim.info).window_maps(np.asarray(sim.data)[:, :, :8])


@pytest.fixture(scope="module")
def clean_single(template_hm):
    """Noiseless single dipoles on the grid (both hemispheres, the pretrained network's)."""
    return simulate(template_hm, design="multi", n_events=4, n_dipoles=(1, 1), hemi="both",
                    noise=None, snr=1.0, seed=6, timecourse="realistic", sfreq=150.0,
                    verbose=False)  # fmt: skip


LABELS = {"dipole-fit-mne": "dipole fit (MNE orientations)",
          "dipole-fit-mne-given": "dipole fit (MNE orientations, n given)"}  # fmt: skip


@pytest.mark.parametrize(
    "name", ["centre-of-mass", "dipole-fit", "dipole-fit-mne", "dipole-fit-mne-given"]
)
def test_hybrids_run_as_peers(name, template_hm, pretrained, clean_single):
    peer = make_hybrid(name, pretrained, "mesh U-Net")
    assert isinstance(peer, NetworkCentreOfMass if name == "centre-of-mass" else NetworkDipoleFit)
    label = LABELS.get(name, name.replace("-", " "))
    assert peer.label == f"mesh U-Net + {label}" and peer.output == "points"
    assert peer.needs_n_sources == name.endswith("given")
    if name in ("dipole-fit", "dipole-fit-mne"):
        assert peer.grid["add"] == (False, True) and peer.grid["bic_weight"] == (0.5, 1.0)
        assert peer.defaults["bic_weight"] == 1.0
    if name != "centre-of-mass":
        assert peer.defaults["orientations"] == ("free" if name == "dipole-fit" else "mne")
    assert peer.describe()["network"] == "mesh U-Net" and peer.grid["threshold"]
    state = peer.prepare(template_hm, clean_single.info, params=peer.defaults)
    run = run_peer(peer, state, clean_single, np.arange(4))
    assert run.n_empty == 0 and (run.seconds > 0).all()
    dle = validation_dle(run, clean_single, template_hm)
    assert np.isfinite(dle).all()
    if name == "dipole-fit":  # noiseless, the same forward: the fit is exact
        assert dle.max() < 0.5
    elif name.startswith("dipole-fit-mne"):  # without the weak radial orientation: close
        assert dle.max() < 5
        if name.endswith("given"):  # told one source per event: exactly one dipole each
            assert all(len(p) == 1 for p in run.estimates.positions)
            with pytest.raises(ValueError, match="needs the true number of sources"):
                peer.estimate(state, clean_single.data[0])
    else:  # the centre of mass stays within the peak's neighbourhood
        assert dle.max() < 15 and any(
            np.linalg.norm(template_hm.positions - p, axis=1).min() > 1e-4
            for p in run.estimates.positions
        )


def test_hybrid_bad_input(template_hm, template_hm_megeeg, pretrained):
    with pytest.raises(ValueError, match="hybrid must be one of"):
        make_hybrid("argmax", pretrained, "mesh U-Net")
    with pytest.raises(ValueError, match="needs a trained network"):
        make_hybrid("dipole-fit", None, "mesh U-Net")
    peer = make_hybrid("centre-of-mass", pretrained, "mesh U-Net")
    with pytest.raises(ValueError):  # another head model than the network's
        peer.prepare(template_hm_megeeg, template_hm_megeeg.info, params=peer.defaults)
    info = template_hm.info.copy()
    with info._unlock():
        info["sfreq"] = 250.0
    with pytest.raises(ValueError, match="trained at 150 Hz"):
        peer.prepare(template_hm, info, params=peer.defaults)
    picked = mne.pick_info(template_hm.info, np.arange(len(template_hm.ch_names) - 1))
    with pytest.raises(ValueError, match="channels are not the head model's"):
        peer.prepare(template_hm, picked, params=peer.defaults)


@pytest.mark.slow
def test_hybrids_in_the_accuracy_protocol(template_hm, tmp_path):
    from napari_meg_unet.bench.accuracy import bench_accuracy
    from napari_meg_unet.configs import HYBRIDS

    result = bench_accuracy(
        "small", seed=2, n_boot=100, n_train=32, n_val=12, n_test=8, epochs=1, off_grid=False,
        networks=(("mesh", "small"),), hybrids=HYBRIDS, search_events=4,
        checkpoint_dir=tmp_path / "nets",
    )  # fmt: skip
    s = result.summary
    cond = s["conditions"]["single-snr1"]
    rows = {r["estimator"]: r for r in cond["results"]}
    assert rows["mesh U-Net"]["n_events"] == 8
    for label in ("mesh U-Net + centre of mass", "mesh U-Net + dipole fit",
                  "mesh U-Net + dipole fit (MNE orientations)",
                  "mesh U-Net + dipole fit (MNE orientations, n given)"):  # fmt: skip
        row = rows[label]
        # the first n_test events, as the other rows (the sweep holds more than peer_events)
        assert row["n_events"] == 8 and row["seconds_per_event"] > 0 and row["auc"] is None
        assert row["params"]["threshold"] in (0.2, 0.4, 0.6, 0.8)
    searches = s["peers"]["search"]["single"]
    assert set(searches) == {"mesh-centre-of-mass", "mesh-dipole-fit", "mesh-dipole-fit-mne",
                             "mesh-dipole-fit-mne-given"}  # fmt: skip
    for name, search in searches.items():  # the BIC fits also search adding and the penalty
        adds = name in ("mesh-dipole-fit", "mesh-dipole-fit-mne")
        assert len(search["candidates"]) == (16 if adds else 4)
        assert search["validation"][0]["n_events"] == 4
    for check in cond["peer_search_disjoint"].values():
        assert cond["simulation"] not in check["search"]
    assert "| mesh U-Net + dipole fit | window | 8 |" in result.table()
    # without networks there is nothing to build the hybrids on
    with pytest.raises(ValueError, match="hybrids must be one of"):
        bench_accuracy("small", hybrids=("argmax",))


def test_cli_hybrids_option(bench_accuracy_options, capsys):
    from napari_meg_unet.bench.accuracy import get_preset
    from napari_meg_unet.cli import main
    from napari_meg_unet.configs import HYBRIDS

    seen = bench_accuracy_options
    assert get_preset("benchmark").hybrids == HYBRIDS and get_preset("small").hybrids == ()
    rc = main(["bench", "accuracy", "--preset", "small", "--hybrids", "dipole-fit",
               "--no-progress"])  # fmt: skip
    assert rc == 1 and seen["preset"].hybrids == ("dipole-fit",)
    rc = main(["bench", "accuracy", "--preset", "benchmark", "--hybrids", "none",
               "--no-progress"])  # fmt: skip
    assert rc == 1 and seen["preset"].hybrids == ()
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["bench", "accuracy", "--hybrids", "argmax"])
    assert "expected 'all', 'none' or hybrids from" in capsys.readouterr().err
