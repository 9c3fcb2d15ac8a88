"""Perturbed head models (model error) and the recorded way to simulate on them."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose

from napari_meg_unet import evaluation
from napari_meg_unet.headmodel import (
    check_simulated_on,
    make_perturbed_headmodel,
    perturbation_record,
)
from napari_meg_unet.headmodel.perturb import (
    SKULL_MARGIN_MM,
    _all_inside,
    _fit_sphere,
    _real_harmonics,
    _skull_shape,
    _solid_angles,
    _source_surface_mri,
    random_rigid_transform,
)
from napari_meg_unet.simulate import simulate


@pytest.fixture(scope="module")
def pial_hm(template_hm):
    return make_perturbed_headmodel(template_hm, kind="surface")


@pytest.fixture(scope="module")
def sphere_hm(template_hm):
    return make_perturbed_headmodel(template_hm, kind="conductor")


def test_random_rigid_transform_has_the_exact_size():
    for seed in range(3):
        mat = random_rigid_transform(translation_mm=5.0, rotation_deg=3.0, seed=seed)
        rot = mat[:3, :3]
        assert_allclose(rot @ rot.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(rot) == pytest.approx(1.0)
        angle = np.degrees(np.arccos((np.trace(rot) - 1) / 2))
        assert angle == pytest.approx(3.0)
        assert np.linalg.norm(mat[:3, 3]) * 1e3 == pytest.approx(5.0)
    a, b = (random_rigid_transform(translation_mm=5, rotation_deg=3, seed=s) for s in (0, 1))
    assert not np.allclose(a, b)
    assert_allclose(random_rigid_transform(translation_mm=0, rotation_deg=0, seed=4), np.eye(4))


def test_fit_sphere_recovers_a_sphere():
    rng = np.random.default_rng(0)
    directions = rng.standard_normal((200, 3))
    points = np.array([0.01, -0.02, 0.04]) + 0.07 * directions / np.linalg.norm(
        directions, axis=1, keepdims=True
    )
    centre, radius = _fit_sphere(points)
    assert_allclose(centre, [0.01, -0.02, 0.04], atol=1e-10)
    assert radius == pytest.approx(0.07)


def test_surface_kind_moves_sources_to_the_pial_surface(template_hm, pial_hm):
    hm, true = template_hm, pial_hm
    assert true.ch_names == hm.ch_names and true.n_sources == hm.n_sources
    for h, hemi in enumerate(("lh", "rh")):
        pial = hm.surfaces["pial"][hemi][0][hm.vertno[h]]
        assert_allclose(true.positions[hm.rows(hemi)], pial, atol=1e-6)
    shift_mm = 1e3 * np.linalg.norm(true.positions - hm.positions, axis=1)
    assert 1.0 < shift_mm.mean() < 5.0  # cortical thickness
    assert_allclose(np.linalg.norm(true.normals, axis=1), 1.0, atol=1e-6)
    assert true.fingerprint != hm.fingerprint
    record = perturbation_record(true)
    assert record["nominal_fingerprint"] == hm.fingerprint
    assert record["perturbation"]["kind"] == "surface"
    assert perturbation_record(hm) is None


def test_conductor_kind_is_a_sphere_with_the_same_sources(template_hm, sphere_hm):
    hm, true = template_hm, sphere_hm
    assert true.bem["is_sphere"] and not hm.bem["is_sphere"]
    assert_allclose(true.positions, hm.positions)
    # the sphere is centred inside the head, above the head-frame origin
    r0 = np.asarray(true.bem["r0"])
    assert 0.02 < r0[2] < 0.08 and np.abs(r0[:2]).max() < 0.02
    rel = np.linalg.norm(true.gain - hm.gain, axis=0) / np.linalg.norm(hm.gain, axis=0)
    assert 0.01 < np.median(rel) < 0.6  # a model error, not another head
    assert true.provenance["perturbation"]["nominal_conductor"] == hm.conductor
    # ... and it is the sphere the sphere dipole fit inverts with: said in the record
    from napari_meg_unet.peers.dipole import fit_conductor

    assert_allclose(fit_conductor(hm, "sphere")[0]["r0"], r0)
    assert "no model error for that peer" in true.provenance["perturbation"]["note"]


@pytest.fixture(scope="module")
def skull_hm(template_hm):
    return make_perturbed_headmodel(template_hm, kind="skull", seed=3)


def _unit_vectors(n, seed=0):
    v = np.random.default_rng(seed).standard_normal((n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_real_harmonics_are_orthonormal_and_without_shift_or_scale():
    u = _unit_vectors(200_000)
    y = _real_harmonics(u, (2, 3, 4))
    assert y.shape == (len(u), 5 + 7 + 9)
    gram = 4 * np.pi * (y.T @ y) / len(u)  # Monte Carlo integral over the sphere
    assert_allclose(gram, np.eye(21), atol=0.03)
    # degree >= 2: orthogonal to the constant (scaling) and to x, y, z (a shift)
    low = np.column_stack([np.ones(len(u)), u])
    assert np.abs(4 * np.pi * (low.T @ y) / len(u)).max() < 0.03


def test_solid_angles_tell_inside_from_outside(template_hm):
    surf = template_hm.bem["surfs"][0]
    centre, radius = _fit_sphere(surf["rr"])
    inside = centre + 0.5 * radius * _unit_vectors(20, 1)
    outside = centre + 1.5 * radius * _unit_vectors(20, 2)
    angles = _solid_angles(surf["rr"], surf["tris"], np.vstack([inside, outside]))
    assert_allclose(angles[:20], 4 * np.pi, rtol=1e-9)
    assert_allclose(angles[20:], 0, atol=1e-9)


def test_skull_kind_reshapes_the_bem_and_keeps_the_sources_inside(template_hm, skull_hm):
    hm, true = template_hm, skull_hm
    assert not true.bem["is_sphere"] and true.ch_names == hm.ch_names
    assert_allclose(true.positions, hm.positions)
    nominal, reshaped = hm.bem["surfs"][0]["rr"], true.bem["surfs"][0]["rr"]
    moved = np.linalg.norm(reshaped - nominal, axis=1)
    assert np.sqrt(np.mean(moved**2)) * 1e3 == pytest.approx(3.0)
    # moved along the rays from the inner skull's centre (no tangential slip)
    centre, _ = _fit_sphere(nominal)
    rays = nominal - centre
    assert_allclose(np.linalg.norm(np.cross(reshaped - nominal, rays), axis=1), 0, atol=1e-12)
    # no overall shift: the fitted centre stays within a fraction of a millimetre
    assert np.linalg.norm(_fit_sphere(reshaped)[0] - centre) * 1e3 < 1.0
    # every source-surface vertex, moved out by the margin, is inside the reshaped skull
    sources = _source_surface_mri(hm)
    out = sources - centre
    guarded = sources + SKULL_MARGIN_MM * 1e-3 * out / np.linalg.norm(out, axis=1, keepdims=True)
    tris = true.bem["surfs"][0]["tris"]
    assert _all_inside(reshaped, tris, guarded)
    assert not _all_inside(reshaped, tris, guarded + (guarded - centre))  # twice as far
    rel = np.linalg.norm(true.gain - hm.gain) / np.linalg.norm(hm.gain)
    assert 0.05 < rel < 0.4  # about the size of the coregistration error's (0.13)
    record = true.provenance["perturbation"]
    # seed 3's first draws come too close to the sources: they were replaced
    assert record["kind"] == "skull" and record["seed"] == 3 and record["draws"] > 1
    assert record["max_displacement_mm"] == pytest.approx(moved.max() * 1e3)
    assert true.provenance["nominal_fingerprint"] == hm.fingerprint


def test_skull_kind_is_drawn_from_its_seed(template_hm, skull_hm, monkeypatch):
    from napari_meg_unet.headmodel import perturb

    inner = template_hm.bem["surfs"][0]
    centre, _ = _fit_sphere(inner["rr"])
    record = skull_hm.provenance["perturbation"]
    coef, draws = _skull_shape(template_hm, inner, centre, 3.0, 3)
    assert_allclose(coef * 1e3, record["harmonic_coefficients_mm"])
    assert draws == record["draws"]
    other, _ = _skull_shape(template_hm, inner, centre, 3.0, 4)
    assert not np.allclose(other, coef)
    monkeypatch.setattr(perturb, "_SKULL_DRAWS", 3)
    with pytest.raises(ValueError, match="smaller skull_shape_mm"):
        make_perturbed_headmodel(template_hm, kind="skull", skull_shape_mm=40.0)


@pytest.mark.slow
def test_off_grid_data_on_the_reshaped_skull_come_from_its_bem(template_hm, skull_hm):
    from napari_meg_unet.peers.dipole import own_conductor
    from napari_meg_unet.peers.field import DipoleField

    sim = simulate(skull_hm, design="multi", n_events=3, n_dipoles=(1, 1), hemi="rh",
                   off_grid=True, noise=None, seed=2)  # fmt: skip
    assert sim.meta["headmodel"]["perturbation"]["kind"] == "skull"

    def misfit(hm):  # relative residual of the best dipole at the true position
        field = DipoleField(hm.info, *own_conductor(hm))
        out = []
        for i in range(len(sim)):
            gain = field.gain(sim.sources["position"][sim.event_sources(i)])
            data = sim.data[i]
            fit = gain @ np.linalg.lstsq(gain, data, rcond=None)[0]
            out.append(np.linalg.norm(data - fit) / np.linalg.norm(data))
        return np.array(out)

    assert misfit(skull_hm).max() < 1e-4
    assert misfit(template_hm).min() > 1e-3


def test_perturbing_twice_and_bad_arguments(template_hm, template_hm_megeeg, sphere_hm):
    with pytest.raises(ValueError, match="already a perturbed"):
        make_perturbed_headmodel(sphere_hm, kind="coreg")
    with pytest.raises(ValueError, match="kind must be one of"):
        make_perturbed_headmodel(template_hm, kind="skin")
    with pytest.raises(ValueError, match="rotation_deg"):
        make_perturbed_headmodel(template_hm, kind="coreg", rotation_deg=-1)
    with pytest.raises(ValueError, match="reshapes a BEM"):
        make_perturbed_headmodel(template_hm_megeeg, kind="skull")


def test_simulation_records_the_perturbation(template_hm, template_hm_megeeg, pial_hm):
    sim = simulate(pial_hm, design="extended", n_events=4, hemi="rh", snr=1.0, seed=0)
    made_with = sim.meta["headmodel"]
    assert made_with["fingerprint"] == pial_hm.fingerprint
    assert made_with["nominal_fingerprint"] == template_hm.fingerprint
    assert made_with["perturbation"]["kind"] == "surface"
    # the true positions are the pial ones
    assert_allclose(sim.sources["position"], pial_hm.positions[sim.sources["row"]])
    assert check_simulated_on(made_with, template_hm)["kind"] == "surface"
    assert check_simulated_on(made_with, pial_hm) is None
    with pytest.raises(ValueError, match="perturbation of"):
        check_simulated_on(made_with, template_hm_megeeg)
    # a nominal simulation is never accepted for another model
    nominal = simulate(template_hm, design="extended", n_events=2, hemi="rh", seed=0)
    with pytest.raises(ValueError, match="made with head model"):
        check_simulated_on(nominal.meta["headmodel"], pial_hm)


def test_evaluation_inverts_model_error_with_the_nominal_model(template_hm, pial_hm):
    sim = simulate(pial_hm, design="sweep", hemi="rh", noise=None, snr=1.0, seed=2)
    ev = evaluation.evaluate_linear(template_hm, sim, methods=("sLORETA",), n_boot=50,
                                    protocols=("window",))  # fmt: skip
    floor = ev.grid_floor["mean"]
    # on-grid rows, but the truth is on the pial surface: the floor is the white-pial distance
    assert 1.0 < floor < 5.0
    assert evaluation.grid_floor(sim, n_boot=10)["mean"] == 0.0  # the sim's own (pial) grid
    # noiseless sLORETA is exact on its own grid (0 mm) but not with model error
    assert ev.summary[("sLORETA", "window")]["dle_mm"]["mean"] >= floor - 1e-9


def test_dataset_accepts_a_recorded_perturbation(template_hm, pial_hm, tmp_path):
    from napari_meg_unet.dataset import build_dataset

    sim = simulate(pial_hm, design="extended", n_events=3, hemi="rh", seed=1)
    ds = build_dataset(template_hm, sim, methods=("dSPM",), hemi="rh", out=tmp_path / "d")
    assert len(ds) == 3


@pytest.mark.slow
def test_coreg_kind_without_displacement_reproduces_the_nominal_gain(template_hm):
    zero = make_perturbed_headmodel(template_hm, kind="coreg", translation_mm=0,
                                    rotation_deg=0)  # fmt: skip
    assert_allclose(zero.gain, template_hm.gain, rtol=1e-5,
                    atol=1e-6 * np.abs(template_hm.gain).max())  # fmt: skip
    moved = make_perturbed_headmodel(template_hm, kind="coreg", seed=3)
    mat = np.asarray(moved.provenance["perturbation"]["sensor_transform"])
    expected = mat @ template_hm.info["dev_head_t"]["trans"]
    assert_allclose(moved.info["dev_head_t"]["trans"], expected)
    rel = np.linalg.norm(moved.gain - template_hm.gain, axis=0) / np.linalg.norm(
        template_hm.gain, axis=0
    )
    assert 0.02 < np.median(rel) < 0.6


@pytest.mark.slow
def test_coreg_model_error_has_a_dense_gain_on_the_nominal_sources(template_hm):
    """Off-grid training streams with a perturbed template: its gain at the nominal dense
    sources (the template's own dense sources need a FreeSurfer subject it does not have)."""
    from napari_meg_unet.headmodel import make_dense_sources
    from napari_meg_unet.simulate.torch_setup import true_model

    dense = make_dense_sources(template_hm)
    zero = make_perturbed_headmodel(template_hm, kind="coreg", translation_mm=0,
                                    rotation_deg=0)  # fmt: skip
    same = true_model(zero, template_hm, dense=dense).dense_gain
    assert_allclose(same, dense.gain, rtol=1e-4, atol=1e-5 * np.abs(dense.gain).max())
    moved = make_perturbed_headmodel(template_hm, kind="coreg", seed=3)
    gain = true_model(moved, template_hm, dense=dense).dense_gain
    rel = np.linalg.norm(gain - dense.gain, axis=0) / np.linalg.norm(dense.gain, axis=0)
    assert gain.shape == dense.gain.shape and 0.02 < np.median(rel) < 0.6
