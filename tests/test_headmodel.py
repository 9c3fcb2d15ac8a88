"""Tests of the head-model builders, their cache, save/load and fingerprints."""

from __future__ import annotations

import warnings
from pathlib import Path

import mne
import numpy as np
import pytest
from mne.transforms import apply_trans, invert_transform
from scipy.spatial import cKDTree

from napari_meg_unet import headmodel as hmod
from napari_meg_unet.fingerprint import array_fingerprint, headmodel_fingerprint
from napari_meg_unet.headmodel import (
    HeadModel,
    load_headmodel,
    make_template_headmodel,
    prepare_noise_cov,
)
from napari_meg_unet.progress import Progress

N_ICO3 = 642


def _white_at_sources(hm):
    """White-surface display vertices at the used source vertices (lh then rh)."""
    lh, rh = hm.vertno
    return np.concatenate(
        [hm.surfaces["white"]["lh"][0][lh], hm.surfaces["white"]["rh"][0][rh]]
    )


# ----------------------------------------------------------------------------- template
def test_template_sources_are_ico3_prefix(template_hm):
    hm = template_hm
    assert isinstance(hm, HeadModel)
    assert hm.n_sources == 2 * N_ICO3
    for vertno in hm.vertno:
        np.testing.assert_array_equal(vertno, np.arange(N_ICO3))
    # ico3 triangulation kept: 1280 triangles per hemisphere, all inside the used set
    assert hm.triangles("lh").shape == (1280, 3)
    assert hm.triangles("both").shape == (2560, 3)
    assert hm.triangles("both").max() == hm.n_sources - 1
    degrees = np.asarray(hm.adjacency("lh").sum(axis=1)).ravel()
    assert set(degrees.astype(int)) == {5, 6}  # an icosahedral mesh
    assert hm.subject == "fsaverage5" and hm.spacing == "ico3" and hm.modality == "meg"


def test_template_forwards(template_hm):
    hm = template_hm
    n_ch = len(hm.ch_names)
    assert n_ch == 306
    assert hm.fwd["surf_ori"] and hm.fwd["source_ori"] == mne.io.constants.FIFF.FIFFV_MNE_FREE_ORI
    assert hm.fwd["sol"]["data"].shape == (n_ch, 3 * hm.n_sources)
    assert mne.forward.is_fixed_orient(hm.fwd_fixed)
    assert hm.gain.shape == (n_ch, hm.n_sources) and hm.gain.dtype == np.float64
    assert np.isfinite(hm.gain).all() and np.abs(hm.gain).max() > 0
    # fixed gain = free surface-oriented gain projected on the normal (z) component
    np.testing.assert_allclose(hm.gain, hm.fwd["sol"]["data"][:, 2::3], rtol=1e-6, atol=0)
    # sources in head coordinates, on the white surface of the display surfaces
    assert hm.fwd["coord_frame"] == mne.io.constants.FIFF.FIFFV_COORD_HEAD
    assert hm.src[0]["coord_frame"] == mne.io.constants.FIFF.FIFFV_COORD_HEAD
    white = _white_at_sources(hm)
    np.testing.assert_allclose(hm.positions, white, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(hm.normals, axis=1), 1.0, atol=1e-5)
    assert "1-layer BEM" in hm.conductor
    assert hm.bem is not None and not hm.bem["is_sphere"]
    # MRI -> head via fsaverage-trans: the white surface is a brain in the head frame
    assert np.all(np.abs(hm.positions) < 0.12)


def test_template_display_surfaces(template_hm):
    for kind in hmod.SURFACE_KINDS:
        for hemi in ("lh", "rh"):
            rr, tris = template_hm.surfaces[kind][hemi]
            assert rr.shape == (10242, 3) and tris.shape == (20480, 3)
            assert tris.max() == 10241
    # pial lies outside white on average (distance from the hemisphere centroid)
    rr_w = template_hm.surfaces["white"]["lh"][0]
    rr_p = template_hm.surfaces["pial"]["lh"][0]
    c = rr_w.mean(0)
    assert np.linalg.norm(rr_p - c, axis=1).mean() > np.linalg.norm(rr_w - c, axis=1).mean()


