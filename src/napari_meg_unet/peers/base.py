"""The estimator interface every peer implements, and what they share.

An *estimator* maps one event's sensor data to one estimate: a time course
on the head model's sources (a map per sample), or a few dipoles at
continuous positions. A peer is an estimator of another method family
(dipole fitting, RAP-MUSIC, sparse Bayesian and mixed-norm solvers,
beamformers, CMNE) with

- a **grid** of hyper-parameter candidates, searched on validation data only
  (:mod:`.search`), and defaults used without a search;
- :meth:`Peer.prepare`: everything that depends on the head model and the
  hyper-parameters only (a sphere model, a kernel, a trained network);
- :meth:`Peer.estimate`: one event, timed by the runner (:mod:`.run`).

A network (its probability map: ``EventEstimate(map=...)``) or a hybrid
(network positions refined by a dipole fit: ``EventEstimate(positions=...)``)
fit the same interface, so every estimator is run by :func:`.run.iter_run_peer`
and scored by the same code, :func:`napari_meg_unet.metrics.score_events`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import mne
import numpy as np

#: What an estimator returns per event.
OUTPUTS = ("map", "points")
#: Source designs (kinds of test sets) a peer is meant for.
DESIGN_KINDS = ("single", "multi", "extended")


@dataclass
class EventEstimate:
    """One event's estimate: time courses or one map on the head model's sources, or dipoles.

    Exactly one of ``time_courses``, ``map`` and ``positions`` (with
    ``amplitudes``, and ``moments`` when the estimator gives them) is set.

    Attributes
    ----------
    time_courses : array, shape (n_sources, n_times) | None
        On all sources of the head model (``HeadModel`` order); zero where
        the estimator puts nothing (sparse solvers).
    map : array, shape (n_sources,) | None
        One non-negative map for the whole event (e.g. a network's
        probabilities), scored as the event's window map.
    positions : array, shape (m, 3) | None
        Dipole positions, metres, head coordinates.
    amplitudes : array, shape (m,) | None
        A non-negative strength per dipole (mean absolute moment, A·m).
    moments : array, shape (m, 3, n_times) | None
        The dipoles' moment time courses (A·m, head coordinates), scored by the
        time-course error (:mod:`napari_meg_unet.metrics.timecourses`).
    """

    time_courses: np.ndarray | None = None
    positions: np.ndarray | None = None
    amplitudes: np.ndarray | None = None
    map: np.ndarray | None = None
    moments: np.ndarray | None = None

    def window_map(self, rows) -> np.ndarray:
        """The event's map on ``rows``: ``map``, or the mean ``|time course|`` over the epoch."""
        if self.map is not None:
            return np.abs(np.asarray(self.map, float)[rows])
        if self.time_courses is None:
            raise ValueError("A point estimate (dipoles) has no map.")
        return np.abs(np.asarray(self.time_courses)[rows]).mean(axis=-1)

    @classmethod
    def empty_points(cls, n_times=0) -> EventEstimate:
        """No dipole (its moments: none, of ``n_times`` samples)."""
        return cls(positions=np.empty((0, 3)), amplitudes=np.empty(0),
                   moments=np.empty((0, 3, n_times)))  # fmt: skip


@dataclass
class PeerState:
    """What :meth:`Peer.prepare` made: the head model, the data's info and the peer's own parts."""

    hm: object
    info: mne.Info
    nave: int
    params: dict
    parts: dict


