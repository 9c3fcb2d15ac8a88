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

The package's modules, one concept each:

- :mod:`.identity`: what defines a set (fingerprint) and when two sets may be
  combined (:func:`check_compatible`);
- :mod:`.reading`: opening sets (:class:`ExampleSet`, :func:`read_dataset`,
  :class:`ExampleDataset`);
- :mod:`.hashing`: example digests and :func:`check_disjoint`;
- :mod:`.writing`: :func:`write_dataset` from in-memory arrays;
- :mod:`.building`: :func:`build_dataset` from a simulation;
- :mod:`.splits`: :func:`make_splits`, disjoint train/val/test sets;
- :mod:`.streaming`: :class:`StreamSpec` and :class:`SimulationStream`, training
  examples simulated on the fly on the training device (float32 torch core).
"""

from ..configs import DatasetConfig, InverseConfig, SimulationConfig, StreamConfig
from .building import DEFAULT_METHODS, build_dataset, iter_build_dataset
from .hashing import check_disjoint, example_hashes
from .identity import (
    COMPATIBILITY_KEYS,
    DATASET_FORMAT,
    DATASET_FORMAT_VERSION,
    FINGERPRINT_KEYS,
    IncompatibleDataError,
    check_compatible,
    dataset_fingerprint,
)
from .reading import ARRAY_FILES, ExampleDataset, ExampleSet, read_dataset
from .splits import SPLITS, iter_make_splits, make_splits, split_configs, split_seeds
from .streaming import SimulationStream, StreamSpec
from .writing import write_dataset

__all__ = [
    "ARRAY_FILES",
    "COMPATIBILITY_KEYS",
    "DATASET_FORMAT",
    "DATASET_FORMAT_VERSION",
    "DEFAULT_METHODS",
    "FINGERPRINT_KEYS",
    "SPLITS",
    "DatasetConfig",
    "SimulationStream",
    "StreamConfig",
    "StreamSpec",
    "ExampleDataset",
    "ExampleSet",
    "IncompatibleDataError",
    "InverseConfig",
    "SimulationConfig",
    "build_dataset",
    "check_compatible",
    "check_disjoint",
    "dataset_fingerprint",
    "example_hashes",
    "iter_build_dataset",
    "iter_make_splits",
    "make_splits",
    "read_dataset",
    "split_configs",
    "split_seeds",
    "write_dataset",
]