def test_template_meg_sensors_outside_scalp(template_hm):
    """Every MEG coil lies at least 10 mm outside the fsaverage scalp."""
    info = template_hm.info
    np.testing.assert_allclose(
        info["dev_head_t"]["trans"][:3, 3], hmod.TEMPLATE_DEV_HEAD_TRANSLATION
    )
    head = mne.read_bem_surfaces(
        hmod._mne_fsaverage_dir() / "fsaverage-head.fif", verbose=False
    )[0]
    mri_head = invert_transform(template_hm.trans)
    scalp = apply_trans(mri_head, head["rr"])
    scalp_nn = apply_trans(mri_head, head["nn"], move=False)
    picks = mne.pick_types(info, meg=True)
    coils = apply_trans(info["dev_head_t"], np.array([info["chs"][p]["loc"][:3] for p in picks]))
    dist, idx = cKDTree(scalp).query(coils)
    assert dist.min() >= 0.010
    outward = np.einsum("ij,ij->i", coils - scalp[idx], scalp_nn[idx])
    assert (outward > 0).all()


def test_template_trans_is_mne_fsaverage(template_hm):
    trans = mne.read_trans(hmod._mne_fsaverage_dir() / "fsaverage-trans.fif")
    assert template_hm.trans["from"] == trans["from"] == mne.io.constants.FIFF.FIFFV_COORD_HEAD
    np.testing.assert_allclose(template_hm.trans["trans"], trans["trans"])


@pytest.mark.parametrize("modality", ["eeg", "meg+eeg"])
def test_template_eeg_no_source_dropped(modality, template_hm_megeeg, cache_dir):
    """The sphere-model workaround keeps every source (MNE 1.13 drops some with trans)."""
    if modality == "meg+eeg":
        hm = template_hm_megeeg
    else:
        hm = make_template_headmodel(spacing="ico3", modality="eeg", cache_dir=cache_dir)
    assert hm.n_sources == 2 * N_ICO3
    for vertno in hm.vertno:
        np.testing.assert_array_equal(vertno, np.arange(N_ICO3))
    n_eeg = len(mne.pick_types(hm.info, meg=False, eeg=True))
    assert n_eeg == 60
    assert len(hm.ch_names) == (366 if modality == "meg+eeg" else 60)
    assert hm.bem["is_sphere"] and "sphere" in hm.conductor
    # average-reference projector present and active
    projs = [p for p in hm.info["projs"] if "Average EEG reference" in p["desc"]]
    assert len(projs) == 1 and projs[0]["active"]
    # same source positions as the BEM model (sources in head coordinates either way)
    white = _white_at_sources(hm)
    np.testing.assert_allclose(hm.positions, white, atol=1e-6)
    # every source inside the inner sphere shell
    r_inner = hm.bem["layers"][0]["rad"]
    assert np.linalg.norm(hm.positions - hm.bem["r0"], axis=1).max() < r_inner


def test_template_eeg_electrodes_on_scalp(template_hm_megeeg):
    info = template_hm_megeeg.info
    montage = mne.channels.make_standard_montage(hmod.TEMPLATE_EEG_MONTAGE)
    mri_pos = montage.get_positions()["ch_pos"]
    mri_head = invert_transform(template_hm_megeeg.trans)
    for ch in info["chs"]:
        if ch["kind"] == mne.io.constants.FIFF.FIFFV_EEG_CH:
            expected = apply_trans(mri_head, mri_pos[ch["ch_name"]])
            np.testing.assert_allclose(ch["loc"][:3], expected, atol=1e-9)
    assert len(set(hmod.TEMPLATE_EEG_CHANNELS)) == 60
    # the electrodes cover the scalp: front/back, left/right
    eeg = np.array([c["loc"][:3] for c in info["chs"] if c["kind"] == 2])
    assert eeg[:, 0].min() < -0.06 and eeg[:, 0].max() > 0.06
    assert eeg[:, 1].min() < -0.08 and eeg[:, 1].max() > 0.08


