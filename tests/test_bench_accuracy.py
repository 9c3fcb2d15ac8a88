"""``bench accuracy``: presets, targets, and the ``small`` preset end to end on a tiny override."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_meg_unet.bench import accuracy
from napari_meg_unet.bench.accuracy import (
    AccuracyPreset,
    compute_targets,
    derive_seed,
    get_preset,
)
from napari_meg_unet.cli import main

pytestmark = pytest.mark.slow

#: The small preset shrunk to seconds: on-grid (no dense forward model), one mesh network.
TINY = dict(n_train=32, n_val=16, n_test=24, epochs=1, off_grid=False,
            networks=(("mesh", "small"),))  # fmt: skip


def _agg(mean, half_width=1.0):
    return {"mean": mean, "ci_low": mean - half_width, "ci_high": mean + half_width}


def _rows(*entries):
    """Result rows from ``(estimator, protocol, mean DLE, CI half width)`` tuples."""
    return [
        {"estimator": estimator, "protocol": protocol, "dle_mm": _agg(mean, half_width)}
        for estimator, protocol, mean, half_width in entries
    ]


def test_presets():
    thesis = get_preset("thesis")
    assert (thesis.off_grid, thesis.timecourse, thesis.lambda2) == (False, "thesis", 1 / 9)
    assert (thesis.spacing, thesis.hemi, thesis.modality) == ("ico3", "rh", "meg")
    assert thesis.normalisation == "column-max"
    assert accuracy.INPUT_METHODS == ("MNE", "dSPM", "sLORETA")
    bench = get_preset("benchmark")
    assert bench.off_grid and bench.timecourse == "realistic"
    assert {(c.kind, c.snr) for c in bench.conditions} == {
        (k, s) for k in ("single", "multi") for s in (0.5, 1.0, 3.0)
    }
    assert bench.kinds == ("single", "multi") and bench.multi_dipoles == (2, 5)
    small = get_preset("small")
    assert [(c.kind, c.snr) for c in small.conditions] == [("single", 1.0)]
    assert small.off_grid and small.timecourse == "realistic" and small.kinds == ("single",)
    assert {m for m, _ in small.networks} == {"thesis", "mesh"}
    tiny = get_preset("small", **TINY, patience=None)
    assert isinstance(tiny, AccuracyPreset)
    assert (tiny.n_train, tiny.epochs, tiny.off_grid) == (32, 1, False)
    with pytest.raises(ValueError, match="preset must be one of"):
        get_preset("huge")
    with pytest.raises(ValueError, match="Unknown preset field"):
        get_preset("small", n_trian=3)
    with pytest.raises(ValueError, match="n_train must be an integer >= 1"):
        get_preset("small", n_train=0)
    with pytest.raises(ValueError, match="is unknown"):
        get_preset("small", networks=(("mesh", "thesis"),))


def test_presets_with_peers_and_model_error():
    from napari_meg_unet.configs import PEERS

    assert get_preset("benchmark").peers == PEERS and get_preset("small").peers == ()
    p = get_preset("benchmark-model-error")
    assert p.kinds == ("single", "multi", "extended") and p.peers == PEERS
    names = {c.name for c in p.conditions}
    assert {"extended-snr1", "single-snr1-coreg", "multi-snr0.5-conductor",
            "extended-snr3-pial"} <= names  # fmt: skip
    assert {c.model_error for c in p.conditions} == {None, "coreg", "conductor", "skull", "pial"}
    assert len(names) == 3 + 4 * 3 * 3
    assert "also with model error" in p.describe() and "20 mm patches" in p.describe()
    assert get_preset("small", networks=()).networks == ()  # linear inverses and peers only
    with pytest.raises(ValueError, match="peers must be one of"):
        get_preset("small", peers=("music",))
    with pytest.raises(ValueError, match="model_error must be one of"):
        get_preset("small", conditions=(accuracy.Condition("x", "single", 1.0, "skin"),))
    with pytest.raises(ValueError, match="distinct names"):
        get_preset("small", conditions=(accuracy.Condition("x", "single", 1.0),) * 2)
    # the extended kind simulates patches on the grid
    hm_rows = type("HM", (), {"rows": lambda self, hemi: np.arange(642)})()
    config = p.simulation_config(hm_rows, kind="extended", n=5, snr=1.0, seed=0)
    assert (config.design, config.off_grid, config.extent_mm) == ("extended", False, 20.0)


def test_cli_peer_and_condition_options(bench_accuracy_options, capsys):
    seen = bench_accuracy_options
    rc = main(["bench", "accuracy", "--preset", "benchmark-model-error", "--networks", "none",
               "--peers", "lcmv,rap-music", "--conditions", "single-snr1-coreg,extended-snr1",
               "--peer-events", "7", "--sensor-net-blocks", "9", "--sensor-net-file", "n.pt",
               "--no-progress"])  # fmt: skip
    assert rc == 1 and "stop here" in capsys.readouterr().err
    p = seen["preset"]
    assert p.networks == () and p.peers == ("lcmv", "rap-music") and p.peer_events == 7
    assert p.sensor_blocks == 9 and p.sensor_net_file == "n.pt"
    assert p.peer_events_slow == get_preset("benchmark-model-error").peer_events_slow
    assert [c.name for c in p.conditions] == ["single-snr1-coreg", "extended-snr1"]
    rc = main(["bench", "accuracy", "--preset", "small", "--conditions", "nope", "--no-progress"])
    assert rc == 2 and "not conditions of preset" in capsys.readouterr().err


def test_derive_seed():
    a = derive_seed(0, "train", "single", "meg")
    assert a == derive_seed(0, "train", "single", "meg")
    others = {derive_seed(0, "val", "single", "meg"), derive_seed(0, "test", "single-snr1", "meg"),
              derive_seed(1, "train", "single", "meg")}  # fmt: skip
    assert a not in others and len(others) == 3


def test_compute_targets():
    single = _rows(("MNE", "samples", 40.0, 1), ("dSPM", "samples", 30.0, 1),
                   ("dSPM", "window", 17.0, 0.5), ("sLORETA", "window", 19.0, 0.5),
                   ("mesh U-Net", "window", 9.0, 0.5), ("thesis U-Net", "window", 14.0, 0.5))
    multi = _rows(("dSPM", "samples", 35.0, 1), ("dSPM", "window", 25.0, 1),
                  ("mesh U-Net", "window", 18.0, 1), ("thesis U-Net", "window", 20.0, 1))
    conditions = {"single-snr1": {"kind": "single", "snr": 1.0, "results": single},
                  "multi-snr1": {"kind": "multi", "snr": 1.0, "results": multi}}  # fmt: skip
    t = compute_targets(conditions, ["mesh U-Net", "thesis U-Net"])
    assert t["at_snr1"] == {k: t[k] for k in t["at_snr1"]}  # every condition is at SNR 1
    e = t["per_condition"]["single-snr1"]
    assert e["best_network"] == "mesh U-Net" and e["best_linear_samples"] == "dSPM"
    assert e["ratio_vs_linear_samples"] == pytest.approx(9 / 30)
    assert e["ratio_vs_linear_window"] == pytest.approx(9 / 17)
    assert t["per_sample_half"] is True  # 9 <= 15
    assert t["window_better_ci"] is True  # 9.5 < 16.5
    assert t["multi_0.7"] is False  # 18 / 25 = 0.72
    assert t["mesh_0.8_thesis"] is False  # multi: 18 / 20 = 0.9
    assert t["per_condition"]["single-snr1"]["ratio_mesh_vs_thesis"] == pytest.approx(9 / 14)
    # overlapping CIs fail the window target even with a lower mean
    single[-2]["dle_mm"] = _agg(16.0, 1.0)
    single[-1]["dle_mm"] = _agg(16.5, 1.0)
    t = compute_targets({"s": {"kind": "single", "results": single}},
                        ["mesh U-Net", "thesis U-Net"])  # fmt: skip
    assert t["window_better_ci"] is False and t["per_sample_half"] is False
    assert t["multi_0.7"] is None  # no multi-dipole condition
    t = compute_targets({"s": {"kind": "single", "results": single[:-1]}}, ["mesh U-Net"])
    assert t["mesh_0.8_thesis"] is None and t["at_snr1"] is None  # no SNR recorded
    # a failing SNR-3 condition fails "every condition" but not the targets at SNR 1
    good = _rows(("dSPM", "samples", 30.0, 1), ("dSPM", "window", 17.0, 0.5),
                 ("mesh U-Net", "window", 9.0, 0.5))
    bad = _rows(("sLORETA", "samples", 25.0, 1), ("sLORETA", "window", 7.0, 0.5),
                ("mesh U-Net", "window", 9.0, 0.5))
    t = compute_targets({"single-snr1": {"kind": "single", "snr": 1.0, "results": good},
                         "single-snr3": {"kind": "single", "snr": 3.0, "results": bad}},
                        ["mesh U-Net"])  # fmt: skip
    assert t["window_better_ci"] is False and t["at_snr1"]["window_better_ci"] is True
    assert t["per_condition"]["single-snr3"]["snr"] == 3.0


def _peer_rows(*entries):
    """Peer result rows (they carry the peer's name) from ``(label, mean DLE, CI half width)``."""
    rows = _rows(*((label, "window", mean, half) for label, mean, half in entries))
    for row in rows:
        row["peer"] = row["estimator"]
    return rows


def test_compute_targets_against_the_peers():
    nets = ["mesh U-Net"]
    single = _rows(("dSPM", "window", 17.0, 0.5), ("mesh U-Net", "window", 7.0, 0.4)) + _peer_rows(
        ("dipole fit (BEM, epoch pattern)", 3.5, 1.5), ("RAP-MUSIC (n given)", 7.8, 1.5),
        ("mesh U-Net + dipole fit", 1.3, 0.2),
    )  # fmt: skip
    multi = _rows(("dSPM", "window", 35.0, 1), ("mesh U-Net", "window", 20.0, 1)) + _peer_rows(
        ("RAP-MUSIC (n given)", 15.4, 2.0), ("mesh U-Net + dipole fit", 11.0, 1.0),
    )  # fmt: skip
    coreg = _rows(("mesh U-Net", "window", 7.9, 0.5)) + _peer_rows(
        ("dipole fit (BEM, epoch pattern)", 5.7, 1.0), ("mesh U-Net + dipole fit", 5.8, 0.7),
    )  # fmt: skip
    conditions = {
        "single-snr1": {"kind": "single", "snr": 1.0, "results": single},
        "multi-snr1": {"kind": "multi", "snr": 1.0, "results": multi},
        "single-snr1-coreg": {"kind": "single", "snr": 1.0, "results": coreg,
                              "model_error": {"name": "coreg"}},
    }  # fmt: skip
    t = compute_targets(conditions, nets)
    e = t["per_condition"]["single-snr1"]
    assert e["best_learned"] == "mesh U-Net + dipole fit"  # a hybrid counts as learned
    assert e["best_peer"] == "dipole fit (BEM, epoch pattern)"  # not the hybrid
    assert e["ratio_learned_vs_peer"] == pytest.approx(1.3 / 3.5)
    assert e["ratio_network_vs_peer"] == pytest.approx(7.0 / 3.5)
    assert t["single_learned_le_peer"] is True and t["single_network_1.25_peer"] is False
    m = t["per_condition"]["multi-snr1"]
    assert m["ratio_learned_vs_peer"] == pytest.approx(11 / 15.4)
    assert m["learned_peer_ci_separated"] and t["multi_learned_0.8_peer_ci"] is True
    # model error: the BEM fit's 5.7 beats the hybrid's 5.8; the coreg condition is not
    # counted in the single-dipole targets
    assert t["per_condition"]["single-snr1-coreg"]["learned_lowest"] is False
    assert t["model_error_learned_lowest"] is False
    coreg[-1]["dle_mm"] = _agg(5.0, 0.7)
    t = compute_targets(conditions, nets)
    assert t["model_error_learned_lowest"] is True and t["single_learned_le_peer"] is True
    # the network's own centre head is the network alone; the centre of mass is not
    single.append(_peer_rows(("mesh U-Net + centre of mass", 4.0, 0.3))[0])
    assert compute_targets(conditions, nets)["single_network_1.25_peer"] is False
    single.append(_peer_rows(("mesh U-Net + centre head", 4.2, 0.3))[0])
    e = compute_targets(conditions, nets)["per_condition"]["single-snr1"]
    assert e["best_network_alone"] == "mesh U-Net + centre head"
    assert e["ratio_network_vs_peer"] == pytest.approx(4.2 / 3.5)
    assert compute_targets(conditions, nets)["single_network_1.25_peer"] is True
    del single[-2:]
    # overlapping CIs fail the multi-dipole target
    multi[-1]["dle_mm"] = _agg(12.0, 2.0)
    assert compute_targets(conditions, nets)["multi_learned_0.8_peer_ci"] is False
    # without peers these targets do not apply
    t = compute_targets({"s": {"kind": "single", "results": single[:2]}}, nets)
    assert t["single_learned_le_peer"] is None and t["model_error_learned_lowest"] is None
    from napari_meg_unet.accuracy.table import _targets_section

    text = "\n".join(_targets_section(compute_targets(conditions, nets)))
    assert "| best network or hybrid DLE <= best peer DLE (single dipoles, no model error) " \
        "| yes | yes |" in text
    assert ("| single-snr1-coreg | mesh U-Net + dipole fit 5.0 "
            "| dipole fit (BEM, epoch pattern) 5.7 | 0.88 | no | 1.39 | yes |") in text


@pytest.fixture(scope="module")
def tiny_run(template_hm, template_hm_megeeg, tmp_path_factory):
    """The small preset on a tiny override with the stability experiments, saved to a folder."""
    result = accuracy.bench_accuracy("small", seed=3, n_boot=200, command="pytest",
                                     stability=True, **TINY)  # fmt: skip
    out = tmp_path_factory.mktemp("acc") / "report"
    files = result.save(out)
    return result, out, files


def test_small_preset_tiny_outputs(tiny_run, template_hm):
    result, out, files = tiny_run
    s = result.summary
    assert s["preset"] == "small" and s["command"] == "pytest"
    assert s["machine"]["cores"] >= 1
    cond = s["conditions"]["single-snr1"]
    assert cond["n_events"] == 24
    estimators = [(r["estimator"], r["protocol"]) for r in cond["results"]]
    for method in ("MNE", "dSPM", "sLORETA", "eLORETA"):
        assert (method, "window") in estimators and (method, "samples") in estimators
    assert ("mesh U-Net", "window") in estimators
    for row in cond["results"]:
        dle = row["dle_mm"]
        assert dle["ci_low"] <= dle["mean"] <= dle["ci_high"] and dle["n_events"] == 24
        assert (row["auc"] is None) == (row["protocol"] == "samples")
    # the three splits were checked disjoint; on-grid simulations have no grid floor
    assert set(cond["disjoint_check"]) == {"train", "val", "test"}
    assert cond["grid_floor_mm"]["mean"] == 0.0
    (net,) = s["networks"].values()
    assert net["model"] == "mesh" and net["epochs_done"] == 1 and net["n_parameters"] > 0
    assert net["train_samples_per_s"] > 0 and net["val_reference_dle_mm"] > 0
    assert len(net["history"]) == 1
    assert net["batch_loss"]["epoch"][-1] == 1.0 and len(net["batch_loss"]["loss"]) == 2
    assert (net["time_to_target_s"] is None) == (net["history"][0]["dle_mm"]
                                                 >= net["val_reference_dle_mm"])  # fmt: skip
    assert set(s["targets"]) >= {"per_sample_half", "window_better_ci", "multi_0.7"}
    assert s["targets"]["multi_0.7"] is None and s["targets"]["mesh_0.8_thesis"] is None
    # files: JSON equals the summary, markdown table, plots, per-vertex arrays
    saved = json.loads((out / "results.json").read_text())
    assert saved["conditions"] == result.to_dict()["conditions"]
    md = (out / "results.md").read_text()
    assert "| mesh U-Net | window |" in md and "| dSPM | samples |" in md
    assert "Grid floor" in md and "### Targets" in md
    for name in ("dle_kde_single-snr1.png", "training_curves.png", "example_single-snr1.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    vertex = np.load(out / "per_vertex" / "single-snr1__mesh-U-Net-window.npy")
    assert vertex.shape == (len(template_hm.rows("rh")),)
    assert np.isfinite(vertex).sum() == 24  # a sweep: 24 distinct true rows
    assert len(files["per_vertex"]) == 9
    with pytest.raises(FileExistsError, match="overwrite"):
        result.save(out)


def test_stability_experiments(tiny_run):
    result, out, _ = tiny_run
    stab = result.summary["stability"]
    assert stab["network"] == "mesh U-Net" and stab["condition"] == "single-snr1"
    assert set(stab["networks"]) == {"single-mesh-small-lambda2-1", "single-mesh-small-meg+eeg"}
    assert stab["networks"]["single-mesh-small-lambda2-1"]["lambda2"] == 1.0
    combos = {(r["estimator"], r["train_lambda2"], r["test_lambda2"]) for r in stab["lambda2"]}
    lams = (1 / 9, 1.0)
    assert combos == {("mesh U-Net", a, b) for a in lams for b in lams} | {
        ("dSPM", None, b) for b in lams
    }
    # the network trained and tested at 1/9 is the benchmark's own network on the same events
    main_row = accuracy.find_row(result.summary["conditions"]["single-snr1"]["results"],
                                 "mesh U-Net", "window")  # fmt: skip
    same = next(r for r in stab["lambda2"]
                if r["estimator"] == "mesh U-Net" and r["train_lambda2"] == r["test_lambda2"]
                == 1 / 9)  # fmt: skip
    assert same["dle_mm"]["mean"] == pytest.approx(main_row["dle_mm"]["mean"], rel=1e-6)
    multi = stab["single_to_multi"]
    assert multi["condition"] == "multi-snr1"
    names = [(r["estimator"], r["protocol"]) for r in multi["results"]]
    assert names[0] == ("mesh U-Net (trained on single dipoles)", "window")
    assert ("dSPM", "samples") in names and len(names) == 9
    assert all(r["dle_mm"]["n_events"] == 24 for r in multi["results"])
    modality = stab["modality"]
    assert {r["estimator"] for r in modality["meg+eeg"]} == {"dSPM", "mesh U-Net"}
    assert {r["estimator"] for r in modality["meg"]} == {"dSPM", "mesh U-Net"}
    assert modality["headmodel_meg+eeg"]["n_channels"] > 306
    md = (out / "results.md").read_text()
    assert "### Stability" in md and "MEG only versus MEG+EEG" in md


def test_linear_rows_match_evaluate_linear(tiny_run, template_hm):
    """The benchmark scores the linear inverses exactly as evaluation.evaluate_linear does."""
    from napari_meg_unet.evaluation import evaluate_linear
    from napari_meg_unet.simulate import simulate

    result, _, _ = tiny_run
    sim = simulate(template_hm, design="sweep", hemi="rh", off_grid=False,
                   timecourse="realistic", snr=1.0,
                   seed=derive_seed(3, "test", "single-snr1", "meg"))  # fmt: skip
    # the benchmark's test set is the first n_test events of that sweep
    assert sim.fingerprint == result.summary["conditions"]["single-snr1"]["simulation"]
    ev = evaluate_linear(template_hm, sim, methods=["dSPM"], protocols=["window"], n_boot=200,
                         seed=3, verbose=False)  # fmt: skip
    ours = accuracy.find_row(result.summary["conditions"]["single-snr1"]["results"], "dSPM",
                             "window")  # fmt: skip
    ref = ev.scores[("dSPM", "window")]
    assert ours["dle_mm"]["mean"] == pytest.approx(ref["dle_mm"][:24].mean(), rel=1e-12)
    assert ours["sd_mm"]["mean"] == pytest.approx(ref["sd_mm"][:24].mean(), rel=1e-12)
    assert ours["auc"]["mean"] == pytest.approx(ref["auc"][:24].mean(), rel=1e-12)


def test_cli_bench_accuracy_refuses_existing_output(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text("{}")
    code = main(["bench", "accuracy", "--preset", "small", "--out", str(out), "--n-train", "8"])
    assert code == 2
    assert "already exists" in capsys.readouterr().err
    assert (out / "results.json").read_text() == "{}"
    with pytest.raises(SystemExit):
        main(["bench", "accuracy", "--preset", "tiny"])


def test_cli_networks_option_parses_and_refuses_unknown(capsys):
    from napari_meg_unet.cli._bench import _network_list, _network_overrides

    pairs = _network_list("thesis:small, mesh:small")
    assert pairs == (("thesis", "small"), ("mesh", "small"))
    # the thesis preset's stability network (thesis, thesis) follows the smaller size asked for
    assert _network_overrides("thesis", pairs) == {
        "networks": pairs, "stability_network": ("thesis", "small")
    }
    assert _network_overrides("small", None) == {}
    preset = accuracy.get_preset("thesis", **_network_overrides("thesis", pairs))
    assert preset.networks == pairs and not preset.off_grid
    with pytest.raises(SystemExit):
        main(["bench", "accuracy", "--networks", "thesis:huge"])
    assert "thesis:huge" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["bench", "accuracy", "--networks", "mesh:small,mesh:benchmark"])
    assert "name each model once" in capsys.readouterr().err


@pytest.fixture(scope="module")
def peer_run(template_hm):
    """Linear inverses and three peers (no network) on a nominal and two model-error conditions."""
    from napari_meg_unet.accuracy import Condition

    conditions = (Condition("single-snr3", "single", 3.0),
                  Condition("single-snr3-pial", "single", 3.0, model_error="pial"),
                  Condition("extended-snr3-skull", "extended", 3.0, model_error="skull"))
    return accuracy.bench_accuracy(
        "small", seed=1, n_boot=100, networks=(), n_val=8, n_test=6, off_grid=False,
        conditions=conditions,
        peers=("dipole-sphere-peak", "rap-music-fixed", "mxne", "sensor-net"), peer_events=3,
        search_events=2, sensor_blocks=2,
    )  # fmt: skip


def test_peers_and_model_error_in_the_protocol(peer_run, template_hm, tmp_path):
    s = peer_run.summary
    assert s["networks"] == {} and set(s["peers"]["search"]) == {"single", "extended"}
    search = s["peers"]["search"]["single"]["rap-music-fixed"]
    assert len(search["candidates"]) == 5 and search["validation"][0]["n_events"] == 2
    # the budget given reaches the trained peer (and only it)
    assert s["peers"]["search"]["single"]["sensor-net"]["params"]["n_blocks"] == 2
    assert [h["block"] for h in s["peers"]["training"]["single"]["sensor-net"]][-1] == 2
    nominal, pial = s["conditions"]["single-snr3"], s["conditions"]["single-snr3-pial"]
    assert nominal["model_error"] is None and pial["model_error"]["kind"] == "surface"
    assert pial["simulation"] != nominal["simulation"]
    assert nominal["grid_floor_mm"]["mean"] == 0.0 and pial["grid_floor_mm"]["mean"] > 0.5
    # the searches never saw a test set
    for cond in s["conditions"].values():
        for check in cond["peer_search_disjoint"].values():
            assert check["disjoint"] and cond["simulation"] in check["test"]
            assert cond["simulation"] not in check["search"]
    rows = {r["estimator"]: r for r in nominal["results"] if r["protocol"] == "window"}
    fit = rows["dipole fit (sphere, peak GFP)"]
    assert fit["n_events"] == 3 and fit["auc"] is None and fit["seconds_per_event"] > 0
    assert rows["MxNE"]["auc"] is not None and rows["dSPM"]["n_events"] == 6
    skull = s["conditions"]["extended-snr3-skull"]
    assert skull["model_error"]["kind"] == "skull" and skull["model_error"]["draws"] >= 1
    assert "RAP-MUSIC (n fixed)" in {r["estimator"] for r in skull["results"]}
    md = peer_run.table()
    assert "model error: sources simulated on the pial surface" in md
    assert "model error: simulated with the BEM reshaped by 3 mm RMS (at most" in md
    assert "### Peers: hyper-parameters chosen on the validation sets" in md
    assert "| dipole fit (sphere, peak GFP) | window | 3 |" in md
    files = peer_run.save(tmp_path / "report")
    assert (tmp_path / "report" / "results.json").is_file() and files["plots"]


def test_model_error_lines_say_when_a_peer_has_the_true_model():
    from napari_meg_unet.accuracy.table import _model_error_text

    note = "the sphere dipole fit's own model: no model error for that peer"
    sphere = {"kind": "conductor", "true_conductor": "sphere model (MEG)", "note": note}
    assert _model_error_text(sphere) == f", model error: simulated with sphere model (MEG) ({note})"
    skull = {"kind": "skull", "skull_shape_mm": 3.0, "max_displacement_mm": 8.04, "seed": 7}
    assert _model_error_text(skull) == (", model error: simulated with the BEM reshaped by 3 mm "
                                        "RMS (at most 8.0 mm, seed 7)")  # fmt: skip
