"""Networks on real recordings: compatibility (every difference named), windows, the whole path."""

from __future__ import annotations

import json

import mne
import numpy as np
import pytest

from napari_meg_unet.checkpoint import (
    check_checkpoint_compatible,
    check_recording_compatible,
    data_record,
)
from napari_meg_unet.dataset import IncompatibleDataError
from napari_meg_unet.train.windows import cut_windows, stitch, window_starts


@pytest.fixture(autouse=True, scope="module")
def _quiet_mne():
    with mne.use_log_level("error"):
        yield


def _checkpoint(**meta):
    base = dict(
        sfreq=250.0, n_times=32, ch_names=["A", "B", "C"], headmodel_fingerprint="hm1",
        headmodel={"subject": "sample", "spacing": "oct4"}, methods=["MNE", "dSPM"],
        lambda2=1 / 9, loose=0.0, depth=0.8, normalisation="column-max", nave=1, hemi="lh",
        simulation={"params": {"snr": [0.5, 4.0], "timecourse": "realistic"}},
    )  # fmt: skip
    base.update(meta)
    return {"dataset_meta": base, "path": "net.pt"}


def test_data_record_holds_what_the_network_assumes():
    record = data_record(_checkpoint())
    assert record["sfreq"] == 250.0 and record["n_times"] == 32
    assert record["window_s"] == pytest.approx(0.128) and record["hemi"] == "lh"
    assert record["snr"] == [0.5, 4.0] and record["timecourse"] == "realistic"
    assert record["methods"] == ["MNE", "dSPM"] and record["nave"] == 1


def test_every_difference_is_named_in_one_error():
    ckpt = _checkpoint()
    with pytest.raises(IncompatibleDataError) as info:
        check_recording_compatible(
            ckpt, sfreq=600.0, n_times=20, ch_names=["A", "B"], bads=["B"], nave=6, hemi="rh",
            inverse={"methods": ["MNE", "sLORETA"], "lambda2": 1.0, "normalisation": "none"},
            headmodel={"fingerprint": "hm2"}, resample=False, source="rec-ave.fif",
        )  # fmt: skip
    msg = str(info.value)
    assert msg.startswith("Refusing to apply 'net.pt' to rec-ave.fif:")
    for part in (
        "sampling rate: 600 Hz (data) != 250 Hz (network)",
        "length: 20 samples (33 ms) at 600 Hz in the data but the network's window is 32 "
        "samples (128 ms)",
        "head model: hm2 (data) != hm1 (network, sample)",
        "channels: 1 channel(s) of the network's head model are not in the data: ['C']",
        "bads: 1 channel(s) of the network's head model are marked bad in the data: ['B']",
        "methods: ['MNE', 'sLORETA'] (asked) != ['MNE', 'dSPM'] (network)",
        "lambda2: 1.0 (asked) != 0.1111111111111111 (network)",
        "normalisation: 'none' (asked) != 'column-max' (network)",
        "hemi: 'rh' (data) != 'lh' (network)",
        "nave: 6 (data) != 1 (network)",
    ):
        assert part in msg, part
    # the length counts after resampling: 40 samples at 600 Hz are 17 at 250 Hz
    with pytest.raises(IncompatibleDataError, match="length: 17 samples"):
        check_recording_compatible(ckpt, sfreq=600.0, n_times=40, ch_names=["A", "B", "C"])


def test_adapted_differences_are_reported_not_refused():
    ckpt = _checkpoint()
    report = check_recording_compatible(
        ckpt, sfreq=600.0, n_times=600, ch_names=["A", "B", "C", "D"], bads=["D"], nave=3,
        headmodel={"fingerprint": "hm2", "mapping": "mni", "description": "MNI mapping"},
    )  # fmt: skip
    assert report.refused == []
    assert report.adapted[0].endswith("the data are resampled to 250 Hz")
    assert "head model: hm2 (data) != hm1 (network, sample): MNI mapping" in report.adapted[1]
    assert report.adapted[2].startswith("nave: 3 (data) != 1 (network)")
    # the data's own head model decides which channels are needed
    check_recording_compatible(ckpt, sfreq=250.0, n_times=32, ch_names=["X"],
                               needed_channels=["X"])  # fmt: skip


