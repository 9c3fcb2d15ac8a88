"""Qt-free input containers and tasks behind the dock widgets."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_meg_unet._qt import _inputs, _tasks


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
    with pytest.raises(ValueError, match="SNR"):
        _inputs.SimulateInputs(snr=0.0).validate()


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
    d = _inputs.HeadModelInputs()
    assert d.template_kwargs() == {"spacing": "ico3", "modality": "meg"}
    assert d.noise_cov_for(None) == "adhoc"
    with pytest.raises(ValueError, match="empty-room"):
        _inputs.HeadModelInputs(noise_cov="emptyroom").noise_cov_for(None)
    with pytest.raises(ValueError, match="spacing"):
        _inputs.HeadModelInputs(spacing="ico9").validate()


def test_iter_inverse_matches_kernels(template_hm):
    """The widget's stacks are the core kernels applied to the data, per nave group."""
    from napari_meg_unet.inverse import apply_kernel, compute_kernel, make_inverse
    from napari_meg_unet.progress import run

    rng = np.random.default_rng(0)
    data = rng.standard_normal((3, len(template_hm.ch_names), 6)) * 1e-12
    sdata = _tasks.SensorData(
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
    out = _tasks.write_evaluation(evaluation, tmp_path / "e.csv")
    lines = out.read_text().splitlines()
    assert lines[0] == "estimator,protocol,metric,mean,ci_low,ci_high,n_events"
    assert lines[1] == "MNE,window,dle_mm,5.0,4.0,6.0,3" and len(lines) == 5
    js = json.loads(_tasks.write_evaluation(evaluation, tmp_path / "e.json").read_text())
    assert js["results"][0]["estimator"] == "MNE"
    with pytest.raises(FileExistsError):
        _tasks.write_evaluation(evaluation, tmp_path / "e.csv")
    with pytest.raises(ValueError, match=".json or .csv"):
        _tasks.write_evaluation(evaluation, tmp_path / "e.txt")
