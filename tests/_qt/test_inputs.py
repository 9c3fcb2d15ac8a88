"""Qt-free input containers and tasks behind the dock widgets."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_meg_unet._qt import _export, _inputs, _sensors, _tasks


@pytest.mark.parametrize(
    "text, value",
    [("1/9", 1 / 9), (" 0.111 ", 0.111), ("1e-3", 1e-3), ("2", 2.0), ("3/1000", 0.003)],
)
def test_parse_number(text, value):
    assert _inputs.parse_number(text, name="lambda2") == pytest.approx(value, rel=1e-12)


@pytest.mark.parametrize("text", ["", "abc", "1/0", "-1", "0", "nan", "inf", "1//9"])
def test_parse_number_rejects(text):
    with pytest.raises(ValueError, match="lambda2"):
        _inputs.parse_number(text, name="lambda2")


def test_inverse_inputs():
    d = _inputs.InverseInputs()
    assert d.lambda2_value() == pytest.approx(1 / 9, rel=1e-15)  # not 0.11
    assert d.operator_kwargs() == {"loose": 0.0, "depth": 0.8}
    assert _inputs.InverseInputs(depth="none").depth_value() is None
    assert d.nave_value(7) == 7 and _inputs.InverseInputs(nave="3").nave_value(7) == 3
    with pytest.raises(ValueError, match="at least one"):
        _inputs.InverseInputs(methods=()).validate()
    with pytest.raises(ValueError, match="method must be one of"):
        _inputs.InverseInputs(methods=("LORETA",)).validate()
    with pytest.raises(ValueError, match="tmax"):
        _inputs.InverseInputs(tmin=0.2, tmax=0.1).validate()
    with pytest.raises(ValueError, match="nave"):
        _inputs.InverseInputs(nave="2.5").validate()


def test_simulate_inputs():
    kwargs = _inputs.SimulateInputs(n_dipoles=2, n_dipoles_max=4, min_separation_mm=20).\
        simulate_kwargs()  # fmt: skip
    assert kwargs["n_dipoles"] == (2, 4) and kwargs["min_separation_mm"] == 20.0
    assert kwargs["n_events"] == 8 and kwargs["design"] == "multi"
    sweep = _inputs.SimulateInputs(design="sweep").simulate_kwargs()
    assert sweep["n_repeats"] == 1 and "n_events" not in sweep
    with pytest.raises(ValueError, match="max dipoles"):
        _inputs.SimulateInputs(n_dipoles=3, n_dipoles_max=2).validate()
    with pytest.raises(ValueError, match="(?i)snr"):
        _inputs.SimulateInputs(snr=0.0).validate()


def test_train_inputs_match_the_data(tmp_path, template_hm):
    from napari_meg_unet.simulate import simulate

    sim = simulate(template_hm, design="multi", n_events=2, snr=(0.5, 2.0), off_grid=True,
                   timecourse="realistic", sfreq=300.0, n_times=40, hemi="lh", seed=1,
                   verbose="error")  # fmt: skip
    values = _inputs.data_settings(sim=sim)
    assert values == {"hemi": "lh", "snr": "0.5-2", "off_grid": True, "timecourse": "realistic",
                      "sfreq": "300.0", "n_times": 40}  # fmt: skip
    inputs = _inputs.TrainInputs(out_dir=str(tmp_path), **values)
    kwargs = inputs.splits_kwargs()
    assert kwargs["snr"] == (0.5, 2.0) and kwargs["off_grid"] and kwargs["sfreq"] == 300.0
    assert kwargs["n_times"] == 40 and kwargs["timecourse"] == "realistic"
    assert kwargs["hemi"] == "lh"


def test_train_inputs(tmp_path):
    d = _inputs.TrainInputs(out_dir=str(tmp_path), lr="1/500", epochs=3)
    fit = d.fit_kwargs(resume=False)
    assert fit["lr"] == pytest.approx(0.002) and fit["epochs"] == 3 and fit["overwrite"]
    assert fit["out_dir"] == tmp_path / "run"
    assert _inputs.TrainInputs(out_dir=str(tmp_path)).lr_value() is None
    splits = d.splits_kwargs()
    assert splits["out"] == tmp_path / "data" and splits["lambda2"] == pytest.approx(1 / 9)
    with pytest.raises(ValueError, match="output folder"):
        _inputs.TrainInputs().validate()
    with pytest.raises(ValueError, match="preset"):
        _inputs.TrainInputs(out_dir=str(tmp_path), preset="huge").validate()
    with pytest.raises(ValueError, match="device"):
        _inputs.TrainInputs(out_dir=str(tmp_path), device="cuda:99").validate()
    assert _inputs.available_devices()[:2] == ["auto", "cpu"]


def test_headmodel_inputs():
    from types import SimpleNamespace

    d = _inputs.HeadModelInputs()
    assert d.template_kwargs() == {"spacing": "ico3", "modality": "meg"}
    no_er = SimpleNamespace(emptyroom=None)
    assert _tasks._noise_cov(d, no_er) == ("adhoc", "ad hoc noise covariance (no empty-room "
                                           "recording)")  # fmt: skip
    with pytest.raises(ValueError, match="empty-room"):
        _tasks._noise_cov(_inputs.HeadModelInputs(noise_cov="emptyroom"), no_er)
    with pytest.raises(ValueError, match="spacing"):
        _inputs.HeadModelInputs(spacing="ico9").validate()


def test_inputs_read_their_defaults_from_the_configs():
    from napari_meg_unet.configs import EvaluationConfig, InverseConfig, SimulationConfig

    assert _inputs.InverseInputs().methods == InverseConfig().methods
    assert _inputs.InverseInputs().depth == str(InverseConfig().depth)
    assert _inputs.SimulateInputs().timecourse == SimulationConfig().timecourse
    assert _inputs.EvaluateInputs().seed == EvaluationConfig().seed
    # the widgets' own defaults are declared (with a reason) in one place
    assert _inputs.SimulateInputs().design == _inputs.GUI_DEFAULTS[(SimulationConfig, "design")]
    assert _inputs.spec(SimulationConfig, "snr")["help"].startswith("whitened-space SNR")
    # and the configs check what the widgets send
    with pytest.raises(ValueError, match="n_times"):
        _inputs.TrainInputs(out_dir="x", n_times=5).validate()


def test_iter_inverse_matches_kernels(template_hm):
    """The widget's stacks are the core kernels applied to the data, per nave group."""
    from napari_meg_unet.inverse import apply_kernel, compute_kernel, make_inverse
    from napari_meg_unet.progress import run

    rng = np.random.default_rng(0)
    data = rng.standard_normal((3, len(template_hm.ch_names), 6)) * 1e-12
    sdata = _sensors.SensorData(
        data=data, ch_names=template_hm.ch_names, naves=[1, 4, 1], sfreq=100.0, tmin=0.0,
        labels=["a", "b", "c"], hemi="lh",
    )  # fmt: skip
    inputs = _inputs.InverseInputs(methods=("MNE", "dSPM"))
    result = run(_tasks.iter_inverse(template_hm, sdata, inputs))
    inv = make_inverse(template_hm, loose=0.0, depth=0.8, verbose="error")
    rows = template_hm.rows("lh")
    for i, nave in enumerate([1, 4, 1]):
        kernel = compute_kernel(inv, method="dSPM", lambda2=1 / 9, nave=nave, verbose="error")
        expected = apply_kernel(kernel, data[i])[rows]
        np.testing.assert_allclose(result.stacks["dSPM"][i], expected, rtol=2e-5, atol=1e-6)
    # the data fit (explained variance) does not depend on MNE vs dSPM
    np.testing.assert_allclose(result.explained["MNE"], result.explained["dSPM"])
    assert np.all((result.explained["MNE"] > 0) & (result.explained["MNE"] < 1))
    assert result.params["naves"] == [1, 4, 1] and result.params["lambda2"] == pytest.approx(1 / 9)