def test_template_noise_cov_adhoc(template_hm, template_hm_megeeg):
    for hm in (template_hm, template_hm_megeeg):
        assert hm.noise_cov.ch_names == hm.ch_names
        expected = mne.make_ad_hoc_cov(hm.info, verbose=False)
        np.testing.assert_allclose(hm.noise_cov.data, expected.data)


def test_template_cache_hit_is_identical(template_hm, cache_dir):
    path = hmod.template_cache_path(spacing="ico3", modality="meg", cache_dir=cache_dir)
    assert path.parent.parent == cache_dir
    assert (path / "headmodel.json").is_file()
    assert template_hm.provenance["cache_path"] == str(path)
    events = []
    gen = hmod.iter_make_template_headmodel(spacing="ico3", modality="meg", cache_dir=cache_dir)
    hm = None
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            hm = stop.value
            break
    assert all(isinstance(e, Progress) for e in events)
    assert events[-1].message == "loaded from cache"
    assert hm.provenance["loaded_from"] == str(path)
    np.testing.assert_array_equal(hm.gain, template_hm.gain)
    assert hm.fingerprint == template_hm.fingerprint


def test_cache_root_env(monkeypatch, tmp_path):
    monkeypatch.setenv(hmod.CACHE_ENV, str(tmp_path / "env"))
    assert hmod.cache_root() == tmp_path / "env"
    assert hmod.cache_root(tmp_path / "x") == tmp_path / "x"
    monkeypatch.delenv(hmod.CACHE_ENV)
    import platformdirs

    assert hmod.cache_root() == Path(platformdirs.user_cache_dir("napari-meg-unet"))
    # the cache key covers every build parameter
    keys = {
        hmod.template_cache_path(spacing=s, modality=m, cache_dir=tmp_path)
        for s in ("ico3", "oct5")
        for m in ("meg", "eeg")
    }
    assert len(keys) == 4


def test_uncached_rebuild_same_fingerprint(template_hm, template_hm_megeeg, cache_dir):
    hm = make_template_headmodel(spacing="ico3", modality="eeg", cache=False, cache_dir=cache_dir)
    cached = make_template_headmodel(spacing="ico3", modality="eeg", cache_dir=cache_dir)
    assert hm.provenance["cache_path"] is None
    assert hm.fingerprint == cached.fingerprint == headmodel_fingerprint(cached)
    np.testing.assert_array_equal(hm.gain, cached.gain)
    # different modality / spacing -> different fingerprints
    oct5 = make_template_headmodel(spacing="oct5", modality="eeg", cache=False, cache_dir=cache_dir)
    assert oct5.n_sources == 2 * 1026
    prints = {template_hm.fingerprint, template_hm_megeeg.fingerprint, hm.fingerprint,
              oct5.fingerprint}  # fmt: skip
    assert len(prints) == 4


def test_template_bad_arguments(cache_dir):
    with pytest.raises(ValueError, match="spacing"):
        make_template_headmodel(spacing="ico7", cache_dir=cache_dir)
    with pytest.raises(ValueError, match="modality"):
        make_template_headmodel(modality="fmri", cache_dir=cache_dir)
    with pytest.raises(TypeError, match="noise_cov"):
        make_template_headmodel(noise_cov=3, cache_dir=cache_dir)
    with pytest.raises(FileNotFoundError, match="nothere-cov.fif"):
        make_template_headmodel(noise_cov=cache_dir / "nothere-cov.fif", cache_dir=cache_dir)


# ----------------------------------------------------------------------------- fingerprint
def test_array_fingerprint():
    a = np.arange(12.0).reshape(3, 4)
    fp = array_fingerprint(a, kind="x")
    assert fp == array_fingerprint(a.copy(), kind="x") and len(fp) == 16
    # float32 rounding: a last-bit change does not matter, a real change does
    assert fp == array_fingerprint(a * (1 + 1e-12), kind="x")
    assert fp != array_fingerprint(a + 1e-3, kind="x")
    assert fp != array_fingerprint(a, kind="y")
    assert fp != array_fingerprint(a.reshape(4, 3), kind="x")
    assert fp != array_fingerprint(a, a, kind="x")


