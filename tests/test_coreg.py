"""The fsaverage5 template coregistered to a recording's digitisation (no subject MRI)."""

from __future__ import annotations

import mne
import numpy as np
import pytest
from mne._fiff.constants import FIFF
from mne.transforms import apply_trans, rotation

from napari_meg_unet.coreg import (
    coregister_template,
    has_fiducials,
    iter_make_template_anatomy_headmodel,
)
from napari_meg_unet.progress import Progress, run

RAW = "sample/MEG/sample_audvis_trunc_raw_sss.fif"


@pytest.fixture(scope="module")
def sample_info(shared_data):
    return mne.io.read_info(shared_data / RAW, verbose=False)


def _moved(info, trans):
    """A copy of ``info`` whose head-frame digitisation is moved by ``trans`` (4x4)."""
    info = info.copy()
    with info._unlock():
        for d in info["dig"]:
            if d["coord_frame"] == FIFF.FIFFV_COORD_HEAD:
                d["r"] = apply_trans(trans, d["r"])
    return info


def test_sample_subject_fits_the_template_scalp(sample_info, cache_dir):
    coreg = coregister_template(sample_info, subjects_dir=cache_dir / "subjects")
    assert coreg.trans["from"] == FIFF.FIFFV_COORD_HEAD
    assert coreg.trans["to"] == FIFF.FIFFV_COORD_MRI
    rot = coreg.trans["trans"][:3, :3]
    np.testing.assert_allclose(rot @ rot.T, np.eye(3), atol=1e-10)  # rigid: no scaling
    assert coreg.icp and coreg.n_points == 146
    assert coreg.n_omitted < 15
    # the sample head on the fsaverage scalp: a few mm, no worse than the standard transform
    assert coreg.distance_mm["median"] < 6.0
    assert coreg.distance_mm["mean"] <= coreg.standard_distance_mm["mean"]
    assert max(coreg.fiducial_error_mm.values()) < 25.0
    summary = coreg.summary()
    assert summary["n_points"] == 146 and "fit_icp" in summary["method"]
    assert "146 digitised points" in coreg.describe()


def test_fit_follows_a_misplaced_head_frame(sample_info, cache_dir):
    """Digitisation turned by 12 degrees and shifted 15 mm: the standard transform is off by
    centimetres, the fit lands where it does for the original points."""
    move = rotation(x=np.deg2rad(12.0), z=np.deg2rad(-8.0))
    move[:3, 3] = [0.005, -0.015, 0.01]
    subjects_dir = cache_dir / "subjects"
    ref = coregister_template(sample_info, subjects_dir=subjects_dir)
    moved = coregister_template(_moved(sample_info, move), subjects_dir=subjects_dir)
    assert moved.standard_distance_mm["median"] > 10.0
    assert moved.distance_mm["median"] < ref.distance_mm["median"] + 1.0
    # the fitted transform undoes the move: the same head point lands in the same MRI place
    points = np.array([d["r"] for d in sample_info["dig"]])
    err = np.linalg.norm(
        apply_trans(moved.trans, apply_trans(move, points)) - apply_trans(ref.trans, points),
        axis=1,
    )
    assert np.median(err) < 0.004


def test_fiducials_only_without_head_shape(sample_info, cache_dir):
    info = sample_info.copy()
    with info._unlock():
        info["dig"] = [d for d in info["dig"] if d["kind"] == FIFF.FIFFV_POINT_CARDINAL]
    coreg = coregister_template(info, subjects_dir=cache_dir / "subjects")
    assert not coreg.icp and coreg.n_points == 3
    assert "fit_icp" not in coreg.summary()["method"]
    assert "fiducials only" in coreg.describe()
    # fitting the fiducials alone puts them close to the template's (fsaverage is not the sample
    # head, so not exactly)
    assert np.mean(list(coreg.fiducial_error_mm.values())) < 15.0


def test_missing_fiducials_are_named(sample_info, cache_dir):
    info = sample_info.copy()
    with info._unlock():
        info["dig"] = [d for d in info["dig"] if d["ident"] != FIFF.FIFFV_POINT_NASION
                       or d["kind"] != FIFF.FIFFV_POINT_CARDINAL]  # fmt: skip
    assert not has_fiducials(info)
    with pytest.raises(ValueError, match="no digitised nasion"):
        coregister_template(info, subjects_dir=cache_dir / "subjects")
    with pytest.raises(ValueError, match="omit_distance"):
        coregister_template(info, omit_distance=0)
    with pytest.raises(ValueError, match="coregister must be"):
        run(iter_make_template_anatomy_headmodel(info, coregister="yes"))


def test_headmodel_on_the_coregistered_template(sample_info, cache_dir, template_hm):
    events = []
    gen = iter_make_template_anatomy_headmodel(sample_info, spacing="ico3", cache_dir=cache_dir)
    hm, coreg = run(gen, callback=events.append)
    assert all(isinstance(e, Progress) for e in events)
    assert any(e.stage == "coregistration" for e in events)
    assert hm.subject == template_hm.subject and hm.n_sources == template_hm.n_sources
    assert hm.provenance["coregistration"]["n_points"] == 146
    np.testing.assert_allclose(hm.trans["trans"], coreg.trans["trans"])
    # sources are the template's cortex placed by the fitted transform, in head coordinates
    src_mri = apply_trans(template_hm.trans, template_hm.positions)
    np.testing.assert_allclose(
        hm.positions, apply_trans(np.linalg.inv(coreg.trans["trans"]), src_mri), atol=1e-6
    )
    assert len(hm.ch_names) == 306  # the recording's MEG channels (no bads in its info)
    # the standard transform when asked for
    hm_std, none = run(
        iter_make_template_anatomy_headmodel(sample_info, coregister=False, cache_dir=cache_dir)
    )
    assert none is None
    assert hm_std.provenance["coregistration"]["method"].startswith("standard")
    assert not np.allclose(hm_std.positions, hm.positions)


def test_auto_falls_back_without_fiducials(template_hm, cache_dir, caplog):
    info = template_hm.info.copy()
    with info._unlock():
        info["dig"] = None
    with caplog.at_level("WARNING"):
        hm, coreg = run(iter_make_template_anatomy_headmodel(info, cache_dir=cache_dir))
    assert coreg is None
    assert "no digitised fiducials" in caplog.text
    np.testing.assert_allclose(hm.positions, template_hm.positions, atol=1e-9)



def test_cli_template_anatomy(shared_data, cache_dir, tmp_path, capsys):
    import json

    from napari_meg_unet.cli import main

    raw = str(shared_data / RAW)
    out = tmp_path / "hm"
    rc = main(["headmodel", "--json", "--no-progress", "--info", raw, "--template-anatomy",
               "--cache-dir", str(cache_dir), "--out", str(out)])  # fmt: skip
    assert rc == 0
    result = json.loads(capsys.readouterr().out)
    assert result["coregistration"]["n_points"] == 146
    assert result["subject"] == "fsaverage5" and (out / "headmodel.json").is_file()
    rc = main(["headmodel", "--no-progress", "--info", raw, "--template-anatomy", "--trans",
               "x-trans.fif"])  # fmt: skip
    assert rc == 2 and "drop --trans" in capsys.readouterr().err
    assert main(["headmodel", "--no-progress", "--standard-trans"]) == 2
    assert "--standard-trans applies with --template-anatomy" in capsys.readouterr().err
