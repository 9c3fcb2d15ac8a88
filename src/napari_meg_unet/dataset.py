"""Learning datasets on disk: inverse-solution images and active-source targets.

An *example set* is a directory holding memory-mappable ``.npy`` arrays and a
``meta.json`` describing how they were made:

``inputs.npy``
    float32 ``(n, C, n_rows, n_times)``: one vertex x time image per inverse
    method (``C = len(methods)``), rows following ``HeadModel.rows(hemi)``.
``targets.npy``
    uint8 ``(n, n_rows, n_times)``: 1 where a simulated source is active.
``amplitudes.npy`` (optional)
    float32 ``(n, n_rows, n_times)``: the simulated source amplitudes.
``events.npy``
    int64 ``(n,)``: the simulation event behind each example (unique across the
    splits made by :func:`make_splits`).
``true_positions.npy``
    float64 ``(n, k_max, 3)``: true source positions in metres (head
    coordinates), padded with NaN for examples with fewer than ``k_max``
    sources.
``positions.npy``
    float64 ``(n_rows, 3)``: the positions of the image rows in metres.
``meta.json``
    Everything needed to reproduce the set and to refuse combining it with
    an incompatible one (see :func:`check_compatible`), including its
    fingerprint (:func:`dataset_fingerprint`).

Sets are read with ``np.load(mmap_mode="r")`` so they may be larger than
memory; :class:`ExampleDataset` is the matching :class:`torch.utils.data.Dataset`
reading only the requested examples.
"""

from __future__ import annotations

import hashlib
from collections.abc import Generator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from . import __version__
from ._io import atomic_dir, check_output_path, read_json, to_json, write_json
from .fingerprint import array_fingerprint
from .progress import Progress, run

#: Identifies the directory layout written by this module.
DATASET_FORMAT = "napari-meg-unet-example-set"
DATASET_FORMAT_VERSION = 1

#: Required array files and their number of dimensions.
ARRAY_FILES = {
    "inputs": 4,
    "targets": 3,
    "events": 1,
    "true_positions": 3,
    "positions": 2,
}

#: Meta fields that must agree between data and a network (or train/val sets).
COMPATIBILITY_KEYS = (
    "headmodel_fingerprint",
    "ch_names",
    "hemi",
    "n_rows",
    "n_times",
    "methods",
    "lambda2",
    "nave",
    "loose",
    "depth",
    "normalisation",
)

#: Meta fields whose values define a set (hashed into its fingerprint).
FINGERPRINT_KEYS = (
    "headmodel_fingerprint",
    "simulation",
    "methods",
    "lambda2",
    "nave",
    "loose",
    "depth",
    "normalisation",
    "hemi",
    "event_offset",
)

DEFAULT_METHODS = ("MNE", "dSPM", "sLORETA")
SPLITS = ("train", "val", "test")


class IncompatibleDataError(ValueError):
    """Data (or a network) made with other head-model, inverse or layout settings."""


# --------------------------------------------------------------------------- identity
def dataset_fingerprint(meta: dict) -> str:
    """Fingerprint of an example set from the meta fields that define it.

    The digest covers the head-model fingerprint, the simulation parameters,
    the inverse parameters (methods, ``lambda2``, ``nave``, ``loose``,
    ``depth``), the normalisation, the hemisphere and the event offset.

    Parameters
    ----------
    meta : dict
        The set's meta data (as in ``meta.json``).

    Returns
    -------
    fingerprint : str
        Short hex digest (see :func:`napari_meg_unet.fingerprint.array_fingerprint`).
    """
    missing = [key for key in FINGERPRINT_KEYS if key not in meta]
    if missing:
        raise ValueError(f"meta lacks the field(s) {missing} needed for a dataset fingerprint.")
    return array_fingerprint(kind="example-set", **{key: meta[key] for key in FINGERPRINT_KEYS})