def test_fingerprint_tracks_sensors_and_projs(template_hm_megeeg):
    hm = template_hm_megeeg
    fp = headmodel_fingerprint(hm)
    info = hm.info.copy()
    with info._unlock():
        t = info["dev_head_t"]["trans"].copy()
        t[2, 3] += 0.005
        info["dev_head_t"] = mne.transforms.Transform("meg", "head", t)
    moved = HeadModel(**{**_fields(hm), "info": info})
    assert headmodel_fingerprint(moved) != fp
    info = hm.info.copy()
    with info._unlock():
        info["projs"] = []
    noproj = HeadModel(**{**_fields(hm), "info": info})
    assert headmodel_fingerprint(noproj) != fp
    assert headmodel_fingerprint(HeadModel(**_fields(hm))) == fp


def _fields(hm):
    import dataclasses

    return {f.name: getattr(hm, f.name) for f in dataclasses.fields(hm)}


# ----------------------------------------------------------------------------- save / load
def test_save_load_roundtrip(template_hm_megeeg, tmp_path):
    hm = template_hm_megeeg
    out = hm.save(tmp_path / "hm")
    assert out == tmp_path / "hm"
    with pytest.raises(FileExistsError, match="overwrite"):
        hm.save(tmp_path / "hm")
    hm.save(tmp_path / "hm", overwrite=True)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp leftovers
    back = load_headmodel(tmp_path / "hm")
    assert back.fingerprint == hm.fingerprint
    np.testing.assert_array_equal(back.gain, hm.gain)
    np.testing.assert_array_equal(back.fwd["sol"]["data"], hm.fwd["sol"]["data"])
    np.testing.assert_array_equal(back.noise_cov.data, hm.noise_cov.data)
    assert back.summary() == hm.summary()
    assert back.bem["is_sphere"]
    np.testing.assert_allclose(back.bem["r0"], hm.bem["r0"])
    for kind in hmod.SURFACE_KINDS:
        np.testing.assert_array_equal(back.surfaces[kind]["rh"][0], hm.surfaces[kind]["rh"][0])
    np.testing.assert_array_equal(back.trans["trans"], hm.trans["trans"])


def test_load_errors(template_hm, tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_headmodel(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="headmodel.json"):
        load_headmodel(tmp_path / "empty")
    path = template_hm.save(tmp_path / "hm")
    (path / "headmodel-fwd.fif").write_bytes(b"not a fif file at all")
    with pytest.raises(ValueError, match="headmodel-fwd.fif"):
        load_headmodel(path)
    (path / "headmodel-fwd.fif").unlink()
    with pytest.raises(FileNotFoundError, match="headmodel-fwd.fif"):
        load_headmodel(path)


# ----------------------------------------------------------------------------- noise cov
def test_noise_cov_given_and_mismatched(template_hm, tmp_path):
    info = template_hm.info
    rng = np.random.default_rng(0)
    names = list(reversed(info["ch_names"]))
    a = rng.standard_normal((len(names), len(names)))
    cov = mne.Covariance(a @ a.T * 1e-26, names, [], [], nfree=10)
    picked = prepare_noise_cov(cov, info)
    assert picked.ch_names == info["ch_names"]
    np.testing.assert_array_equal(picked.data, cov.data[::-1, ::-1])
    fname = tmp_path / "x-cov.fif"
    cov.save(fname)
    np.testing.assert_array_equal(prepare_noise_cov(fname, info).data, picked.data)
    # missing channels are named
    short = mne.Covariance(cov.data[2:, 2:], names[2:], [], [], nfree=10)
    with pytest.raises(ValueError, match=r"lacks 2 channel\(s\).*'MEG 2641'"):
        prepare_noise_cov(short, info)
    with pytest.raises(FileNotFoundError, match="nope-cov.fif"):
        prepare_noise_cov(tmp_path / "nope-cov.fif", info)
    (tmp_path / "bad-cov.fif").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="bad-cov.fif"):
        prepare_noise_cov(tmp_path / "bad-cov.fif", info)


