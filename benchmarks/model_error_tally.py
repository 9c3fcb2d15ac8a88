"""Who wins each model-error condition, across every recorded run on its test events.

Usage::

    python benchmarks/model_error_tally.py [--results benchmarks/results] \
        [--out TALLY.md] [--json TALLY.json]

Reads the same runs as ``condition_tables.py`` (``bench accuracy``, presets
``benchmark`` and ``benchmark-model-error``, the same 321 test events) and,
for every condition with a model error, takes each estimator at the most
events it was scored on (a peer scored on 30 events and again on 321 counts
with 321). Learned estimators are the networks and the estimators built on
them (rows marked ``learned``, the network rows and the hybrids labelled
after them); the others are the peers and the linear inverses. The verdict:

- ``win``: a learned estimator's 95% CI lies below every other estimator's;
- ``lead``: the lowest mean is learned, but the CIs overlap;
- ``loss``: an estimator that is not learned has the lowest mean.

A learned row of a run given a network file (``--sensor-net-file``) is
labelled with that file: networks trained apart are different estimators.
Among rows of one label at the same number of events (e.g. a network trained
in two runs by the same recipe, or a peer re-run) a learned label counts with
its row of highest upper CI bound, another with its row of lowest lower bound:
ties go against the networks, and no training run is picked for its luck on
the test events.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from condition_tables import _n_events, _runs, collect

from napari_meg_unet.accuracy.spec import LINEAR_METHODS
from napari_meg_unet.accuracy.targets import is_learned


def split_learned(rows) -> tuple[list, list]:
    """The rows of networks and of estimators built on them, and the others.

    Networks are the rows that are neither a peer nor a linear inverse; the rest
    as ``accuracy.targets`` counts them (rows marked ``learned``, or labelled
    ``"<network> + ..."`` as the hybrids are).
    """
    networks = {r["estimator"] for r in rows
                if "peer" not in r and r["estimator"] not in LINEAR_METHODS}  # fmt: skip
    learned = [is_learned(r, networks) for r in rows]
    return ([r for r, own in zip(rows, learned, strict=True) if own],
            [r for r, own in zip(rows, learned, strict=True) if not own])  # fmt: skip


def _most_events(rows, learned) -> dict:
    """Each label's row of the most events (ties: see the module docstring)."""
    best = {}
    for r in rows:
        d = r["dle_mm"]
        key = (_n_events(r) or 0, d["ci_high"] if learned else -d["ci_low"])
        label = r["estimator"]
        if label not in best or key > best[label][0]:
            best[label] = (key, r)
    return {label: r for label, (_, r) in best.items()}


def _labelled(entry, files) -> dict:
    """The row of a ``collect`` entry, labelled with its runs' network file if any."""
    row = entry["row"]
    given = sorted({Path(files[run]).name for run in entry["runs"] if files.get(run)})
    if not given or not row.get("learned"):
        return row
    return {**row, "estimator": f"{row['estimator']} [{', '.join(given)}]"}


def tally(tables, files=None) -> dict:
    """``{condition: entry}`` for the model-error conditions of ``collect``'s tables.

    ``files``: ``{run: network file}`` of the runs given one (see the module docstring).
    """
    out = {}
    for name, table in tables.items():
        if not table["model_error"]:
            continue
        rows = [_labelled(e, files or {}) for e in table["rows"]]
        ours, theirs = split_learned(rows)
        learned, others = _most_events(ours, True), _most_events(theirs, False)
        if not learned or not others:
            continue
        first = min(learned.values(), key=lambda r: r["dle_mm"]["mean"])
        tightest = min(learned.values(), key=lambda r: r["dle_mm"]["ci_high"])
        best_other = min(others.values(), key=lambda r: r["dle_mm"]["mean"])
        lowest_bound = min(r["dle_mm"]["ci_low"] for r in others.values())
        if tightest["dle_mm"]["ci_high"] < lowest_bound:
            verdict, learned_row = "win", tightest
        else:
            verdict = "lead" if first["dle_mm"]["mean"] < best_other["dle_mm"]["mean"] else "loss"
            learned_row = first
        out[name] = {"model_error": table["model_error"].get("kind"), "snr": table["snr"],
                     "verdict": verdict, "learned": _summary(learned_row),
                     "other": _summary(best_other)}  # fmt: skip
    return out


def _summary(row) -> dict:
    d = row["dle_mm"]
    return {"estimator": row["estimator"], "n": _n_events(row), "mean": d["mean"],
            "ci_low": d["ci_low"], "ci_high": d["ci_high"]}  # fmt: skip


def markdown(entries) -> str:
    def cell(s):
        return (f"{s['estimator']} ({s['n']}): {s['mean']:.2f} "
                f"[{s['ci_low']:.2f}, {s['ci_high']:.2f}]")  # fmt: skip

    lines = ["| condition | model error | verdict | learned: estimator (events): mean DLE mm "
             "[95% CI] | best other by mean |", "|---|---|---|---|---|"]  # fmt: skip
    lines += [f"| {name} | {e['model_error']} | {e['verdict']} | {cell(e['learned'])} | "
              f"{cell(e['other'])} |" for name, e in entries.items()]  # fmt: skip
    counts = {v: sum(e["verdict"] == v for e in entries.values()) for v in ("win", "lead", "loss")}
    lines += ["", f"{len(entries)} conditions: {counts['win']} win, {counts['lead']} lead, "
              f"{counts['loss']} loss."]  # fmt: skip
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--out", type=Path, default=None, help="also write the markdown here")
    parser.add_argument("--json", type=Path, default=None, help="write the entries as JSON")
    args = parser.parse_args(argv)
    runs = _runs(args.results)
    files = {run: summary.get("config", {}).get("sensor_net_file") for run, summary in runs}
    entries = tally(collect(runs), files)
    text = markdown(entries)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    if args.json is not None:
        args.json.write_text(json.dumps(entries, indent=1) + "\n")


if __name__ == "__main__":
    main()