def _same(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        try:
            return bool(np.isclose(float(a), float(b), rtol=1e-9, atol=0.0))
        except (TypeError, ValueError):
            return False
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def _describe(key, a, b, names) -> str:
    if isinstance(a, list | tuple) and isinstance(b, list | tuple) and max(len(a), len(b)) > 8:
        only_a = [x for x in a if x not in set(b)]
        only_b = [x for x in b if x not in set(a)]
        parts = [f"{len(a)} in {names[0]} vs {len(b)} in {names[1]}"]
        if only_a:
            parts.append(f"only in {names[0]}: {only_a[:5]}{' ...' if len(only_a) > 5 else ''}")
        if only_b:
            parts.append(f"only in {names[1]}: {only_b[:5]}{' ...' if len(only_b) > 5 else ''}")
        if not only_a and not only_b:
            parts.append("same entries in a different order")
        return f"{key}: " + "; ".join(parts)
    return f"{key}: {a!r} ({names[0]}) != {b!r} ({names[1]})"


def check_compatible(
    meta_a: dict,
    meta_b: dict,
    *,
    keys: Sequence[str] = COMPATIBILITY_KEYS,
    names: tuple[str, str] = ("a", "b"),
) -> None:
    """Raise unless two example sets (or a network and a set) were made alike.

    Parameters
    ----------
    meta_a, meta_b : dict
        Meta data of the two sets (``ExampleSet.meta``, or a checkpoint's
        ``dataset_meta``).
    keys : sequence of str
        Fields that must agree; default :data:`COMPATIBILITY_KEYS` (head-model
        fingerprint, channel names, hemisphere, image size, inverse methods and
        parameters, normalisation).
    names : tuple of str
        How to call the two sides in the error message.

    Raises
    ------
    IncompatibleDataError
        Naming every differing field with both values.
    """
    problems = []
    missing = object()
    for key in keys:
        a, b = meta_a.get(key, missing), meta_b.get(key, missing)
        if a is missing or b is missing:
            if a is missing and b is missing:
                continue
            a = "<missing>" if a is missing else a
            b = "<missing>" if b is missing else b
            problems.append(_describe(key, a, b, names))
        elif not _same(a, b):
            problems.append(_describe(key, a, b, names))
    if problems:
        raise IncompatibleDataError(
            f"Incompatible data: {names[0]} and {names[1]} differ in " + "; ".join(problems)
        )


# --------------------------------------------------------------------------- reading
class ExampleSet:
    """An example set on disk, memory-mapped read-only.

    Parameters
    ----------
    path : path-like
        The set's directory (see the module docstring for its layout).

    Attributes
    ----------
    path : Path
    meta : dict
    inputs, targets, events, true_positions, positions : np.ndarray
        Read-only memory maps.
    amplitudes : np.ndarray | None
    """

    def __init__(self, path):
        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(
                f"Expected an example-set directory at {str(path)!r}; it does not exist."
            )
        meta_path = path / "meta.json"
        if not meta_path.is_file():
            raise FileNotFoundError(
                f"{str(path)!r} is not an example set: it has no meta.json "
                "(make one with build_dataset or make_splits)."
            )
        self.path = path
        self.meta = read_json(meta_path)
        if self.meta.get("format") != DATASET_FORMAT:
            raise ValueError(
                f"{str(meta_path)!r} does not describe a {DATASET_FORMAT!r} directory "
                f"(format={self.meta.get('format')!r})."
            )
        arrays = {}
        for name, ndim in ARRAY_FILES.items():
            arrays[name] = _load_array(path / f"{name}.npy", ndim=ndim)
        amp_path = path / "amplitudes.npy"
        self.amplitudes = _load_array(amp_path, ndim=3) if amp_path.is_file() else None
        self.inputs = arrays["inputs"]
        self.targets = arrays["targets"]
        self.events = arrays["events"]
        self.true_positions = arrays["true_positions"]
        self.positions = arrays["positions"]
        _check_layout(
            self.inputs,
            self.targets,
            self.events,
            self.true_positions,
            self.positions,
            self.amplitudes,
            where=str(path),
        )
        n, c, n_rows, n_times = self.inputs.shape
        for key, value in (
            ("n_examples", n),
            ("in_channels", c),
            ("n_rows", n_rows),
            ("n_times", n_times),
        ):
            if self.meta.get(key) != value:
                raise ValueError(
                    f"{str(meta_path)!r} says {key}={self.meta.get(key)!r} but inputs.npy has "
                    f"{value}; the set is inconsistent (rebuild it)."
                )
        if n == 0:
            raise ValueError(f"The example set {str(path)!r} is empty (0 examples).")

    def __len__(self) -> int:
        return int(self.inputs.shape[0])

    def __repr__(self) -> str:
        return (
            f"<ExampleSet {self.path.name!r} | {len(self)} examples, "
            f"{self.in_channels}x{self.n_rows}x{self.n_times}, {self.meta.get('hemi')}, "
            f"{'/'.join(self.methods)}>"
        )

    @property
    def fingerprint(self) -> str:
        return self.meta["fingerprint"]

    @property
    def in_channels(self) -> int:
        return int(self.inputs.shape[1])

    @property
    def n_rows(self) -> int:
        return int(self.inputs.shape[2])

    @property
    def n_times(self) -> int:
        return int(self.inputs.shape[3])

    @property
    def methods(self) -> list[str]:
        return list(self.meta.get("methods", []))

    def torch_dataset(self) -> ExampleDataset:
        """This set as a lazily reading :class:`torch.utils.data.Dataset`."""
        return ExampleDataset(self.path)

    def example_hashes(self, *, chunk: int = 256) -> np.ndarray:
        """One hex digest per example of its input images (read chunk by chunk).

        Two examples with the same digest present the network with identical
        inputs; see :func:`check_disjoint`.
        """
        return example_hashes(self.inputs, chunk=chunk)


def read_dataset(path) -> ExampleSet:
    """Open an example set (memory-mapped, read-only)."""
    if isinstance(path, ExampleSet):
        return path
    return ExampleSet(path)


def _load_array(path: Path, *, ndim: int) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"The example set is missing {str(path)!r}.")
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as err:
        raise ValueError(f"{str(path)!r} is not a readable .npy array: {err}") from None
    if array.ndim != ndim:
        raise ValueError(f"{str(path)!r} should have {ndim} dimensions, got shape {array.shape}.")
    return array


