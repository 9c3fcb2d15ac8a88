"""Real anatomy: a subject's BEM from its surfaces, its coregistration, SSS rank, dense sources."""

from __future__ import annotations

import shutil
import warnings

import mne
import numpy as np
import pytest
from mne.transforms import apply_trans

from napari_meg_unet import headmodel as hmod
from napari_meg_unet.coreg import PITCH_STARTS, coregister_subject

pytestmark = pytest.mark.sample


def _files(shared_data):
    meg = shared_data / "sample" / "MEG"
    subjects_dir = shared_data / "sample" / "subjects"
    return dict(
        raw=meg / "sample_audvis_trunc_raw_sss.fif",
        ave=meg / "test-ave.fif.gz",
        cov=meg / "sample_audvis_trunc-cov.fif",
        trans=meg / "sample_audvis_trunc-trans.fif",
        subjects_dir=subjects_dir,
        bem_dir=subjects_dir / "sample" / "bem",
        src=subjects_dir / "sample" / "bem" / "small-src.fif.gz",
    )


def _fixed_gain(info, trans, src, bem):
    fwd = mne.make_forward_solution(info, trans=trans, src=src, bem=bem, meg=True, eeg=False,
                                    mindist=0.0, verbose=False)  # fmt: skip
    fwd = mne.convert_forward_solution(fwd, surf_ori=True, force_fixed=True, use_cps=True,
                                       verbose=False)  # fmt: skip
    return fwd["sol"]["data"], [s["vertno"] for s in fwd["src"]]


def _common_columns(a, va, b, vb):
    keep_a = np.concatenate([np.isin(x, y) for x, y in zip(va, vb, strict=True)])
    keep_b = np.concatenate([np.isin(y, x) for x, y in zip(va, vb, strict=True)])
    return a[:, keep_a], b[:, keep_b]


def _column_correlations(a, b):
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    return (a * b).sum(axis=0) / np.sqrt((a * a).sum(axis=0) * (b * b).sum(axis=0))


def _sample_src(f):
    src = mne.read_source_spaces(f["src"], verbose=False)
    for s in src:
        s["rr"] *= 1000.0
    return src


def _copy_surfaces_only(f, tmp_path):
    """A subjects_dir whose 'sample' has the BEM surfaces but no BEM solution."""
    bem = tmp_path / "subjects" / "sample" / "bem"
    bem.mkdir(parents=True)
    for name in ("inner_skull", "outer_skull", "outer_skin"):
        shutil.copyfile(f["bem_dir"] / f"{name}.surf", bem / f"{name}.surf")
    return tmp_path / "subjects"


# ----------------------------------------------------------------------------- BEM
def test_subject_bem_matches_the_shipped_solution(shared_data, tmp_path):
    """A 1-layer ico3 BEM built from inner_skull.surf against sample-1280-bem-sol.fif.

    The shipped solution was made from the full-resolution inner skull (its vertices are
    up to 5.6 mm from ours), so the fields agree closely but not exactly.
    """
    f = _files(shared_data)
    bem = hmod.make_subject_bem(f["subjects_dir"], "sample", ico=3, cache_dir=tmp_path)
    assert len(bem["surfs"]) == 1 and bem["surfs"][0]["ntri"] == 1280
    assert np.isclose(bem["surfs"][0]["sigma"], 0.3)
    cached = hmod.bem_cache_path(f["subjects_dir"], "sample", layers=1, ico=3,
                                 conductivity=(0.3,), cache_dir=tmp_path)  # fmt: skip
    assert cached.is_file()
    again = hmod.make_subject_bem(f["subjects_dir"], "sample", ico=3, cache_dir=tmp_path)
    np.testing.assert_array_equal(again["solution"], bem["solution"])
    info = mne.io.read_info(f["raw"], verbose=False)
    src = _sample_src(f)
    ours, v_ours = _fixed_gain(info, f["trans"], src, bem)
    ref, v_ref = _fixed_gain(info, f["trans"], src, f["bem_dir"] / "sample-1280-bem-sol.fif")
    ours, ref = _common_columns(ours, v_ours, ref, v_ref)
    corr = _column_correlations(ours, ref)
    power = (ref**2).sum(axis=0)
    assert np.median(corr) > 0.999
    assert np.sum(corr * power) / power.sum() > 0.995  # power-weighted: the visible sources