def _cov_with_zero_channels(info, zero):
    """A full-rank covariance of ``info``'s channels with zero variance on ``zero``."""
    names = list(info["ch_names"])
    rng = np.random.default_rng(1)
    a = rng.standard_normal((len(names), len(names)))
    data = a @ a.T * 1e-26
    idx = [names.index(ch) for ch in zero]
    data[idx, :] = 0.0
    data[:, idx] = 0.0
    return mne.Covariance(data, names, [], [], nfree=10)


def test_noise_cov_zero_variance_warns(template_hm, tmp_path, caplog):
    info = template_hm.info
    zero = info["ch_names"][5:25]  # 20 channels
    cov = _cov_with_zero_channels(info, zero)
    match = (
        r"given covariance has zero \(or negative\) variance on 20 of the 306 channel\(s\)"
        rf".*{zero[0]!r}.*{zero[9]!r} and 10 more.*mark them bad"
    )
    with caplog.at_level("WARNING", logger="napari_meg_unet"):
        with pytest.warns(RuntimeWarning, match=match):
            picked = prepare_noise_cov(cov, info)
    assert picked.ch_names == info["ch_names"]
    assert any("zero (or negative) variance on 20" in r.getMessage() for r in caplog.records)
    # a file is named as the source; channels it is not used for do not count
    fname = tmp_path / "zero-cov.fif"
    cov.save(fname)
    with pytest.warns(RuntimeWarning, match=r"noise_cov file .*zero-cov\.fif.* on 20 of"):
        prepare_noise_cov(fname, info)
    sub = mne.pick_info(info, [i for i, ch in enumerate(info["ch_names"]) if ch not in zero])
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        prepare_noise_cov(cov, sub)


def test_noise_cov_non_finite_raises(template_hm, tmp_path, cache_dir):
    info = template_hm.info
    names = list(info["ch_names"])
    cov = _cov_with_zero_channels(info, [])
    cov["data"][3, 3] = np.nan
    with pytest.raises(ValueError, match=rf"given covariance has NaN or Inf.*{names[3]!r}"):
        prepare_noise_cov(cov, info)
    fname = tmp_path / "nan-cov.fif"
    cov.save(fname)
    with pytest.raises(ValueError, match=r"noise_cov file .*nan-cov\.fif.* NaN or Inf"):
        prepare_noise_cov(fname, info)
    with pytest.raises(ValueError, match=r"nan-cov\.fif"):
        make_template_headmodel(noise_cov=fname, cache=False, cache_dir=cache_dir)


# ----------------------------------------------------------------------------- dense sources
def _discrete_gain(hm, positions, normals):
    """Fixed gain of a discrete source space at head-frame positions/normals (MNE directly)."""
    trans = hm.trans
    bem = hm.bem
    if bem["is_sphere"]:  # sphere in head coordinates: sources in head coordinates
        rr, nn, trans = positions, normals, None
    else:
        rr = apply_trans(trans, positions)
        nn = apply_trans(trans, normals, move=False)
    src = mne.setup_volume_source_space(pos=dict(rr=rr, nn=nn), verbose=False)
    meg, eeg = hmod.check_modality(hm.modality)
    fwd = mne.make_forward_solution(
        hm.info, trans=trans, src=src, bem=bem, meg=meg, eeg=eeg, verbose=False
    )
    fwd = mne.convert_forward_solution(fwd, force_fixed=True, surf_ori=True, verbose=False)
    return fwd["sol"]["data"]


