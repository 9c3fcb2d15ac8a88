"""Recordings: reading FIF/BIDS/MNE objects into segments, measured SNR, template mapping."""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import mne
import numpy as np
import pytest

from napari_meg_unet.recordings import (
    Segment,
    measure_snr,
    read_segments,
    source_mapping,
    template_sources,
)


@pytest.fixture(autouse=True, scope="module")
def _quiet_mne():
    with mne.use_log_level("error"):
        yield


def _sample(shared_data):
    meg = shared_data / "sample" / "MEG"
    return dict(
        ave=meg / "test-ave.fif.gz", raw=meg / "sample_audvis_trunc_raw_sss.fif",
        cov=meg / "sample_audvis_trunc-cov.fif", trans=meg / "sample_audvis_trunc-trans.fif",
        subjects_dir=shared_data / "sample" / "subjects",
    )  # fmt: skip


def _raw_with_events(sfreq=200.0, n_times=2000, seed=0):
    """A small MEG-free raw (3 misc-like mag channels + STI) with two event types."""
    info = mne.create_info(["MEG 0111", "MEG 0121", "MEG 0131", "STI 014"], sfreq,
                           ["mag", "mag", "mag", "stim"])  # fmt: skip
    rng = np.random.default_rng(seed)
    data = rng.standard_normal((4, n_times)) * 1e-13
    data[3] = 0
    onsets = {1: [300, 700, 1100], 2: [500, 900]}
    for code, samples in onsets.items():
        for s in samples:
            data[3, s : s + 5] = code
            data[:3, s + 20 : s + 40] += code * 1e-12
    return mne.io.RawArray(data, info, verbose=False)


def test_evoked_file_gives_one_segment_per_condition_with_its_nave(shared_data):
    f = _sample(shared_data)
    segments = read_segments(f["ave"])
    assert [s.name for s in segments] == ["Left Auditory", "Right Auditory", "Left visual",
                                          "Right visual"]  # fmt: skip
    assert [s.nave for s in segments] == [3, 6, 6, 6]
    seg = segments[1]
    assert seg.kind == "evoked" and seg.n_times == 421 and seg.sfreq == pytest.approx(600.615)
    assert seg.tmin == pytest.approx(-0.19979521) and seg.source == str(f["ave"])
    ref = mne.read_evokeds(f["ave"], condition="Right Auditory", verbose=False)
    np.testing.assert_array_equal(seg.get_data(), ref.data)
    np.testing.assert_array_equal(seg.get_data(["MEG 0113", "MEG 0112"]),
                                  ref.copy().pick(["MEG 0113", "MEG 0112"]).data)  # fmt: skip
    with pytest.raises(ValueError, match="lacks 1 channel"):
        seg.get_data(["MEG 0113", "NOPE"])
    only = read_segments(f["ave"], condition="Left visual", tmin=0.0, tmax=0.2)
    assert len(only) == 1 and only[0].nave == 6 and only[0].tmin == pytest.approx(0.0, abs=2e-3)
    with pytest.raises(ValueError, match="no condition 'Left'"):
        read_segments(f["ave"], condition="Left")
    down = seg.resampled(150.0)
    assert down.sfreq == 150.0 and "resampled from 600.615 Hz to 150 Hz" in down.notes[-1]
    assert seg.resampled(seg.sfreq) is seg


def test_raw_file_crop_and_resampling(shared_data):
    f = _sample(shared_data)
    (seg,) = read_segments(f["raw"], tmin=0.2, tmax=0.8)
    raw = mne.io.read_raw_fif(f["raw"], verbose=False)
    assert seg.kind == "raw" and seg.nave == 1 and seg.tmin == pytest.approx(0.2, abs=1e-3)
    assert seg.n_times == len(raw.copy().crop(0.2, 0.8).times)
    start = seg.inst.first_samp - raw.first_samp
    np.testing.assert_allclose(seg.get_data()[:, 0], raw.get_data(start=start)[:, 0])
    assert seg.tmin == pytest.approx(start / raw.info["sfreq"])
    with pytest.raises(ValueError, match="outside the recording"):
        read_segments(f["raw"], tmin=5.0)
    with pytest.raises(ValueError, match="tmax must be > tmin"):
        read_segments(f["raw"], tmin=0.5, tmax=0.2)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_segments(f["raw"].with_name("missing_raw.fif"))