@pytest.mark.slow
def test_bem_auto_uses_the_subjects_solution_or_builds_one(shared_data, tmp_path):
    f = _files(shared_data)
    kw = dict(info=f["raw"], trans=f["trans"], src=f["src"], subject="sample",
              noise_cov=f["cov"], cache_dir=tmp_path / "cache")  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # SSS data, non-SSS covariance
        shipped = hmod.make_headmodel(subjects_dir=f["subjects_dir"], **kw)
        built = hmod.make_headmodel(subjects_dir=_copy_surfaces_only(f, tmp_path), bem_ico=3,
                                    **kw)  # fmt: skip
    assert shipped.provenance["conductor_source"].endswith("sample-1280-bem-sol.fif")
    assert built.provenance["conductor_source"].startswith("built from the subject's BEM")
    assert "1-layer BEM (1280" in built.conductor and built.bem is not None
    a, b = _common_columns(built.gain, built.vertno, shipped.gain, shipped.vertno)
    assert np.median(_column_correlations(a, b)) > 0.999
    with pytest.raises(ValueError, match="3-layer"):
        hmod.make_headmodel(subjects_dir=f["subjects_dir"], bem="1-layer", modality="meg+eeg",
                            **{**kw, "info": f["ave"]})  # fmt: skip
    with pytest.raises(FileNotFoundError, match="outer_skull.surf"):
        empty = tmp_path / "nosurf" / "sample" / "bem"
        empty.mkdir(parents=True)
        shutil.copyfile(f["bem_dir"] / "inner_skull.surf", empty / "inner_skull.surf")
        hmod.make_subject_bem(tmp_path / "nosurf", "sample", layers=3)
    with pytest.raises(FileNotFoundError, match="'nobody' does not exist"):
        hmod.make_subject_bem(f["subjects_dir"], "nobody")


@pytest.mark.slow
def test_default_and_three_layer_bems(shared_data, tmp_path):
    """The default ico4 1-layer BEM and a 3-layer one, against the shipped surfaces/solutions."""
    f = _files(shared_data)
    info = mne.io.read_info(f["raw"], verbose=False)
    src = _sample_src(f)
    bem4 = hmod.make_subject_bem(f["subjects_dir"], "sample", cache_dir=tmp_path)
    assert bem4["surfs"][0]["ntri"] == 5120
    ours, v_ours = _fixed_gain(info, f["trans"], src, bem4)
    ref, v_ref = _fixed_gain(info, f["trans"], src, f["bem_dir"] / "sample-1280-bem-sol.fif")
    ours, ref = _common_columns(ours, v_ours, ref, v_ref)
    assert np.median(_column_correlations(ours, ref)) > 0.999
    bem3 = hmod.make_subject_bem(f["subjects_dir"], "sample", layers=3, cache_dir=tmp_path)
    assert [s["ntri"] for s in bem3["surfs"]] == [1280] * 3
    surfs = mne.read_bem_surfaces(f["bem_dir"] / "sample-1280-1280-1280-bem.fif", verbose=False)
    ref3 = mne.make_bem_solution(surfs, verbose=False)
    ours, v_ours = _fixed_gain(info, f["trans"], src, bem3)
    ref, v_ref = _fixed_gain(info, f["trans"], src, ref3)
    ours, ref = _common_columns(ours, v_ours, ref, v_ref)
    assert np.median(_column_correlations(ours, ref)) > 0.999


# ----------------------------------------------------------------------------- SSS rank
@pytest.fixture(scope="module")
def sss_hm(shared_data):
    """SSS raw with the non-SSS covariance of the same session (as the shared README warns)."""
    f = _files(shared_data)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        hm = hmod.make_headmodel(info=f["raw"], trans=f["trans"], src=f["src"],
                                 subjects_dir=f["subjects_dir"], subject="sample",
                                 noise_cov=f["cov"])  # fmt: skip
    return hm, [str(w.message) for w in caught]


