"""Markdown tables of the peers' benchmark runs (docs/benchmark.md), from their results.json.

Usage::

    python benchmarks/peers_tables.py benchmarks/results/peers-benchmark-single \
        benchmarks/results/peers-benchmark-multi ...

Prints, for every condition of every report folder, one table: each estimator
(window protocol, and the linear inverses per sample) with the events scored,
the seconds per event and DLE / SD / OA / AUC as mean [95% CI]; then the
hyper-parameters the searches chose.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from napari_meg_unet.accuracy.table import _model_error_text, _params_text, _searched_keys
from napari_meg_unet.metrics import format_aggregate


def _seconds(value) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3g}" if value >= 1e-3 else f"{value:.1e}"


def condition_table(name, cond) -> list:
    lines = [
        f"#### {name}: whitened SNR {cond['snr']:g}{_model_error_text(cond.get('model_error'))}",
        "",
        "| estimator | protocol | n | s/event | DLE (mm) | SD (mm) | OA | AUC |",
        "|---|---|---|---|---|---|---|---|",
    ]
    rows = sorted(cond["results"], key=lambda r: (r["dle_mm"] or {}).get("mean", 1e9))
    for r in rows:
        n = str(r.get("n_events", "n/a")) + (f" ({r['n_empty']} empty)" if r.get("n_empty")
                                              else "")  # fmt: skip
        cells = [format_aggregate(r[k]) for k in ("dle_mm", "sd_mm", "oa", "auc")]
        lines.append(f"| {r['estimator']} | {r['protocol']} | {n} | "
                     f"{_seconds(r.get('seconds_per_event'))} | " + " | ".join(cells) + " |")
    lines += ["", f"Grid floor: {format_aggregate(cond['grid_floor_mm'])} mm.", ""]
    return lines


def search_table(summaries) -> list:
    lines = ["| peer | kind | chosen | mean validation DLE (mm) per candidate |",
             "|---|---|---|---|"]  # fmt: skip
    seen = set()
    for summary in summaries:
        for kind, searches in summary["peers"]["search"].items():
            for name, s in searches.items():
                if (kind, name) in seen or not s["candidates"]:
                    continue
                seen.add((kind, name))
                keys = _searched_keys(s)
                cands = "; ".join(
                    f"{_params_text(c['params'], keys)}: "
                    + ("n/a" if c["dle_mm"] is None else f"{c['dle_mm']:.1f}")
                    + (f" ({c['n_empty']} empty)" if c["n_empty"] else "")
                    for c in s["candidates"]
                )
                lines.append(f"| {name} | {kind} | {_params_text(s['params'], keys)} | {cands} |")
    return lines


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    args = parser.parse_args(argv)
    summaries = [json.loads((f / "results.json").read_text()) for f in args.folders]
    out = []
    for summary in summaries:
        total = summary["timings"]["total_s"]
        out += [f"Command: `{summary['command']}`; total {total:.0f} s.", ""]
        for name, cond in summary["conditions"].items():
            out += condition_table(name, cond)
    out += ["Hyper-parameters chosen on the validation sets:", ""] + search_table(summaries)
    print("\n".join(out))


if __name__ == "__main__":
    main()
