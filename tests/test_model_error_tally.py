"""benchmarks/model_error_tally.py: who wins each model-error condition across the runs."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _script():
    sys.path.insert(0, str(BENCHMARKS))  # it imports condition_tables beside it
    try:
        path = BENCHMARKS / "model_error_tally.py"
        spec = importlib.util.spec_from_file_location("model_error_tally", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCHMARKS))
    return module


def _row(estimator, mean, n=30, half=1.0, **extra):
    return {"estimator": estimator, "protocol": "window", "n_events": n,
            "seconds_per_event": 0.5, "dle_mm": {"mean": mean, "ci_low": mean - half,
                                                 "ci_high": mean + half, "n_events": n},
            **extra}  # fmt: skip


DSPM = _row("dSPM", 30.0, n=321)


def _run(results, name, conditions, network_file=None):
    folder = results / name
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps({
        "preset": "benchmark-model-error", "seed": 0,
        "config": {"n_test": 321, "sensor_net_file": network_file},
        "conditions": {c: {"snr": 1.0, "model_error": error, "results": [DSPM, *rows]}
                       for c, (error, rows) in conditions.items()}}))  # fmt: skip


def test_each_estimator_counts_at_its_most_events_and_verdicts_follow_the_cis(tmp_path, capsys):
    tally = _script()
    coreg, skull = {"kind": "coreg"}, {"kind": "skull"}
    fit = {"peer": "dipole-bem-window"}
    _run(tmp_path, "a", {
        # on 30 events the fit's CI reaches the network's: only 321 events separate them
        "single-snr1-coreg": (coreg, [_row("dipole fit", 6.0, **fit, half=2.0),
                                      _row("net", 4.5, peer="sensor-net", learned=True)]),
        # an older hybrid row: a peer key, no flags, labelled after its network
        "multi-snr1-skull": (skull, [_row("mesh U-Net", 20.0),
                                     _row("mesh U-Net + dipole fit", 12.0, peer="dipole-fit"),
                                     _row("RAP-MUSIC", 13.0, peer="rap-music")]),
        "single-snr3-conductor": (coreg, [_row("sphere fit", 0.4, peer="dipole-sphere-window"),
                                          _row("net", 3.0, peer="sensor-net", learned=True)]),
        "single-snr1": (None, [_row("net", 1.0, peer="sensor-net", learned=True)]),
    })  # fmt: skip
    on_all = [_row("dipole fit", 6.2, n=321, **fit, half=0.4),
              _row("net", 4.6, n=321, peer="sensor-net", learned=True, half=0.2)]
    _run(tmp_path, "b", {"single-snr1-coreg": (coreg, on_all)})
    tally.main(["--results", str(tmp_path), "--json", str(tmp_path / "t.json")])
    entries = json.loads((tmp_path / "t.json").read_text())
    assert set(entries) == {"single-snr1-coreg", "multi-snr1-skull", "single-snr3-conductor"}
    single = entries["single-snr1-coreg"]
    assert single["verdict"] == "win"
    assert (single["learned"]["n"], single["other"]["n"]) == (321, 321)
    assert single["other"]["mean"] == 6.2
    multi = entries["multi-snr1-skull"]
    assert multi["verdict"] == "lead" and multi["learned"]["estimator"] == "mesh U-Net + dipole fit"
    assert entries["single-snr3-conductor"]["verdict"] == "loss"
    assert "3 conditions: 1 win, 1 lead, 1 loss." in capsys.readouterr().out


def test_ties_go_against_the_networks(tmp_path):
    tally = _script()
    error = {"kind": "coreg"}
    # one label run twice on the same events: the network's luckier run would win (4.5 <
    # 4.8), its other run's bound (5.5) and the peer's lower one (4.8) make it a lead
    _run(tmp_path, "a", {"single-snr1-coreg": (error, [
        _row("net", 4.0, peer="sensor-net", learned=True, half=0.5),
        _row("fit", 6.0, peer="dipole-bem-window", half=0.5)])})  # fmt: skip
    _run(tmp_path, "b", {"single-snr1-coreg": (error, [
        _row("net", 4.1, peer="sensor-net", learned=True, half=1.4),
        _row("fit", 6.3, peer="dipole-bem-window", half=1.5)])})  # fmt: skip
    entry = tally.tally(tally.collect(tally._runs(tmp_path)))["single-snr1-coreg"]
    assert entry["verdict"] == "lead"
    assert (entry["learned"]["mean"], entry["other"]["mean"]) == (4.1, 6.3)


def test_networks_given_as_files_are_estimators_of_their_own(tmp_path, capsys):
    tally = _script()
    error = {"kind": "skull"}
    fit = _row("fit", 6.0, peer="dipole-bem-window", half=0.5)
    net = {"peer": "sensor-net", "learned": True}
    # the same label, two networks: the better one's win is not undone by the other's CI
    _run(tmp_path, "a", {"single-snr1-skull": (error, [fit, _row("net", 4.0, **net, half=0.5)])},
         network_file="/somewhere/long.pt")  # fmt: skip
    _run(tmp_path, "b", {"single-snr1-skull": (error, [fit, _row("net", 5.0, **net, half=1.0)])},
         network_file="short.pt")  # fmt: skip
    tally.main(["--results", str(tmp_path), "--json", str(tmp_path / "t.json")])
    entry = json.loads((tmp_path / "t.json").read_text())["single-snr1-skull"]
    assert entry["verdict"] == "win" and entry["learned"]["estimator"] == "net [long.pt]"
