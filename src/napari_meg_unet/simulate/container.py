"""The :class:`Simulation` container, its directory layout on disk and its fingerprint."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from numbers import Integral
from pathlib import Path

import mne
import numpy as np

from .._docs import fill_doc
from .._io import atomic_dir, check_writable_output, read_json, to_json
from .._resources import ResourceEstimate, check_resources
from .._validation import check_finite_data
from ..fingerprint import FINGERPRINT_LENGTH, _update_with_array

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
#: Arrays larger than this are written (and checked for NaN/Inf) in blocks of rows this size.
_BLOCK_BYTES = 64 * 2**20
#: Bytes of one ``.npy`` header (format 1.0 pads it to a multiple of 64).
_NPY_HEADER_BYTES = 128


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
    def config(self):
        """The :class:`~napari_meg_unet.configs.SimulationConfig` of its settings (``meta``)."""
        from ..configs import SimulationConfig

        params = {k: v for k, v in self.meta["params"].items()
                  if k in SimulationConfig.__dataclass_fields__}  # fmt: skip
        return SimulationConfig.from_dict(params)

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
    @fill_doc
    def save(self, path, *, overwrite: bool = False, force: bool = False) -> Path:
        """Save to the directory ``path`` (``.npy`` arrays + ``simulation.json``).

        Every array is a plain ``.npy`` file loadable with ``mmap_mode="r"``;
        table columns are ``source_<column>.npy``. The info is written as
        ``simulation-info.fif``. Everything is written into a temporary sibling
        directory that is renamed onto ``path`` at the end, so nothing
        half-written ever appears at ``path``. Large arrays (e.g. memory-mapped
        data) are written in blocks, never copied whole.

        Parameters
        ----------
        path : path-like
            Output directory.
        %(overwrite)s
        force : bool
            Write even when the file system of ``path`` seems to have too little
            free space for the arrays (CLI: ``--force``).

        Returns
        -------
        path : Path
            The directory written.
        """
        path = check_writable_output(path, overwrite=overwrite, what="simulation")
        arrays = self._arrays()
        disk = sum(np.asarray(a).nbytes + _NPY_HEADER_BYTES for a in arrays.values())
        estimate = ResourceEstimate(f"saving a simulation of {len(self)} events", disk=disk)
        check_resources(estimate, out=path, force=force)
        with atomic_dir(path, overwrite=overwrite, what="simulation") as tmp:
            for name, array in arrays.items():
                _save_array(tmp / f"{name}.npy", array)
            mne.io.write_info(tmp / INFO_FILE, self.info)
            self.fingerprint  # noqa: B018 - computed into meta before writing the sidecar
            sidecar = dict(self.meta)
            sidecar["arrays"] = {
                name: {"shape": list(a.shape), "dtype": np.asarray(a).dtype.str}
                for name, a in arrays.items()
            }
            sidecar["source_columns"] = list(SOURCE_COLUMNS)
            (tmp / SIDECAR).write_text(to_json(sidecar, indent=2, sort_keys=True) + "\n")
        return path

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

    Raises
    ------
    ValueError
        When an array does not match the sidecar, or the data, time courses or
        fields hold NaN or Inf (naming the file and the first bad event,
        source or field; memory-mapped arrays are scanned block by block).
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
    _check_finite(path, arrays)
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


# --------------------------------------------------------------------------- array files
def _block_rows(array) -> int:
    """Rows of ``array`` per block of about :data:`_BLOCK_BYTES`."""
    row_bytes = array.dtype.itemsize * int(np.prod(array.shape[1:], dtype=np.int64))
    return max(1, _BLOCK_BYTES // max(row_bytes, 1))


def _save_array(fname: Path, array) -> None:
    """``np.save`` of ``array``, streamed block by block when it is large.

    The file is byte-identical to ``np.save``'s; a large (e.g. memory-mapped
    or non-contiguous) array is never copied whole into memory.
    """
    array = np.asanyarray(array)
    if array.ndim == 0 or array.nbytes <= _BLOCK_BYTES:
        np.save(fname, np.ascontiguousarray(array), allow_pickle=False)
        return
    header = {
        "descr": np.lib.format.dtype_to_descr(array.dtype),
        "fortran_order": False,
        "shape": tuple(array.shape),
    }
    step = _block_rows(array)
    with open(fname, "wb") as fid:
        np.lib.format.write_array_header_1_0(fid, header)
        for start in range(0, array.shape[0], step):
            fid.write(np.ascontiguousarray(array[start : start + step]).data)


def _check_finite(path: Path, arrays: dict) -> None:
    """NaN/Inf in the data, time courses or fields: a ValueError naming file and index."""
    for name, axis_name in (("data", "event"), ("timecourses", "source"), ("fields", "field")):
        array = arrays.get(name)
        if array is None or array.ndim == 0 or array.shape[0] == 0:
            continue
        check_finite_data(
            array,
            where=f"Simulation array {str(path / f'{name}.npy')!r}",
            axis_name=axis_name,
            chunk=_block_rows(array),
        )
