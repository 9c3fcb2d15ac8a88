"""The markdown report of an accuracy result summary."""

from __future__ import annotations

import math

from ..report import format_aggregate, results_table

#: The targets of :func:`~napari_meg_unet.accuracy.compute_targets`, as the table words them.
_TARGET_TEXT = (
    ("per_sample_half", "best network DLE <= 0.5 x best linear per-sample DLE (single "
     "dipoles)"),
    ("window_better_ci", "best network better than best linear, same window, "
     "non-overlapping 95% CIs (single dipoles)"),
    ("multi_0.7", "best network DLE <= 0.7 x best linear window DLE (multi-dipole)"),
    ("mesh_0.8_thesis", "mesh U-Net DLE <= 0.8 x thesis U-Net DLE"),
    ("single_learned_le_peer", "best network or hybrid DLE <= best peer DLE (single dipoles, "
     "no model error)"),
    ("single_network_1.25_peer", "best network alone DLE <= 1.25 x best peer DLE (single "
     "dipoles, no model error)"),
    ("multi_learned_0.8_peer_ci", "best network or hybrid DLE <= 0.8 x best peer DLE, "
     "non-overlapping 95% CIs (multi-dipole, no model error)"),
    ("model_error_learned_lowest", "best network or hybrid has the lowest DLE of all "
     "estimators (model error)"),
)  # fmt: skip


def _fmt(value, digits=1, unit=""):
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}f}{unit}"


def _yes_no(value) -> str:
    return "n/a" if value is None else ("yes" if value else "no")


def format_table(summary: dict) -> str:
    """Markdown report of an accuracy result summary (:attr:`AccuracyResult.summary`)."""
    lines = _header(summary)
    for name, cond in summary["conditions"].items():
        lines += _condition_section(name, cond)
    if summary["networks"]:
        lines += _networks_section(summary)
    if summary.get("peers", {}).get("search") or summary.get("peers", {}).get("skipped"):
        lines += _peers_section(summary["peers"])
    lines += _targets_section(summary["targets"])
    if summary.get("stability"):
        lines += _stability_section(summary["stability"])
    return "\n".join(lines)


def _header(summary) -> list:
    m = summary["machine"]
    lines = [
        f"bench accuracy — preset `{summary['preset']}`: {summary['description']}",
        "",
        f"Machine: {m['cpu']} ({m['cores']} cores)"
        + (f", GPU {m['gpu']}" if m.get("gpu") else ", no GPU")
        + f"; device {summary['device']}; seed {summary['seed']}; "
        f"total runtime {summary['timings']['total_s']:.0f} s.",
    ]
    if summary.get("command"):
        lines += ["", f"Command: `{summary['command']}`"]
    return lines


def _timing(row) -> str:
    seconds = row.get("seconds_per_event")
    if seconds is None:
        return "n/a"
    return f"{seconds:.3g}" if seconds >= 1e-3 else f"{seconds:.1e}"


def _display_rows(results) -> list:
    """Result rows with the event count, the runtime and (peers) the empty estimates as text."""
    out = []
    for row in results:
        n = row.get("n_events")
        empty = row.get("n_empty")
        n_text = "n/a" if n is None else str(n) + (f" ({empty} empty)" if empty else "")
        out.append({**row, "n": n_text, "s/event": _timing(row)})
    return out


def _model_error_text(error) -> str:
    if not error:
        return ""
    if error.get("kind") == "coreg":
        return (f", model error: sensors moved by {error['translation_mm']:g} mm and "
                f"{error['rotation_deg']:g} deg (seed {error['seed']})")  # fmt: skip
    if error.get("kind") == "conductor":
        note = f" ({error['note']})" if error.get("note") else ""
        return f", model error: simulated with {error['true_conductor']}{note}"
    if error.get("kind") == "skull":
        shape, most = error["skull_shape_mm"], error["max_displacement_mm"]
        return (f", model error: simulated with the BEM reshaped by {shape:g} mm RMS (at most "
                f"{most:.1f} mm, seed {error['seed']})")  # fmt: skip
    return ", model error: sources simulated on the pial surface"


def _condition_section(name, cond) -> list:
    return [
        "",
        f"### {name}: {cond['n_events']} test events, whitened SNR {cond['snr']:g}"
        + _model_error_text(cond.get("model_error")),
        "",
        results_table(_display_rows(cond["results"]), columns=("estimator", "protocol", "n",
                                                               "s/event")),  # fmt: skip
        "",
        f"Grid floor (mean distance from the true dipoles to the nearest grid vertex): "
        f"{format_aggregate(cond['grid_floor_mm'])} mm. Means over events with "
        "per-event bootstrap 95% CIs; `window` = mean |estimate| (networks: mean "
        "probability) over the whole epoch, `samples` = every active sample scored; "
        "peers (dipoles) give one estimate per event; `n` = events scored (peers: the "
        "first n test events), `s/event` = wall time per event; `TC error` (when shown) = "
        "the dipoles' moment time courses against the true ones (A·m, the orientations the "
        "sensors see; 0 perfect, 1 = no dipole), n/a for maps and patches.",
    ]