def test_left_hemisphere_network_refuses_right_hemisphere_data():
    ckpt = _checkpoint(hemi="lh")
    with pytest.raises(IncompatibleDataError, match="hemi: 'rh' \\(data\\) != 'lh' \\(network\\)"):
        check_recording_compatible(ckpt, sfreq=250.0, n_times=64, ch_names=["A", "B", "C"],
                                   hemi="rh")  # fmt: skip
    # example sets: the sampling rate is compared too (a 250 Hz network on 600 Hz data)
    with pytest.raises(IncompatibleDataError, match="sfreq: 250.0"):
        check_checkpoint_compatible(ckpt, {"sfreq": 600.0, "n_times": 32})


def test_windows_cover_the_recording_and_stitch_back():
    starts = window_starts(100, 32, 0.5)
    assert starts[0] == 0 and starts[-1] == 100 - 32 and np.all(np.diff(starts) <= 16)
    assert list(window_starts(32, 32, 0.5)) == [0]
    with pytest.raises(ValueError, match="fewer than the network's window of 32"):
        window_starts(20, 32)
    maps = np.full((len(starts), 5, 32), 0.25)
    np.testing.assert_allclose(stitch(maps, starts, 100), 0.25)
    ramp = np.arange(100.0)[None, :].repeat(5, axis=0)
    cut = np.stack([ramp[:, s : s + 32] for s in starts])
    np.testing.assert_allclose(stitch(cut, starts, 100), ramp)  # overlapping copies agree
    images = np.random.default_rng(0).standard_normal((2, 5, 100))
    windows = cut_windows(images, starts, 32, "column-max")
    assert windows.shape == (len(starts), 2, 5, 32)
    np.testing.assert_allclose(np.abs(windows).max(axis=2), 1.0, rtol=1e-6)
    glob = cut_windows(images, starts, 32, "global-max")
    np.testing.assert_allclose(np.abs(glob).max(axis=(2, 3)), 1.0, rtol=1e-6)


# --------------------------------------------------------------------------- the whole path
def _tiny_network(hm, out, *, hemi="both"):
    from napari_meg_unet.dataset import make_splits
    from napari_meg_unet.train import train

    sets = make_splits(hm, design="multi", n_train=8, n_val=4, n_test=4, seed=1,
                       out=out / "sets", n_dipoles=1, sfreq=200.0, n_times=24,
                       timecourse="realistic", hemi=hemi, verbose=False)  # fmt: skip
    train(model="mesh", preset="cpu", mesh=hm, train=sets["train"], val=sets["val"],
          out_dir=out / "run", epochs=1, batch_size=4, device="cpu", root_features=4)  # fmt: skip
    return out / "run" / "best.pt", sets


@pytest.fixture(scope="module")
def sample_net(sample_hm, tmp_path_factory):
    return _tiny_network(sample_hm, tmp_path_factory.mktemp("sample-net"))


@pytest.mark.slow
def test_recording_to_trained_network_to_source_estimates(sample_hm, sample_net, shared_data):
    from napari_meg_unet.inverse import inverse_stack
    from napari_meg_unet.recordings import read_segments
    from napari_meg_unet.train import PROBABILITY_UNIT, predict, predict_recording

    ckpt, _ = sample_net
    ave = shared_data / "sample" / "MEG" / "test-ave.fif.gz"
    preds = predict_recording(ckpt, ave, headmodel=sample_hm)
    names = ["Left Auditory", "Right Auditory", "Left visual", "Right visual"]
    assert [(p.name, p.nave) for p in preds] == list(zip(names, [3, 6, 6, 6], strict=True))
    for p in preds:
        stc = p.stc
        assert isinstance(stc, mne.SourceEstimate) and stc.subject == "sample"
        assert stc.tstep == pytest.approx(1 / 200) and stc.tmin == pytest.approx(-0.2, abs=5e-3)
        for a, b in zip(stc.vertices, sample_hm.vertno, strict=True):
            np.testing.assert_array_equal(a, b)
        assert stc.data.shape == (sample_hm.n_sources, 140)
        assert 0 <= stc.data.min() and stc.data.max() <= 1 and p.unit == PROBABILITY_UNIT
        assert any("resampled to 200 Hz" in n for n in p.notes)
        assert "noise covariance: whitener rank 302 (the operator's noise covariance)" in p.notes
        assert any(n.startswith(f"nave: {p.nave} (data) != 1 (network)") for n in p.notes)
    # a recording exactly one window long: the same as predicting its input stack
    seg = read_segments(ave, condition="Right Auditory")[0].resampled(200.0)
    seg.inst.crop(0.0, 23 / 200.0, include_tmax=True)
    assert seg.n_times == 24
    (one,) = predict_recording(ckpt, [seg], headmodel=sample_hm)
    stack = inverse_stack(sample_hm, seg.get_data(sample_hm.ch_names), hemi="both",
                          ch_names=sample_hm.ch_names)  # fmt: skip
    np.testing.assert_allclose(one.stc.data, predict(ckpt, stack, device="cpu")[0], atol=1e-6)


