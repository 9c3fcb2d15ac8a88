"""Example identity by content: per-example digests and the disjointness check of splits."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from .reading import read_dataset


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