@pytest.mark.slow
@pytest.mark.parametrize("which", ["meg", "eeg"])
def test_dense_sources_template(which, template_hm, cache_dir):
    if which == "meg":
        hm = template_hm
    else:
        hm = make_template_headmodel(modality="eeg", cache_dir=cache_dir)
    dense = hmod.make_dense_sources(hm, cache_dir=cache_dir)
    assert dense.spacing == "ico4"
    n_ico4 = 2562
    assert dense.n_dense == 2 * (n_ico4 - N_ICO3)
    for v, coarse in zip(dense.vertno, hm.vertno, strict=True):
        np.testing.assert_array_equal(v, np.arange(N_ICO3, n_ico4))  # ico4 minus ico3
        assert not np.intersect1d(v, coarse).size
    assert dense.gain.shape == (len(hm.ch_names), dense.n_dense)
    np.testing.assert_array_equal(dense.hemi, np.repeat([0, 1], n_ico4 - N_ICO3))
    lh, rh = dense.vertno
    white = np.concatenate([hm.surfaces["white"]["lh"][0][lh], hm.surfaces["white"]["rh"][0][rh]])
    np.testing.assert_allclose(dense.positions, white, atol=1e-6)
    # nearest grid source of the same hemisphere, by brute force
    d = np.linalg.norm(dense.positions[:, None] - hm.positions[None], axis=-1)
    d[dense.hemi[:, None] != (np.arange(hm.n_sources) >= N_ICO3)[None]] = np.inf
    np.testing.assert_array_equal(dense.nearest_row, d.argmin(1))
    np.testing.assert_allclose(dense.grid_distance, d.min(1))
    assert dense.grid_distance.min() > 1e-3  # really off the grid
    # the gain is MNE's gain at those positions/normals, same conductor and channels
    pick = np.arange(0, dense.n_dense, 197)
    ref = _discrete_gain(hm, dense.positions[pick], dense.normals[pick])
    np.testing.assert_allclose(dense.gain[:, pick], ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())
    # cached: identical
    again = hmod.make_dense_sources(hm, cache_dir=cache_dir)
    np.testing.assert_array_equal(again.gain, dense.gain)
    assert again.headmodel_fingerprint == hm.fingerprint


def test_dense_sources_bad_spacing(template_hm, cache_dir):
    with pytest.raises(ValueError, match="spacing"):
        hmod.make_dense_sources(template_hm, spacing="ico3", cache_dir=cache_dir)
    with pytest.raises(TypeError, match="HeadModel"):
        hmod.make_dense_sources("hm", cache_dir=cache_dir)


# ----------------------------------------------------------------------------- real inputs
def _sample_files(shared_data):
    meg = shared_data / "sample" / "MEG"
    bem = shared_data / "sample" / "subjects" / "sample" / "bem"
    return dict(
        raw=meg / "sample_audvis_trunc_raw_sss.fif",
        cov=meg / "sample_audvis_trunc-cov.fif",
        trans=meg / "sample_audvis_trunc-trans.fif",
        ave=meg / "test-ave.fif.gz",
        src=bem / "small-src.fif.gz",
        bem1=bem / "sample-320-bem-sol.fif",
        bem3=bem / "sample-320-320-320-bem-sol.fif",
        subjects_dir=shared_data / "sample" / "subjects",
        erm=shared_data / "erm" / "test_move_anon_erm_raw.fif",
    )


@pytest.fixture(scope="module")
def sample_meg_hm(shared_data, tmp_path_factory):
    """Sample subject, MEG, 1-layer BEM, small-src (oct-4 in use), read through BIDS."""
    import mne_bids

    f = _sample_files(shared_data)
    raw = mne.io.read_raw_fif(f["raw"], verbose=False)
    bids_path = mne_bids.BIDSPath(
        subject="01", task="test", datatype="meg", root=tmp_path_factory.mktemp("bids")
    )
    mne_bids.write_raw_bids(raw, bids_path, verbose=False)
    return hmod.make_headmodel(
        info=bids_path, trans=f["trans"], bem=f["bem1"], src=f["src"], noise_cov=f["cov"],
        subjects_dir=f["subjects_dir"], subject="sample", modality="meg",
    )  # fmt: skip