def test_write_evaluation(tmp_path):
    from napari_meg_unet.evaluation import Evaluation

    agg = {"mean": 5.0, "ci_low": 4.0, "ci_high": 6.0, "ci": 0.95, "n_events": 3, "n_maps": 3}
    evaluation = Evaluation(
        summary={("MNE", "window"): {"dle_mm": agg, "sd_mm": agg, "oa": agg, "auc": agg}},
        meta={"n_events": 3},
    )
    out = _export.write_evaluation(evaluation, tmp_path / "e.csv")
    lines = out.read_text().splitlines()
    assert lines[0] == "estimator,protocol,metric,mean,ci_low,ci_high,n_events"
    assert lines[1] == "MNE,window,dle_mm,5.0,4.0,6.0,3" and len(lines) == 5
    js = json.loads(_export.write_evaluation(evaluation, tmp_path / "e.json").read_text())
    assert js["results"][0]["estimator"] == "MNE"
    with pytest.raises(FileExistsError):
        _export.write_evaluation(evaluation, tmp_path / "e.csv")
    with pytest.raises(ValueError, match=".json or .csv"):
        _export.write_evaluation(evaluation, tmp_path / "e.txt")


@pytest.fixture(scope="module")
def recording(template_hm, tmp_path_factory):
    """A BIDS recording of 6 simulated events (2 conditions) with an empty-room match."""
    import datetime

    import mne
    import mne_bids

    from napari_meg_unet import bids
    from napari_meg_unet.simulate import simulate

    date = datetime.datetime(2022, 3, 1, 10, tzinfo=datetime.timezone.utc)
    sim = simulate(template_hm, design="multi", n_events=6, n_dipoles=1, hemi="rh", snr=5.0,
                   n_times=40, seed=4, verbose="error")  # fmt: skip
    raw = bids.simulation_to_raw(sim, meas_date=date)
    onsets = raw.annotations.onset + 0.05  # 30 samples into each 40-sample event
    raw.set_annotations(
        mne.Annotations(onsets, np.zeros(6), ["a", "b"] * 3, orig_time=raw.info["meas_date"])
    )
    root = tmp_path_factory.mktemp("bids-inputs") / "ds"
    bp = mne_bids.BIDSPath(subject="01", task="sim", root=root, datatype="meg")
    mne_bids.write_raw_bids(raw, bp, allow_preload=True, format="FIF", verbose=False)
    noise = np.random.default_rng(1).standard_normal((len(sim.info["ch_names"]), 2000)) * 2e-13
    er = mne.io.RawArray(noise, sim.info.copy(), verbose=False)
    er.set_meas_date(date)
    mne_bids.write_raw_bids(
        er, mne_bids.BIDSPath(subject="emptyroom", session="20220301", task="noise", root=root,
                              datatype="meg"),
        allow_preload=True, format="FIF", verbose=False,
    )  # fmt: skip
    (found,) = bids.find_recordings(root)
    return bids.read_recording(found)