def _peers_section(peers) -> list:
    lines = ["", "### Peers: hyper-parameters chosen on the validation sets", "",
             "| peer | kind | chosen | candidates (mean validation DLE mm, empty) |",
             "|---|---|---|---|"]  # fmt: skip
    for kind, searches in peers.get("search", {}).items():
        for name, search in searches.items():
            keys = _searched_keys(search)
            cands = "; ".join(
                f"{_params_text(c['params'], keys)}: {_fmt(c['dle_mm'])}"
                + (f" ({c['n_empty']} empty)" if c["n_empty"] else "")
                for c in search["candidates"]
            ) or search["criterion"]
            lines.append(f"| {name} | {kind} | {_params_text(search['params'], keys)} "
                         f"| {cands} |")  # fmt: skip
    for name, why in peers.get("skipped", {}).items():
        lines += ["", f"Peer `{name}` skipped: {why}."]
    return lines


def _searched_keys(search) -> list:
    """The hyper-parameters that differ between a search's candidates."""
    cands = [c["params"] for c in search["candidates"]]
    return [k for k in search["params"] if len({repr(c.get(k)) for c in cands}) > 1]


def _params_text(params, keys) -> str:
    """``key=value`` of ``keys`` of ``params`` (``defaults`` when none)."""
    return ", ".join(f"{k}={params[k]:g}" if isinstance(params[k], float) else f"{k}={params[k]}"
                     for k in keys) or "defaults"  # fmt: skip


def _networks_section(summary) -> list:
    lines = [
        "",
        "### Networks",
        "",
        "| network | trained on | parameters | epochs (best) | training time (s) "
        "| train samples/s | best val DLE (mm) | dSPM val DLE (mm) | time to target (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key, net in summary["networks"].items():
        loaded = " (loaded)" if net.get("loaded") else ""
        stopped = ", time limit" if net.get("stopped_by_time_limit") else ""
        lines.append(
            f"| {net['estimator']} {net['preset']}{loaded} | {key} | {net['n_parameters']:,} "
            f"| {net['epochs_done']} ({net['best_epoch']}{stopped}) "
            f"| {_fmt(net['train_time_s'], 0)} | {_fmt(net.get('train_samples_per_s'))} "
            f"| {_fmt(net['best_val_dle_mm'])} | {_fmt(net['val_reference_dle_mm'])} "
            f"| {_fmt(net['time_to_target_s'], 0)} |"
        )
    infer = {
        f"{k}: {v:.0f}/s"
        for cond in summary["conditions"].values()
        for k, v in cond["inference_samples_per_s"].items()
    }
    if infer:
        lines += ["", "Inference throughput: " + ", ".join(sorted(infer)) + "."]
    return lines


def _targets_section(t) -> list:
    lines = [
        "",
        "### Targets",
        "",
        "| target | at SNR 1 | every condition |",
        "|---|---|---|",
    ]
    snr1 = t.get("at_snr1") or {}
    for key, text in _TARGET_TEXT:
        lines.append(f"| {text} | {_yes_no(snr1.get(key))} | {_yes_no(t[key])} |")
    lines += [
        "",
        "| condition | best network (mm) | best linear per sample (mm) | ratio "
        "| best linear window (mm) | ratio | mesh / thesis |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, e in t["per_condition"].items():
        lines.append(
            f"| {name} | {e['best_network'] or 'n/a'} {_fmt(e['best_network_dle_mm'])} "
            f"| {e['best_linear_samples']} {_fmt(e['best_linear_samples_dle_mm'])} "
            f"| {_fmt(e.get('ratio_vs_linear_samples'), 2)} "
            f"| {e['best_linear_window']} {_fmt(e['best_linear_window_dle_mm'])} "
            f"| {_fmt(e.get('ratio_vs_linear_window'), 2)} "
            f"| {_fmt(e.get('ratio_mesh_vs_thesis'), 2)} |"
        )
    with_peers = {k: e for k, e in t["per_condition"].items() if e.get("best_peer")}
    if with_peers:
        lines += [
            "",
            "| condition | best network or hybrid (mm) | best peer (mm) | ratio | CIs apart "
            "| network alone / best peer | lowest of all |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, e in with_peers.items():
            lines.append(
                f"| {name} | {e['best_learned'] or 'n/a'} {_fmt(e['best_learned_dle_mm'])} "
                f"| {e['best_peer']} {_fmt(e['best_peer_dle_mm'])} "
                f"| {_fmt(e.get('ratio_learned_vs_peer'), 2)} "
                f"| {_yes_no(e.get('learned_peer_ci_separated'))} "
                f"| {_fmt(e.get('ratio_network_vs_peer'), 2)} "
                f"| {_yes_no(e.get('learned_lowest'))} |"
            )
    return lines


def _stability_section(stab) -> list:
    lines = ["", f"### Stability (thesis §4.3), {stab['network']} on {stab['condition']}",
             "", "| estimator | trained at lambda2 | tested at lambda2 | DLE (mm) | SD (mm) |",
             "|---|---|---|---|---|"]  # fmt: skip
    for r in stab["lambda2"]:
        train = "-" if r["train_lambda2"] is None else f"{r['train_lambda2']:.3g}"
        lines.append(f"| {r['estimator']} | {train} | {r['test_lambda2']:.3g} "
                     f"| {format_aggregate(r['dle_mm'])} | {format_aggregate(r['sd_mm'])} |")
    lines += ["", f"Single-dipole network on {stab['single_to_multi']['condition']}:", "",
              results_table(stab["single_to_multi"]["results"])]  # fmt: skip
    if "skipped" in stab.get("modality", {}):
        lines += ["", f"MEG only versus MEG+EEG: skipped ({stab['modality']['skipped']})."]
    elif "modality" in stab:
        rows = stab["modality"]["meg"] + stab["modality"]["meg+eeg"]
        lines += ["", "MEG only versus MEG+EEG:", "",
                  results_table(rows, columns=("modality", "estimator", "protocol"))]
    return lines
