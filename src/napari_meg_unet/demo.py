"""The README's main job: template head model to a trained U-Net that beats dSPM, as a report.

:func:`iter_demo` runs the accuracy protocol (:mod:`napari_meg_unet.accuracy`)
as the ``small`` preset of ``bench accuracy`` does, with the demo's network, on the
embedded fsaverage5 template (ico3, MEG; nothing is downloaded): off-grid single
dipoles in the right hemisphere with realistic time courses at whitened SNR 1,
disjoint seeds for the training, validation and test sets; MNE, dSPM, sLORETA
and eLORETA; the mesh U-Net (``small`` preset, the network that trains to
beat dSPM fastest on a CPU); scoring of every method by the same code. It
writes a report folder:

``report.md``
    What was run, whether the network beat dSPM (computed), the table of DLE,
    SD, OA and AUC with 95% CIs per method, the grid floor, training summary,
    the exact command, the machine and the runtime.
``results.json``
    Everything in the report, machine-readable.
``dle_kde.png``, ``training_curves.png``, ``example.png``
    DLE density per method, loss / validation DLE per epoch, and one test
    event's truth, dSPM and network maps (vertex x time).
``per_vertex/*.npy``
    Mean DLE per true source row, per method (for heat maps).
"""

from __future__ import annotations

import time

from ._docs import fill_doc
from ._io import atomic_dir, atomic_path, check_output_path, write_json
from ._logging import verbose as verbose_decorator
from .accuracy import (
    AccuracyPreset,
    Condition,
    find_row,
    format_table,
    iter_run_accuracy,
    with_overrides,
)
from .progress import plain
from .report import format_aggregate

#: Sizes and training of the demo (the ``small`` preset with the demo's network).
DEMO_SETTINGS = dict(
    n_train=1284,
    n_val=321,
    n_test=642,
    epochs=3,
    networks=(("mesh", "small"),),
)
#: A seconds-long configuration for tests (on-grid: no dense forward model).
TINY_SETTINGS = dict(
    n_train=32,
    n_val=16,
    n_test=24,
    epochs=1,
    off_grid=False,
    networks=(("mesh", "small"),),
)
#: Wall-clock limit of the network's training in the demo (s); the best epoch so far is used.
DEMO_MAX_TRAIN_S = 8 * 60
#: The demo's test condition (the ``small`` preset's only one).
_CONDITION = "single-snr1"
#: The demo's protocol: the ``small`` preset of ``bench accuracy`` (off-grid single
#: dipoles in the right hemisphere, realistic time courses, whitened SNR 1) with
#: :data:`DEMO_SETTINGS` (tests check that it stays so).
DEMO_PROTOCOL = AccuracyPreset(
    name="small",
    off_grid=True,
    timecourse="realistic",
    conditions=(Condition(_CONDITION, "single", 1.0),),
    train_snr=1.0,
    stability_network=("mesh", "small"),
    **DEMO_SETTINGS,
)
#: File names of the report's figures (see AccuracyResult.save).
FIGURE_NAMES = {
    "dle_kde": "dle_kde.png",
    "example": "example.png",
    "training": "training_curves.png",
}


def demo_target(summary: dict) -> dict:
    """Whether the network beat dSPM, computed from an accuracy result summary.

    The target is met when the network's mean DLE (window protocol: mean
    probability over the epoch) is below dSPM's with the same protocol (mean
    ``|estimate|`` over the epoch) on the same test events. The comparison
    with dSPM's per-sample DLE (the thesis protocol) is reported too.

    Parameters
    ----------
    summary : dict
        :attr:`~napari_meg_unet.accuracy.AccuracyResult.summary`.

    Returns
    -------
    target : dict
        ``met`` (bool), ``network``, ``network_dle_mm``, ``dspm_window_dle_mm``,
        ``dspm_samples_dle_mm``, ratios and whether the 95% CIs are separated.
    """
    cond = summary["conditions"][_CONDITION]
    nets = [
        row for row in cond["results"]
        if row["protocol"] == "window" and row["estimator"].endswith("U-Net")
    ]  # fmt: skip
    if not nets:
        raise ValueError("The result holds no network to compare with dSPM.")
    best = min(nets, key=lambda row: row["dle_mm"]["mean"])
    window = find_row(cond["results"], "dSPM", "window")["dle_mm"]
    samples = find_row(cond["results"], "dSPM", "samples")["dle_mm"]
    net = best["dle_mm"]
    return {
        "met": bool(net["mean"] < window["mean"]),
        "definition": "network mean DLE < dSPM mean DLE, same test events, same window "
        "protocol (network: mean probability, dSPM: mean |estimate| over the epoch)",
        "network": best["estimator"],
        "network_dle_mm": net["mean"],
        "dspm_window_dle_mm": window["mean"],
        "dspm_samples_dle_mm": samples["mean"],
        "ratio_vs_dspm_window": net["mean"] / window["mean"],
        "ratio_vs_dspm_samples": net["mean"] / samples["mean"],
        "ci_separated_vs_dspm_window": bool(net["ci_high"] < window["ci_low"]),
        "snr": cond["snr"],
        "n_test_events": cond["n_events"],
    }