def test_raw_events_epochs_and_bids(tmp_path):
    raw = _raw_with_events()
    segments = read_segments(raw, events="stim", tmin=-0.1, tmax=0.3)
    assert [(s.name, s.nave) for s in segments] == [("1", 3), ("2", 2)]
    assert segments[0].kind == "evoked" and segments[0].tmin == pytest.approx(-0.1)
    # baseline-corrected averages: the pre-stimulus mean is zero
    base = segments[0].inst.copy().crop(None, 0).data.mean(axis=1)
    np.testing.assert_allclose(base, 0, atol=1e-20)
    (each,) = read_segments(raw, events="stim", tmin=-0.1, tmax=0.3, average=False)
    assert each.kind == "epochs" and len(each.inst) == 5 and each.nave == 1
    (cont,) = read_segments(raw)  # no events asked: continuous
    assert cont.kind == "raw" and cont.n_times == 2000
    with pytest.raises(ValueError, match="no events found"):
        read_segments(raw.copy().pick(["MEG 0111", "MEG 0111"][:1]), events="annotations")

    import mne_bids

    events = mne.find_events(raw, verbose=False)
    names = {1: "tone", 2: "noise"}
    raw.set_annotations(mne.annotations_from_events(events, raw.info["sfreq"], names))
    bids_path = mne_bids.BIDSPath(subject="01", task="av", datatype="meg", root=tmp_path / "bids")
    fif = tmp_path / "x_raw.fif"
    raw.save(fif, verbose=False)
    raw = mne.io.read_raw_fif(fif, verbose=False)
    mne_bids.write_raw_bids(raw, bids_path, verbose=False, allow_preload=False)
    segments = read_segments(bids_path, tmin=-0.1, tmax=0.3)
    assert sorted((s.name, s.nave) for s in segments) == [("noise", 2), ("tone", 3)]
    # the file inside the BIDS tree is read through mne-bids too
    found = read_segments(str(bids_path.fpath), tmin=-0.1, tmax=0.3)
    assert sorted(s.name for s in found) == ["noise", "tone"]
    assert "sub-01" in found[0].source


def test_measured_snr_matches_the_simulation_definition(template_hm):
    from napari_meg_unet.simulate import simulate

    hm = template_hm
    sim = simulate(hm, design="multi", n_events=1, n_dipoles=1, snr=3.0, nave=4, noise="cov",
                   timecourse="thesis", n_times=64, seed=2)  # fmt: skip
    ev = mne.EvokedArray(np.asarray(sim.data[0], float), hm.info, tmin=0.0, nave=4,
                         verbose=False)  # fmt: skip
    start, stop = sim.window(0)
    times = ev.times
    snr = measure_snr(ev, hm.noise_cov, window=(times[start], times[stop - 1]))
    assert snr.noise_from == "covariance" and snr.nave == 4 and snr.rank == len(hm.ch_names)
    assert snr.window_rms == pytest.approx(3.0, rel=0.1)
    # outside the event there is only noise
    quiet = measure_snr(ev, hm.noise_cov, window=(times[stop + 2], times[-1]))
    assert quiet.window_rms < 0.5
    # another nave changes the whitened scale by sqrt(nave)
    assert measure_snr(ev, hm.noise_cov, window=(times[start], times[stop - 1]),
                       nave=1).window_rms < 2.0  # fmt: skip
    with pytest.raises(ValueError, match="averaged response"):
        measure_snr(Segment("e", mne.EpochsArray(np.asarray(sim.data), hm.info, verbose=False)),
                    hm.noise_cov)  # fmt: skip


def test_measured_snr_of_the_real_evoked(shared_data):
    f = _sample(shared_data)
    cov = mne.read_cov(f["cov"], verbose=False)
    seg = read_segments(f["ave"], condition="Right Auditory")[0]
    meg = Segment(seg.name, seg.inst.copy().pick("meg"), nave=seg.nave)
    snr = measure_snr(meg, cov, window=(0.05, 0.15))
    assert snr.noise_from == "baseline" and snr.rank == 302  # 305 MEG minus 3 projectors
    assert 0.05 < snr.peak_time < 0.15 and 0.2 < snr.peak < 3


