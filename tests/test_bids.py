"""BIDS helpers: finding recordings, reading them, empty-room and anatomy lookup."""

from __future__ import annotations

import datetime
import shutil

import mne
import nibabel as nib
import numpy as np
import pytest

from napari_meg_unet import bids

mne_bids = pytest.importorskip("mne_bids")

DATE = datetime.datetime(2020, 1, 1, 12, tzinfo=datetime.timezone.utc)


@pytest.fixture(scope="module")
def sim(template_hm):
    from napari_meg_unet.simulate import simulate

    return simulate(
        template_hm, design="multi", n_events=4, n_dipoles=1, hemi="both", snr=3.0, seed=1,
        verbose="error",
    )  # fmt: skip


@pytest.fixture(scope="module")
def bids_root(tmp_path_factory, sim):
    """sub-01/ses-01 with two runs of the simulation, plus an empty-room recording."""
    root = tmp_path_factory.mktemp("bids") / "ds"
    raw = bids.simulation_to_raw(sim, meas_date=DATE)
    for run in ("01", "02"):
        bp = mne_bids.BIDSPath(
            subject="01", session="01", task="sim", run=run, root=root, datatype="meg"
        )
        mne_bids.write_raw_bids(raw, bp, allow_preload=True, format="FIF", verbose=False)
    noise = np.random.default_rng(0).standard_normal((len(sim.info["ch_names"]), 300)) * 1e-13
    er = mne.io.RawArray(noise, sim.info.copy(), verbose=False)
    er.set_meas_date(DATE)
    er_bp = mne_bids.BIDSPath(
        subject="emptyroom", session="20200101", task="noise", root=root, datatype="meg"
    )
    mne_bids.write_raw_bids(er, er_bp, allow_preload=True, format="FIF", verbose=False)
    return root


def _labels(paths):
    return [bids.recording_label(p) for p in paths]


RUN1 = "sub-01_ses-01_task-sim_run-01"
RUN2 = "sub-01_ses-01_task-sim_run-02"


def test_simulation_to_raw(sim):
    raw = bids.simulation_to_raw(sim, meas_date=DATE)
    n_events, n_ch, n_times = sim.data.shape
    assert raw.get_data().shape == (n_ch, n_events * n_times)
    # event 2 is the third block of samples, annotated at its first sample
    np.testing.assert_allclose(raw.get_data()[:, 2 * n_times : 3 * n_times], sim.data[2])
    # MNE keeps annotation onsets to the microsecond
    np.testing.assert_allclose(
        raw.annotations.onset, np.arange(n_events) * n_times / sim.sfreq, atol=1e-6
    )
    assert raw.info["meas_date"] == DATE


def test_find_recordings_levels(bids_root):
    meg_dir = bids_root / "sub-01" / "ses-01" / "meg"
    for path in (bids_root, bids_root / "sub-01", bids_root / "sub-01" / "ses-01", meg_dir):
        found = bids.find_recordings(path)
        assert _labels(found) == [RUN1, RUN2], path
        assert all(p.root == bids_root for p in found)
    one = bids.find_recordings(meg_dir / f"{RUN2}_meg.fif")
    assert _labels(one) == [RUN2]
    assert one[0].fpath == meg_dir / f"{RUN2}_meg.fif"


def test_find_recordings_emptyroom(bids_root):
    assert _labels(bids.find_recordings(bids_root, include_emptyroom=True)) == [
        RUN1, RUN2, "sub-emptyroom_ses-20200101_task-noise",
    ]  # fmt: skip
    # pointing into sub-emptyroom lists it even without include_emptyroom
    assert _labels(bids.find_recordings(bids_root / "sub-emptyroom")) == [
        "sub-emptyroom_ses-20200101_task-noise"
    ]