def _check_layout(inputs, targets, events, true_positions, positions, amplitudes, *, where):
    n, _, n_rows, n_times = inputs.shape
    expected = {
        "targets": (targets, (n, n_rows, n_times)),
        "events": (events, (n,)),
        "positions": (positions, (n_rows, 3)),
    }
    if amplitudes is not None:
        expected["amplitudes"] = (amplitudes, (n, n_rows, n_times))
    for name, (array, shape) in expected.items():
        if tuple(array.shape) != shape:
            raise ValueError(
                f"{where}: {name} has shape {tuple(array.shape)}, expected {shape} to match "
                f"inputs {tuple(inputs.shape)}."
            )
    if true_positions.shape[0] != n or true_positions.shape[2] != 3:
        raise ValueError(
            f"{where}: true_positions has shape {tuple(true_positions.shape)}, expected "
            f"({n}, k_max, 3)."
        )
    if inputs.dtype != np.float32:
        raise ValueError(f"{where}: inputs must be float32, got {inputs.dtype}.")
    if targets.dtype != np.uint8:
        raise ValueError(f"{where}: targets must be uint8, got {targets.dtype}.")


class ExampleDataset(Dataset):
    """A :class:`torch.utils.data.Dataset` over an example set, reading lazily.

    The memory maps are opened on first access in each process (so the object
    pickles cheaply into DataLoader workers). Indexing with an int returns one
    example, indexing with a sequence of ints returns a batch (read with one
    sorted fancy index, which is much faster on memory maps than one read per
    example).

    Returns
    -------
    inputs : torch.Tensor
        float32 ``(C, n_rows, n_times)`` (or ``(B, C, ...)`` for a batch).
    targets : torch.Tensor
        uint8 ``(n_rows, n_times)`` (or ``(B, ...)``).
    index : torch.Tensor
        int64 example index (or indices).
    """

    def __init__(self, path):
        self.path = Path(path)
        self._set = None
        self._len = len(read_dataset(self.path))

    def __getstate__(self):
        return {"path": self.path, "_set": None, "_len": self._len}

    def __len__(self) -> int:
        return self._len

    @property
    def examples(self) -> ExampleSet:
        if self._set is None:
            self._set = read_dataset(self.path)
        return self._set

    def __getitem__(self, index):
        examples = self.examples
        if np.ndim(index) == 0:
            i = int(index)
            if not -self._len <= i < self._len:
                raise IndexError(f"example index {i} out of range for {self._len} examples")
            i %= self._len
            x = np.array(examples.inputs[i], dtype=np.float32)
            y = np.array(examples.targets[i], dtype=np.uint8)
            return torch.from_numpy(x), torch.from_numpy(y), torch.tensor(i)
        idx = np.asarray(index, dtype=np.int64).ravel()
        order = np.argsort(idx, kind="stable")
        sorted_idx = idx[order]
        inverse = np.empty_like(order)
        inverse[order] = np.arange(len(order))
        x = np.asarray(examples.inputs[sorted_idx], dtype=np.float32)[inverse]
        y = np.asarray(examples.targets[sorted_idx], dtype=np.uint8)[inverse]
        return torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(idx)


# --------------------------------------------------------------------------- hashing
def example_hashes(inputs: np.ndarray, *, chunk: int = 256) -> np.ndarray:
    """Hex digest (blake2b, 16 bytes) of each example's input images."""
    n = inputs.shape[0]
    out = np.empty(n, dtype="<U32")
    for start in range(0, n, chunk):
        block = np.ascontiguousarray(inputs[start : start + chunk])
        for j, example in enumerate(block):
            out[start + j] = hashlib.blake2b(example.tobytes(), digest_size=16).hexdigest()
    return out