@pytest.mark.slow
def test_bad_recordings_are_refused_naming_both_values(sample_hm, sample_net, shared_data):
    from napari_meg_unet.recordings import read_segments
    from napari_meg_unet.train import predict_recording

    ckpt, _ = sample_net
    ave = shared_data / "sample" / "MEG" / "test-ave.fif.gz"
    short = read_segments(ave, condition="Left Auditory", tmin=0.0, tmax=0.05)
    with pytest.raises(IncompatibleDataError, match="window is 24 samples \\(120 ms\\)"):
        predict_recording(ckpt, short, headmodel=sample_hm)
    with pytest.raises(IncompatibleDataError,
                       match="sampling rate: 600.615 Hz \\(data\\) != 200 Hz \\(network\\)"):
        predict_recording(ckpt, ave, headmodel=sample_hm, resample=False)
    with pytest.raises(IncompatibleDataError, match="hemi: 'rh' \\(data\\) != 'both'"):
        predict_recording(ckpt, ave, headmodel=sample_hm, hemi="rh")
    bad = read_segments(ave, condition="Left visual")
    bad[0].inst.info["bads"] = [sample_hm.ch_names[0]]
    with pytest.raises(IncompatibleDataError, match="marked bad in the data"):
        predict_recording(ckpt, bad, headmodel=sample_hm)


@pytest.mark.slow
def test_predict_cli_writes_one_source_estimate_per_condition(
    sample_hm, sample_net, shared_data, tmp_path, capsys
):
    from napari_meg_unet.cli import main

    ckpt, _ = sample_net
    sample_hm.save(tmp_path / "hm")
    out = tmp_path / "pred"
    args = ["predict", "--data", str(shared_data / "sample/MEG/test-ave.fif.gz"),
            "--checkpoint", str(ckpt), "--headmodel", str(tmp_path / "hm"), "--out", str(out),
            "--device", "cpu", "--no-progress", "--npy"]  # fmt: skip
    assert main(args) == 0
    stdout = capsys.readouterr().out
    assert "values: probability (0 to 1) of an active source" in stdout
    assert "Right Auditory: nave 6" in stdout and "resampled to 200 Hz" in stdout
    meta = json.loads((out / "meta.json").read_text())
    assert [c["name"] for c in meta["conditions"]] == ["Left Auditory", "Right Auditory",
                                                      "Left visual", "Right visual"]  # fmt: skip
    stc = mne.read_source_estimate(out / "Right_Auditory")
    assert stc.tstep == pytest.approx(1 / 200) and stc.data.shape == (sample_hm.n_sources, 140)
    np.testing.assert_allclose(np.load(out / "Right_Auditory.npy"), stc.data, atol=1e-6)
    short = [*args[:-1], "--overwrite", "--tmin", "0", "--tmax", "0.05"]
    assert main(short) == 2
    assert "window is 24 samples" in capsys.readouterr().err


