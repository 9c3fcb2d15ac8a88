"""Scoring every estimator on one test condition (one held-out test simulation)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .. import metrics
from ..evaluation import summarise
from ..progress import Progress
from .data import _build_set, _estimates, _grid_floor, _score, _simulate_kind
from .networks import _iter_predict, network_label
from .peers import iter_score_peers
from .spec import MODEL_ERRORS, derive_seed, model_error_seed

#: The test event shown in the example figure.
EXAMPLE_EVENT = 0


@dataclass
class _Scores:
    """What one condition collects: result rows, per-vertex and per-event DLE, example panels."""

    rows: list = field(default_factory=list)
    per_vertex: dict = field(default_factory=dict)
    per_event: dict = field(default_factory=dict)
    panels: dict = field(default_factory=dict)

    def add(self, estimator, protocol, scores, *, label, n_rows, n_boot, seed, extra=None) -> None:
        summary, vertex = summarise(scores, n_rows=n_rows, n_boot=n_boot, seed=seed)
        self.rows.append({"estimator": estimator, "protocol": protocol, **summary,
                          **(extra or {})})  # fmt: skip
        self.per_vertex[label] = vertex
        self.per_event[label] = metrics.per_event_mean(scores["dle_mm"], scores["event"])


def _iter_linear(scores, sim, hm, *, kernels, events, stage, n_steps, n_boot, seed):
    """Score each linear inverse with both protocols; returns dSPM's example estimate."""
    rows = np.asarray(sim.rows)
    dspm_example = None
    for k, (method, kernel) in enumerate(kernels.items()):
        yield Progress(stage, k, n_steps, method)
        t0 = time.perf_counter()
        est = _estimates(kernel, sim, events, rows)
        extra = {"n_events": int(len(events)),
                 "seconds_per_event": (time.perf_counter() - t0) / max(len(events), 1)}
        if method == "dSPM":
            dspm_example = est[EXAMPLE_EVENT]
        for protocol in ("window", "samples"):
            s = _score(est, sim, hm, protocol=protocol, events=events, seed=seed)
            label = f"{method} ({'window' if protocol == 'window' else 'per sample'})"
            scores.add(method, protocol, s, label=label, n_rows=len(rows), n_boot=n_boot,
                       seed=seed, extra=extra)  # fmt: skip
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
        extra = {"n_events": int(len(events)), "seconds_per_event": 1.0 / max(rate, 1e-12)}
        scores.add(label, "window", s, label=f"{label} (window)", n_rows=len(rows),
                   n_boot=n_boot, seed=seed, extra=extra)  # fmt: skip
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


def _iter_test_headmodel(hm, cond, *, seed, verbose):
    """The head model the test data of ``cond`` are simulated on (a perturbed one for model error).

    Returns ``(hm_true, record)``; ``record`` is None without model error.
    """
    from ..headmodel import make_perturbed_headmodel

    if cond.model_error is None:
        return hm, None
    yield Progress(f"test {cond.name}", 0, 1, f"model error: {cond.model_error}")
    kwargs = dict(MODEL_ERRORS[cond.model_error], seed=model_error_seed(seed, cond))
    hm_true = make_perturbed_headmodel(hm, **kwargs, verbose=verbose)
    return hm_true, {"name": cond.model_error, **hm_true.provenance["perturbation"]}


def iter_condition(
    hm, p, cond, *, kernels, networks, work, seed, n_boot, device, verbose, event_offset,
    train_sets, peer_setups=None,
):  # fmt: skip
    """Simulate one test set and score every estimator on it (generator).

    With ``cond.model_error`` the test data are simulated on a perturbed head
    model and every estimator inverts them with the nominal ``hm``.
    Returns ``(result, per_vertex, per_event, example)``.
    """
    stage = f"test {cond.name}"
    hm_true, model_error = yield from _iter_test_headmodel(hm, cond, seed=seed, verbose=verbose)
    yield Progress(stage, 0, 1, "simulating")
    sim = yield from _simulate_kind(
        hm_true, p, kind=cond.kind, n=p.n_test, snr=cond.snr,
        seed=derive_seed(seed, "test", cond.name, p.modality), verbose=verbose,
    )  # fmt: skip
    events = np.arange(p.n_test)
    rows = np.asarray(sim.rows)
    scores = _Scores()
    peer_setups = peer_setups or {}
    n_steps = len(kernels) + len(networks) + len(peer_setups)
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
    peer_checks = yield from iter_score_peers(scores, sim, hm, peer_setups, p=p, n_boot=n_boot,
                                              seed=seed, stage=stage)  # fmt: skip
    yield Progress(stage, n_steps, n_steps, "done")
    result = {
        "kind": cond.kind,
        "snr": cond.snr,
        "model_error": model_error,
        "n_events": int(len(events)),
        "simulation": sim.fingerprint,
        "grid_floor_mm": _grid_floor(sim, events, n_boot=n_boot, seed=seed, hm=hm),
        "results": scores.rows,
        "disjoint_check": disjoint,
        "peer_search_disjoint": peer_checks,
        "inference_samples_per_s": inference,
    }
    return result, scores.per_vertex, scores.per_event, _example(sim, rows, scores.panels)


def _example(sim, rows, panels) -> dict:
    """The example figure's data: the event, its times, true source rows and panels."""
    sources = sim.sources["row"][sim.event_sources(EXAMPLE_EVENT)]
    true_rows = np.flatnonzero(np.isin(rows, sources))
    return {"event": EXAMPLE_EVENT, "times": sim.times, "true_rows": true_rows, "panels": panels}
