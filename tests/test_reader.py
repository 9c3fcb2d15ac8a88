"""The napari reader: BIDS MEG datasets in, layer data tuples out, never an exception."""

from __future__ import annotations

import datetime
import shutil

import mne
import numpy as np
import pytest

from napari_meg_unet import _reader, bids
from napari_meg_unet.layers import META_KEY

mne_bids = pytest.importorskip("mne_bids")

DATE = datetime.datetime(2021, 6, 1, 9, tzinfo=datetime.timezone.utc)
RUN1 = "sub-01_task-sim_run-01"
RUN2 = "sub-01_task-sim_run-02"


@pytest.fixture(scope="module")
def sim(template_hm):
    from napari_meg_unet.simulate import simulate

    return simulate(
        template_hm, design="multi", n_events=3, n_dipoles=1, hemi="rh", snr=3.0, seed=2,
        verbose="error",
    )  # fmt: skip


@pytest.fixture(scope="module")
def bids_root(tmp_path_factory, sim):
    """sub-01 with two runs of a template simulation and an empty-room recording."""
    root = tmp_path_factory.mktemp("bids-reader") / "ds"
    raw = bids.simulation_to_raw(sim, description="stim", meas_date=DATE)
    for run in ("01", "02"):
        bp = mne_bids.BIDSPath(subject="01", task="sim", run=run, root=root, datatype="meg")
        mne_bids.write_raw_bids(raw, bp, allow_preload=True, format="FIF", verbose=False)
    er = mne.io.RawArray(np.zeros((len(sim.info["ch_names"]), 100)), sim.info.copy(), verbose=False)
    er.set_meas_date(DATE)
    bp = mne_bids.BIDSPath(
        subject="emptyroom", session="20210601", task="noise", root=root, datatype="meg"
    )
    mne_bids.write_raw_bids(er, bp, allow_preload=True, format="FIF", verbose=False)
    return root


@pytest.fixture
def notes(monkeypatch):
    """Messages the reader shows as napari notifications."""
    seen = []
    monkeypatch.setattr(
        _reader, "_notify", lambda message, severity="warning": seen.append((severity, message))
    )
    return seen


def _by_name(tuples):
    return {kw["name"]: (data, kw, kind) for data, kw, kind in tuples}


def test_get_reader_rejects_non_recordings(tmp_path, bids_root, notes):
    assert _reader.get_reader(str(tmp_path)) is None  # an empty folder
    assert _reader.get_reader(str(tmp_path / "missing")) is None
    (tmp_path / "notes.txt").write_text("x")
    assert _reader.get_reader(str(tmp_path / "notes.txt")) is None
    # a .fif is taken, and when it is not a recording the notification says why
    (tmp_path / "x.fif").write_bytes(b"not a fif")
    reader = _reader.get_reader(str(tmp_path / "x.fif"))
    assert reader(str(tmp_path / "x.fif")) == [(None,)]
    assert notes == [("warning", notes[0][1])] and "x.fif is not a FIF file" in notes[0][1]
    assert _reader.get_reader([str(bids_root), str(bids_root)]) is None
    sidecar = bids_root / "sub-01" / "meg" / f"{RUN1}_meg.json"
    assert _reader.get_reader(str(sidecar)) is None