def test_sss_rank_is_kept_and_stated(sss_hm):
    from mne.minimum_norm import compute_rank_inverse, make_inverse_operator

    from napari_meg_unet.inverse import make_inverse

    hm, messages = sss_hm
    assert hm.info["proc_history"] and hmod.is_sss(hm.info)
    rank = hm.noise_rank
    assert rank["sss"] and rank["info_meg_rank"] == 69 and rank["cov_meg_rank"] == 305
    assert rank["total"] == 69 and rank["mne"] == {"meg": 69}
    warned = [m for m in messages if "Maxwell-filtered" in m]
    assert warned and "maxwell_filter" in warned[0] and "compute_covariance" in warned[0]
    summary = hm.summary()
    assert summary["noise_rank"] == 69 and summary["noise_rank_method"] == "info (SSS)"
    assert "SSS rank 69" in hmod.describe_rank(rank)
    assert hm.provenance["noise_rank"]["info_meg_rank"] == 69
    # the inverse uses that rank, exactly as MNE's rank='info'
    inv = make_inverse(hm, verbose=False)
    ref = make_inverse_operator(hm.info, hm.fwd, hm.noise_cov, loose=0.0, depth=0.8,
                                rank="info", verbose=False)  # fmt: skip
    assert compute_rank_inverse(inv) == compute_rank_inverse(ref) == 69
    np.testing.assert_allclose(inv["eigen_fields"]["data"], ref["eigen_fields"]["data"])


def test_sss_rank_survives_saving_and_reaches_the_simulation(sss_hm, tmp_path):
    from napari_meg_unet.simulate import simulate

    hm, _ = sss_hm
    hm.save(tmp_path / "hm")
    loaded = hmod.load_headmodel(tmp_path / "hm")
    assert loaded.info["proc_history"] and loaded.noise_rank["total"] == 69
    sim = simulate(loaded, design="multi", n_events=4, n_dipoles=1, hemi="lh", sfreq=300.0,
                   timecourse="realistic", seed=0)  # fmt: skip
    assert sim.meta["noise_rank"] == 69
    white = simulate(loaded, design="multi", n_events=2, n_dipoles=1, hemi="lh", noise="white",
                     sfreq=300.0, timecourse="realistic", seed=0)  # fmt: skip
    assert white.meta["noise_rank"] == 305  # the diagonal model's own rank


def test_non_sss_data_keep_the_data_rank(shared_data):
    f = _files(shared_data)
    info = mne.io.read_info(f["ave"], verbose=False)
    info = mne.pick_info(info, mne.pick_types(info, meg=True, exclude=["MEG 2443"]))
    cov = hmod.prepare_noise_cov(f["cov"], info)
    rank = hmod.noise_rank(info, cov)
    assert not rank["sss"] and rank["mne"] is None and rank["message"] is None
    assert rank["total"] == mne.compute_rank(cov, info=info)["meg"] == 302  # 305 - 3 PCA projs
    assert "estimated from the covariance" in hmod.describe_rank(rank)


