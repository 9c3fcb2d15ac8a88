"""Scoring linear inverses on simulations (evaluation.py), the evaluate CLI and bench core."""

from __future__ import annotations

import json
import re

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
    # estimator, protocol, events scored, seconds per event, then DLE
    row = r"\| sLORETA \| samples \| [0-9]+ \| [^|]+ \| 0.000 \[0.000, 0.000\] \|"
    assert re.search(row, table), table
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


# --------------------------------------------------------------------------- peers
@pytest.fixture(scope="module")
def peer_sims(template_hm):
    common = dict(design="multi", n_events=4, n_dipoles=1, hemi="rh", snr=3.0,
                  timecourse="realistic")  # fmt: skip
    return simulate(template_hm, seed=20, **common), simulate(template_hm, seed=21, **common)


def test_evaluate_peers_scores_points_and_maps(template_hm, peer_sims, monkeypatch):
    from napari_meg_unet import peers

    monkeypatch.setattr(peers.Lcmv, "grid", {"reg": (0.5, 5.0)})
    test, val = peer_sims
    ev = evaluation.evaluate_peers(
        template_hm, test, validation=val, peers=("rap-music", "lcmv", "cmne"), peer_events=3,
        search_events=2, n_boot=50,
    )  # fmt: skip
    music = ev.summary[("RAP-MUSIC (n given)", "window")]
    assert music["n_events"] == 3 and music["seconds_per_event"] > 0 and music["n_empty"] == 0
    assert music["auc"] is None  # not defined for dipoles
    assert music["dle_mm"]["n_events"] == 3
    lcmv = ev.summary[("LCMV", "window")]
    assert lcmv["auc"] is not None and lcmv["params"]["reg"] in (0.5, 5.0)
    search = ev.meta["peers"]["lcmv"]
    assert search["validation"] == [{"simulation": val.fingerprint, "n_events": 2}]
    assert search["disjoint_check"]["test"] == [test.fingerprint]
    assert "training simulation" in ev.meta["peers_skipped"]["cmne"] or (
        "not installed" in ev.meta["peers_skipped"]["cmne"])  # fmt: skip
    table = ev.table()
    assert "| RAP-MUSIC (n given) | window | 3 |" in table and "| s/event |" in table
    # merged with the linear inverses of the same simulation
    linear = evaluation.evaluate_linear(template_hm, test, methods=("dSPM",), n_boot=50)
    merged = linear.merge(ev)
    assert ("dSPM", "window") in merged.summary and ("LCMV", "window") in merged.summary
    assert merged.summary[("dSPM", "window")]["n_events"] == 4
    assert "peers" in merged.to_dict()["meta"]
    with pytest.raises(ValueError, match="used test simulation"):
        evaluation.evaluate_peers(template_hm, test, validation=test, peers=("lcmv",),
                                  search_events=2, peer_events=1, n_boot=10)  # fmt: skip


def test_evaluate_cli_with_peers_and_model_error(tmp_path, capsys, template_hm):
    out = tmp_path / "eval-peers"
    argv = ["evaluate", "--peers", "rap-music,mxne", "--peer-events", "2", "--search-events", "2",
            "--design", "multi", "--n-events", "4", "--snr", "3", "--methods", "dSPM",
            "--protocols", "window", "--n-boot", "50", "--on-grid", "--model-error", "pial",
            "--out", str(out), "--json", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["model_error"]["kind"] == "surface"
    (res,) = report["results"]
    names = {r["estimator"] for r in res["results"]}
    assert names == {"dSPM", "RAP-MUSIC (n given)", "MxNE"}
    assert res["meta"]["peers"]["mxne"]["params"]["alpha"] > 0
    assert res["grid_floor_mm"]["mean"] > 0.5  # pial truth, white grid
    md = (out / "results.md").read_text()
    assert "model error pial" in md and "| MxNE | window | 2 |" in md
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "--peers", "dipole-fit"])
    assert exc.value.code == 2
    assert "expected 'all', 'none' or peers" in capsys.readouterr().err


def test_evaluate_cli_offers_every_model_error():
    from napari_meg_unet.accuracy import MODEL_ERRORS
    from napari_meg_unet.cli import build_parser

    parser = build_parser()
    evaluate = parser._subparsers._group_actions[0].choices["evaluate"]
    (action,) = [a for a in evaluate._actions if a.dest == "model_error"]
    assert tuple(action.choices) == tuple(MODEL_ERRORS)


def test_peer_simulations_repeat_the_test_settings_on_other_events(template_hm, peer_sims):
    test, _ = peer_sims
    val, training = evaluation.peer_simulations(template_hm, test, ("rap-music",), seed=3)
    assert training is None  # no peer to train
    assert val.fingerprint != test.fingerprint
    same = ("design", "hemi", "snr", "n_events", "n_dipoles", "timecourse", "off_grid")
    assert {k: val.meta["params"][k] for k in same} == {k: test.meta["params"][k] for k in same}
    assert not np.allclose(val.data, test.data, rtol=1e-3, atol=0)
    val2, training = evaluation.peer_simulations(template_hm, test, ("lcmv", "sensor-net"), seed=3)
    assert val2.fingerprint == val.fingerprint  # the seed is the caller's and the test's
    assert training is not None and training.fingerprint not in (val.fingerprint,
                                                                 test.fingerprint)  # fmt: skip
