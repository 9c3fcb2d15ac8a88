"""Opening example sets: memory-mapped arrays, layout checks and the torch Dataset.

Opening a set checks its layout (files, shapes, dtypes, meta) but does not
read its arrays, which may be larger than memory, so it stays cheap (every
DataLoader worker opens the set). Non-finite values are looked for on request:
:meth:`ExampleSet.check_finite` (or ``read_dataset(path, check_finite=True)``)
scans a whole set chunk by chunk before expensive work, naming the file and
the first bad example. (Training, which reads every example anyway, reports
the examples behind a non-finite loss itself.)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .._io import read_json
from .._validation import check_finite_data
from .identity import DATASET_FORMAT

#: Required array files and their number of dimensions.
ARRAY_FILES = {
    "inputs": 4,
    "targets": 3,
    "events": 1,
    "true_positions": 3,
    "positions": 2,
}

#: Examples per block when scanning a set for NaN/Inf.
FINITE_CHUNK = 256


class ExampleSet:
    """An example set on disk, memory-mapped read-only.

    Parameters
    ----------
    path : path-like
        The set's directory (see :mod:`napari_meg_unet.dataset` for its layout).

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
        arrays = {name: _load_array(path / f"{name}.npy", ndim=ndim)
                  for name, ndim in ARRAY_FILES.items()}  # fmt: skip
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
        self._check_meta_sizes(meta_path)

    def _check_meta_sizes(self, meta_path: Path) -> None:
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
            raise ValueError(f"The example set {str(self.path)!r} is empty (0 examples).")

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
        inputs; see :func:`~napari_meg_unet.dataset.check_disjoint`.
        """
        from .hashing import example_hashes

        return example_hashes(self.inputs, chunk=chunk)

    def check_finite(self, *, chunk: int = FINITE_CHUNK) -> ExampleSet:
        """Raise ValueError naming the file and the first example holding NaN or Inf.

        Scans ``inputs.npy`` (and ``amplitudes.npy``) ``chunk`` examples at a
        time, so the whole set is read once but never held in memory.

        Returns
        -------
        self : ExampleSet
        """
        for name, array in (("inputs", self.inputs), ("amplitudes", self.amplitudes)):
            if array is not None:
                where = repr(str(self.path / f"{name}.npy"))
                check_finite_data(array, where=where, axis_name="example", chunk=chunk)
        return self


def read_dataset(path, *, check_finite: bool = False) -> ExampleSet:
    """Open an example set (memory-mapped, read-only).

    Parameters
    ----------
    path : path-like | ExampleSet
        The set's directory (an :class:`ExampleSet` is returned as is).
    check_finite : bool
        Also scan the arrays for NaN/Inf (:meth:`ExampleSet.check_finite`);
        this reads the whole set once, so it is off by default.

    Returns
    -------
    examples : ExampleSet
    """
    examples = path if isinstance(path, ExampleSet) else ExampleSet(path)
    if check_finite:
        examples.check_finite()
    return examples


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
