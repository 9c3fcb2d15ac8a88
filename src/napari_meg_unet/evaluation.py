"""Scoring source estimates (linear inverses or networks) on a :class:`~.simulate.Simulation`.

Two protocols are used throughout:

``"samples"``
    The thesis protocol: every time sample of an event's active window is a
    map of its own; DLE/SD/OA are computed per map and averaged per event
    (no AUC: its random negative draws per map are too costly here).
``"window"``
    The map a network sees: mean ``|estimate|`` over the whole epoch (the
    example's time window), one map per event.

Aggregation is always per event (maps of one event are correlated), with
percentile bootstrap 95% confidence intervals resampling events
(:func:`~.metrics.aggregate`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import metrics
from ._config import takes_config
from ._docs import fill_doc
from ._logging import verbose
from ._validation import check_choice, check_finite_data, check_int
from .configs import METHODS, PROTOCOLS, EvaluationConfig, InverseConfig
from .inverse import apply_kernel, compute_kernel, make_inverse
from .progress import Progress, plain

__all__ = [
    "METHODS",
    "PROTOCOLS",
    "TABLE_METRICS",
    "Evaluation",
    "evaluate_linear",
    "grid_floor",
    "iter_evaluate_linear",
    "score_estimates",
    "summarise",
]

#: Metrics reported in tables: key in :func:`metrics.score_maps` -> column title.
TABLE_METRICS = {
    "dle_mm": "DLE (mm)",
    "sd_mm": "SD (mm)",
    "oa": "OA",
    "auc": "AUC",
}


@dataclass
class Evaluation:
    """Per-event scores of several estimators on one simulation.

    Attributes
    ----------
    scores : dict
        ``{(estimator, protocol): {metric: per-map array, "event": event ids}}``.
    summary : dict
        ``{(estimator, protocol): {metric: aggregate dict}}`` (mean, CI, counts).
    grid_floor : dict
        Aggregate of the distance (mm) from each true dipole to its nearest
        source-space vertex: the DLE no grid-bound estimate can beat.
    per_vertex_dle : dict
        ``{(estimator, protocol): (n_rows,) mean DLE (mm) per true row}`` for
        single-source events (NaN where no event).
    meta : dict
        Simulation fingerprint, parameters of the inverse, protocols.
    """

    scores: dict = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    grid_floor: dict = field(default_factory=dict)
    per_vertex_dle: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-friendly summary (no per-map arrays)."""
        return {
            "meta": self.meta,
            "grid_floor_mm": self.grid_floor,
            "results": [
                {"estimator": est, "protocol": prot, **{k: v for k, v in res.items()}}
                for (est, prot), res in self.summary.items()
            ],
        }

    def table(self, *, metrics_=None) -> str:
        """Markdown table: one row per estimator and protocol, mean [95% CI] per metric."""
        cols = metrics_ or list(TABLE_METRICS)
        head = "| estimator | protocol | " + " | ".join(TABLE_METRICS[c] for c in cols) + " |"
        lines = [head, "|" + "---|" * (2 + len(cols))]
        for (est, prot), res in self.summary.items():
            cells = [metrics.format_aggregate(res[c]) for c in cols]
            lines.append(f"| {est} | {prot} | " + " | ".join(cells) + " |")
        if self.grid_floor:
            g = self.grid_floor
            lines.append("")
            floor = metrics.format_aggregate(g)
            lines.append(f"Grid floor (distance to nearest grid vertex): {floor} mm")
        return "\n".join(lines)


def _event_true_positions(sim) -> list[np.ndarray]:
    pos = sim.sources["position"]
    return [pos[sim.event_sources(i)] for i in range(len(sim))]


