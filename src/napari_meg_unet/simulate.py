"""Vectorised dipole simulation on a head model's gain matrix.

Sensor data for every event is ``gain[:, sources] @ time_courses`` plus
noise, computed for chunks of events with one batched matrix product each
(no :func:`mne.simulation.simulate_raw`). Three designs are available:

``"sweep"``
    One dipole per event; every source row of the chosen hemisphere(s) is
    used exactly ``n_repeats`` times, in a shuffled order.
``"multi"``
    ``n_events`` events with several simultaneous dipoles at distinct rows,
    optionally at least ``min_separation_mm`` apart.
``"extended"``
    One cortical patch per event, grown along the source-space mesh from a
    seed row to a radius of ``extent_mm``.

The signal-to-noise ratio is set exactly, per event, in whitened sensor
space; see ``docs/simulation.md`` for the definitions.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from numbers import Integral, Real
from pathlib import Path

import mne
import numpy as np
from scipy import sparse
from scipy.sparse import csgraph
from scipy.spatial import cKDTree

from . import __version__
from ._io import atomic_dir, read_json, to_json
from .fingerprint import FINGERPRINT_LENGTH, _update_with_array
from .headmodel import HEMIS, HeadModel, check_hemi
from .progress import Progress, run

DESIGNS = ("sweep", "multi", "extended")
TIMECOURSES = ("thesis", "realistic")
NOISES = ("cov", "white", None)

#: Sampling rate (Hz) of the MNE sample raw file the 2017 thesis simulated with.
THESIS_SFREQ = 600.614990234375
#: Default sampling rate (Hz) of the ``"realistic"`` preset.
REALISTIC_SFREQ = 250.0
#: Default number of samples per event (both presets).
DEFAULT_N_TIMES = 32
#: ``"thesis"`` preset: 10 Hz sine starting at phase 0, 20 active samples.
THESIS_FREQ = 10.0
THESIS_DURATION = 20
#: ``"realistic"`` preset ranges: frequency (Hz, uniform), relative amplitude
#: (log-uniform), duration as a fraction of ``n_times`` (uniform integer).
REALISTIC_FREQ = (4.0, 20.0)
REALISTIC_REL_AMPLITUDE = (0.5, 2.0)
REALISTIC_DURATION = (0.25, 0.75)

#: Dense spacing of an off-grid template sweep when ``dense_spacing`` is None.
SWEEP_DENSE_SPACING = "ico5"

#: Layout version of :meth:`Simulation.save` directories.
FORMAT_VERSION = 1
FORMAT_NAME = "napari-meg-unet/simulation"
SIDECAR = "simulation.json"
INFO_FILE = "simulation-info.fif"
#: Names of the non-table arrays saved by :meth:`Simulation.save`.
_ARRAYS = (
    "data",
    "timecourses",
    "fields",
    "event_indptr",
    "member_indptr",
    "member_rows",
    "member_weights",
    "rows",
)
#: Columns of :attr:`Simulation.sources`, in order.
SOURCE_COLUMNS = (
    "event",
    "row",
    "vertex",
    "dense_vertex",
    "hemi",
    "position",
    "normal",
    "field",
    "onset",
    "duration",
    "frequency",
    "phase",
    "amplitude",
    "snr",
    "grid_distance",
)
#: Chunk memory budget (bytes of one float64 event block times events) for batching.
_CHUNK_BYTES = 32 * 2**20
#: Attempts at drawing one event's dipoles under ``min_separation_mm``.
_MAX_PLACEMENT_ATTEMPTS = 200


# =========================================================================== container
@dataclass(eq=False)
class Simulation:
    """Simulated sensor data and its ground truth.

    Attributes
    ----------
    data : ndarray, shape (n_events, n_channels, n_times), float32
        Sensor data (signal + noise), channels as in ``info``.
    info : mne.Info
        The head model's measurement info with ``sfreq`` set.
    sources : dict of ndarray
        Source table, one row per dipole (or patch centre), sorted by event.
        Columns (see :data:`SOURCE_COLUMNS`): ``event``; ``row`` (coarse row in
        the head model's source order; for off-grid dipoles the nearest coarse
        row); ``vertex`` (surface vertex number of the true location);
        ``dense_vertex`` (index into the dense sources, -1 on-grid); ``hemi``
        (0 = lh, 1 = rh); ``position`` and ``normal`` (n, 3) in metres / unit
        vectors, head coordinates; ``field`` (row of :attr:`fields`);
        ``onset`` and ``duration`` (samples); ``frequency`` (Hz) and ``phase``
        (rad) of the burst; ``amplitude`` (peak, A·m); ``snr`` (the event's
        SNR); ``grid_distance`` (m, distance to the coarse row, 0 on-grid).
    event_indptr : ndarray, shape (n_events + 1,)
        Sources of event ``i`` are ``event_indptr[i]:event_indptr[i + 1]``.
    timecourses : ndarray, shape (n_sources_total, n_times), float64
        Unit-peak waveform times amplitude of each source (A·m).
    fields : ndarray, shape (n_fields, n_channels), float64
        Noise-free sensor field per A·m of each distinct simulated location
        (a gain column, a dense gain column, or a weighted patch sum).
    member_indptr, member_rows, member_weights : ndarray
        CSR membership of each source over coarse rows: source ``s`` puts
        ``member_weights[k] * timecourses[s]`` on row ``member_rows[k]`` for
        ``k`` in ``member_indptr[s]:member_indptr[s + 1]``. Dipoles have one
        member (their row, weight 1); patches have all their vertices.
    rows : ndarray
        ``HeadModel.rows(hemi)`` for the simulated hemisphere(s).
    meta : dict
        Head-model identity, all parameters, seed, package version, creation
        time, noise rank and the simulation :attr:`fingerprint`.
    """

    data: np.ndarray
    info: mne.Info
    sources: dict
    event_indptr: np.ndarray
    timecourses: np.ndarray
    fields: np.ndarray
    member_indptr: np.ndarray
    member_rows: np.ndarray
    member_weights: np.ndarray
    rows: np.ndarray
    meta: dict = field(default_factory=dict)

    # ---------------------------------------------------------------- shape
    def __len__(self) -> int:
        return int(self.data.shape[0])

    def __repr__(self) -> str:
        p = self.meta.get("params", {})
        return (
            f"<Simulation | {len(self)} events ({p.get('design')}, {p.get('hemi')}), "
            f"{self.data.shape[1]} channels x {self.data.shape[2]} samples "
            f"@ {self.sfreq:g} Hz>"
        )

    @property
    def sfreq(self) -> float:
        return float(self.info["sfreq"])

    @property
    def times(self) -> np.ndarray:
        """Sample times (s); the first sample of each event is at 0."""
        return np.arange(self.data.shape[2]) / self.sfreq

    @property
    def n_sources(self) -> int:
        """Number of sources (coarse rows) of the head model."""
        return int(self.meta["headmodel"]["n_sources"])

    @property
    def fingerprint(self) -> str:
        """Content fingerprint (see :func:`simulation_fingerprint`), computed once.

        Kept in ``meta["fingerprint"]`` and in the saved sidecar.
        """
        if "fingerprint" not in self.meta:
            self.meta["fingerprint"] = simulation_fingerprint(self)
        return self.meta["fingerprint"]

    # ---------------------------------------------------------------- events
    def _check_event(self, i) -> int:
        if not isinstance(i, Integral) or isinstance(i, bool):
            raise TypeError(f"event index must be an int, got {type(i).__name__}.")
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"event index {i} out of range for {n} events.")
        return int(i) % n

    def event_sources(self, i) -> np.ndarray:
        """Indices into :attr:`sources` of the sources of event ``i``."""
        i = self._check_event(i)
        return np.arange(self.event_indptr[i], self.event_indptr[i + 1])

    def window(self, i) -> tuple[int, int]:
        """Active window ``(onset, stop)`` in samples of event ``i``.

        From the earliest onset to the latest end of the event's sources
        (``stop`` exclusive); the SNR is defined over these samples.
        """
        idx = self.event_sources(i)
        onset = self.sources["onset"][idx]
        stop = onset + self.sources["duration"][idx]
        return int(onset.min()), int(stop.max())

    def truth(self, i, *, rows=None) -> np.ndarray:
        """Ground-truth source time courses of event ``i`` on coarse rows.

        Parameters
        ----------
        i : int
            Event index.
        rows : array-like of int | None
            Rows (indices in the head model's source order) to return, e.g.
            :attr:`rows`; ``None`` returns all ``n_sources`` rows.

        Returns
        -------
        truth : ndarray, shape (n_rows, n_times), float64
            Source amplitude (A·m) per row; off-grid dipoles are placed at their
            nearest coarse row, patches on all their member rows (weighted).
        """
        idx = self.event_sources(i)
        out = np.zeros((self.n_sources, self.data.shape[2]))
        for s in idx:
            sl = slice(self.member_indptr[s], self.member_indptr[s + 1])
            contrib = self.member_weights[sl][:, None] * self.timecourses[s][None, :]
            np.add.at(out, self.member_rows[sl], contrib)
        if rows is None:
            return out
        rows = np.asarray(rows)
        if rows.ndim != 1 or rows.dtype.kind not in "iu":
            raise ValueError("rows must be a 1-D array of integer row indices.")
        if rows.size and (rows.min() < 0 or rows.max() >= self.n_sources):
            raise ValueError(
                f"rows must lie in [0, {self.n_sources}), got {rows.min()}..{rows.max()}."
            )
        return out[rows]

    def active_rows(self, i) -> np.ndarray:
        """Sorted coarse rows carrying ground-truth activity in event ``i``."""
        idx = self.event_sources(i)
        rows = [self.member_rows[self.member_indptr[s] : self.member_indptr[s + 1]] for s in idx]
        weights = [
            self.member_weights[self.member_indptr[s] : self.member_indptr[s + 1]] for s in idx
        ]
        rows, weights = np.concatenate(rows), np.concatenate(weights)
        return np.unique(rows[weights != 0])

    def signal(self, i) -> np.ndarray:
        """Noise-free sensor data (n_channels, n_times) of event ``i``, float64."""
        idx = self.event_sources(i)
        fields = np.asarray(self.fields)[self.sources["field"][idx]]
        return fields.T @ np.asarray(self.timecourses[idx])

    def to_epochs(self, *, proj=True, verbose=None) -> mne.EpochsArray:
        """The data as :class:`mne.EpochsArray` (one epoch per event, ``tmin=0``)."""
        n = len(self)
        events = np.column_stack(
            [np.arange(n) * self.data.shape[2], np.zeros(n, int), np.ones(n, int)]
        ).astype(int)
        return mne.EpochsArray(
            np.asarray(self.data, dtype=np.float64),
            self.info.copy(),
            events=events,
            tmin=0.0,
            event_id={"simulated": 1},
            baseline=None,
            proj=proj,
            verbose=verbose,
        )

    # ---------------------------------------------------------------- disk
    def save(self, path, *, overwrite: bool = False) -> Path:
        """Save to the directory ``path`` (``.npy`` arrays + ``simulation.json``).

        Every array is a plain ``.npy`` file loadable with ``mmap_mode="r"``;
        table columns are ``source_<column>.npy``. The info is written as
        ``simulation-info.fif``. Everything is written into a temporary sibling
        directory that is renamed onto ``path`` at the end, so nothing
        half-written ever appears at ``path``.

        Parameters
        ----------
        path : path-like
            Output directory.
        overwrite : bool
            Replace an existing ``path``.

        Returns
        -------
        path : Path
            The directory written.
        """
        with atomic_dir(path, overwrite=overwrite, what="simulation") as tmp:
            arrays = self._arrays()
            for name, array in arrays.items():
                np.save(tmp / f"{name}.npy", np.ascontiguousarray(array), allow_pickle=False)
            mne.io.write_info(tmp / INFO_FILE, self.info)
            self.fingerprint  # noqa: B018 - computed into meta before writing the sidecar
            sidecar = dict(self.meta)
            sidecar["arrays"] = {
                name: {"shape": list(a.shape), "dtype": np.asarray(a).dtype.str}
                for name, a in arrays.items()
            }
            sidecar["source_columns"] = list(SOURCE_COLUMNS)
            (tmp / SIDECAR).write_text(to_json(sidecar, indent=2, sort_keys=True) + "\n")
        return Path(path)

    def _arrays(self) -> dict:
        arrays = {name: getattr(self, name) for name in _ARRAYS}
        arrays.update({f"source_{col}": self.sources[col] for col in SOURCE_COLUMNS})
        return arrays


def load_simulation(path, *, mmap: bool = True) -> Simulation:
    """Load a simulation written by :meth:`Simulation.save`.

    Parameters
    ----------
    path : path-like
        The simulation directory.
    mmap : bool
        Memory-map the arrays read-only (``mmap_mode="r"``) instead of
        reading them into memory.

    Returns
    -------
    sim : Simulation
        The simulation.
    """
    path = Path(path)
    sidecar_path = path / SIDECAR
    if not sidecar_path.is_file():
        raise FileNotFoundError(
            f"{str(path)!r} is not a simulation directory: {SIDECAR} is missing."
        )
    meta = read_json(sidecar_path)
    if meta.get("format") != FORMAT_NAME:
        raise ValueError(f"{str(sidecar_path)!r} is not a {FORMAT_NAME} sidecar.")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{str(sidecar_path)!r} has format_version {meta.get('format_version')!r}; "
            f"this version of napari-meg-unet reads {FORMAT_VERSION}."
        )
    expected = meta.pop("arrays")
    meta.pop("source_columns", None)
    arrays = {}
    for name, spec in expected.items():
        fname = path / f"{name}.npy"
        if not fname.is_file():
            raise FileNotFoundError(f"Simulation array file {str(fname)!r} is missing.")
        array = np.load(fname, mmap_mode="r" if mmap else None, allow_pickle=False)
        if list(array.shape) != spec["shape"] or array.dtype.str != spec["dtype"]:
            raise ValueError(
                f"{str(fname)!r} holds {array.dtype.str} {list(array.shape)}, but "
                f"{SIDECAR} expects {spec['dtype']} {spec['shape']}."
            )
        arrays[name] = array
    info_path = path / INFO_FILE
    if not info_path.is_file():
        raise FileNotFoundError(f"Simulation info file {str(info_path)!r} is missing.")
    info = mne.io.read_info(info_path, verbose=False)
    sources = {col: arrays.pop(f"source_{col}") for col in SOURCE_COLUMNS}
    return Simulation(info=info, sources=sources, meta=meta, **arrays)


def simulation_fingerprint(sim: Simulation) -> str:
    """Fingerprint of a simulation's content.

    A short sha256 digest of the head-model fingerprint, the parameters and
    seed, and every array (data, time courses, fields, source table and patch
    membership). The creation time and the package version are not hashed.

    Parameters
    ----------
    sim : Simulation
        The simulation (in memory or memory-mapped).

    Returns
    -------
    fingerprint : str
        Hex digest of :data:`~napari_meg_unet.fingerprint.FINGERPRINT_LENGTH`
        characters.
    """
    digest = hashlib.sha256()
    digest.update(
        to_json(
            dict(
                kind="simulation",
                format_version=FORMAT_VERSION,
                headmodel=sim.meta["headmodel"]["fingerprint"],
                params=sim.meta["params"],
                sfreq=sim.sfreq,
            ),
            sort_keys=True,
        ).encode()
    )
    for name, array in sim._arrays().items():
        digest.update(f"|{name}|{tuple(array.shape)}|".encode())
        if name == "data":  # stream the big (possibly memory-mapped) array in chunks
            for start in range(0, array.shape[0], 256):
                _update_with_array(digest, array[start : start + 256])
        else:
            _update_with_array(digest, array)
    return digest.hexdigest()[:FINGERPRINT_LENGTH]


# =========================================================================== validation
def _check_int(value, name, *, minimum=None):
    if not isinstance(value, Integral) or isinstance(value, bool):
        raise ValueError(f"{name} must be an int, got {value!r}.")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}.")
    return int(value)


def _check_positive(value, name, *, allow_zero=False):
    if not isinstance(value, Real) or isinstance(value, bool):
        raise ValueError(f"{name} must be a number, got {value!r}.")
    value = float(value)
    ok = value >= 0 if allow_zero else value > 0
    if not (math.isfinite(value) and ok):
        what = "a finite number >= 0" if allow_zero else "a finite number > 0"
        raise ValueError(f"{name} must be {what}, got {value!r}.")
    return value


def _check_range(value, name, checker):
    """A scalar or a ``(lo, hi)`` pair with ``lo <= hi``; returns ``(lo, hi)``."""
    if isinstance(value, tuple | list | np.ndarray):
        if len(value) != 2:
            raise ValueError(f"{name} must be a number or a (lo, hi) pair, got {value!r}.")
        lo, hi = (checker(v, name) for v in value)
        if lo > hi:
            raise ValueError(f"{name} range must have lo <= hi, got ({lo}, {hi}).")
        return lo, hi
    v = checker(value, name)
    return v, v


def _check_choice(value, name, options):
    if value not in options:
        raise ValueError(f"{name} must be one of {options}, got {value!r}.")
    return value


def _check_finite_gain(gain, name):
    if not np.isfinite(gain).all():
        bad = np.flatnonzero(~np.isfinite(gain).all(axis=0))
        raise ValueError(
            f"{name} contains NaN/Inf values (in {len(bad)} source column(s), first "
            f"{bad[:5].tolist()}); rebuild the head model."
        )


# =========================================================================== simulation
def simulate(
    hm,
    *,
    design="sweep",
    hemi="rh",
    n_repeats=1,
    n_events=None,
    n_dipoles=(2, 5),
    min_separation_mm=None,
    extent_mm=10.0,
    off_grid=False,
    dense_spacing=None,
    timecourse="thesis",
    snr=1.0,
    noise="cov",
    nave=1,
    sfreq=None,
    n_times=None,
    seed=0,
    verbose=None,
) -> Simulation:
    """Simulate sensor data on a head model.

    Same parameters as :func:`iter_simulate`, which this runs to completion.

    Returns
    -------
    sim : Simulation
        The simulated data and ground truth.
    """
    return run(
        iter_simulate(
            hm,
            design=design,
            hemi=hemi,
            n_repeats=n_repeats,
            n_events=n_events,
            n_dipoles=n_dipoles,
            min_separation_mm=min_separation_mm,
            extent_mm=extent_mm,
            off_grid=off_grid,
            dense_spacing=dense_spacing,
            timecourse=timecourse,
            snr=snr,
            noise=noise,
            nave=nave,
            sfreq=sfreq,
            n_times=n_times,
            seed=seed,
            verbose=verbose,
        )
    )


def iter_simulate(
    hm,
    *,
    design="sweep",
    hemi="rh",
    n_repeats=1,
    n_events=None,
    n_dipoles=(2, 5),
    min_separation_mm=None,
    extent_mm=10.0,
    off_grid=False,
    dense_spacing=None,
    timecourse="thesis",
    snr=1.0,
    noise="cov",
    nave=1,
    sfreq=None,
    n_times=None,
    seed=0,
    verbose=None,
):
    """Simulate M/EEG sensor data for many events, yielding progress.

    Parameters
    ----------
    hm : HeadModel
        Head model providing the gain, source geometry, info and noise
        covariance.
    design : "sweep" | "multi" | "extended"
        ``"sweep"``: one dipole per event, each row of ``hemi`` exactly
        ``n_repeats`` times in a shuffled order. ``"multi"``: ``n_events``
        events with ``n_dipoles`` dipoles at distinct rows. ``"extended"``:
        one patch per event grown from a seed row to radius ``extent_mm``;
        seeds sweep the rows like ``"sweep"`` when ``n_events`` is None, else
        ``n_events`` seeds are drawn uniformly (with replacement).
    hemi : "lh" | "rh" | "both"
        Hemisphere(s) the sources are drawn from.
    n_repeats : int
        Times each row is used (``"sweep"``, and ``"extended"`` without
        ``n_events``).
    n_events : int | None
        Number of events; required for ``"multi"``; must be None for
        ``"sweep"`` (its size is ``n_repeats`` times the number of rows).
    n_dipoles : int | (int, int)
        Dipoles per ``"multi"`` event: a fixed number or an inclusive range
        drawn uniformly per event.
    min_separation_mm : float | None
        Minimum distance between the rows of one ``"multi"`` event.
    extent_mm : float
        Patch radius (``"extended"``): the patch is the set of vertices
        connected to the seed along mesh edges through vertices at most
        ``extent_mm`` from the seed (Euclidean).
    off_grid : bool
        Put dipoles at dense source-space vertices (their own normals, dense
        forward) instead of the head model's rows (``"sweep"``/``"multi"``).
    dense_spacing : str | None
        Spacing passed to :func:`~napari_meg_unet.headmodel.make_dense_sources`.
        None uses its default, except for an off-grid ``"sweep"`` on the
        template, which uses the full ``"ico5"`` mesh so that every row has
        dense vertices nearest to it (recorded in ``meta["dense_spacing"]``).
    timecourse : "thesis" | "realistic"
        Waveform preset (see ``docs/simulation.md``).
    snr : float | (float, float)
        Whitened-space SNR per event (> 0, finite); a ``(lo, hi)`` range is
        drawn log-uniformly per event.
    noise : "cov" | "white" | None
        ``"cov"``: Gaussian noise with the head model's noise covariance
        (coloured with MNE's colourer); ``"white"``: i.i.d. Gaussian noise
        with one variance per channel type (the mean of that type's diagonal
        of ``hm.noise_cov``); ``None``: noise-free.
    nave : int
        Number of averaged trials: the noise is divided by ``sqrt(nave)``.
    sfreq : float | None
        Sampling rate (Hz); None uses the preset's.
    n_times : int | None
        Samples per event; None uses 32.
    seed : int
        Seed of every random draw; the same seed gives bit-identical output.
    verbose : bool | str | int | None
        MNE log level for the whitener computation (None: warnings only).

    Yields
    ------
    progress : Progress
        One event per chunk of simulated events.

    Returns
    -------
    sim : Simulation
        Returned through ``StopIteration.value``.
    """
    p = _check_params(
        hm, design=design, hemi=hemi, n_repeats=n_repeats, n_events=n_events,
        n_dipoles=n_dipoles, min_separation_mm=min_separation_mm, extent_mm=extent_mm,
        off_grid=off_grid, dense_spacing=dense_spacing, timecourse=timecourse, snr=snr,
        noise=noise, nave=nave, sfreq=sfreq, n_times=n_times, seed=seed,
    )  # fmt: skip
    rng_design, rng_time, rng_snr, rng_noise = (
        np.random.default_rng(s) for s in np.random.SeedSequence(p["seed"]).spawn(4)
    )

    dense = None
    if p["off_grid"]:
        from .headmodel import _is_template, iter_make_dense_sources

        dense_spacing = p["dense_spacing"]
        if dense_spacing is None and p["design"] == "sweep" and _is_template(hm):
            # one level finer than the grid leaves some rows without any dense vertex
            # nearest to them; the full fsaverage5 mesh gives every row several
            dense_spacing = SWEEP_DENSE_SPACING
        dense = yield from iter_make_dense_sources(hm, spacing=dense_spacing, verbose=verbose)
        _check_finite_gain(np.asarray(dense.gain), "The dense gain")

    layout = _draw_layout(hm, p, rng_design, dense)
    n_events = len(layout["event_indptr"]) - 1
    n_src = len(layout["row"])
    n_times = p["n_times"]
    tc = _draw_waveforms(p, n_src, rng_time)
    if p["snr"][0] == p["snr"][1]:
        event_snr = np.full(n_events, p["snr"][0])
    else:
        lo, hi = np.log(p["snr"])
        event_snr = np.exp(rng_snr.uniform(lo, hi, n_events))

    whitener, colorer = _noise_model(hm, p["noise"], verbose=verbose)
    rank = whitener.shape[0]
    if p["noise"] is not None:
        # noise = z @ colour, z ~ N(0, 1) of shape (events * n_times, n_noise), in float32:
        # the data are float32, so the colouring product need not be float64
        colour = (colorer.T / np.sqrt(p["nave"])).astype(np.float32)
        if np.count_nonzero(colour) <= 0.05 * colour.size:  # e.g. a diagonal covariance
            colour = sparse.csr_matrix(colour)
    fields = layout["fields"]
    w_fields = fields @ whitener.T  # (n_fields, rank)

    # padded (event, slot) -> source index table for batched products
    counts = np.diff(layout["event_indptr"])
    slots = np.arange(n_src) - np.repeat(layout["event_indptr"][:-1], counts)
    pad = np.full((n_events, counts.max()), -1, int)
    pad[layout["event"], slots] = np.arange(n_src)
    starts = np.minimum.reduceat(tc["onset"], layout["event_indptr"][:-1])
    stops = np.maximum.reduceat(tc["onset"] + tc["duration"], layout["event_indptr"][:-1])
    in_window = (np.arange(n_times) >= starts[:, None]) & (np.arange(n_times) < stops[:, None])
    target = event_snr / np.sqrt(p["nave"])

    n_ch = fields.shape[1]
    data = np.empty((n_events, n_ch, n_times), np.float32)
    scale = np.empty(n_events)
    chunk = max(1, _CHUNK_BYTES // (8 * max(n_ch, rank) * n_times))
    yield Progress("simulate", 0, n_events, f"{n_events} events")
    for start in range(0, n_events, chunk):
        sl = slice(start, min(start + chunk, n_events))
        idx = pad[sl]
        valid = (idx >= 0)[..., None]
        src = np.where(idx >= 0, idx, 0)
        # (event, time, slot) amplitudes; products are formed as (event, time, channel)
        amp = tc["unit"][src] * (tc["rel_amplitude"][src][..., None] * valid)
        amp = np.ascontiguousarray(amp.transpose(0, 2, 1))
        f_idx = layout["field"][src]
        # whitened signal of the unscaled amplitudes -> exact per-event scale
        w_sig = np.matmul(amp, w_fields[f_idx])
        power = np.einsum("etr,etr->et", w_sig, w_sig)
        mean_power = (power * in_window[sl]).sum(axis=1) / (in_window[sl].sum(axis=1) * rank)
        rms = np.sqrt(mean_power)
        bad = ~(np.isfinite(rms) & (rms > 0))
        if bad.any():
            e = start + int(np.flatnonzero(bad)[0])
            rows = layout["row"][pad[e][pad[e] >= 0]].tolist()
            raise ValueError(
                f"Event {e} (rows {rows}) has no whitened signal: its sources are "
                "invisible to the sensors, so no amplitude reaches the requested snr."
            )
        scale[sl] = target[sl] / rms
        signal = np.matmul(amp, fields[f_idx])
        signal *= scale[sl][:, None, None]
        if p["noise"] is not None:
            n_ev = signal.shape[0]
            z = rng_noise.standard_normal((n_ev * n_times, colour.shape[0]), dtype=np.float32)
            signal += np.asarray(z @ colour).reshape(n_ev, n_times, n_ch)
        data[sl] = signal.transpose(0, 2, 1)
        yield Progress("simulate", sl.stop, n_events, f"{n_events} events")

    amplitude = tc["rel_amplitude"] * scale[layout["event"]]
    sources = dict(
        event=layout["event"],
        row=layout["row"],
        vertex=layout["vertex"],
        dense_vertex=layout["dense_vertex"],
        hemi=layout["hemi"],
        position=layout["position"],
        normal=layout["normal"],
        field=layout["field"],
        onset=tc["onset"],
        duration=tc["duration"],
        frequency=tc["frequency"],
        phase=tc["phase"],
        amplitude=amplitude,
        snr=event_snr[layout["event"]],
        grid_distance=layout["grid_distance"],
    )
    info = hm.info.copy()
    with info._unlock():
        info["sfreq"] = p["sfreq"]
        info["lowpass"] = min(float(info["lowpass"] or np.inf), p["sfreq"] / 2.0)
    meta = dict(
        format=FORMAT_NAME,
        format_version=FORMAT_VERSION,
        package_version=__version__,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        headmodel=dict(
            fingerprint=hm.fingerprint,
            subject=hm.subject,
            spacing=hm.spacing,
            modality=hm.modality,
            n_sources=int(hm.n_sources),
            n_channels=int(n_ch),
        ),
        params=dict(p),
        seed=p["seed"],
        n_events=int(n_events),
        n_sources_total=int(n_src),
        noise_rank=int(rank),
        dense_spacing=None if dense is None else dense.spacing,
        snr_definition="rms_whitened_signal_over_window * sqrt(nave)",
    )
    sim = Simulation(
        data=data,
        info=info,
        sources=sources,
        event_indptr=layout["event_indptr"],
        timecourses=tc["unit"] * amplitude[:, None],
        fields=fields,
        member_indptr=layout["member_indptr"],
        member_rows=layout["member_rows"],
        member_weights=layout["member_weights"],
        rows=hm.rows(p["hemi"]),
        meta=meta,
    )
    sim.meta["fingerprint"] = simulation_fingerprint(sim)
    return sim


def _check_params(hm, **p) -> dict:
    """Validate every option up front; returns the normalised parameters."""
    if not isinstance(hm, HeadModel):
        raise TypeError(f"hm must be a HeadModel, got {type(hm).__name__}.")
    _check_choice(p["design"], "design", DESIGNS)
    check_hemi(p["hemi"])
    _check_choice(p["timecourse"], "timecourse", TIMECOURSES)
    _check_choice(p["noise"], "noise", NOISES)
    p["seed"] = _check_int(p["seed"], "seed", minimum=0)
    p["n_repeats"] = _check_int(p["n_repeats"], "n_repeats", minimum=1)
    p["nave"] = _check_int(p["nave"], "nave", minimum=1)
    p["snr"] = list(_check_range(p["snr"], "snr", _check_positive))
    p["off_grid"] = bool(p["off_grid"])
    design = p["design"]
    if p["n_events"] is not None:
        p["n_events"] = _check_int(p["n_events"], "n_events", minimum=1)
        if design == "sweep":
            raise ValueError(
                "n_events must be None for design='sweep': it sweeps every row of the "
                "hemisphere n_repeats times (use design='multi' for a fixed count)."
            )
    elif design == "multi":
        raise ValueError("n_events is required for design='multi'.")
    lo, hi = _check_range(
        p["n_dipoles"], "n_dipoles", lambda v, name: _check_int(v, name, minimum=1)
    )
    p["n_dipoles"] = [lo, hi]
    if p["min_separation_mm"] is not None:
        if design != "multi":
            raise ValueError("min_separation_mm only applies to design='multi'.")
        p["min_separation_mm"] = _check_positive(
            p["min_separation_mm"], "min_separation_mm", allow_zero=True
        )
    p["extent_mm"] = _check_positive(p["extent_mm"], "extent_mm", allow_zero=True)
    if p["off_grid"] and design == "extended":
        raise ValueError(
            "off_grid=True is supported for design='sweep' and 'multi', not 'extended'."
        )
    preset_sfreq = THESIS_SFREQ if p["timecourse"] == "thesis" else REALISTIC_SFREQ
    p["sfreq"] = preset_sfreq if p["sfreq"] is None else _check_positive(p["sfreq"], "sfreq")
    p["n_times"] = DEFAULT_N_TIMES if p["n_times"] is None else p["n_times"]
    min_times = THESIS_DURATION if p["timecourse"] == "thesis" else 4
    p["n_times"] = _check_int(p["n_times"], "n_times", minimum=min_times)
    if p["timecourse"] == "thesis" and p["sfreq"] <= 2 * THESIS_FREQ:
        raise ValueError(f"sfreq must exceed {2 * THESIS_FREQ} Hz for the thesis 10 Hz burst.")
    if p["timecourse"] == "realistic" and p["sfreq"] <= 2 * REALISTIC_FREQ[0] / 0.8:
        raise ValueError(
            f"sfreq must exceed {2 * REALISTIC_FREQ[0] / 0.8:g} Hz for the realistic preset."
        )
    if p["dense_spacing"] is not None:
        if not isinstance(p["dense_spacing"], str):
            raise ValueError(f"dense_spacing must be a str or None, got {p['dense_spacing']!r}.")
        if not p["off_grid"]:
            raise ValueError("dense_spacing only applies with off_grid=True.")
    _check_finite_gain(hm.gain, "hm.gain")
    return p


# --------------------------------------------------------------------------- layout
def _draw_layout(hm, p, rng, dense) -> dict:
    """Which rows (and dense vertices / patches) each event uses."""
    rows = hm.rows(p["hemi"])
    design = p["design"]
    candidates = rows
    dense_pool = None
    if dense is not None:
        dense_pool = _dense_pools(hm, dense, rows)
        if design == "sweep" and (dense_pool["count"][rows] == 0).any():
            empty = rows[dense_pool["count"][rows] == 0]
            raise ValueError(
                f"{len(empty)} row(s) of hemi={p['hemi']!r} (first {empty[:5].tolist()}) have "
                "no dense vertex nearest to them, so an off-grid sweep cannot cover them; "
                "use a finer dense_spacing."
            )
        candidates = rows[dense_pool["count"][rows] > 0]

    if design in ("sweep", "extended") and not (design == "extended" and p["n_events"]):
        row = rng.permutation(np.repeat(rows, p["n_repeats"]))
        counts = np.ones(len(row), int)
    elif design == "extended":
        row = rng.choice(rows, size=p["n_events"], replace=True)
        counts = np.ones(len(row), int)
    else:
        row, counts = _draw_multi(hm, p, rng, candidates)
    event_indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    event = np.repeat(np.arange(len(counts)), counts).astype(np.int64)
    row = np.asarray(row, np.int64)
    n_src = len(row)
    vertno_all = np.concatenate(hm.vertno)
    n_lh = len(hm.vertno[0])

    if dense is not None:
        pool = dense_pool
        pick = np.floor(rng.random(n_src) * pool["count"][row]).astype(np.int64)
        dense_idx = pool["order"][pool["start"][row] + pick]
        position = np.asarray(dense.positions, float)[dense_idx]
        normal = np.asarray(dense.normals, float)[dense_idx]
        vertex = np.concatenate(dense.vertno)[dense_idx]  # dense sources: lh then rh
        key, field_of = np.unique(dense_idx, return_inverse=True)
        fields = np.asarray(dense.gain, np.float64)[:, key].T
        grid_distance = np.linalg.norm(position - hm.positions[row], axis=1)
        dense_vertex = dense_idx.astype(np.int64)
        member_indptr = np.arange(n_src + 1, dtype=np.int64)
        member_rows, member_weights = row.copy(), np.ones(n_src)
    else:
        position, normal = hm.positions[row], hm.normals[row]
        vertex = vertno_all[row]
        dense_vertex = np.full(n_src, -1, np.int64)
        grid_distance = np.zeros(n_src)
        key, field_of = np.unique(row, return_inverse=True)
        if design == "extended":
            patches = _grow_patches(hm, p["hemi"], key, p["extent_mm"] / 1000.0)
            sizes = np.array([len(m) for m in patches])
            member_indptr = np.concatenate([[0], np.cumsum(sizes[field_of])]).astype(np.int64)
            member_rows = np.concatenate([patches[k] for k in field_of]).astype(np.int64)
            member_weights = np.ones(len(member_rows))
            patch_ptr = np.concatenate([[0], np.cumsum(sizes)])
            weights = sparse.csr_matrix(
                (np.ones(patch_ptr[-1]), np.concatenate(patches), patch_ptr),
                shape=(len(key), hm.n_sources),
            )
            fields = np.asarray(weights @ hm.gain.T)
        else:
            fields = hm.gain[:, key].T
            member_indptr = np.arange(n_src + 1, dtype=np.int64)
            member_rows, member_weights = row.copy(), np.ones(n_src)
    return dict(
        event_indptr=event_indptr,
        event=event,
        row=row,
        vertex=np.asarray(vertex, np.int64),
        dense_vertex=dense_vertex,
        hemi=(row >= n_lh).astype(np.int8),
        position=np.ascontiguousarray(position, np.float64),
        normal=np.ascontiguousarray(normal, np.float64),
        field=field_of.astype(np.int64).ravel(),
        fields=np.ascontiguousarray(fields, np.float64),
        grid_distance=grid_distance.astype(np.float64),
        member_indptr=member_indptr,
        member_rows=np.asarray(member_rows, np.int64),
        member_weights=np.asarray(member_weights, np.float64),
    )


def _dense_pools(hm, dense, rows) -> dict:
    """Dense vertices grouped by nearest coarse row (restricted to ``rows``)."""
    nearest = np.asarray(dense.nearest_row, np.int64)
    keep = np.isin(nearest, rows)
    order = np.flatnonzero(keep)
    order = order[np.argsort(nearest[order], kind="stable")]
    count = np.bincount(nearest[order], minlength=hm.n_sources)
    start = np.concatenate([[0], np.cumsum(count)[:-1]])
    return dict(order=order, count=count, start=start)


def _draw_multi(hm, p, rng, candidates):
    lo, hi = p["n_dipoles"]
    hemi = p["hemi"]
    if hi > len(candidates):
        raise ValueError(
            f"n_dipoles={hi} is more than the {len(candidates)} available rows of hemi={hemi!r}."
        )
    n_events = p["n_events"]
    counts = rng.integers(lo, hi + 1, size=n_events)
    sep = p["min_separation_mm"]
    if not sep:
        chosen = [rng.choice(candidates, size=int(k), replace=False) for k in counts]
        return np.concatenate(chosen), counts
    sep_m = sep / 1000.0
    pos = hm.positions[candidates]
    tree = cKDTree(pos)
    chosen = []
    for k in counts:
        for _ in range(_MAX_PLACEMENT_ATTEMPTS):
            allowed = np.ones(len(candidates), bool)
            picks = []
            for _ in range(int(k)):
                free = np.flatnonzero(allowed)
                if len(free) == 0:
                    break
                j = free[rng.integers(len(free))]
                picks.append(j)
                # strictly closer than sep is forbidden (the pick itself included)
                near = tree.query_ball_point(pos[j], np.nextafter(sep_m, 0))
                allowed[near] = False
                allowed[j] = False
            if len(picks) == k:
                chosen.append(candidates[np.array(picks)])
                break
        else:
            raise ValueError(
                f"Could not place {k} dipoles at least min_separation_mm={sep:g} mm apart "
                f"among the {len(candidates)} rows of hemi={hemi!r} "
                f"({_MAX_PLACEMENT_ATTEMPTS} attempts); lower min_separation_mm or n_dipoles."
            )
    return np.concatenate(chosen), counts


def _grow_patches(hm, hemi, seeds, radius) -> list[np.ndarray]:
    """Rows connected to each seed along mesh edges within ``radius`` (m) of it."""
    rows = hm.rows(hemi)
    adjacency = hm.adjacency(hemi).tocsr()
    local = np.full(hm.n_sources, -1, int)
    local[rows] = np.arange(len(rows))
    pos = hm.positions[rows]
    tree = cKDTree(pos)
    patches = []
    for seed in seeds:
        s = local[seed]
        near = np.asarray(tree.query_ball_point(pos[s], radius), int)
        near = np.union1d(near, [s])
        sub = adjacency[near][:, near]
        reached = csgraph.breadth_first_order(
            sub, int(np.searchsorted(near, s)), directed=False, return_predecessors=False
        )
        patches.append(np.sort(rows[near[reached]]))
    return patches


# --------------------------------------------------------------------------- waveforms
def _draw_waveforms(p, n_src, rng) -> dict:
    """Unit-peak waveforms (n_src, n_times) with their onset/duration/frequency/phase."""
    n_times, sfreq = p["n_times"], p["sfreq"]
    if p["timecourse"] == "thesis":
        onset = np.full(n_src, (n_times - THESIS_DURATION) // 2, np.int64)
        duration = np.full(n_src, THESIS_DURATION, np.int64)
        frequency = np.full(n_src, THESIS_FREQ)
        phase = np.zeros(n_src)
        rel_amplitude = np.ones(n_src)
        taper = False
    else:
        f_hi = min(REALISTIC_FREQ[1], 0.4 * sfreq)
        frequency = rng.uniform(REALISTIC_FREQ[0], f_hi, n_src)
        phase = rng.uniform(0.0, 2 * np.pi, n_src)
        d_lo = max(3, math.ceil(REALISTIC_DURATION[0] * n_times))
        d_hi = max(d_lo, math.floor(REALISTIC_DURATION[1] * n_times))
        duration = rng.integers(d_lo, d_hi + 1, n_src).astype(np.int64)
        onset = np.floor(rng.random(n_src) * (n_times - duration + 1)).astype(np.int64)
        rel_amplitude = np.exp(rng.uniform(*np.log(REALISTIC_REL_AMPLITUDE), n_src))
        taper = True
    tau = np.arange(n_times)[None, :] - onset[:, None]
    active = (tau >= 0) & (tau < duration[:, None])
    unit = np.sin(2 * np.pi * frequency[:, None] * tau / sfreq + phase[:, None])
    if taper:  # Hann window of duration + 2 points without its zero end points
        unit *= np.sin(np.pi * (tau + 1) / (duration[:, None] + 1)) ** 2
    unit = np.where(active, unit, 0.0)
    peak = np.abs(unit).max(axis=1)
    unit /= np.where(peak > 0, peak, 1.0)[:, None]
    return dict(
        unit=unit,
        onset=onset,
        duration=duration,
        frequency=frequency,
        phase=phase,
        rel_amplitude=rel_amplitude,
    )


# --------------------------------------------------------------------------- noise
def _noise_model(hm, noise, *, verbose=None):
    """Whitener (r, n_ch) defining the SNR and colourer (n_ch, q) drawing the noise.

    The whitener and colourer of the noise covariance (``hm.noise_cov``, or
    the per-channel-type diagonal for ``noise="white"``) come from
    :func:`mne.cov.compute_whitener` (``pca=True``) and are embedded into all
    ``info`` channels (zero columns / rows for channels it excludes, e.g.
    bads). For ``"white"`` the colourer is ``diag(sigma)``: the i.i.d. noise
    is drawn in sensor space, projectors included.
    """
    info = hm.info
    n_ch = len(info["ch_names"])
    cov = hm.noise_cov.copy()
    # covariances read from FIF hold big-endian data, which MNE's eigh rejects
    cov["data"] = np.asarray(cov["data"], dtype=np.float64)
    sigma = None
    if noise == "white":
        var = np.asarray(cov.data, float)
        var = var if var.ndim == 1 else np.diag(var)
        var = var[[cov.ch_names.index(ch) for ch in info["ch_names"]]]
        types = np.array(info.get_channel_types())
        sigma = np.empty(n_ch)
        for kind in np.unique(types):
            sel = types == kind
            sigma[sel] = np.sqrt(var[sel].mean())
        cov = mne.Covariance(np.diag(sigma**2), list(info["ch_names"]), bads=[], projs=[], nfree=1)
    whitener, ch_names, colorer = mne.cov.compute_whitener(
        cov, info, pca=True, return_colorer=True, verbose="WARNING" if verbose is None else verbose
    )
    picks = np.array([info["ch_names"].index(ch) for ch in ch_names], int)
    full_w = np.zeros((whitener.shape[0], n_ch))
    full_w[:, picks] = whitener
    if noise == "white":
        return full_w, np.diag(sigma)
    full_c = np.zeros((n_ch, colorer.shape[1]))
    full_c[picks] = colorer
    return full_w, full_c


__all__ = [
    "DESIGNS",
    "HEMIS",
    "NOISES",
    "SOURCE_COLUMNS",
    "Simulation",
    "TIMECOURSES",
    "iter_simulate",
    "load_simulation",
    "simulate",
    "simulation_fingerprint",
]