def check_disjoint(sets: dict, *, unique: Sequence[str] = ("test",)) -> dict:
    """Check that no example occurs in two splits and none repeats within ``unique`` splits.

    Parameters
    ----------
    sets : dict of str -> ExampleSet | path-like
        The splits by name (e.g. ``{"train": ..., "val": ..., "test": ...}``).
    unique : sequence of str
        Splits in which every example must occur once.

    Returns
    -------
    report : dict
        Per split the number of examples and of distinct examples.

    Raises
    ------
    ValueError
        Naming the splits and how many examples they share (or repeat), with
        the first offending indices, and shared event ids.
    """
    sets = {name: read_dataset(s) for name, s in sets.items()}
    hashes = {name: s.example_hashes() for name, s in sets.items()}
    problems = []
    for name in unique:
        if name not in hashes:
            continue
        values, first, counts = np.unique(hashes[name], return_index=True, return_counts=True)
        dup = np.flatnonzero(counts > 1)
        if len(dup):
            problems.append(
                f"{int((counts[dup] - 1).sum())} duplicated example(s) within {name!r} "
                f"(e.g. the example at index {int(first[dup[0]])})"
            )
    names = list(sets)
    for a_i, a in enumerate(names):
        for b in names[a_i + 1 :]:
            shared = np.intersect1d(hashes[a], hashes[b])
            if len(shared):
                idx = np.flatnonzero(np.isin(hashes[b], shared))
                problems.append(
                    f"{len(shared)} example(s) of {b!r} equal examples of {a!r} "
                    f"(indices in {b!r}: {idx[:5].tolist()})"
                )
            events = np.intersect1d(np.asarray(sets[a].events), np.asarray(sets[b].events))
            if len(events):
                problems.append(
                    f"{len(events)} event id(s) shared by {a!r} and {b!r} "
                    f"(e.g. {events[:5].tolist()})"
                )
    if problems:
        raise ValueError("The splits are not disjoint: " + "; ".join(problems) + ".")
    return {
        name: {"n_examples": len(h), "n_distinct": int(len(np.unique(h)))}
        for name, h in hashes.items()
    }


# --------------------------------------------------------------------------- writing
def _versions() -> dict:
    import mne

    return {"napari_meg_unet": __version__, "numpy": np.__version__, "mne": mne.__version__}


def _finalise_meta(meta: dict, *, shape, k_max: int, has_amplitudes: bool) -> dict:
    n, c, n_rows, n_times = shape
    meta = dict(meta)
    meta.update(
        format=DATASET_FORMAT,
        format_version=DATASET_FORMAT_VERSION,
        n_examples=int(n),
        in_channels=int(c),
        n_rows=int(n_rows),
        n_times=int(n_times),
        k_max=int(k_max),
        has_amplitudes=bool(has_amplitudes),
    )
    meta.setdefault("versions", _versions())
    if len(meta.get("methods", [])) != c:
        raise ValueError(
            f"meta['methods'] lists {len(meta.get('methods', []))} method(s) but the inputs "
            f"have {c} channel(s)."
        )
    meta["fingerprint"] = dataset_fingerprint(meta)
    # Round-trip through JSON so the meta held in memory equals the one read back.
    import json

    return json.loads(to_json(meta))