@pytest.mark.sample
def test_real_meg_sample(sample_meg_hm, shared_data):
    hm = sample_meg_hm
    f = _sample_files(shared_data)
    prov = hm.provenance
    assert prov["builder"] == "make_headmodel" and prov["src_scale_applied"] == 1000.0
    # SSS data keep their processing history: the inverse uses MNE's rank='info' (69)
    assert hm.info["proc_history"] and prov["noise_rank"]["sss"]
    assert hm.noise_rank["total"] == 69 and hm.noise_rank["message"]
    # the covariance's bad channel is left out; no EEG in a MEG model
    assert "MEG 2443" in prov["bads_excluded"] and "MEG 2443" not in hm.ch_names
    assert len(hm.ch_names) == 305 and hm.noise_cov.ch_names == hm.ch_names
    assert hm.subject == "sample" and "1-layer BEM (320" in hm.conductor
    # oct-4 in use (258/hemisphere) minus the few outside the coarse 320-triangle skull
    n_out = prov["n_sources_outside_inner_skull"]
    assert hm.n_sources == 2 * 258 - n_out and n_out < 10
    # units fixed: a real brain in head coordinates (metres)
    extent = np.ptp(hm.positions, axis=0)
    assert (extent > 0.05).all() and (extent < 0.2).all()
    white = _white_at_sources(hm)
    np.testing.assert_allclose(hm.positions, white, atol=1e-6)  # FIF stores float32
    assert hm.surfaces["white"]["lh"][0].shape == (1026, 3)
    # same gain as MNE's own forward on the same inputs
    src = mne.read_source_spaces(f["src"], verbose=False)
    for s in src:
        s["rr"] *= 1000.0
    info = hm.info.copy()
    ref = mne.make_forward_solution(
        info, trans=f["trans"], src=src, bem=f["bem1"], meg=True, eeg=False, verbose=False
    )
    ref = mne.convert_forward_solution(
        ref, surf_ori=True, force_fixed=True, use_cps=True, verbose=False
    )
    assert [list(v) for v in hm.vertno] == [list(s["vertno"]) for s in ref["src"]]
    np.testing.assert_allclose(hm.gain, ref["sol"]["data"], rtol=1e-5,
                               atol=1e-6 * np.abs(ref["sol"]["data"]).max())  # fmt: skip


@pytest.mark.sample
def test_real_dense_sources(sample_meg_hm, cache_dir):
    hm = sample_meg_hm
    dense = hmod.make_dense_sources(hm, cache_dir=cache_dir)
    assert dense.spacing == "full"
    for v, coarse, s in zip(dense.vertno, hm.vertno, hm.src, strict=True):
        assert not np.intersect1d(v, coarse).size
        assert len(v) <= s["np"] - len(coarse)
        assert len(v) > 0.95 * (s["np"] - 258)
    assert dense.gain.shape == (len(hm.ch_names), dense.n_dense)
    assert (dense.grid_distance > 0).all()
    with pytest.raises(ValueError, match="spacing"):
        hmod.make_dense_sources(hm, spacing="ico4", cache_dir=cache_dir)


@pytest.mark.sample
def test_real_megeeg_sample(shared_data):
    f = _sample_files(shared_data)
    hm = hmod.make_headmodel(
        info=f["ave"], trans=f["trans"], bem=f["bem3"], src=f["src"], modality="meg+eeg",
        noise_cov=f["cov"],
    )  # fmt: skip
    assert "3-layer BEM" in hm.conductor
    n_eeg = len(mne.pick_types(hm.info, meg=False, eeg=True))
    assert n_eeg == 59 and "EEG 053" not in hm.ch_names  # the covariance's bad EEG channel
    assert len(hm.ch_names) == 305 + 59 and hm.noise_cov.ch_names == hm.ch_names
    assert hmod._has_eeg_average_ref_proj(hm.info)
    assert not hm.provenance["noise_rank"]["sss"]  # test-ave is not SSS-processed
    assert hm.n_sources == 2 * 258 - hm.provenance["n_sources_outside_inner_skull"]


@pytest.mark.sample
def test_real_all_vertices(shared_data):
    f = _sample_files(shared_data)
    hm = hmod.make_headmodel(
        info=f["raw"], trans=f["trans"], bem=f["bem1"], src=f["src"], use_all_vertices=True
    )
    assert hm.spacing == "all"
    # every vertex of the decimated surface is a source (except outside the skull)
    assert hm.n_sources == 2 * 1026 - hm.provenance["n_sources_outside_inner_skull"]
    assert hm.triangles("lh").shape[0] > 2000  # the full 2048-triangle mesh, minus dropped
    np.testing.assert_allclose(hm.positions, _white_at_sources(hm), atol=1e-6)
    # all vertices in use: nothing is left off the grid inside the skull
    with pytest.raises(ValueError, match="dense sources|off-grid"):
        hmod.make_dense_sources(hm, cache=False)


