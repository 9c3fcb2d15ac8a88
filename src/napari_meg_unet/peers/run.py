"""Running a prepared peer over the events of a simulation, timing every event."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import numpy as np

from ..metrics import PointEstimates
from ..progress import Progress
from .base import Peer, PeerState, blas_threads


@dataclass
class PeerRun:
    """The estimates of one peer on some events of a simulation.

    Attributes
    ----------
    peer : str
        The peer's name.
    params : dict
        The hyper-parameters used.
    events : ndarray of int
        The simulation events estimated (in order).
    estimates : PointEstimates | ndarray, shape (n_events, n_rows)
        Dipoles (with their moments when the peer gives them), or the window
        map (mean ``|estimate|`` over the epoch) on the simulation's rows.
    seconds : ndarray, shape (n_events,)
        Wall time of each event's estimate (one BLAS thread).
    n_empty : int
        Events without any estimate (no dipole, or an all-zero map).
    sources : PointEstimates | None
        A sparse solver's active sources as dipoles (their positions and, as
        moments, their time courses along the sources' normals, A·m), for the
        time-course error (:attr:`~.base.Peer.sparse_sources`); None otherwise.
    """

    peer: str
    params: dict
    events: np.ndarray
    estimates: object
    seconds: np.ndarray
    n_empty: int
    sources: PointEstimates | None = None


def event_n_sources(sim, events) -> np.ndarray:
    """The true number of sources of each event (what ``rap-music`` is given)."""
    return np.diff(np.asarray(sim.event_indptr))[np.asarray(events, int)]


def _for_data(state: PeerState, sim) -> PeerState:
    """``state`` with the simulation's sampling rate and ``nave``; same channels and sensors.

    The sensor geometry stays the one the peer was prepared with (the nominal
    head model's): a simulation made on a head model with a coregistration
    error carries the *true* sensor positions in its info, which an estimator
    must not see (a dipole fit given them has no coregistration error left).
    """
    if list(sim.info["ch_names"]) != list(state.info["ch_names"]):
        raise ValueError("The simulation's channels are not the ones the peer was prepared for.")
    nave = int(sim.meta["params"].get("nave", 1))
    info = state.info
    sfreq = float(sim.info["sfreq"])
    if not np.isclose(sfreq, float(info["sfreq"])):
        info = info.copy()
        with info._unlock():
            info["sfreq"] = sfreq
            info["lowpass"] = min(float(info["lowpass"]), sfreq / 2)
    return dataclasses.replace(state, info=info, nave=nave)


def iter_run_peer(peer, state, sim, events, *, stage=None, batch=16):
    """Estimate ``events`` of ``sim`` with a prepared peer (generator of Progress).

    Returns a :class:`PeerRun`. Map estimates are kept as their window map on
    ``sim.rows``; events are estimated ``batch`` at a time (a peer may batch
    them, e.g. CMNE) and the time of a batch is shared by its events.
    """
    events = np.asarray(events, dtype=int)
    state = _for_data(state, sim)
    rows = np.asarray(sim.rows)
    counts = event_n_sources(sim, events) if peer.needs_n_sources else None
    stage = stage or f"peer {peer.name}"
    positions, amplitudes, moments, maps, active = [], [], [], [], []
    seconds = np.empty(len(events))
    yield Progress(stage, 0, len(events), peer.label)
    with blas_threads(1):
        for start in range(0, len(events), batch):
            sel = slice(start, min(start + batch, len(events)))
            data = np.asarray(sim.data[events[sel]], np.float64)
            t0 = time.perf_counter()
            if type(peer).estimate_batch is Peer.estimate_batch:  # one event at a time
                out = []
                for k, d in enumerate(data):
                    t1 = time.perf_counter()
                    out.append(peer.estimate(state, d, n_sources=_count(counts, sel, k)))
                    seconds[sel.start + k] = time.perf_counter() - t1
            else:
                n = None if counts is None else counts[sel]
                out = peer.estimate_batch(state, data, n_sources=n)
                seconds[sel] = (time.perf_counter() - t0) / len(data)
            for est in out:
                if peer.output == "points":
                    positions.append(est.positions)
                    amplitudes.append(est.amplitudes)
                    moments.append(est.moments)
                else:
                    maps.append(est.window_map(rows))
                    if peer.sparse_sources:
                        active.append(_active_sources(state.hm, est.time_courses))
            yield Progress(stage, sel.stop, len(events), peer.label)
    if peer.output == "points":
        # moments only when the estimator gives them for every event
        if any(m is None for m in moments):
            moments = None
        estimates = PointEstimates(positions, amplitudes, moments)
        n_empty = sum(len(p) == 0 for p in estimates.positions)
    else:
        estimates = np.stack(maps)
        n_empty = int((~(estimates != 0).any(axis=1)).sum())
    sources = None
    if active:  # (positions, amplitudes, moments) of each event
        sources = PointEstimates(*(list(part) for part in zip(*active, strict=True)))
    return PeerRun(peer.name, dict(state.params), events, estimates, seconds, int(n_empty),
                   sources)  # fmt: skip


def _active_sources(hm, time_courses) -> tuple:
    """``(positions, amplitudes, moments)`` of the sources a sparse solution uses."""
    courses = np.asarray(time_courses, float)
    active = np.flatnonzero(np.any(courses != 0, axis=1))
    moments = hm.normals[active][:, :, np.newaxis] * courses[active][:, np.newaxis, :]
    return hm.positions[active], np.abs(courses[active]).mean(axis=1), moments


def _count(counts, sel, k):
    return None if counts is None else int(counts[sel][k])