# ----------------------------------------------------------------------------- coregistration
def test_coregister_subject_against_the_shipped_trans(shared_data):
    """MNI-estimated fiducials + ICP on the sample subject, against sample_audvis_trunc-trans.

    The ear fiducials of this recording lie ~2 cm below the subject's MRI ones, and
    the head shape fits the scalp about equally well over ~15 degrees of pitch, so
    the fit is compared with the shipped transform at the precision the data allow.
    """
    f = _files(shared_data)
    info = mne.io.read_info(f["raw"], verbose=False)
    ref = mne.read_trans(f["trans"])
    fit = coregister_subject(info, subject="sample", subjects_dir=f["subjects_dir"])
    assert fit.fiducials == "estimated" and fit.icp and fit.n_points == 146
    rot = fit.trans["trans"][:3, :3]
    np.testing.assert_allclose(rot @ rot.T, np.eye(3), atol=1e-10)
    points = np.array([d["r"] for d in info["dig"]])
    moved = np.linalg.norm(apply_trans(fit.trans, points) - apply_trans(ref, points), axis=1)
    assert np.median(moved) < 0.012
    # fits the scalp at least as well as the shipped transform does
    scalp = mne.get_head_surf("sample", source="head", subjects_dir=f["subjects_dir"])
    from scipy.spatial import cKDTree

    ref_mm = cKDTree(scalp["rr"]).query(apply_trans(ref, points))[0] * 1e3
    assert fit.distance_mm["median"] < np.median(ref_mm) + 0.5
    assert [p for p, _ in fit.starts] == list(PITCH_STARTS)
    assert "pitch_starts_mean_distance_mm" in fit.summary()
    # starting from the subject's own MRI fiducials: within a few mm of the shipped transform
    own = coregister_subject(info, subject="sample", subjects_dir=f["subjects_dir"],
                             fiducials="auto")  # fmt: skip
    assert own.fiducials.endswith("sample-fiducials.fif")
    moved = np.linalg.norm(apply_trans(own.trans, points) - apply_trans(ref, points), axis=1)
    assert np.median(moved) < 0.007


def test_coregister_subject_needs_the_mni_transform(shared_data, tmp_path):
    f = _files(shared_data)
    subjects_dir = _copy_surfaces_only(f, tmp_path)
    with pytest.raises(FileNotFoundError, match="talairach.xfm"):
        coregister_subject(f["raw"], subject="sample", subjects_dir=subjects_dir)


# ----------------------------------------------------------------------------- dense sources
@pytest.mark.slow
def test_off_grid_sweep_covers_every_row_of_a_real_head_model(sss_hm, cache_dir):
    from napari_meg_unet.simulate import simulate

    hm, _ = sss_hm
    dense = hmod.make_dense_sources(hm, cache_dir=cache_dir)
    assert dense.spacing == "full" and dense.n_dense == 2 * (1026 - 258)
    counts = np.bincount(dense.nearest_row, minlength=hm.n_sources)
    assert counts.min() >= 1  # 17 rows are nearest to none before covering
    np.testing.assert_allclose(
        dense.grid_distance, np.linalg.norm(dense.positions - hm.positions[dense.nearest_row],
                                            axis=1))  # fmt: skip
    assert "1536 off-grid dense sources" in dense.describe()
    sim = simulate(hm, design="sweep", hemi="both", off_grid=True, timecourse="realistic",
                   sfreq=300.0, seed=0)  # fmt: skip
    assert len(sim) == hm.n_sources and sim.meta["dense_spacing"] == "full"
    assert (np.asarray(sim.sources["dense_vertex"]) >= 0).all()
    with pytest.raises(ValueError, match="FreeSurfer subject"):
        hmod.make_dense_sources(hm, spacing="oct6", cache=False)


# ----------------------------------------------------------------------------- CLI
def test_cli_headmodel_of_a_coregistered_subject(shared_data, capsys):
    import json

    from napari_meg_unet.cli import main

    f = _files(shared_data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        rc = main(["headmodel", "--json", "--no-progress", "--info", str(f["raw"]),
                   "--subjects-dir", str(f["subjects_dir"]), "--subject", "sample",
                   "--coregister", "--src", str(f["src"]), "--cov", str(f["cov"])])  # fmt: skip
    assert rc == 0
    result = json.loads(capsys.readouterr().out)
    assert result["coregistration"]["subject"] == "sample"
    assert result["coregistration"]["fiducials"] == "estimated"
    assert result["conductor_source"].endswith("sample-1280-bem-sol.fif")
    assert "SSS rank 69" in result["noise_rank"] and result["noise_rank_warning"]
    assert main(["headmodel", "--no-progress", "--info", str(f["raw"]), "--coregister",
                 "--trans", str(f["trans"])]) == 2  # fmt: skip
    assert "--coregister needs" in capsys.readouterr().err