@verbose_decorator
@fill_doc
def iter_demo(
    out,
    *,
    overwrite=False,
    epochs=None,
    seed=0,
    device="auto",
    max_train_s=DEMO_MAX_TRAIN_S,
    n_boot=2000,
    command=None,
    tiny=False,
    verbose=None,
):
    """Run the demo and write its report folder (generator of Progress; returns a dict).

    Parameters
    ----------
    out : path-like
        Report folder, written atomically (a temporary sibling renamed at the end).
    %(overwrite)s
    epochs : int | None
        Training epochs (default :data:`DEMO_SETTINGS`).
    seed : int
        Master seed of the simulations, the network and the bootstrap.
    %(device)s
    max_train_s : float | None
        Wall-clock limit of the training: once exceeded, and once at least one
        epoch has been validated, training stops and the best epoch so far is
        used (the report says so). None trains all epochs.
    n_boot : int
        Bootstrap resamples of the confidence intervals.
    command : str | None
        The command line, quoted in the report.
    tiny : bool
        Use :data:`TINY_SETTINGS` (seconds; for tests, not for conclusions).
    %(verbose)s

    Returns
    -------
    result : dict
        ``out``, ``target`` (see :func:`demo_target`), ``runtime_s``, the
        result ``table`` (markdown) and the written ``files``.
    """
    out = check_output_path(out, overwrite=overwrite, what="demo report folder")
    settings = dict(TINY_SETTINGS) if tiny else {}
    if epochs is not None:
        settings["epochs"] = epochs
    p = with_overrides(DEMO_PROTOCOL, **settings)
    t0 = time.perf_counter()
    result = yield from iter_run_accuracy(
        p, device=device, seed=seed, max_train_s=max_train_s, n_boot=n_boot, command=command,
        verbose=verbose,
    )  # fmt: skip
    target = demo_target(result.summary)
    result.summary["demo"] = {"target": target, "tiny": bool(tiny)}
    with atomic_dir(out, overwrite=overwrite, what="demo report folder") as tmp:
        summary, text = _write_report(result, tmp, t0)
    return {
        "out": str(out),
        "target": target,
        "runtime_s": summary["demo"]["runtime_s"],
        "files": summary["files"],
        "table": text,
    }


demo = plain(iter_demo)


def _write_report(result, directory, t0) -> tuple:
    """Figures, per-vertex arrays, ``results.json`` and ``report.md`` into ``directory``.

    The runtime (since ``t0``) is recorded before the JSON and the report are
    written; returns ``(summary, report text)``.
    """
    files = result.write(directory, figure_names=FIGURE_NAMES, markdown=False)
    result.summary["demo"]["runtime_s"] = time.perf_counter() - t0
    summary = result.to_dict()
    summary["files"] = {**files, "report": "report.md"}
    write_json(directory / "results.json", summary)
    text = format_report(summary)
    with atomic_path(directory / "report.md") as path:
        path.write_text(text)
    return summary, text


