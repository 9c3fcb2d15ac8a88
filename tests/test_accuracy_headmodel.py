"""The accuracy protocol (``bench accuracy``, ``evaluate``) on any saved head model."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from napari_meg_unet import headmodel as hmod
from napari_meg_unet.bench import accuracy
from napari_meg_unet.cli import main


@pytest.fixture(scope="module")
def sample_hm_dir(shared_data, tmp_path_factory):
    """The sample subject (SSS raw, small-src oct-4 grid, its 1-layer BEM), saved."""
    meg = shared_data / "sample" / "MEG"
    subjects_dir = shared_data / "sample" / "subjects"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # SSS data, non-SSS covariance
        hm = hmod.make_headmodel(
            info=meg / "sample_audvis_trunc_raw_sss.fif",
            trans=meg / "sample_audvis_trunc-trans.fif",
            src=subjects_dir / "sample" / "bem" / "small-src.fif.gz", subjects_dir=subjects_dir,
            subject="sample", noise_cov=meg / "sample_audvis_trunc-cov.fif",
        )  # fmt: skip
    return hm.save(tmp_path_factory.mktemp("hm") / "sample")


def _evaluate(argv, capsys):
    assert main(["evaluate", "--linear-only", "--design", "multi", "--n-events", "8", "--snr",
                 "2", "--methods", "MNE", "dSPM", "--n-boot", "50", "--json", "--no-progress",
                 *argv]) == 0  # fmt: skip
    return json.loads(capsys.readouterr().out)


def _untimed(value):
    """``value`` without its run times (seconds per event differ from run to run)."""
    if isinstance(value, dict):
        return {k: _untimed(v) for k, v in value.items() if k != "seconds_per_event"}
    if isinstance(value, list):
        return [_untimed(v) for v in value]
    return value


@pytest.mark.sample
def test_evaluate_on_a_saved_head_model(sample_hm_dir, template_hm, tmp_path, capsys):
    report = _evaluate(["--headmodel", str(sample_hm_dir), "--on-grid", "--hemi", "lh"], capsys)
    hm = hmod.load_headmodel(sample_hm_dir)
    assert report["headmodel"]["subject"] == "sample"
    assert report["headmodel"]["fingerprint"] == hm.fingerprint
    assert report["headmodel"]["noise_rank"] == 69  # SSS data: MNE's rank='info'
    (res,) = report["results"]
    assert res["n_events"] == 8 and "dSPM" in {r["estimator"] for r in res["results"]}
    # a saved template gives the template's numbers
    template_hm.save(tmp_path / "template")
    saved = _evaluate(["--headmodel", str(tmp_path / "template"), "--on-grid"], capsys)
    built = _evaluate(["--on-grid"], capsys)
    assert saved["headmodel"]["fingerprint"] == built["headmodel"]["fingerprint"]
    assert _untimed(saved["results"]) == _untimed(built["results"])
    assert main(["evaluate", "--linear-only", "--headmodel", str(tmp_path / "none")]) == 2
    assert "head model directory" in capsys.readouterr().err


#: The small preset at seconds' size, one mesh network.
TINY = dict(n_train=32, n_val=16, n_test=24, epochs=1, networks=(("mesh", "small"),))


@pytest.mark.slow
@pytest.mark.sample
def test_bench_accuracy_on_the_sample_subject(sample_hm_dir):
    """Off-grid (the subject's 1026-vertex surface) on its oct-4 grid, with the stability runs."""
    result = accuracy.bench_accuracy("small", headmodel=sample_hm_dir, seed=1, n_boot=100,
                                     stability=True, **TINY)  # fmt: skip
    s = result.summary
    assert s["headmodel"]["subject"] == "sample" and s["config"]["spacing"] == "custom"
    assert "head model of subject sample" in s["description"]
    cond = s["conditions"]["single-snr1"]
    assert cond["n_events"] == 24 and cond["grid_floor_mm"]["mean"] > 0  # off the grid
    assert ("mesh U-Net", "window") in {(r["estimator"], r["protocol"]) for r in cond["results"]}
    assert "skipped" in s["stability"]["modality"]
    assert "MEG+EEG: skipped" in result.table()


@pytest.mark.slow
def test_bench_accuracy_cli_on_a_saved_template(template_hm, tmp_path, capsys):
    template_hm.save(tmp_path / "template")
    argv = ["bench", "accuracy", "--preset", "thesis", "--networks", "mesh:small", "--n-train",
            "32", "--n-val", "16", "--n-test", "24", "--epochs", "1", "--n-boot", "50", "--json",
            "--no-progress"]  # fmt: skip
    assert main([*argv, "--headmodel", str(tmp_path / "template")]) == 0
    saved = json.loads(capsys.readouterr().out)
    assert saved["headmodel"]["fingerprint"] == template_hm.fingerprint
    assert "template ico3" in saved["description"]
    assert main(argv) == 0
    built = json.loads(capsys.readouterr().out)
    rows = {(r["estimator"], r["protocol"]): r["dle_mm"]["mean"]
            for r in saved["conditions"]["single-snr1"]["results"]}  # fmt: skip
    ref = {(r["estimator"], r["protocol"]): r["dle_mm"]["mean"]
           for r in built["conditions"]["single-snr1"]["results"]}  # fmt: skip
    assert rows.keys() == ref.keys()
    for key in [k for k in ref if k[0] in accuracy.LINEAR_METHODS]:
        assert np.isclose(rows[key], ref[key])  # same head model, same seeds