@pytest.mark.sample
def test_real_bad_inputs(shared_data, tmp_path):
    f = _sample_files(shared_data)
    kw = dict(info=f["raw"], trans=f["trans"], bem=f["bem1"], src=f["src"])
    with pytest.raises(FileNotFoundError, match="nothere_raw.fif"):
        hmod.make_headmodel(**{**kw, "info": tmp_path / "nothere_raw.fif"})
    garbage = tmp_path / "garbage-trans.fif"
    garbage.write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="garbage-trans.fif"):
        hmod.make_headmodel(**{**kw, "trans": garbage})
    with pytest.raises(FileNotFoundError, match="missing-bem-sol.fif"):
        hmod.make_headmodel(**{**kw, "bem": tmp_path / "missing-bem-sol.fif"})
    bad_bem = tmp_path / "bad-bem-sol.fif"
    bad_bem.write_bytes(b"not a bem")
    with pytest.raises(ValueError, match="bad-bem-sol.fif"):
        hmod.make_headmodel(**{**kw, "bem": bad_bem})
    with pytest.raises(ValueError, match="1-layer BEM"):
        hmod.make_headmodel(**kw, modality="meg+eeg")
    with pytest.raises(ValueError, match="modality"):
        hmod.make_headmodel(**kw, modality="nirs")
    with pytest.raises(ValueError, match="subjects_dir and subject"):
        hmod.make_headmodel(**{**kw, "src": None})
    # EEG without an average-reference projector: raise with a hint
    info = mne.io.read_info(f["raw"], verbose=False)
    with info._unlock():
        info["projs"] = []
    with pytest.raises(ValueError, match="average-reference projector.*set_eeg_reference"):
        hmod.make_headmodel(**{**kw, "info": info, "bem": "sphere"}, modality="eeg")
    # empty-room covariance with other channel names ('MEG0113'): missing channels named
    match = "The noise_cov file .* lacks 306 channel.*'MEG 0113'.*spaces"
    with pytest.raises(ValueError, match=match):
        hmod.make_headmodel(**kw, noise_cov=f["erm"])


# ----------------------------------------------------------------------------- CLI
def test_cli_headmodel_template(template_hm, cache_dir, tmp_path, capsys):
    import json

    from napari_meg_unet.cli import main

    out = tmp_path / "hm"
    rc = main(["headmodel", "--json", "--no-progress", "--cache-dir", str(cache_dir),
               "--out", str(out)])  # fmt: skip
    assert rc == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n_sources"] == 2 * N_ICO3 and result["modality"] == "meg"
    assert result["fingerprint"] == template_hm.fingerprint
    assert result["cache_path"] == template_hm.provenance["cache_path"]
    assert result["build_time_s"] >= 0 and result["out"] == str(out)
    assert load_headmodel(out).fingerprint == template_hm.fingerprint
    # refuses to overwrite; bad arguments give exit code 2 and a message
    assert main(["headmodel", "--no-progress", "--cache-dir", str(cache_dir), "--out",
                 str(out)]) == 2  # fmt: skip
    assert "overwrite" in capsys.readouterr().err
    assert main(["headmodel", "--no-progress", "--trans", "x-trans.fif"]) == 2
    assert "--info" in capsys.readouterr().err
    assert main(["headmodel", "--no-progress", "--spacing", "ico9"]) == 2
    assert "spacing" in capsys.readouterr().err


@pytest.mark.sample
def test_cli_headmodel_real(shared_data, capsys):
    import json

    from napari_meg_unet.cli import main

    f = _sample_files(shared_data)
    rc = main(["headmodel", "--json", "--no-progress", "--info", str(f["raw"]),
               "--trans", str(f["trans"]), "--bem", "sphere", "--src", str(f["src"]),
               "--modality", "eeg", "--cov", str(f["cov"])])  # fmt: skip
    assert rc == 0
    result = json.loads(capsys.readouterr().out)
    assert result["channels"] == {"mag": 0, "grad": 0, "eeg": 59}
    assert "sphere" in result["conductor"] and result["cache_path"] is None
