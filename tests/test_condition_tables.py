"""benchmarks/condition_tables.py: one table per condition across the recorded runs."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "condition_tables.py"


def _script():
    spec = importlib.util.spec_from_file_location("condition_tables", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _row(estimator, mean, n=30, protocol="window"):
    return {"estimator": estimator, "protocol": protocol, "n_events": n,
            "seconds_per_event": 0.5, "dle_mm": {"mean": mean, "ci_low": mean - 1,
                                                 "ci_high": mean + 1, "n_events": n}}  # fmt: skip


def _run(results, name, rows, *, preset="benchmark", n_test=321):
    folder = results / name
    folder.mkdir(parents=True)
    cond = {"snr": 1.0, "model_error": None, "results": rows}
    (folder / "results.json").write_text(json.dumps({
        "preset": preset, "seed": 0, "config": {"n_test": n_test},
        "conditions": {"multi-snr1": cond}}))  # fmt: skip


def test_tables_merge_runs_on_the_same_test_events(tmp_path, capsys):
    ct = _script()
    dspm = _row("dSPM", 34.8, n=321)
    _run(tmp_path, "a", [dspm, _row("RAP-MUSIC (n given)", 16.0, n=100),
                         _row("dSPM", 40.0, n=321, protocol="samples")])  # fmt: skip
    _run(tmp_path, "b", [dspm, _row("RAP-MUSIC (n given)", 16.0, n=100), _row("hybrid", 11.3)])
    _run(tmp_path, "c", [_row("dSPM", 30.0, n=321), _row("lucky", 1.0)])  # other test events
    _run(tmp_path, "d", [dspm, _row("small", 2.0)], n_test=642)  # another protocol size
    tables = ct.collect(ct._runs(tmp_path))
    table = tables["multi-snr1"]
    assert table["excluded"] == ["c"]
    assert [(e["row"]["estimator"], e["runs"]) for e in table["rows"]] == [
        ("hybrid", ["b"]), ("RAP-MUSIC (n given)", ["a", "b"]), ("dSPM", ["a", "b"])]
    ct.main(["--results", str(tmp_path), "--out", str(tmp_path / "tables.md")])
    text = (tmp_path / "tables.md").read_text()
    assert "## multi-snr1: whitened SNR 1" in text
    assert "| hybrid | 30 | 0.5 | 11.3 [10.3, 12.3] | b |" in text
    assert "Other test events, left out: c." in text and "lucky" not in text
