"""Scoring every estimator on one test condition (one held-out test simulation)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import metrics
from ..evaluation import summarise
from ..progress import Progress
from .data import _build_set, _estimates, _grid_floor, _score, _simulate_kind
from .networks import _iter_predict, network_label
from .spec import derive_seed

#: The test event shown in the example figure.
EXAMPLE_EVENT = 0


@dataclass
class _Scores:
    """What one condition collects: result rows, per-vertex and per-event DLE, example panels."""

    rows: list = field(default_factory=list)
    per_vertex: dict = field(default_factory=dict)
    per_event: dict = field(default_factory=dict)
    panels: dict = field(default_factory=dict)

    def add(self, estimator, protocol, scores, *, label, n_rows, n_boot, seed) -> None:
        summary, vertex = summarise(scores, n_rows=n_rows, n_boot=n_boot, seed=seed)
        self.rows.append({"estimator": estimator, "protocol": protocol, **summary})
        self.per_vertex[label] = vertex
        self.per_event[label] = metrics.per_event_mean(scores["dle_mm"], scores["event"])


def _iter_linear(scores, sim, hm, *, kernels, events, stage, n_steps, n_boot, seed):
    """Score each linear inverse with both protocols; returns dSPM's example estimate."""
    rows = np.asarray(sim.rows)
    dspm_example = None
    for k, (method, kernel) in enumerate(kernels.items()):
        yield Progress(stage, k, n_steps, method)
        est = _estimates(kernel, sim, events, rows)
        if method == "dSPM":
            dspm_example = est[EXAMPLE_EVENT]
        for protocol in ("window", "samples"):
            s = _score(est, sim, hm, protocol=protocol, events=events, seed=seed)
            label = f"{method} ({'window' if protocol == 'window' else 'per sample'})"
            scores.add(method, protocol, s, label=label, n_rows=len(rows), n_boot=n_boot,
                       seed=seed)  # fmt: skip
        del est
    return dspm_example


def _iter_networks(scores, sim, hm, test_set, *, networks, device, events, stage, first_step,
                   n_steps, n_boot, seed):  # fmt: skip
    """Score each network (window protocol); returns its inference rate per network key."""
    rows = np.asarray(sim.rows)
    inference = {}
    for k, (name, net) in enumerate(networks.items()):
        yield Progress(stage, first_step + k, n_steps, name)
        probs, rate = yield from _iter_predict(net["checkpoint"], test_set, hm=hm, device=device)
        inference[name] = rate
        s = _score(probs, sim, hm, protocol="window", events=events, seed=seed)
        label = network_label(net["model"])
        scores.add(label, "window", s, label=f"{label} (window)", n_rows=len(rows),
                   n_boot=n_boot, seed=seed)  # fmt: skip
        scores.panels[f"{label} probability"] = probs[EXAMPLE_EVENT]
    return inference


def _iter_test_set(hm, sim, p, cond, *, work, event_offset, train_sets, verbose):
    """The networks' test example set and the check that it is disjoint from their training."""
    from ..dataset import check_disjoint

    test_set = yield from _build_set(
        hm, sim, p, n=p.n_test, out=work / f"test-{cond.name}-{p.modality}",
        event_offset=event_offset, lambda2=p.lambda2, verbose=verbose,
    )  # fmt: skip
    train_set, val_set = train_sets[cond.kind]
    return test_set, check_disjoint({"train": train_set, "val": val_set, "test": test_set})


def iter_condition(
    hm, p, cond, *, kernels, networks, work, seed, n_boot, device, verbose, event_offset,
    train_sets,
):  # fmt: skip
    """Simulate one test set and score every estimator on it (generator).

    Returns ``(result, per_vertex, per_event, example)``.
    """
    stage = f"test {cond.name}"
    yield Progress(stage, 0, 1, "simulating")
    sim = yield from _simulate_kind(
        hm, p, kind=cond.kind, n=p.n_test, snr=cond.snr,
        seed=derive_seed(seed, "test", cond.name, p.modality), verbose=verbose,
    )  # fmt: skip
    events = np.arange(p.n_test)
    rows = np.asarray(sim.rows)
    scores = _Scores()
    n_steps = len(kernels) + len(networks)
    common = dict(events=events, stage=stage, n_steps=n_steps, n_boot=n_boot, seed=seed)
    dspm_example = yield from _iter_linear(scores, sim, hm, kernels=kernels, **common)
    scores.panels["truth"] = sim.truth(EXAMPLE_EVENT, rows=rows)
    if dspm_example is not None:
        scores.panels["dSPM |estimate|"] = dspm_example
    test_set = disjoint = None
    if networks:
        test_set, disjoint = yield from _iter_test_set(
            hm, sim, p, cond, work=work, event_offset=event_offset, train_sets=train_sets,
            verbose=verbose,
        )  # fmt: skip
    inference = yield from _iter_networks(
        scores, sim, hm, test_set, networks=networks, device=device, first_step=len(kernels),
        **common,
    )  # fmt: skip
    yield Progress(stage, n_steps, n_steps, "done")
    result = {
        "kind": cond.kind,
        "snr": cond.snr,
        "n_events": int(len(events)),
        "simulation": sim.fingerprint,
        "grid_floor_mm": _grid_floor(sim, events, n_boot=n_boot, seed=seed),
        "results": scores.rows,
        "disjoint_check": disjoint,
        "inference_samples_per_s": inference,
    }
    return result, scores.per_vertex, scores.per_event, _example(sim, rows, scores.panels)


def _example(sim, rows, panels) -> dict:
    """The example figure's data: the event, its times, true source rows and panels."""
    sources = sim.sources["row"][sim.event_sources(EXAMPLE_EVENT)]
    true_rows = np.flatnonzero(np.isin(rows, sources))
    return {"event": EXAMPLE_EVENT, "times": sim.times, "true_rows": true_rows, "panels": panels}