def score_estimates(
    estimates,
    sim,
    hm,
    *,
    protocol="window",
    events=None,
    seed=0,
) -> dict:
    """Score estimate time courses of some events of a simulation.

    Parameters
    ----------
    estimates : array, shape (n_events, n_rows, n_times)
        Estimates on the simulation's rows (``sim.rows``), in event order.
    sim : Simulation
        The simulation the estimates belong to.
    hm : HeadModel
        The head model of the inversion (positions and adjacency of the rows).
    protocol : ``"samples"`` | ``"window"``
        See the module docstring.
    events : array of int | None
        The simulation events of ``estimates`` (all events if None).
    seed : int
        Seed of the AUC negative draws.

    Returns
    -------
    scores : dict of arrays
        Per-map metrics from :func:`metrics.score_maps` plus ``event`` (the
        simulation event of each map) and ``true_row`` (index into ``sim.rows``
        of the event's first source, for per-vertex maps).
    """
    check_choice(protocol, "protocol", PROTOCOLS)
    estimates = np.asarray(estimates)
    events = np.arange(len(sim)) if events is None else np.asarray(events, dtype=int)
    rows = np.asarray(sim.rows)
    if estimates.ndim != 3 or estimates.shape[:2] != (len(events), len(rows)):
        raise ValueError(
            f"estimates must have shape (n_events={len(events)}, n_rows={len(rows)}, n_times), "
            f"got {estimates.shape}."
        )
    check_finite_data(estimates, where="estimates", axis_name="estimate")
    positions = hm.positions[rows]
    hemi = sim.meta["params"]["hemi"]
    adjacency = hm.adjacency(hemi)
    true_positions = _event_true_positions(sim)
    row_of = np.full(hm.n_sources, -1)
    row_of[rows] = np.arange(len(rows))
    first_row = row_of[sim.sources["row"][sim.event_indptr[:-1]]]

    maps, map_events, map_truth = [], [], []
    for k, i in enumerate(events):
        if protocol == "window":
            maps.append(metrics.window_map(estimates[k], slice(None))[np.newaxis])
        else:
            maps.append(metrics.sample_maps(estimates[k], samples=sim.window(i))[0])
        map_events.append(np.full(len(maps[-1]), i))
        map_truth.extend([true_positions[i]] * len(maps[-1]))
    maps = np.concatenate(maps)
    map_events = np.concatenate(map_events)
    n_src = {len(tp) for tp in map_truth}
    per_map = np.stack(map_truth)[:, 0] if n_src == {1} else map_truth
    # The close/far AUC draws negatives per map: affordable for one map per event, not for
    # every sample of every event, so the per-sample protocol reports no AUC.
    scores = metrics.score_maps(
        maps,
        positions=positions,
        true_positions_per_map=per_map,
        adjacency=adjacency,
        auc=protocol == "window",
        seed=seed,
    )
    scores["event"] = map_events
    scores["true_row"] = first_row[map_events]
    return scores


def summarise(scores: dict, *, n_rows: int, n_boot=2000, seed=0) -> tuple[dict, np.ndarray]:
    """Per-event aggregates of every table metric and the per-vertex mean DLE."""
    summary = {
        key: metrics.aggregate(
            scores[key], scores["event"], n_boot=n_boot, seed=seed, nan_policy="omit"
        )
        if np.isfinite(scores[key]).any()
        else None
        for key in TABLE_METRICS
    }
    single = scores["n_sources"] == 1
    per_vertex = np.full(n_rows, np.nan)
    if single.any():
        per_vertex = metrics.per_vertex_mean(
            scores["dle_mm"][single], scores["true_row"][single], n_rows
        )
    return summary, per_vertex


def grid_floor(sim, *, n_boot=2000, seed=0) -> dict:
    """Aggregate distance (mm) from the true dipoles to their nearest grid vertex."""
    dist = np.asarray(sim.sources["grid_distance"], float) * 1e3
    return metrics.aggregate(dist, sim.sources["event"], n_boot=n_boot, seed=seed)


def _check_headmodel(hm, sim) -> None:
    made_with = sim.meta["headmodel"]["fingerprint"]
    if made_with != hm.fingerprint:
        raise ValueError(
            f"The simulation was made with head model {made_with} but hm is {hm.fingerprint}; "
            "for off-grid simulations pass the coarse head model they were simulated for."
        )


