"""Scoring source estimates (linear inverses, networks, peers) on a :class:`~.simulate.Simulation`.

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

Peers (:mod:`napari_meg_unet.peers`: dipole fits, RAP-MUSIC, sparse solvers,
LCMV, CMNE) give one estimate per event — a map, or dipoles at continuous
positions (:class:`~.metrics.PointEstimates`, scored as described in
:mod:`napari_meg_unet.metrics.points`) — and are scored with the window
protocol by :func:`iter_evaluate_peers`, their hyper-parameters chosen on
validation simulations only.

A simulation made on a recorded perturbation of the head model (model error,
:func:`~napari_meg_unet.headmodel.make_perturbed_headmodel`) is accepted with
the nominal model; its grid floor is measured to the nominal grid.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from . import metrics
from ._config import takes_config
from ._docs import fill_doc
from ._logging import verbose
from ._validation import check_choice, check_finite_data, check_int
from .configs import METHODS, PROTOCOLS, EvaluationConfig, InverseConfig, PeerConfig
from .inverse import apply_kernel, compute_kernel, make_inverse
from .progress import Progress, plain

__all__ = [
    "METHODS",
    "OPTIONAL_METRICS",
    "PROTOCOLS",
    "TABLE_METRICS",
    "Evaluation",
    "evaluate_linear",
    "evaluate_peers",
    "grid_distances",
    "grid_floor",
    "iter_evaluate_linear",
    "iter_evaluate_peers",
    "peer_simulations",
    "score_estimates",
    "shown_metrics",
    "summarise",
    "true_event_moments",
    "visible_orientations",
]

#: Metrics reported in tables: key in :func:`metrics.score_maps` -> column title.
TABLE_METRICS = {
    "dle_mm": "DLE (mm)",
    "sd_mm": "SD (mm)",
    "oa": "OA",
    "auc": "AUC",
    "tc_error": "TC error",
}
#: Metrics only some estimators have (dipoles' moments): a table shows them when one does.
OPTIONAL_METRICS = ("tc_error",)


def shown_metrics(rows) -> list:
    """The metrics a table of ``rows`` (dicts of aggregates) shows: each optional one only
    when some row has it."""
    return [m for m in TABLE_METRICS
            if m not in OPTIONAL_METRICS or any(r.get(m) is not None for r in rows)]  # fmt: skip


@dataclass
class Evaluation:
    """Per-event scores of several estimators on one simulation.

    Attributes
    ----------
    scores : dict
        ``{(estimator, protocol): {metric: per-map array, "event": event ids}}``.
    summary : dict
        ``{(estimator, protocol): {metric: aggregate dict}}`` (mean, CI, counts),
        with ``n_events`` and ``seconds_per_event`` (wall time of the estimate
        per event) and, for peers, ``n_empty`` (events without an estimate).
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

    def merge(self, other: Evaluation) -> Evaluation:
        """This evaluation with ``other``'s estimators added (same simulation)."""
        if other.meta.get("simulation") != self.meta.get("simulation"):
            raise ValueError("Only evaluations of the same simulation can be merged.")
        for name in ("scores", "summary", "per_vertex_dle"):
            getattr(self, name).update(getattr(other, name))
        self.meta = {**other.meta, **self.meta, **{k: v for k, v in other.meta.items()
                                                   if k in ("peers", "peers_skipped")}}
        return self

    def table(self, *, metrics_=None) -> str:
        """Markdown table: one row per estimator and protocol, events scored, seconds per
        event and mean [95% CI] per metric."""
        cols = metrics_ or shown_metrics(list(self.summary.values()))
        head = ("| estimator | protocol | n | s/event | "
                + " | ".join(TABLE_METRICS[c] for c in cols) + " |")  # fmt: skip
        lines = [head, "|" + "---|" * (4 + len(cols))]
        for (est, prot), res in self.summary.items():
            cells = [_count_text(res), _seconds_text(res.get("seconds_per_event"))]
            cells += [metrics.format_aggregate(res.get(c)) for c in cols]
            lines.append(f"| {est} | {prot} | " + " | ".join(cells) + " |")
        if self.grid_floor:
            g = self.grid_floor
            lines.append("")
            floor = metrics.format_aggregate(g)
            lines.append(f"Grid floor (distance to nearest grid vertex): {floor} mm")
        return "\n".join(lines)


def _count_text(res) -> str:
    n, empty = res.get("n_events"), res.get("n_empty")
    if n is None:
        return "n/a"
    return str(n) + (f" ({empty} empty)" if empty else "")


def _seconds_text(seconds) -> str:
    if seconds is None:
        return "n/a"
    return f"{seconds:.3g}" if seconds >= 1e-3 else f"{seconds:.1e}"