def test_sensor_data_from_recording(template_hm, recording):
    avg = _sensors.sensor_data({"recording": recording}, hm=template_hm, tmin=-0.02, tmax=0.01)
    assert avg.labels == ["a", "b"] and avg.naves == [3, 3] and avg.hemi == "both"
    assert avg.data.shape[:2] == (2, len(template_hm.ch_names))
    assert avg.tmin == pytest.approx(-0.02, abs=1 / avg.sfreq)
    single = _sensors.sensor_data(
        {"recording": recording}, hm=template_hm, tmin=-0.02, tmax=0.01, average=False
    )
    assert single.labels == ["a", "b"] * 3 and single.naves == [1] * 6
    # the average of condition "a" is the mean of its epochs
    np.testing.assert_allclose(avg.data[0], single.data[0::2].mean(axis=0), rtol=1e-6)
    with pytest.raises(ValueError, match="neither a simulation nor a recording"):
        _sensors.sensor_data({}, hm=template_hm)


def test_headmodel_from_recording(template_hm, recording):
    """The recording's sensors on the template anatomy, empty-room noise covariance."""
    from napari_meg_unet.progress import run

    inputs = _inputs.HeadModelInputs(source="recording")
    hm, inv, spectrum, description = run(
        _tasks.iter_headmodel_step(inputs, recording=recording)
    ).value
    assert hm.ch_names == [ch for ch in recording.info["ch_names"] if ch in hm.ch_names]
    assert len(hm.ch_names) == len(template_hm.ch_names)
    assert hm.n_sources == template_hm.n_sources
    assert "fsaverage5 template" in description and "empty-room" in description
    assert spectrum["rank"] == len(hm.ch_names) and spectrum["condition_number"] > 1
    # the noise covariance comes from the empty-room data (variance (2e-13)^2 on every
    # channel), not the ad hoc one (which differs between magnetometers and gradiometers)
    np.testing.assert_allclose(np.diag(hm.noise_cov.data), 4e-26, rtol=0.2)


@pytest.mark.sample
def test_headmodel_from_recording_without_anatomy_is_coregistered(shared_data, tmp_path):
    """A BIDS recording with digitisation but no FreeSurfer anatomy: the template is fitted to
    its fiducials and head shape (the sample subject's 146 digitised points)."""
    import mne
    import mne_bids

    from napari_meg_unet import bids
    from napari_meg_unet.progress import run

    raw = mne.io.read_raw_fif(
        shared_data / "sample" / "MEG" / "sample_audvis_trunc_raw_sss.fif", verbose=False
    )
    root = tmp_path / "ds"
    bp = mne_bids.BIDSPath(subject="sample", task="audvis", root=root, datatype="meg")
    mne_bids.write_raw_bids(raw, bp, verbose=False)
    (found,) = bids.find_recordings(root)
    recording = bids.read_recording(found)
    inputs = _inputs.HeadModelInputs(source="recording")
    hm, _, spectrum, description = run(
        _tasks.iter_headmodel_step(inputs, recording=recording)
    ).value
    assert "coregistered to 146 digitised points (fiducials and head shape)" in description
    coreg = hm.provenance["coregistration"]
    assert coreg["n_points"] == 146 and coreg["distance_mm"]["median"] < 6.0
    # Maxwell-filtered data: the inverse uses the SSS rank (MNE's rank='info'), not 306
    assert len(hm.ch_names) == 306 and spectrum["rank"] == 69 == hm.noise_rank["total"]