def test_find_recordings_not_meg(bids_root, tmp_path):
    meg_dir = bids_root / "sub-01" / "ses-01" / "meg"
    assert bids.find_recordings(meg_dir / f"{RUN1}_channels.tsv") == []
    assert bids.find_recordings(meg_dir / f"{RUN1}_meg.json") == []
    assert bids.find_recordings(tmp_path) == []  # a plain folder
    assert bids.find_recordings(tmp_path / "missing") == []
    (tmp_path / "plain.fif").write_bytes(b"")
    assert bids.find_recordings(tmp_path / "plain.fif") == []
    assert bids.find_bids_root(tmp_path) is None
    assert bids.find_bids_root(meg_dir) == bids_root


def test_find_recordings_bids_without_meg(tmp_path):
    root = tmp_path / "anat_only"
    anat = root / "sub-01" / "anat"
    anat.mkdir(parents=True)
    (root / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.8.0"}')
    (anat / "sub-01_T1w.nii.gz").write_bytes(b"")
    assert bids.find_bids_root(anat) == root
    assert bids.find_recordings(root) == []
    assert bids.find_recordings(root / "sub-01") == []


def test_derivatives_are_not_the_root(bids_root):
    fs = bids_root / "derivatives" / "freesurfer"
    fs.mkdir(parents=True, exist_ok=True)
    (fs / "dataset_description.json").write_text('{"Name": "fs", "BIDSVersion": "1.8.0"}')
    assert bids.find_bids_root(fs) == bids_root
    assert bids.find_recordings(fs) == []


def test_read_recording(bids_root, sim):
    (bp,) = bids.find_recordings(bids_root / "sub-01" / "ses-01" / "meg" / f"{RUN1}_meg.fif")
    rec = bids.read_recording(bp)
    n_events, n_ch, n_times = sim.data.shape
    assert rec.raw.preload
    assert rec.raw.info["ch_names"] == sim.info["ch_names"]
    # FIF stores float32: compare relative to the data's scale
    expected = np.asarray(sim.data).transpose(1, 0, 2).reshape(n_ch, -1)
    err = np.abs(rec.raw.get_data() - expected).max() / np.abs(expected).max()
    assert err < 1e-6
    assert rec.event_id == {"simulated": 1}
    np.testing.assert_allclose(rec.event_times, np.arange(n_events) * n_times / sim.sfreq)
    assert rec.event_names == ["simulated"] * n_events
    assert rec.label == RUN1 and rec.subject == "01"
    assert rec.emptyroom is not None
    assert rec.emptyroom.subject == "emptyroom"
    assert rec.emptyroom.fpath.is_file()


def test_read_recording_truncated(bids_root, tmp_path):
    root = tmp_path / "ds"
    shutil.copytree(bids_root, root)
    fif = root / "sub-01" / "ses-01" / "meg" / f"{RUN1}_meg.fif"
    fif.write_bytes(fif.read_bytes()[:4000])
    (bp,) = bids.find_recordings(fif)
    with pytest.raises(Exception, match="Could not read the MEG recording") as info:
        bids.read_recording(bp)
    assert str(fif) in str(info.value)


def test_read_recording_requires_root():
    with pytest.raises(ValueError, match="root set"):
        bids.read_recording(mne_bids.BIDSPath(subject="01", task="x", datatype="meg"))


def test_find_emptyroom_absent(tmp_path, sim):
    root = tmp_path / "ds"
    raw = bids.simulation_to_raw(sim, meas_date=DATE)
    bp = mne_bids.BIDSPath(subject="02", task="sim", root=root, datatype="meg")
    mne_bids.write_raw_bids(raw, bp, allow_preload=True, format="FIF", verbose=False)
    (found,) = bids.find_recordings(root)
    assert bids.find_emptyroom(found) is None


def test_template_surfaces():
    surfaces = bids.template_surfaces(kind="inflated")
    for hemi in ("lh", "rh"):
        rr, tris, sulc = surfaces[hemi]
        assert rr.shape == (10242, 3) and tris.shape == (20480, 3) and sulc.shape == (10242,)
        assert np.abs(rr).max() < 0.2  # metres, not mm
    with pytest.raises(ValueError, match="kind must be one of"):
        bids.template_surfaces(kind="sphere")


def test_cortex_surfaces_freesurfer_derivatives(bids_root, tmp_path):
    root = tmp_path / "ds"
    shutil.copytree(bids_root, root)
    assert bids.cortex_surfaces(root, "01")[1] == "template:fsaverage5"
    template = bids.template_surfaces(kind="pial")
    surf = root / "derivatives" / "freesurfer" / "sub-01" / "surf"
    surf.mkdir(parents=True)
    for hemi in ("lh", "rh"):
        rr, tris, _ = template[hemi]
        nib.freesurfer.write_geometry(str(surf / f"{hemi}.pial"), rr * 1000.0 + 5.0, tris)
    surfaces, source = bids.cortex_surfaces(root, "01", kind="pial")
    assert source == "freesurfer:sub-01"
    np.testing.assert_allclose(surfaces["lh"][0], template["lh"][0] + 0.005, atol=1e-6)
    np.testing.assert_array_equal(surfaces["rh"][2], 0.0)  # no rh.sulc written
    # another subject (or another kind) falls back to the template
    assert bids.cortex_surfaces(root, "02", kind="pial")[1] == "template:fsaverage5"
    assert bids.cortex_surfaces(root, "01", kind="inflated")[1] == "template:fsaverage5"


@pytest.mark.sample
def test_real_recording(shared_data, tmp_path):
    raw = mne.io.read_raw_fif(
        shared_data / "sample" / "MEG" / "sample_audvis_trunc_raw_sss.fif", verbose=False
    )
    onsets = raw.first_time + np.array([0.2, 0.5, 0.8])
    raw.set_annotations(
        mne.Annotations(onsets, [0, 0, 0], ["aud", "vis", "aud"], orig_time=raw.info["meas_date"])
    )
    root = tmp_path / "ds"
    bp = mne_bids.BIDSPath(subject="sample", task="audvis", root=root, datatype="meg")
    mne_bids.write_raw_bids(raw, bp, verbose=False)
    (found,) = bids.find_recordings(root / "sub-sample")
    rec = bids.read_recording(found)
    assert len(rec.raw.ch_names) == 376
    assert rec.raw.n_times == 301
    np.testing.assert_allclose(rec.event_times, [0.2, 0.5, 0.8], atol=1.5 / raw.info["sfreq"])
    assert rec.event_names == ["aud", "vis", "aud"]
    assert rec.emptyroom is None


def test_subject_anatomy_incomplete(bids_root, tmp_path):
    root = tmp_path / "ds"
    shutil.copytree(bids_root, root)
    (bp,) = bids.find_recordings(root / "sub-01" / "ses-01" / "meg" / f"{RUN1}_meg.fif")
    anatomy, reason = bids.subject_anatomy(bp)
    assert anatomy is None and "no derivatives/freesurfer folder for sub-01" in reason
    # pial surfaces only: the source space needs white and sphere
    template = bids.template_surfaces(kind="pial")
    surf = root / "derivatives" / "freesurfer" / "sub-01" / "surf"
    surf.mkdir(parents=True)
    for hemi in ("lh", "rh"):
        nib.freesurfer.write_geometry(
            str(surf / f"{hemi}.pial"), template[hemi][0] * 1000, template[hemi][1]
        )
    anatomy, reason = bids.subject_anatomy(bp)
    assert anatomy is None and "lacks surf/lh.white" in reason
    for hemi in ("lh", "rh"):
        for kind in ("white", "sphere"):
            nib.freesurfer.write_geometry(
                str(surf / f"{hemi}.{kind}"), template[hemi][0] * 1000, template[hemi][1]
            )
    # complete surfaces, but no T1w with landmarks: no head <-> MRI transform
    anatomy, reason = bids.subject_anatomy(bp)
    assert anatomy is None and "no head <-> MRI transform" in reason