def _meta(hm, sim, inverse, config, *, nave) -> dict:
    return {
        "simulation": sim.fingerprint,
        "headmodel": hm.fingerprint,
        "methods": list(inverse.methods),
        "lambda2": inverse.lambda2,
        "loose": inverse.loose,
        "depth": inverse.depth,
        "nave": nave,
        "protocols": list(config.protocols),
        "n_events": len(sim),
        "n_boot": config.n_boot,
        "seed": config.seed,
    }


def _add_scores(result, key, scores, *, n_rows, config) -> None:
    """Store the per-map scores of ``key`` with their summary and per-vertex mean DLE."""
    summary, per_vertex = summarise(scores, n_rows=n_rows, n_boot=config.n_boot, seed=config.seed)
    result.scores[key] = scores
    result.summary[key] = summary
    result.per_vertex_dle[key] = per_vertex


@fill_doc
@takes_config(EvaluationConfig)
@verbose
def iter_evaluate_linear(
    hm,
    sim,
    *,
    methods=METHODS,
    lambda2=1.0 / 9.0,
    loose=0.0,
    depth=0.8,
    chunk=128,
    config,
    verbose=None,
):
    """Score the linear inverses on a simulation, yielding progress.

    The inverse parameters are plain keywords (checked as the
    :class:`~.configs.InverseConfig` options of the same names); the scoring
    options are those of :class:`~.configs.EvaluationConfig`.

    Parameters
    ----------
    hm : HeadModel
        Head model used for the inversion (the coarse model for off-grid data).
    sim : Simulation
        Simulated data; its ``rows`` define the scored hemisphere(s).
    %(methods)s
    %(lambda2)s
    loose : float
        Tangential source variance factor (0: fixed orientation).
    depth : float | None
        Depth-weighting exponent (None: none). ``loose`` and ``depth`` go to
        :func:`~.inverse.make_inverse`; ``nave`` is taken from the simulation.
    chunk : int
        Events inverted at once.
    %(options)s
    %(verbose)s

    Yields
    ------
    %(progress_yields)s

    Returns
    -------
    evaluation : Evaluation
        Scores, per-event summaries and per-vertex DLE of every method and
        protocol.
    """
    inverse = InverseConfig(methods=methods, lambda2=lambda2, loose=loose, depth=depth)
    chunk = check_int(chunk, "chunk", minimum=1)
    _check_headmodel(hm, sim)
    nave = int(sim.meta["params"].get("nave", 1))
    inv = make_inverse(hm, loose=inverse.loose, depth=inverse.depth, verbose=verbose)
    rows = np.asarray(sim.rows)
    result = Evaluation(meta=_meta(hm, sim, inverse, config, nave=nave))
    total, done = len(inverse.methods) * len(sim), 0
    for method in inverse.methods:
        kernel = compute_kernel(
            inv, method=method, lambda2=inverse.lambda2, nave=nave, verbose=verbose
        )
        parts = {p: [] for p in config.protocols}
        for start in range(0, len(sim), chunk):
            stop = min(start + chunk, len(sim))
            est = apply_kernel(kernel, np.asarray(sim.data[start:stop], dtype=np.float64))
            est = est[:, rows]
            for protocol in config.protocols:
                scores = score_estimates(
                    est, sim, hm, protocol=protocol, events=np.arange(start, stop), seed=config.seed
                )
                parts[protocol].append(scores)
            done += stop - start
            yield Progress("evaluate", done, total, message=method)
        for protocol, chunks in parts.items():
            scores = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
            _add_scores(result, (method, protocol), scores, n_rows=len(rows), config=config)
    result.grid_floor = grid_floor(sim, n_boot=config.n_boot, seed=config.seed)
    return result


evaluate_linear = plain(iter_evaluate_linear)