def test_get_reader_bids_without_meg(tmp_path):
    root = tmp_path / "eeg_only"
    (root / "sub-01" / "anat").mkdir(parents=True)
    (root / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.8.0"}')
    assert _reader.get_reader(str(root)) is None


def test_get_reader_never_raises(monkeypatch, bids_root):
    def boom(path, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(bids, "find_recordings", boom)
    assert _reader.get_reader(str(bids_root)) is None


def test_read_dataset_layers(bids_root, sim, notes):
    reader = _reader.get_reader(str(bids_root))
    assert callable(reader)
    out = _by_name(reader(str(bids_root)))
    assert set(out) == {
        f"MEG {RUN1}", f"events {RUN1}", f"MEG {RUN2}", f"events {RUN2}", "cortex sub-01",
    }  # fmt: skip
    data, kw, kind = out[f"MEG {RUN1}"]
    n_events, n_ch, n_times = sim.data.shape
    assert kind == "image" and data.shape == (n_ch, n_events * n_times)
    assert kw["scale"][-1] == pytest.approx(1 / sim.sfreq)
    meta = kw["metadata"]
    assert meta["bids_path"].basename == f"{RUN1}_meg.fif"
    assert meta["info"]["ch_names"] == sim.info["ch_names"]
    assert meta["raw"].preload and meta["recording"].raw is meta["raw"]
    assert meta["emptyroom"].subject == "emptyroom"
    assert meta["ch_types"][:102] == ["mag"] * 102 and meta["units"][0] == "fT"
    # the image is the recording in display units, each channel type scaled to its peak:
    # row 0 is the first magnetometer
    first_mag = meta["picks"][0]
    np.testing.assert_allclose(
        data[0] * meta["type_peaks"]["mag"], meta["raw"].get_data()[first_mag] * 1e15,
        rtol=1e-5, atol=1e-6,
    )  # fmt: skip
    lines, ekw, ekind = out[f"events {RUN1}"]
    assert ekind == "shapes" and len(lines) == n_events
    np.testing.assert_allclose([line[0, 1] for line in lines], np.arange(n_events) * n_times)
    assert list(ekw["features"]["event"]) == ["stim"] * n_events
    # the two runs do not overlap
    y1 = kw["translate"][-2]
    y2 = out[f"MEG {RUN2}"][1]["translate"][-2]
    assert abs(y1 - y2) >= n_ch * kw["scale"][-2]
    (verts, faces, values), ckw, ckind = out["cortex sub-01"]
    assert ckind == "surface" and verts.shape == (2 * 10242, 3)
    assert ckw["metadata"]["surface_source"] == "template:fsaverage5"
    assert all(META_KEY in t[1]["metadata"] for t in out.values())
    assert notes == []


def test_read_single_run_file(bids_root, notes):
    fif = bids_root / "sub-01" / "meg" / f"{RUN2}_meg.fif"
    reader = _reader.get_reader(str(fif))
    names = [kw["name"] for _, kw, _ in reader(str(fif))]
    assert names == [f"MEG {RUN2}", f"events {RUN2}", "cortex sub-01"]


def test_truncated_fif_warns(bids_root, tmp_path, notes):
    root = tmp_path / "ds"
    shutil.copytree(bids_root, root)
    fif = root / "sub-01" / "meg" / f"{RUN1}_meg.fif"
    fif.write_bytes(fif.read_bytes()[:5000])
    # only the broken run: nothing to show, one warning naming it
    reader = _reader.get_reader(str(fif))
    assert reader(str(fif)) == [(None,)]
    assert len(notes) == 1 and notes[0][0] == "warning" and RUN1 in notes[0][1]
    # the whole dataset: the good run still opens
    notes.clear()
    out = _by_name(_reader.get_reader(str(root))(str(root)))
    assert f"MEG {RUN2}" in out and f"MEG {RUN1}" not in out
    assert len(notes) == 1 and RUN1 in notes[0][1]


def test_too_many_recordings(bids_root, monkeypatch, notes):
    monkeypatch.setattr(_reader, "MAX_RECORDINGS", 1)
    out = _reader.get_reader(str(bids_root))(str(bids_root))
    assert [kw["name"] for _, kw, _ in out if kw["name"].startswith("MEG")] == [f"MEG {RUN1}"]
    assert len(notes) == 1 and RUN2 in notes[0][1]


@pytest.mark.sample
def test_read_real_recording(shared_data, tmp_path, notes):
    raw = mne.io.read_raw_fif(
        shared_data / "sample" / "MEG" / "sample_audvis_trunc_raw_sss.fif", verbose=False
    )
    raw.set_annotations(
        mne.Annotations(raw.first_time + np.array([0.25, 0.75]), [0, 0], ["aud", "vis"],
                        orig_time=raw.info["meas_date"])  # fmt: skip
    )
    root = tmp_path / "ds"
    mne_bids.write_raw_bids(
        raw, mne_bids.BIDSPath(subject="sample", task="audvis", root=root, datatype="meg"),
        verbose=False,
    )  # fmt: skip
    out = _by_name(_reader.get_reader(str(root / "sub-sample"))(str(root / "sub-sample")))
    data, kw, _ = out["MEG sub-sample_task-audvis"]
    # 102 mag + 204 grad + 60 EEG data channels, grouped by type
    assert data.shape == (366, 301)
    assert kw["metadata"]["type_rows"] == {"mag": (0, 102), "grad": (102, 306), "eeg": (306, 366)}
    lines, ekw, _ = out["events sub-sample_task-audvis"]
    assert list(ekw["features"]["event"]) == ["aud", "vis"]
    np.testing.assert_allclose(ekw["features"]["time"], [0.25, 0.75], atol=2 / raw.info["sfreq"])
    assert notes == []


@pytest.mark.gui
def test_viewer_open(make_napari_viewer, qtbot, bids_root):
    """Opening reads in a worker: the call returns at once, the layers arrive after."""
    viewer = make_napari_viewer()
    assert viewer.open(str(bids_root / "sub-01"), plugin="napari-meg-unet") == []
    qtbot.waitUntil(lambda: "cortex sub-01" in viewer.layers, timeout=60_000)
    qtbot.waitUntil(lambda: viewer.dims.ndisplay == 3, timeout=10_000)  # a cortex: 3D
    names = [layer.name for layer in viewer.layers]
    assert f"MEG {RUN1}" in names and "cortex sub-01" in names
    assert viewer.layers[f"events {RUN1}"].nshapes == 3
    assert viewer.layers[f"MEG {RUN1}"].metadata["bids_path"].run == "01"


# ----------------------------------------------------------------------------- plain FIF
@pytest.mark.sample
def test_plain_evoked_file(shared_data, notes):
    path = shared_data / "sample" / "MEG" / "test-ave.fif.gz"
    out = _by_name(_reader.get_reader(str(path))(str(path)))
    data, kw, kind = out["MEG test-ave"]
    # four conditions as events, 366 data channels, the conditions named with their nave
    assert kind == "image" and data.shape == (4, 1, 366, 421)
    assert kw["metadata"]["labels"][0] == "Left Auditory (nave 3)"
    assert kw["metadata"]["recording"].kind == "evoked"
    assert kw["translate"][-1] == pytest.approx(-0.1998, abs=1e-3)  # time from tmin
    assert notes == []


@pytest.mark.sample
def test_plain_raw_file_and_folder(shared_data, tmp_path, notes):
    raw_path = shared_data / "sample" / "MEG" / "sample_audvis_trunc_raw_sss.fif"
    out = _by_name(_reader.read_files(str(raw_path)))
    assert set(out) == {"MEG sample_audvis_trunc_raw_sss"}  # no events, no anatomy
    # a plain folder: its recordings open; covariances and transforms are not offered
    folder = tmp_path / "meg"
    folder.mkdir()
    for name in ("sample_audvis_trunc_raw_sss.fif", "test-ave.fif.gz", "test-cov.fif",
                 "sample_audvis_trunc-trans.fif"):  # fmt: skip
        shutil.copy(shared_data / "sample" / "MEG" / name, folder / name)
    assert [p.name for p in _reader.find_fif_files(folder)] == [
        "sample_audvis_trunc_raw_sss.fif", "test-ave.fif.gz",
    ]  # fmt: skip
    out = _by_name(_reader.get_reader(str(folder))(str(folder)))
    assert set(out) == {"MEG sample_audvis_trunc_raw_sss", "MEG test-ave"}
    assert notes == []


@pytest.mark.sample
def test_fif_files_that_are_not_recordings(shared_data, tmp_path, notes):
    meg = shared_data / "sample" / "MEG"
    with pytest.raises(_reader.RecordingError, match="test-cov.fif is a noise covariance"):
        _reader.read_fif_recording(meg / "test-cov.fif")
    renamed = tmp_path / "something.fif"  # a covariance without its -cov name
    shutil.copy(meg / "test-cov.fif", renamed)
    with pytest.raises(_reader.RecordingError, match="holds no measurement"):
        _reader.read_fif_recording(renamed)
    truncated = tmp_path / "cut_raw.fif"
    truncated.write_bytes((meg / "sample_audvis_trunc_raw_sss.fif").read_bytes()[:200_000])
    with pytest.raises(_reader.RecordingError, match="truncated"):
        _reader.read_fif_recording(truncated)
    eeg = mne.io.RawArray(np.zeros((3, 100)), mne.create_info(3, 100.0, "eeg"), verbose=False)
    eeg.save(tmp_path / "eeg_raw.fif", verbose=False)
    with pytest.raises(_reader.RecordingError, match="has no MEG channels"):
        _reader.read_fif_recording(tmp_path / "eeg_raw.fif")
    # through the reader: a notification naming the file and the reason, no layers
    assert _reader.read_files(str(tmp_path / "eeg_raw.fif")) == [(None,)]
    assert "eeg_raw.fif has no MEG channels (channel types: eeg)" in notes[-1][1]


@pytest.mark.gui
@pytest.mark.sample
def test_viewer_opens_a_plain_fif_file(make_napari_viewer, qtbot, shared_data):
    viewer = make_napari_viewer()
    path = shared_data / "sample" / "MEG" / "test-ave.fif.gz"
    assert viewer.open(str(path), plugin="napari-meg-unet") == []  # read in a worker
    qtbot.waitUntil(lambda: "MEG test-ave" in viewer.layers, timeout=60_000)
    layer = viewer.layers["MEG test-ave"]
    assert layer.data.shape == (4, 1, 366, 421)
    viewer.dims.set_current_step(0, 0)
    qtbot.waitUntil(lambda: viewer.dims.axis_labels[-4].startswith("event 0: Left Auditory"),
                    timeout=10_000)  # fmt: skip


@pytest.mark.gui
def test_viewer_explains_a_bad_fif(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(_reader, "_notify", lambda m, severity="warning": seen.append(m))
    bad = tmp_path / "broken_raw.fif"
    bad.write_bytes(b"\x00" * 100)
    viewer = make_napari_viewer()
    assert viewer.open(str(bad), plugin="napari-meg-unet") == []
    qtbot.waitUntil(lambda: len(seen) > 0, timeout=30_000)
    assert "broken_raw.fif" in seen[0] and "not a FIF file" in seen[0]
    assert len(viewer.layers) == 0