@pytest.mark.slow
def test_template_network_on_another_subject_is_mapped(template_hm, sample_hm, shared_data,
                                                       tmp_path):  # fmt: skip
    from napari_meg_unet.configs import RecordingConfig
    from napari_meg_unet.train import predict_recording

    ckpt, _ = _tiny_network(template_hm, tmp_path, hemi="rh")
    ave = shared_data / "sample" / "MEG" / "test-ave.fif.gz"
    right = RecordingConfig(condition="Right Auditory")
    (pred,) = predict_recording(ckpt, ave, headmodel=sample_hm, recording=right)
    assert any("MNI mapping of 'sample'" in n for n in pred.notes)
    assert any("the lh sources are 0" in n for n in pred.notes)
    n_lh = len(sample_hm.vertno[0])
    assert not pred.stc.data[:n_lh].any() and pred.stc.data[n_lh:].max() > 0
    assert pred.stc.subject == "sample"
    # without a head model, the template is coregistered to the recording's digitisation
    (coreg,) = predict_recording(ckpt, ave, recording=right)
    assert any("template coregistered to the recording" in n for n in coreg.notes)
    assert coreg.stc.subject == "fsaverage5" and len(coreg.stc.vertices[1]) == 642
    # a network of one subject is not applied to another subject's head model
    sample_ckpt, _ = _tiny_network(sample_hm, tmp_path / "s", hemi="rh")
    with pytest.raises(IncompatibleDataError, match="applies to its own head model only"):
        predict_recording(sample_ckpt, ave, headmodel=template_hm)


def test_gui_check_refuses_another_hemisphere_and_sampling_rate(tmp_path):
    """The Predict widget's check (Qt-free): a lh network on rh simulated data is refused."""
    from types import SimpleNamespace

    from napari_meg_unet._qt._checks import checkpoint_report
    from napari_meg_unet._qt._sensors import SensorData
    from napari_meg_unet.checkpoint import CHECKPOINT_FORMAT, save_checkpoint

    ckpt = _checkpoint(hemi="lh")
    ckpt.update(format=CHECKPOINT_FORMAT, format_version=1, kind="best", model_name="mesh",
                model_config={}, model={}, epoch=1)  # fmt: skip
    path = save_checkpoint(tmp_path / "net.pt", {k: v for k, v in ckpt.items() if k != "path"})
    hm = SimpleNamespace(fingerprint="hm1", ch_names=["A", "B", "C"])
    sim = SensorData(data=np.zeros((2, 3, 32)), ch_names=["A", "B", "C"], naves=[1, 1],
                     sfreq=250.0, tmin=0.0, labels=["0", "1"], hemi="rh",
                     simulation=object())  # fmt: skip
    lies_in_rh = "trained on lh sources but the simulation's sources lie in rh"
    with pytest.raises(IncompatibleDataError, match=lies_in_rh):
        checkpoint_report(path, hm, sim)
    sim.hemi, sim.sfreq = "lh", 600.0
    with pytest.raises(IncompatibleDataError, match="trained at 250 Hz but the data are"):
        checkpoint_report(path, hm, sim)
    sim.sfreq = 250.0
    assert checkpoint_report(path, hm, sim)[0]["dataset_meta"]["hemi"] == "lh"


def test_shipped_pretrained_network_records_its_data():
    from napari_meg_unet.checkpoint import load_checkpoint
    from napari_meg_unet.train import pretrained_checkpoint

    path = pretrained_checkpoint()
    assert path.stat().st_size < 2_000_000  # package data: a few hundred kB
    ckpt = load_checkpoint(path)
    record = data_record(ckpt)
    assert record["headmodel"]["subject"] == "fsaverage5" and record["hemi"] == "both"
    assert (record["sfreq"], record["n_times"]) == (150.0, 32)
    assert record["methods"] == ["MNE", "dSPM", "sLORETA"] and record["off_grid"]
    assert "optimizer" not in ckpt and ckpt["model_name"] == "mesh"


@pytest.mark.slow
def test_pretrained_network_on_the_sample_recording(sample_hm, shared_data, tmp_path, capsys):
    from napari_meg_unet.cli import main

    sample_hm.save(tmp_path / "hm")
    out = tmp_path / "pred"
    assert main(["predict", "--data", str(shared_data / "sample/MEG/test-ave.fif.gz"),
                 "--checkpoint", "pretrained", "--headmodel", str(tmp_path / "hm"),
                 "--condition", "Right Auditory", "--out", str(out), "--device", "cpu",
                 "--format", "h5", "--no-progress"]) == 0  # fmt: skip
    stdout = capsys.readouterr().out
    assert "MNI mapping of 'sample'" in stdout and "resampled to 150 Hz" in stdout
    # h5 keeps the subject (a .stc file does not store it)
    stc = mne.read_source_estimate(out / "Right_Auditory-stc.h5")
    assert stc.subject == "sample" and stc.tstep == pytest.approx(1 / 150)
    assert 0 <= stc.data.min() and stc.data.max() <= 1