def _event_true_positions(sim) -> list[np.ndarray]:
    pos = sim.sources["position"]
    return [pos[sim.event_sources(i)] for i in range(len(sim))]


def true_event_moments(sim, i) -> np.ndarray | None:
    """The true moments ``(k, 3, n_times)`` (A·m) of event ``i``'s dipoles; None for patches.

    A dipole's moment is its normal times its time course. A patch has no one
    moment its equivalent dipole could be compared with, so patch events have
    no time-course error.
    """
    idx = sim.event_sources(i)
    if np.any(np.diff(sim.member_indptr)[idx] != 1):
        return None
    normals = np.asarray(sim.sources["normal"][idx], float)
    return normals[:, :, np.newaxis] * np.asarray(sim.timecourses[idx], float)[:, np.newaxis]


#: The conductor fields and whiteners of the last head models scored (by fingerprint).
_FIELDS: dict = {}


def visible_orientations(hm, positions) -> np.ndarray:
    """Projectors ``(k, 3, 3)`` onto the orientations ``hm``'s sensors see at ``positions``.

    The time-course error's (:mod:`.metrics.timecourses`): MNE's orientation
    rule on the noise-whitened gain of ``hm``'s own conductor
    (:func:`~napari_meg_unet.peers.field.visible_projectors`); the identity
    without a conductor model.
    """
    import mne

    from .peers.dipole import own_conductor
    from .peers.field import DipoleField, visible_projectors

    positions = np.asarray(positions, float).reshape(-1, 3)
    if hm.bem is None:
        return np.broadcast_to(np.eye(3), (len(positions), 3, 3)).copy()
    key = hm.fingerprint
    if key not in _FIELDS:
        _FIELDS.clear()  # one head model at a time: a conductor's set-up is large
        w, _ = mne.cov.compute_whitener(hm.noise_cov, hm.info, pca=True, verbose=False)
        _FIELDS[key] = (DipoleField(hm.info, *own_conductor(hm)), w)
    field, w = _FIELDS[key]
    return visible_projectors(field, w, positions)


def _check_estimates(estimates, n_events, n_rows):
    """Time courses, maps or point estimates of ``n_events`` events on ``n_rows`` rows."""
    if isinstance(estimates, metrics.PointEstimates):
        if len(estimates) != n_events:
            raise ValueError(
                f"estimates hold {len(estimates)} events but events has {n_events}."
            )
        return estimates
    estimates = np.asarray(estimates)
    if estimates.ndim not in (2, 3) or estimates.shape[:2] != (n_events, n_rows):
        raise ValueError(
            f"estimates must have shape (n_events={n_events}, n_rows={n_rows}, n_times) or "
            f"(n_events, n_rows), or be PointEstimates; got {estimates.shape}."
        )
    check_finite_data(estimates, where="estimates", axis_name="estimate")
    return estimates


def add_source_time_course_errors(scores, run, sim, hm) -> None:
    """Put the time-course error of a sparse solver's active sources (``run.sources``) into
    the ``scores`` of its maps (window protocol: one map per event, in ``run.events``'s order)."""
    if run.sources is not None:
        scores["tc_error"] = score_estimates(run.sources, sim, hm, events=run.events)["tc_error"]


def score_estimates(
    estimates,
    sim,
    hm,
    *,
    protocol="window",
    events=None,
    seed=0,
) -> dict:
    """Score the estimates of some events of a simulation.

    Parameters
    ----------
    estimates : array | PointEstimates
        In event order, on the simulation's rows (``sim.rows``): time courses
        ``(n_events, n_rows, n_times)``, one map per event ``(n_events,
        n_rows)`` (e.g. a network's probabilities; window protocol only), or
        :class:`~napari_meg_unet.metrics.PointEstimates` (dipoles at continuous
        positions, e.g. a dipole fit; window protocol only, see
        :mod:`napari_meg_unet.metrics.points` for what SD/OA/AUC mean there).
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
        Per-map metrics from :func:`metrics.score_events` plus ``event`` (the
        simulation event of each map) and ``true_row`` (index into ``sim.rows``
        of the event's first source, for per-vertex maps).
    """
    check_choice(protocol, "protocol", PROTOCOLS)
    events = np.arange(len(sim)) if events is None else np.asarray(events, dtype=int)
    rows = np.asarray(sim.rows)
    estimates = _check_estimates(estimates, len(events), len(rows))
    true_positions = _event_true_positions(sim)
    row_of = np.full(hm.n_sources, -1)
    row_of[rows] = np.arange(len(rows))
    first_row = row_of[sim.sources["row"][sim.event_indptr[:-1]]]
    points = isinstance(estimates, metrics.PointEstimates)
    true_moments = None
    if points and estimates.moments is not None:
        true_moments = [true_event_moments(sim, int(i)) for i in events]
    scores = metrics.score_events(
        estimates, positions=hm.positions[rows], adjacency=hm.adjacency(sim.meta["params"]["hemi"]),
        true_positions=[true_positions[i] for i in events], protocol=protocol,
        windows=[sim.window(int(i)) for i in events] if protocol == "samples" or points else None,
        seed=seed, true_moments=true_moments,
        visible=None if true_moments is None else [
            visible_orientations(hm, true_positions[i]) for i in events],
    )  # fmt: skip
    map_events = events[scores.pop("index")]
    scores["event"] = map_events
    scores["true_row"] = first_row[map_events]
    return scores