class Peer:
    """Base class of the peers: see the module docstring.

    Class attributes
    ----------------
    name : str
        Registry key (``--peers`` value).
    label : str
        Estimator name in the tables.
    family : str
        The method family (module).
    output : ``"map"`` | ``"points"``
        What :meth:`estimate` returns.
    grid : dict
        ``{hyper-parameter: candidates}`` searched on validation data; the
        search tries every combination (the product).
    defaults : dict
        The hyper-parameters used without a search.
    kinds : tuple of str
        The source designs the peer is meant for (a single-dipole fit is not
        run on 2-5-dipole events).
    slow : bool
        Subsample events (``max_events_slow``) for this peer.
    needs_n_sources : bool
        :meth:`estimate` is given the true number of sources of the event.
    trainable : bool
        :meth:`prepare` trains on a training simulation.
    learned : bool
        The estimator is one of this project's networks (counted with the
        networks, as the network alone, by the protocol's targets), not a peer.
    sparse_sources : bool
        A map estimator whose time courses are a few sources' moments along
        their normals (A·m, a sparse solver): its runs also keep them as dipoles
        (:attr:`.run.PeerRun.sources`) for the time-course error.
    """

    name = ""
    label = ""
    family = ""
    output = "map"
    grid: dict = {}
    defaults: dict = {}
    kinds: tuple = DESIGN_KINDS
    slow = False
    needs_n_sources = False
    trainable = False
    learned = False
    sparse_sources = False
    #: Documentation of the peer: method, MNE function and the search.
    doc = ""

    def unavailable(self, hm) -> str | None:
        """Why the peer cannot run with ``hm`` (a missing package, no BEM), else None."""
        return None

    def candidates(self, fixed=None) -> list[dict]:
        """Every combination of the grid (the defaults when the grid is empty).

        ``fixed`` (``{name: value}``) replaces those of the peer's defaults
        that it names (e.g. a trained peer's budget); others are ignored.
        """
        defaults = {**self.defaults, **{k: v for k, v in (fixed or {}).items()
                                        if k in self.defaults}}  # fmt: skip
        if not self.grid:
            return [defaults]
        keys = list(self.grid)
        return [
            {**defaults, **dict(zip(keys, values, strict=True))}
            for values in itertools.product(*(self.grid[k] for k in keys))
        ]

    def prepare(self, hm, info, *, params, nave=1, training=None) -> PeerState:
        """The state :meth:`estimate` needs for ``params`` (see the module docstring)."""
        with blas_threads(1):
            parts = self._prepare(hm, info, params, training)
        return PeerState(hm, info, nave, dict(params), parts)

    def _prepare(self, hm, info, params, training) -> dict:
        return {}

    def estimate(self, state: PeerState, data, *, n_sources=None) -> EventEstimate:
        """The estimate of one event's sensor data ``(n_channels, n_times)``."""
        raise NotImplementedError

    def estimate_batch(self, state: PeerState, data, *, n_sources=None) -> list[EventEstimate]:
        """Estimates of several events ``(n_events, n_channels, n_times)`` (a loop by default)."""
        n_sources = [None] * len(data) if n_sources is None else n_sources
        return [self.estimate(state, d, n_sources=k) for d, k in zip(data, n_sources, strict=True)]

    def describe(self) -> dict:
        """JSON-friendly description (name, label, grid, defaults, output, kinds)."""
        return {
            "name": self.name, "label": self.label, "family": self.family,
            "output": self.output, "grid": {k: list(v) for k, v in self.grid.items()},
            "defaults": dict(self.defaults), "kinds": list(self.kinds), "slow": self.slow,
        }  # fmt: skip


# =========================================================================== helpers
def evoked(state: PeerState, data) -> mne.EvokedArray:
    """One event's data as an :class:`mne.EvokedArray` (``tmin=0``, the state's ``nave``)."""
    return mne.EvokedArray(
        np.asarray(data, dtype=np.float64), state.info, tmin=0.0, nave=state.nave, verbose=False
    )


def stc_time_courses(hm, stc) -> np.ndarray:
    """A (sparse) :class:`mne.SourceEstimate` on ``hm``'s sources as ``(n_sources, n_times)``."""
    out = np.zeros((hm.n_sources, stc.data.shape[1]))
    rows = []
    offset = 0
    for vertno, stc_vertno in zip(hm.vertno, stc.vertices, strict=True):
        idx = np.searchsorted(vertno, stc_vertno)
        if len(stc_vertno) and (
            idx.max() >= len(vertno) or not np.array_equal(vertno[idx], stc_vertno)
        ):
            raise ValueError("The source estimate has vertices the head model does not use.")
        rows.append(offset + idx)
        offset += len(vertno)
    out[np.concatenate(rows)] = stc.data
    return out


def dipole_points(dipoles, n_times) -> EventEstimate:
    """Dipoles (a list of :class:`mne.Dipole`, one position each, ``n_times`` times) as points.

    A dipole's amplitude is its mean absolute moment over its times (A·m); its
    moments, its amplitude times its orientation at each time.
    """
    if not dipoles:
        return EventEstimate.empty_points(n_times)
    positions = np.array([np.asarray(d.pos)[0] for d in dipoles])
    amplitudes = np.array([np.mean(np.abs(d.amplitude)) for d in dipoles])
    moments = np.stack([np.asarray(d.ori, float).T * np.asarray(d.amplitude, float)
                        for d in dipoles])  # fmt: skip
    return EventEstimate(positions=positions, amplitudes=amplitudes, moments=moments)


def whitener(state: PeerState) -> np.ndarray:
    """The noise whitener ``(rank, n_channels)`` of ``hm.noise_cov`` on the state's channels."""
    if "whitener" not in state.parts:
        w, _ = mne.cov.compute_whitener(
            state.hm.noise_cov, state.info, pca=True, verbose=False
        )
        state.parts["whitener"] = w
    return state.parts["whitener"]


def blas_threads(n: int = 1):
    """Context manager limiting BLAS/OpenMP threads (one by default) while peers run.

    MNE's solvers are many small matrix products: on a shared 2-core machine,
    OpenBLAS's spinning threads made gamma-MAP 50x slower than one thread
    (109 s versus 2.2 s for one event), so peers run (and are timed) on one
    BLAS thread.
    """
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=n)
