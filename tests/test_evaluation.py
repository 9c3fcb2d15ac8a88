"""Scoring linear inverses on simulations (evaluation.py), the evaluate CLI and bench core."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_meg_unet import evaluation
from napari_meg_unet.cli import main
from napari_meg_unet.simulate import simulate


@pytest.fixture(scope="module")
def clean_sweep(template_hm):
    """Noise-free on-grid thesis sweep of the right hemisphere."""
    return simulate(template_hm, design="sweep", hemi="rh", noise=None, snr=1.0, seed=3)


@pytest.fixture(scope="module")
def clean_eval(template_hm, clean_sweep):
    return evaluation.evaluate_linear(
        template_hm, clean_sweep, methods=("dSPM", "sLORETA"), n_boot=200, seed=0
    )


def test_sloreta_zero_dle_without_noise(clean_eval, clean_sweep):
    # Fixed-orientation sLORETA has zero peak localisation error for noise-free
    # on-grid dipoles (inverse-math.md §4.1): any off-by-one in the row
    # positions or the peak search breaks this.
    scores = clean_eval.scores[("sLORETA", "samples")]
    n_active = sum(np.subtract(*clean_sweep.window(i)[::-1]) for i in range(len(clean_sweep)))
    assert len(scores["dle_mm"]) == n_active
    # A burst sample where the sine is exactly 0 gives an all-zero map, which
    # has no peak (NaN); every other map peaks exactly at the true vertex.
    finite = np.isfinite(scores["dle_mm"])
    assert finite.sum() >= n_active - len(clean_sweep)
    np.testing.assert_array_equal(scores["dle_mm"][finite], 0.0)
    assert clean_eval.summary[("sLORETA", "window")]["dle_mm"]["mean"] == 0.0
    # dSPM is depth-weighted and noise-normalised but not zero-error.
    assert clean_eval.summary[("dSPM", "samples")]["dle_mm"]["mean"] > 1.0


def test_on_grid_floor_is_zero(clean_eval):
    assert clean_eval.grid_floor["mean"] == 0.0


def test_summary_is_per_event(clean_eval, clean_sweep):
    s = clean_eval.summary[("dSPM", "samples")]["dle_mm"]
    assert s["n_events"] == len(clean_sweep)
    assert s["n_maps"] > len(clean_sweep)
    assert s["ci_low"] <= s["mean"] <= s["ci_high"]
    # Window protocol: one map per event, with an AUC; samples protocol: no AUC.
    w = clean_eval.summary[("dSPM", "window")]
    assert w["dle_mm"]["n_maps"] == len(clean_sweep)
    assert 0.5 < w["auc"]["mean"] <= 1.0
    assert clean_eval.summary[("dSPM", "samples")]["auc"] is None


def test_per_vertex_dle_covers_swept_hemisphere(clean_eval, clean_sweep):
    per_vertex = clean_eval.per_vertex_dle[("dSPM", "window")]
    assert per_vertex.shape == (len(clean_sweep.rows),)
    assert np.isfinite(per_vertex).all()  # the sweep visits every vertex
    np.testing.assert_array_equal(clean_eval.per_vertex_dle[("sLORETA", "window")], 0.0)


def test_table_and_json(clean_eval):
    table = clean_eval.table()
    assert "| sLORETA | samples | 0.000 [0.000, 0.000] |" in table
    assert "Grid floor" in table
    payload = json.loads(json.dumps(clean_eval.to_dict()))
    assert {r["estimator"] for r in payload["results"]} == {"dSPM", "sLORETA"}


def test_score_estimates_matches_manual_peak(template_hm, clean_sweep):
    rng = np.random.default_rng(0)
    n_rows, n_times = len(clean_sweep.rows), clean_sweep.data.shape[2]
    est = rng.random((3, n_rows, n_times))
    scores = evaluation.score_estimates(
        est, clean_sweep, template_hm, protocol="window", events=[0, 1, 2]
    )
    positions = template_hm.positions[clean_sweep.rows]
    for i in range(3):
        peak = np.abs(est[i]).mean(axis=1).argmax()
        true = clean_sweep.sources["position"][clean_sweep.event_sources(i)][0]
        assert scores["dle_mm"][i] == pytest.approx(1e3 * np.linalg.norm(positions[peak] - true))


def test_bad_inputs(template_hm, template_hm_megeeg, clean_sweep):
    with pytest.raises(ValueError, match="protocol"):
        evaluation.score_estimates(
            np.zeros((1, len(clean_sweep.rows), 4)), clean_sweep, template_hm, protocol="peak"
        )
    with pytest.raises(ValueError, match="shape"):
        evaluation.score_estimates(np.zeros((2, 5, 4)), clean_sweep, template_hm)
    bad = np.full((1, len(clean_sweep.rows), 4), np.nan)
    with pytest.raises(ValueError, match="NaN"):
        evaluation.score_estimates(bad, clean_sweep, template_hm, events=[0])
    with pytest.raises(ValueError, match="head model"):
        evaluation.evaluate_linear(template_hm_megeeg, clean_sweep, methods=("MNE",))


def test_evaluate_cli(tmp_path, capsys, template_hm):
    out = tmp_path / "eval"
    argv = [
        "evaluate",
        "--linear-only",
        "--design",
        "multi",
        "--n-events",
        "12",
        "--snr",
        "2",
        "--methods",
        "MNE",
        "dSPM",
        "--n-boot",
        "100",
        "--on-grid",
        "--out",
        str(out),
        "--json",
        "--no-progress",
    ]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["command"].startswith("napari-meg-unet evaluate --linear-only")
    (res,) = report["results"]
    assert res["design"] == "multi" and res["n_events"] == 12
    assert (out / "results.md").read_text().count("| dSPM |") == 2
    assert json.loads((out / "results.json").read_text())["lambda2"] == pytest.approx(1 / 9)
    # An existing output folder is refused, and left as it was.
    before = sorted(p.name for p in out.iterdir())
    assert main(argv) == 2
    assert "already exists" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == before
    assert main(["evaluate", "--design", "multi"]) == 2  # networks need bench accuracy


@pytest.mark.slow
def test_bench_core_kernel_comparison(template_hm, clean_sweep):
    from napari_meg_unet.bench.core import _epoch_loop

    for method in ("dSPM", "eLORETA"):
        r = _epoch_loop(template_hm, clean_sweep, method=method, lambda2=1 / 9, n_epochs=4)
        assert r["n_epochs"] == 4
        assert r["max_abs_diff_rel_loop"] < 1e-6
        assert r["max_abs_diff_rel_epochs"] < 1e-6


def test_bench_core_thesis_path_runs(template_hm):
    from napari_meg_unet.bench.core import _thesis_path

    sim = simulate(template_hm, design="multi", n_events=3, n_dipoles=2, seed=1)
    assert _thesis_path(template_hm, sim, methods=("MNE",), lambda2=1 / 9) > 0