def summarise(scores: dict, *, n_rows: int, n_boot=2000, seed=0) -> tuple[dict, np.ndarray]:
    """Per-event aggregates of every table metric and the per-vertex mean DLE."""
    summary = {
        key: metrics.aggregate(
            scores[key], scores["event"], n_boot=n_boot, seed=seed, nan_policy="omit"
        )
        if key in scores and np.isfinite(scores[key]).any()
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


def grid_distances(sim, hm=None) -> np.ndarray:
    """Distance (m) from every true source of ``sim`` to the nearest vertex of the inversion grid.

    The simulation's own ``grid_distance`` column, except for a simulation made
    on a recorded perturbation of ``hm`` (model error): then the distance to
    the nearest of ``hm``'s rows of the same hemisphere selection.
    """
    from scipy.spatial import cKDTree

    made_with = sim.meta.get("headmodel", {})
    if hm is None or made_with.get("perturbation") is None:
        return np.asarray(sim.sources["grid_distance"], float)
    rows = np.asarray(sim.rows)
    return cKDTree(hm.positions[rows]).query(np.asarray(sim.sources["position"], float))[0]


def grid_floor(sim, *, hm=None, n_boot=2000, seed=0) -> dict:
    """Aggregate distance (mm) from the true dipoles to their nearest grid vertex.

    ``hm``: the inversion head model, for simulations with model error (see
    :func:`grid_distances`).
    """
    dist = grid_distances(sim, hm) * 1e3
    return metrics.aggregate(dist, sim.sources["event"], n_boot=n_boot, seed=seed)


def _check_headmodel(hm, sim) -> dict | None:
    """The simulation comes from ``hm`` or a recorded perturbation of it (returned)."""
    from .headmodel import check_simulated_on

    return check_simulated_on(sim.meta["headmodel"], hm)


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


def _add_scores(result, key, scores, *, n_rows, config, extra=None) -> None:
    """Store the per-map scores of ``key`` with their summary and per-vertex mean DLE."""
    summary, per_vertex = summarise(scores, n_rows=n_rows, n_boot=config.n_boot, seed=config.seed)
    result.scores[key] = scores
    result.summary[key] = {**summary, **(extra or {})}
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
        seconds = 0.0
        for start in range(0, len(sim), chunk):
            stop = min(start + chunk, len(sim))
            t0 = time.perf_counter()
            est = apply_kernel(kernel, np.asarray(sim.data[start:stop], dtype=np.float64))
            seconds += time.perf_counter() - t0
            est = est[:, rows]
            for protocol in config.protocols:
                scores = score_estimates(
                    est, sim, hm, protocol=protocol, events=np.arange(start, stop), seed=config.seed
                )
                parts[protocol].append(scores)
            done += stop - start
            yield Progress("evaluate", done, total, message=method)
        timing = {"n_events": len(sim), "seconds_per_event": seconds / max(len(sim), 1)}
        for protocol, chunks in parts.items():
            scores = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
            _add_scores(result, (method, protocol), scores, n_rows=len(rows), config=config,
                        extra=timing)  # fmt: skip
    result.grid_floor = grid_floor(sim, hm=hm, n_boot=config.n_boot, seed=config.seed)
    return result


evaluate_linear = plain(iter_evaluate_linear)


# --------------------------------------------------------------------------- peers
def _iter_peer(peer, hm, sim, *, validation, training, config, n_boot, seed, result):
    """Search one peer on ``validation``, run it on ``sim``'s first events, score it."""
    from .peers import check_disjoint_from, fixed_params, iter_run_peer, iter_search

    search = yield from iter_search(
        peer, hm, validation, training=training if peer.trainable else None,
        max_events=config.search_events_slow if peer.slow else config.search_events,
        fixed=fixed_params(config.sensor_blocks, config.sensor_net_file),
    )  # fmt: skip
    disjoint = check_disjoint_from(search, [sim.fingerprint])
    state = search.state or peer.prepare(hm, sim.info, params=search.params, training=training)
    n = min(len(sim), config.peer_events_slow if peer.slow else config.peer_events)
    run = yield from iter_run_peer(peer, state, sim, np.arange(n))
    scores = score_estimates(run.estimates, sim, hm, protocol="window", events=run.events,
                             seed=seed)  # fmt: skip
    add_source_time_course_errors(scores, run, sim, hm)
    extra = {"n_events": int(n), "n_empty": run.n_empty,
             "seconds_per_event": float(np.mean(run.seconds)), "params": run.params}
    summary, per_vertex = summarise(scores, n_rows=len(sim.rows), n_boot=n_boot, seed=seed)
    key = (peer.label, "window")
    result.scores[key], result.summary[key] = scores, {**summary, **extra}
    result.per_vertex_dle[key] = per_vertex
    result.meta["peers"][peer.name] = {**search.to_dict(), "disjoint_check": disjoint}


@fill_doc
@takes_config(PeerConfig)
@verbose
def iter_evaluate_peers(hm, sim, *, validation, training=None, n_boot=2000, seed=0, config,
                        verbose=None):  # fmt: skip
    """Score peers on a simulation, their hyper-parameters chosen on validation data only.

    Each peer of ``config.peers`` (:mod:`napari_meg_unet.peers`) searches its
    grid on ``validation`` (:func:`~napari_meg_unet.peers.iter_search`),
    then estimates the first ``peer_events`` (slow peers: ``peer_events_slow``)
    events of ``sim``, timed per event; the estimates are scored with the
    window protocol (one estimate per event). Peers that cannot run (e.g.
    CMNE without its package) are listed in ``meta["peers_skipped"]`` with
    the reason.

    Parameters
    ----------
    hm : HeadModel
        Head model of the inversion (the nominal one for model-error data).
    sim : Simulation
        The test simulation.
    validation : Simulation | list of Simulation
        Validation simulations for the search; never ``sim`` (checked by
        fingerprint).
    training : Simulation | None
        Training simulation of trainable peers (CMNE).
    n_boot : int
        Bootstrap resamples of the confidence intervals.
    seed : int
        Seed of the bootstrap and the AUC negative draws.
    %(options)s
    %(verbose)s

    Yields
    ------
    %(progress_yields)s

    Returns
    -------
    evaluation : Evaluation
        One ``(peer label, "window")`` entry per peer; ``meta["peers"]`` holds
        each search (grid, criterion, validation fingerprints) and its
        disjointness check.
    """
    from .peers import get_peer

    _check_headmodel(hm, sim)
    names = config.peers or ()
    result = Evaluation(meta={"simulation": sim.fingerprint, "headmodel": hm.fingerprint,
                              "n_events": len(sim), "peers": {}, "peers_skipped": {},
                              "peer_config": config.to_dict(), "n_boot": n_boot, "seed": seed})
    for k, name in enumerate(names):
        peer = get_peer(name)
        yield Progress("peers", k, len(names), peer.label)
        why = peer.unavailable(hm)
        if why is None and peer.trainable and training is None:
            why = "it needs a training simulation (training=...)"
        if why is not None:
            result.meta["peers_skipped"][name] = why
            continue
        yield from _iter_peer(peer, hm, sim, validation=validation, training=training,
                              config=config, n_boot=n_boot, seed=seed, result=result)  # fmt: skip
    yield Progress("peers", len(names), len(names), "done")
    result.grid_floor = grid_floor(sim, hm=hm, n_boot=n_boot, seed=seed)
    return result


evaluate_peers = plain(iter_evaluate_peers)


def peer_simulations(hm, sim, peers, *, seed=0) -> tuple:
    """The simulations the peers ``peers`` need beside the test simulation ``sim``.

    A validation simulation for their searches and, when one of them is
    trained (:attr:`~napari_meg_unet.peers.Peer.trainable`), a training one:
    both repeat ``sim``'s settings (design, hemisphere, sources, SNR, time
    courses, rate, length, nave) on ``hm`` with seeds of their own, derived
    from ``seed`` and ``sim``'s fingerprint, so never ``sim``'s events.
    Returns ``(validation, training)`` (``training`` None when not needed).
    """
    from .accuracy import derive_seed
    from .peers import get_peer
    from .simulate import simulate

    def again(role):
        return simulate(hm, config=sim.config, seed=derive_seed(seed, role, sim.fingerprint),
                        verbose=False)  # fmt: skip

    trained = any(get_peer(name).trainable for name in peers)
    return again("peer-validation"), again("peer-training") if trained else None