def write_dataset(
    out,
    *,
    inputs,
    targets,
    events,
    true_positions,
    positions,
    meta: dict,
    amplitudes=None,
    overwrite: bool = False,
) -> ExampleSet:
    """Write an example set from in-memory arrays.

    Parameters
    ----------
    out : path-like
        Directory to create (written in a temporary directory, renamed at the end).
    inputs : array, shape (n, C, n_rows, n_times)
        Inverse-solution images (cast to float32).
    targets : array, shape (n, n_rows, n_times)
        Active-source maps (nonzero = active; stored as uint8 0/1).
    events : array, shape (n,)
        Event ids.
    true_positions : array, shape (n, k_max, 3)
        True source positions in metres, NaN-padded.
    positions : array, shape (n_rows, 3)
        Row positions in metres.
    meta : dict
        Must contain the :data:`COMPATIBILITY_KEYS` (except the sizes, filled in
        here) and :data:`FINGERPRINT_KEYS`; JSON-serialisable.
    amplitudes : array, shape (n, n_rows, n_times) | None
        Optional true amplitudes.
    overwrite : bool
        Replace an existing ``out``.

    Returns
    -------
    examples : ExampleSet
    """
    out = Path(out)
    inputs = np.asarray(inputs, dtype=np.float32)
    targets = (np.asarray(targets) != 0).astype(np.uint8)
    events = np.asarray(events, dtype=np.int64)
    true_positions = np.asarray(true_positions, dtype=np.float64)
    positions = np.asarray(positions, dtype=np.float64)
    if amplitudes is not None:
        amplitudes = np.asarray(amplitudes, dtype=np.float32)
    if inputs.ndim != 4:
        raise ValueError(f"inputs must have shape (n, C, n_rows, n_times), got {inputs.shape}.")
    if inputs.shape[0] == 0:
        raise ValueError("inputs holds 0 examples; an example set needs at least one.")
    if true_positions.ndim != 3:
        raise ValueError(
            f"true_positions must have shape (n, k_max, 3), got {true_positions.shape}."
        )
    _check_layout(
        inputs, targets, events, true_positions, positions, amplitudes, where="write_dataset"
    )
    missing = [
        k
        for k in (*COMPATIBILITY_KEYS, *FINGERPRINT_KEYS)
        if k not in meta and k not in ("n_rows", "n_times")
    ]
    if missing:
        raise ValueError(f"meta lacks the required field(s) {sorted(set(missing))}.")
    meta = _finalise_meta(
        meta,
        shape=inputs.shape,
        k_max=true_positions.shape[1],
        has_amplitudes=amplitudes is not None,
    )
    with atomic_dir(out, overwrite=overwrite, what="dataset output") as tmp:
        arrays = dict(
            inputs=inputs,
            targets=targets,
            events=events,
            true_positions=true_positions,
            positions=positions,
        )
        if amplitudes is not None:
            arrays["amplitudes"] = amplitudes
        for name, array in arrays.items():
            np.save(tmp / f"{name}.npy", np.ascontiguousarray(array), allow_pickle=False)
        write_json(tmp / "meta.json", meta)
    return ExampleSet(out)