def format_report(summary: dict) -> str:
    """The demo's ``report.md`` from its results summary."""
    cond = summary["conditions"][_CONDITION]
    lines = ["# napari-meg-unet demo report", "", _verdict(summary["demo"]["target"])]
    if summary["demo"].get("tiny"):
        lines += ["", "*Tiny test configuration: the numbers mean nothing.*"]
    lines += [
        "",
        "## What was run",
        "",
        *_what_was_run(summary),
        "",
        "## Results",
        "",
        "Mean over test events with per-event bootstrap 95% CIs. Grid floor (mean distance "
        "from the true dipoles to the nearest grid vertex, the DLE no grid-bound estimate can "
        f"beat): {format_aggregate(cond['grid_floor_mm'])} mm.",
        "",
        _results_section(format_table(summary)),
        "",
        "![DLE density per method](dle_kde.png)",
        "",
        "![Training curves](training_curves.png)",
        "",
        "![Example test event: truth, dSPM, network](example.png)",
        "",
        "## Reproduce",
        "",
        *_reproduce(summary),
        "",
    ]
    return "\n".join(lines)


def _verdict(target: dict) -> str:
    """The report's first paragraph: whether the network beat dSPM, with the numbers."""
    verdict = "MET" if target["met"] else "NOT MET"
    comparison = "below" if target["met"] else "not below"
    return (
        f"**Target {verdict}:** the {target['network']}'s mean dipole localisation error "
        f"({target['network_dle_mm']:.1f} mm) is {comparison} dSPM's "
        f"({target['dspm_window_dle_mm']:.1f} mm) on the same {target['n_test_events']} "
        f"held-out test events at whitened SNR {target['snr']:g}, both scored on the same "
        f"window (network: mean probability, dSPM: mean |estimate| over the epoch); ratio "
        f"{target['ratio_vs_dspm_window']:.2f}"
        + (", non-overlapping 95% CIs" if target["ci_separated_vs_dspm_window"] else "")
        + f". Against dSPM scored per sample (the thesis protocol, "
        f"{target['dspm_samples_dle_mm']:.1f} mm) the ratio is "
        f"{target['ratio_vs_dspm_samples']:.2f}."
    )


def _what_was_run(summary: dict) -> list:
    """The bullet list of the head model, data, inverses and network."""
    cond = summary["conditions"][_CONDITION]
    net = next(iter(summary["networks"].values()))
    return [
        f"- Head model: the embedded fsaverage5 template, {summary['headmodel']['spacing']}, "
        f"{summary['headmodel']['n_channels']} MEG channels, {summary['headmodel']['n_sources']} "
        "sources (nothing downloaded).",
        f"- Data: {summary['description']}; {summary['config']['n_train']} training, "
        f"{summary['config']['n_val']} validation and {cond['n_events']} test events simulated "
        "from disjoint seeds (no test example occurs in training or validation: checked).",
        "- Inverses: MNE, dSPM, sLORETA, eLORETA (fixed orientation, depth 0.8); the network's "
        "inputs are the MNE, dSPM and sLORETA images, each time column divided by its maximum.",
        f"- Network: {net['estimator']} `{net['preset']}` preset, {net['n_parameters']:,} "
        f"parameters, {net['epochs_done']} epoch(s) in {net['train_time_s']:.0f} s (best "
        f"epoch {net['best_epoch']}"
        + (", stopped by the time limit" if net.get("stopped_by_time_limit") else "")
        + f"), {_rate(net.get('train_samples_per_s'))} training samples/s"
        + (
            f"; its validation DLE beat dSPM's ({net['val_reference_dle_mm']:.1f} mm) after "
            f"{net['time_to_target_s']:.0f} s of training."
            if net.get("time_to_target_s") is not None
            else f"; its validation DLE did not beat dSPM's ({net['val_reference_dle_mm']:.1f} "
            "mm) during training."
        ),
    ]


def _reproduce(summary: dict) -> list:
    """The command, machine, versions, seed and runtime."""
    m = summary["machine"]
    return [
        f"- Command: `{summary.get('command') or 'napari-meg-unet demo'}`",
        f"- Machine: {m['cpu']}, {m['cores']} cores"
        + (f", GPU {m['gpu']}" if m.get("gpu") else ", no GPU")
        + f"; device {summary['device']}; Python {m['python']}; {m['platform']}",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in summary["versions"].items()),
        f"- Seed: {summary['seed']}",
        f"- Runtime: {summary['demo']['runtime_s']:.0f} s",
    ]


def _rate(value) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def _results_section(table: str) -> str:
    """The per-condition table and the networks' table of :func:`format_table`."""
    lines = table.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| estimator"))
    stop = next(i for i, line in enumerate(lines) if line.startswith("### Targets"))
    body = [line for line in lines[start:stop] if not line.startswith("Grid floor")]
    return "\n".join(body).strip()