def test_template_sources_and_mappings(template_hm, sample_hm, shared_data, tmp_path):
    tmpl = template_sources("ico3")
    assert [len(v) for v in tmpl.vertno] == [642, 642] and tmpl.mni[0].shape == (642, 3)
    assert tmpl.mni[0][:, 0].mean() < 0 < tmpl.mni[1][:, 0].mean()  # lh left of rh, in mm
    same = source_mapping(template_hm, tmpl, hemi="rh")
    assert same.method == "identity" and same.to_template.shape == (642, 642)

    f = _sample(shared_data)
    hm = sample_hm
    mapping = source_mapping(hm, tmpl, hemi="both")
    assert mapping.method == "mni" and "talairach" in mapping.description
    n_lh = len(hm.vertno[0])
    assert mapping.to_template.shape == (1284, hm.n_sources)
    assert mapping.from_template.shape == (hm.n_sources, 1284)
    np.testing.assert_allclose(mapping.to_template.sum(axis=1), 1.0)
    np.testing.assert_allclose(mapping.from_template.sum(axis=1), 1.0)
    assert mapping.to_template[:642, n_lh:].nnz == 0 and mapping.to_template[642:, :n_lh].nnz == 0
    rh = source_mapping(hm, tmpl, hemi="rh")
    assert rh.to_template.shape == (642, hm.n_sources - n_lh)
    # a subject's map peaking at one source peaks near that source's MNI position on the template
    from napari_meg_unet.recordings import subject_mni

    mni_rh = subject_mni(hm, f["subjects_dir"])[1]
    k = 40
    x = np.zeros(hm.n_sources - n_lh)
    x[k] = 1.0
    peak = np.argmax(rh.to_template @ x)
    assert np.linalg.norm(tmpl.mni[1][peak] - mni_rh[k]) < 15.0
    with pytest.raises(ValueError, match="morph='sphere' needs"):
        source_mapping(hm, tmpl, hemi="rh", method="sphere")
    keys = ("subject", "trans", "positions", "vertno", "provenance", "rows")
    moved = SimpleNamespace(**{k: getattr(hm, k) for k in keys})
    moved.provenance = {}
    with pytest.raises(ValueError, match="pass subjects_dir"):
        source_mapping(moved, tmpl, hemi="rh")
    with pytest.raises(FileNotFoundError, match="talairach"):
        source_mapping(moved, tmpl, hemi="rh", subjects_dir=tmp_path)


def test_sphere_mapping_uses_mne_compute_source_morph(template_hm, cache_dir, tmp_path):
    """A copy of fsaverage5 as "subject" and as "fsaverage": the morph is ~ the identity."""
    from napari_meg_unet.headmodel import TEMPLATE_SUBJECT, cache_root

    src_dir = cache_root(cache_dir) / "subjects" / TEMPLATE_SUBJECT / "surf"
    for name in ("subj", "fsaverage"):
        surf = tmp_path / name / "surf"
        surf.mkdir(parents=True)
        for h in ("lh", "rh"):
            shutil.copy(src_dir / f"{h}.white", surf / f"{h}.white")
            shutil.copy(src_dir / f"{h}.sphere", surf / f"{h}.sphere.reg")
    tmpl = template_sources("ico3")
    src = template_hm.src.copy()
    for s in src:
        s["subject_his_id"] = "subj"
    hm = SimpleNamespace(subject="subj", src=src, vertno=template_hm.vertno,
                         rows=template_hm.rows, provenance={})  # fmt: skip
    mapping = source_mapping(hm, tmpl, hemi="lh", subjects_dir=tmp_path)
    assert mapping.method == "sphere" and "compute_source_morph" in mapping.description
    dense = mapping.to_template.toarray()
    assert dense.shape == (642, 642)
    np.testing.assert_array_equal(dense.argmax(axis=1), np.arange(642))