# --------------------------------------------------------------------------- building
def _check_positive_int(value, name, *, minimum=1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def _simulation_identity(sim) -> dict:
    """The parts of a simulation's meta that define it (no creation time)."""
    meta = sim.meta
    return {
        "fingerprint": meta.get("fingerprint"),
        "params": meta.get("params", {}),
        "headmodel": meta.get("headmodel", {}),
        "sfreq": float(sim.sfreq),
        "n_events": len(sim),
    }


def _true_positions(sim, events: np.ndarray, rows: np.ndarray, hemi: str) -> np.ndarray:
    """(n, k_max, 3) true positions of the chosen events, NaN-padded; checks the hemisphere."""
    in_image = np.zeros(sim.n_sources, bool)
    in_image[rows] = True
    per_event = []
    for i in events:
        idx = sim.event_sources(int(i))
        src_rows = np.asarray(sim.sources["row"])[idx]
        members = np.concatenate(
            [
                np.asarray(sim.member_rows)[sim.member_indptr[s] : sim.member_indptr[s + 1]]
                for s in idx
            ]
        )
        if not (in_image[src_rows].all() and in_image[members].all()):
            raise ValueError(
                f"Simulation event {int(i)} has sources outside hemi={hemi!r} (rows "
                f"{src_rows.tolist()}); simulate with the same hemi as the dataset "
                f"(simulation hemi={sim.meta.get('params', {}).get('hemi')!r}) or use "
                "hemi='both'."
            )
        per_event.append(np.asarray(sim.sources["position"])[idx])
    k_max = max(1, max(len(p) for p in per_event))
    out = np.full((len(events), k_max, 3), np.nan)
    for j, pos in enumerate(per_event):
        out[j, : len(pos)] = pos
    return out


def _inverse_kernels(hm, *, methods, lambda2, nave, loose, depth, verbose) -> dict:
    """The imaging kernels of ``methods`` (one operator, computed once)."""
    from .inverse import compute_kernel, make_inverse

    inv = make_inverse(hm, loose=loose, depth=depth, verbose=verbose)
    return {
        method: compute_kernel(
            inv, method=method, lambda2=lambda2, nave=nave, fingerprint=hm.fingerprint,
            verbose=verbose,
        )
        for method in methods
    }  # fmt: skip


def iter_build_dataset(
    hm,
    sim,
    *,
    methods=DEFAULT_METHODS,
    lambda2=1.0 / 9.0,
    nave=1,
    hemi="rh",
    normalisation="column-max",
    loose=0.0,
    depth=0.8,
    events=None,
    event_offset=0,
    amplitudes=False,
    out,
    overwrite=False,
    chunk=256,
    verbose=None,
    _kernels=None,
) -> Generator[Progress, None, ExampleSet]:
    """Generator form of :func:`build_dataset`, yielding :class:`~.progress.Progress`."""
    from .headmodel import check_hemi
    from .inverse import NORMALISATIONS, _check_methods, make_input_stack

    check_hemi(hemi)
    methods = list(_check_methods(methods))
    if normalisation not in NORMALISATIONS:
        raise ValueError(f"normalisation must be one of {NORMALISATIONS}, got {normalisation!r}.")
    chunk = _check_positive_int(chunk, "chunk")
    nave = _check_positive_int(nave, "nave")
    event_offset = _check_positive_int(event_offset, "event_offset", minimum=0)
    if not isinstance(lambda2, int | float | np.number) or not lambda2 > 0:
        raise ValueError(f"lambda2 must be a positive number, got {lambda2!r}.")
    lambda2 = float(lambda2)
    sim_hm = sim.meta.get("headmodel", {}).get("fingerprint")
    if sim_hm is not None and sim_hm != hm.fingerprint:
        raise ValueError(
            f"The simulation was made on head model {sim_hm!r} but hm is {hm.fingerprint!r}; "
            "build the dataset with the head model the data were simulated on."
        )
    if list(sim.info["ch_names"]) != hm.ch_names:
        raise ValueError(
            "The simulation's channels differ from the head model's "
            f"({len(sim.info['ch_names'])} vs {len(hm.ch_names)} channels)."
        )
    if events is None:
        events = np.arange(len(sim))
    else:
        events = np.asarray(events)
        if events.ndim != 1 or events.dtype.kind not in "iu" or len(events) == 0:
            raise ValueError("events must be a non-empty 1-D array of simulation event indices.")
        if events.min() < 0 or events.max() >= len(sim) or len(np.unique(events)) != len(events):
            raise ValueError(
                f"events must be distinct indices in [0, {len(sim)}), got {events[:10]}..."
            )
    if len(events) == 0:
        raise ValueError("The simulation has no events; an example set needs at least one.")
    out = check_output_path(out, overwrite=overwrite, what="dataset output")
    rows = hm.rows(hemi)
    n, n_rows, n_times = len(events), len(rows), sim.data.shape[2]
    true_positions = _true_positions(sim, events, rows, hemi)
    meta = dict(
        headmodel_fingerprint=hm.fingerprint,
        headmodel=hm.summary(),
        ch_names=hm.ch_names,
        hemi=hemi,
        methods=methods,
        lambda2=lambda2,
        nave=nave,
        loose=loose,
        depth=depth,
        normalisation=normalisation,
        simulation=_simulation_identity(sim),
        simulation_events=[int(events[0]), int(events[-1])]
        if np.array_equal(events, np.arange(events[0], events[0] + n))
        else events.tolist(),
        event_offset=event_offset,
        sfreq=float(sim.sfreq),
        tmin=0.0,
    )
    meta = _finalise_meta(
        meta, shape=(n, len(methods), n_rows, n_times), k_max=true_positions.shape[1],
        has_amplitudes=amplitudes,
    )  # fmt: skip
    total = n + 1
    yield Progress("dataset", 0, total, "inverse operator")
    if _kernels is None:
        _kernels = _inverse_kernels(
            hm, methods=methods, lambda2=lambda2, nave=nave, loose=loose, depth=depth,
            verbose=verbose,
        )  # fmt: skip
    kernels = _kernels
    yield Progress("dataset", 1, total, "inverse operator")
    with atomic_dir(out, overwrite=overwrite, what="dataset output") as tmp:
        inputs = np.lib.format.open_memmap(
            tmp / "inputs.npy",
            mode="w+",
            dtype=np.float32,
            shape=(n, len(methods), n_rows, n_times),
        )
        targets = np.lib.format.open_memmap(
            tmp / "targets.npy", mode="w+", dtype=np.uint8, shape=(n, n_rows, n_times)
        )
        amps = None
        if amplitudes:
            amps = np.lib.format.open_memmap(
                tmp / "amplitudes.npy", mode="w+", dtype=np.float32, shape=(n, n_rows, n_times)
            )
        for start in range(0, n, chunk):
            stop = min(n, start + chunk)
            block_events = events[start:stop]
            data = np.asarray(sim.data[block_events])
            inputs[start:stop] = make_input_stack(
                kernels, data, rows=rows, normalisation=normalisation
            )
            for j, i in enumerate(block_events):
                truth = sim.truth(int(i), rows=rows)
                targets[start + j] = truth != 0
                if amps is not None:
                    amps[start + j] = truth
            yield Progress("dataset", stop + 1, total, f"{stop}/{n} examples")
        inputs.flush()
        targets.flush()
        del inputs, targets
        if amps is not None:
            amps.flush()
            del amps
        np.save(tmp / "events.npy", event_offset + np.arange(n, dtype=np.int64))
        np.save(tmp / "true_positions.npy", true_positions)
        np.save(tmp / "positions.npy", np.asarray(hm.positions[rows], dtype=np.float64))
        write_json(tmp / "meta.json", meta)
    return ExampleSet(out)


def build_dataset(
    hm,
    sim,
    *,
    methods=DEFAULT_METHODS,
    lambda2=1.0 / 9.0,
    nave=1,
    hemi="rh",
    normalisation="column-max",
    loose=0.0,
    depth=0.8,
    events=None,
    event_offset=0,
    amplitudes=False,
    out,
    overwrite=False,
    chunk=256,
    verbose=None,
) -> ExampleSet:
    """Build an example set from a simulation: inverse images in, active sources out.

    The inverse operator and kernels are computed once; the images are then
    computed ``chunk`` events at a time and written into a preallocated
    memory map in a temporary directory that is renamed onto ``out`` at the
    end, so sets larger than memory can be built and nothing half-written
    appears at ``out``.

    Parameters
    ----------
    hm : HeadModel
        The head model the simulation was made on.
    sim : Simulation
        From :func:`~napari_meg_unet.simulate.simulate` (or
        :func:`~napari_meg_unet.simulate.load_simulation`); its sources must lie
        in ``hemi``.
    methods : sequence of str
        Inverse methods = image channels, in order (thesis: MNE, dSPM, sLORETA).
    lambda2 : float
        Regularisation (thesis: 1/9).
    nave : int
        Number of averages assumed by the inverse.
    hemi : ``"lh"`` | ``"rh"`` | ``"both"``
        Image rows (``HeadModel.rows(hemi)``).
    normalisation : ``"column-max"`` | ``"global-max"`` | ``"none"``
        See :func:`~napari_meg_unet.inverse.make_input_stack`.
    loose, depth : float | None
        Orientation and depth priors of the inverse operator
        (:func:`~napari_meg_unet.inverse.make_inverse`; thesis: fixed, 0.8).
    events : array of int | None
        Simulation events to use (all if None), in order.
    event_offset : int
        Added to the example index to form ``events.npy`` (keeps ids distinct
        between splits, see :func:`make_splits`).
    amplitudes : bool
        Also store the true amplitudes (``amplitudes.npy``).
    out : path-like
        Output directory.
    overwrite : bool
        Replace an existing ``out``.
    chunk : int
        Events per inverse computation / write.
    verbose : bool | str | int | None
        MNE log level.

    Returns
    -------
    examples : ExampleSet
        The set, opened memory-mapped.
    """
    return run(
        iter_build_dataset(
            hm, sim, methods=methods, lambda2=lambda2, nave=nave, hemi=hemi,
            normalisation=normalisation, loose=loose, depth=depth, events=events,
            event_offset=event_offset, amplitudes=amplitudes, out=out, overwrite=overwrite,
            chunk=chunk, verbose=verbose,
        )
    )  # fmt: skip


def split_seeds(seed) -> dict:
    """Independent simulation seeds of the train/val/test splits from one seed.

    Uses ``np.random.SeedSequence(seed).spawn(3)``, so the three streams are
    statistically independent and never overlap.
    """
    children = np.random.SeedSequence(seed).spawn(len(SPLITS))
    return {
        name: int(child.generate_state(1, dtype=np.uint32)[0])
        for name, child in zip(SPLITS, children, strict=True)
    }


def iter_make_splits(
    hm,
    *,
    design,
    n_train,
    n_val,
    n_test,
    seed,
    out,
    methods=DEFAULT_METHODS,
    lambda2=1.0 / 9.0,
    nave=1,
    hemi="rh",
    normalisation="column-max",
    loose=0.0,
    depth=0.8,
    amplitudes=False,
    overwrite=False,
    chunk=256,
    verbose=None,
    **sim_kwargs,
) -> Generator[Progress, None, dict]:
    """Generator form of :func:`make_splits`, yielding :class:`~.progress.Progress`."""
    from .simulate import iter_simulate

    sizes = {
        "train": _check_positive_int(n_train, "n_train"),
        "val": _check_positive_int(n_val, "n_val"),
        "test": _check_positive_int(n_test, "n_test"),
    }
    for key in ("seed", "n_events", "n_repeats", "hemi", "design"):
        if key in sim_kwargs:
            raise ValueError(
                f"{key} is set by make_splits itself (from design/n_train/n_val/n_test/seed/"
                "hemi); do not pass it in sim_kwargs."
            )
    if "nave" in sim_kwargs and sim_kwargs["nave"] != nave:
        raise ValueError("sim_kwargs['nave'] must equal nave (the inverse's number of averages).")
    out = check_output_path(out, overwrite=overwrite, what="splits output")
    seeds = split_seeds(seed)
    n_hemi_rows = len(hm.rows(hemi))
    yield Progress("splits", 0, 1, "inverse operator")
    kernels = _inverse_kernels(
        hm, methods=list(methods), lambda2=lambda2, nave=nave, loose=loose, depth=depth,
        verbose=verbose,
    )  # fmt: skip
    offsets = {"train": 0, "val": sizes["train"], "test": sizes["train"] + sizes["val"]}
    # Everything is built in a temporary directory renamed onto ``out`` only once the
    # splits are known to be disjoint, so leaking splits are never left behind.
    with atomic_dir(out, overwrite=overwrite, what="dataset output") as tmp:
        sets = {}
        for name in SPLITS:
            n = sizes[name]
            kwargs = dict(sim_kwargs, design=design, hemi=hemi, seed=seeds[name], nave=nave)
            if design == "sweep":
                # A sweep's size is set by n_repeats; its order is shuffled, so its
                # first n events are a random subset of rows.
                kwargs["n_repeats"] = -(-n // n_hemi_rows)
            else:
                kwargs["n_events"] = n
            sim = yield from iter_simulate(hm, verbose=verbose, **kwargs)
            sets[name] = yield from iter_build_dataset(
                hm, sim, methods=methods, lambda2=lambda2, nave=nave, hemi=hemi,
                normalisation=normalisation, loose=loose, depth=depth, events=np.arange(n),
                event_offset=offsets[name], amplitudes=amplitudes, out=tmp / name,
                chunk=chunk, verbose=verbose, _kernels=kernels,
            )  # fmt: skip
        yield Progress("splits", 0, 1, "checking the splits are disjoint")
        report = check_disjoint(sets, unique=("test",))
        write_json(
            tmp / "splits.json",
            {
                "seed": seed,
                "split_seeds": seeds,
                "sizes": sizes,
                "event_offsets": offsets,
                "design": design,
                "sim_kwargs": sim_kwargs,
                "disjoint": report,
                "fingerprints": {name: s.fingerprint for name, s in sets.items()},
            },
        )
        del sets
    yield Progress("splits", 1, 1, "done")
    return {name: ExampleSet(out / name) for name in SPLITS}


def make_splits(
    hm,
    *,
    design,
    n_train,
    n_val,
    n_test,
    seed,
    out,
    methods=DEFAULT_METHODS,
    lambda2=1.0 / 9.0,
    nave=1,
    hemi="rh",
    normalisation="column-max",
    loose=0.0,
    depth=0.8,
    amplitudes=False,
    overwrite=False,
    chunk=256,
    verbose=None,
    **sim_kwargs,
) -> dict:
    """Simulate and build disjoint train / validation / test example sets.

    Each split is simulated with its own seed from
    ``np.random.SeedSequence(seed).spawn(3)`` (see :func:`split_seeds`), its
    events get distinct ids (``events.npy``: train ``0..n_train-1``, then val,
    then test), and after building, :func:`check_disjoint` verifies that no
    test example occurs twice and that no example is shared by two splits
    (identical inputs); a ``ValueError`` is raised otherwise (e.g. a noise-free
    sweep of a small source space, whose splits necessarily repeat each
    other).

    Parameters
    ----------
    hm : HeadModel
        The head model.
    design : ``"sweep"`` | ``"multi"`` | ``"extended"``
        Simulation design (see :func:`~napari_meg_unet.simulate.simulate`).
        For ``"sweep"``, each split sweeps the hemisphere as many times as
        needed (``n_repeats``) and keeps its first ``n_*`` (shuffled) events.
    n_train, n_val, n_test : int
        Number of examples per split.
    seed : int
        Master seed.
    out : path-like
        Output directory; gets ``train/``, ``val/``, ``test/`` and ``splits.json``.
    methods, lambda2, nave, hemi, normalisation, loose, depth, amplitudes, chunk
        See :func:`build_dataset`.
    overwrite : bool
        Replace existing outputs.
    verbose : bool | str | int | None
        MNE log level.
    **sim_kwargs
        Further :func:`~napari_meg_unet.simulate.simulate` options (``snr``,
        ``noise``, ``timecourse``, ``n_times``, ``n_dipoles``, ...).

    Returns
    -------
    sets : dict
        ``{"train": ExampleSet, "val": ExampleSet, "test": ExampleSet}``.
    """
    return run(
        iter_make_splits(
            hm, design=design, n_train=n_train, n_val=n_val, n_test=n_test, seed=seed,
            out=out, methods=methods, lambda2=lambda2, nave=nave, hemi=hemi,
            normalisation=normalisation, loose=loose, depth=depth, amplitudes=amplitudes,
            overwrite=overwrite, chunk=chunk, verbose=verbose, **sim_kwargs,
        )
    )  # fmt: skip
