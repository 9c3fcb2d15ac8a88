"""The hyper-parameter search of the peers: a grid, on validation simulations only.

For every combination of a peer's grid (:attr:`Peer.grid`), the peer is
prepared (trained, for CMNE, on the *training* simulation) and run on the
first ``max_events`` events of each validation simulation; its estimates are
scored with the window protocol (:func:`napari_meg_unet.metrics.score_events`,
the code that scores the test sets). The chosen combination has the fewest
validation events left without an estimate and, among those, the lowest mean
validation DLE (mean over events; ties go to the earlier candidate). A peer
whose grid is empty (the dipole fits, RAP-MUSIC with the number of sources
given) has nothing to search and keeps its defaults.

The search never sees a test simulation: it is given validation (and
training) simulations only, and :class:`SearchResult` records their
fingerprints so that the caller can check them against the test sets'
(:func:`check_disjoint_from`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..metrics import score_events
from ..progress import Progress
from .run import iter_run_peer

#: The search's criterion, as the reports state it.
CRITERION = (
    "fewest validation events without an estimate, then lowest mean validation DLE "
    "(window protocol)"
)


@dataclass
class SearchResult:
    """What the search chose and why.

    Attributes
    ----------
    peer : str
        The peer's name.
    params : dict
        The chosen hyper-parameters.
    candidates : list of dict
        Per candidate: ``params``, ``dle_mm`` (mean validation DLE),
        ``n_empty``, ``n_events`` and ``seconds_per_event``.
    validation : list of dict
        Fingerprint and number of events of each validation simulation used.
    training : str | None
        Fingerprint of the training simulation (trainable peers).
    criterion : str
        :data:`CRITERION` (or why nothing was searched).
    """

    peer: str
    params: dict
    candidates: list = field(default_factory=list)
    validation: list = field(default_factory=list)
    training: str | None = None
    criterion: str = CRITERION
    #: The prepared state of the chosen candidate (None when nothing was searched).
    state: object = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict:
        return {
            "peer": self.peer, "params": self.params, "candidates": self.candidates,
            "validation": self.validation, "training": self.training,
            "criterion": self.criterion,
        }  # fmt: skip


def validation_dle(run, sim, hm) -> np.ndarray:
    """Per-event DLE (mm, NaN for events without an estimate) of a peer run on ``sim``."""
    rows = np.asarray(sim.rows)
    true_positions = [sim.sources["position"][sim.event_sources(int(i))] for i in run.events]
    scores = score_events(
        run.estimates, positions=hm.positions[rows], true_positions=true_positions,
        adjacency=hm.adjacency(sim.meta["params"]["hemi"]), protocol="window", seed=0,
    )  # fmt: skip
    return np.asarray(scores["dle_mm"], float)


def _as_list(sims) -> list:
    return list(sims) if isinstance(sims, list | tuple) else [sims]


def iter_search(peer, hm, validation, *, max_events=50, training=None, stage=None, fixed=None):
    """Choose ``peer``'s hyper-parameters on ``validation`` (generator of Progress).

    Parameters
    ----------
    peer : Peer
        The peer.
    hm : HeadModel
        The head model of the inversion.
    validation : Simulation | list of Simulation
        Validation simulations (never a test set).
    max_events : int
        Events used from each validation simulation (the first ones).
    training : Simulation | None
        Training simulation of a trainable peer (CMNE).
    stage : str | None
        Progress stage name.
    fixed : dict | None
        Values of the peer's defaults every candidate takes
        (:meth:`~napari_meg_unet.peers.Peer.candidates`), e.g. ``n_blocks``.

    Returns
    -------
    result : SearchResult
    """
    sims = _as_list(validation)
    stage = stage or f"search {peer.name}"
    record = [{"simulation": s.fingerprint, "n_events": min(len(s), max_events)} for s in sims]
    train_fp = None if training is None else training.fingerprint
    candidates = peer.candidates(fixed)
    if len(candidates) == 1:
        return SearchResult(peer.name, candidates[0], validation=[], training=None,
                            criterion="nothing to search (no hyper-parameter grid)")  # fmt: skip
    info, nave = sims[0].info, int(sims[0].meta["params"].get("nave", 1))
    table, states = [], []
    for k, params in enumerate(candidates):
        yield Progress(stage, k, len(candidates), str(params))
        state = peer.prepare(hm, info, params=params, nave=nave, training=training)
        dle, seconds, n_empty = [], [], 0
        for sim in sims:
            events = np.arange(min(len(sim), max_events))
            run = yield from iter_run_peer(peer, state, sim, events, stage=stage)
            dle.append(validation_dle(run, sim, hm))
            seconds.append(run.seconds)
            n_empty += run.n_empty
        dle = np.concatenate(dle)
        states.append(state)
        table.append({
            "params": params, "n_empty": int(n_empty), "n_events": int(len(dle)),
            "dle_mm": float(np.nanmean(dle)) if np.isfinite(dle).any() else None,
            "seconds_per_event": float(np.mean(np.concatenate(seconds))),
        })  # fmt: skip
    yield Progress(stage, len(candidates), len(candidates), "done")
    best = min(range(len(table)), key=lambda i: _rank(table[i]))
    return SearchResult(peer.name, candidates[best], table, record, train_fp, state=states[best])


def _rank(entry) -> tuple:
    dle = entry["dle_mm"]
    return (entry["n_empty"], np.inf if dle is None else dle)


def check_disjoint_from(search: SearchResult, test_fingerprints) -> dict:
    """Check that no simulation the search saw is a test set.

    Returns ``{"disjoint": True, "search": [...], "test": [...]}``; raises
    ValueError when a test simulation was used by the search.
    """
    seen = {v["simulation"] for v in search.validation}
    if search.training is not None:
        seen.add(search.training)
    test = set(test_fingerprints)
    shared = sorted(seen & test)
    if shared:
        raise ValueError(
            f"The hyper-parameter search of {search.peer} used test simulation(s) {shared}."
        )
    return {"disjoint": True, "search": sorted(seen), "test": sorted(test)}
