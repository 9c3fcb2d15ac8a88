"""Writing example sets: the meta every set carries and sets from in-memory arrays."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .. import __version__
from .._io import atomic_dir, to_json, write_json
from .identity import (
    COMPATIBILITY_KEYS,
    DATASET_FORMAT,
    DATASET_FORMAT_VERSION,
    FINGERPRINT_KEYS,
    dataset_fingerprint,
)
from .reading import ExampleSet, _check_layout


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
    arrays = _as_arrays(
        inputs=inputs, targets=targets, events=events, true_positions=true_positions,
        positions=positions, amplitudes=amplitudes,
    )  # fmt: skip
    _check_meta_fields(meta)
    meta = _finalise_meta(
        meta,
        shape=arrays["inputs"].shape,
        k_max=arrays["true_positions"].shape[1],
        has_amplitudes="amplitudes" in arrays,
    )
    with atomic_dir(Path(out), overwrite=overwrite, what="dataset output") as tmp:
        for name, array in arrays.items():
            np.save(tmp / f"{name}.npy", np.ascontiguousarray(array), allow_pickle=False)
        write_json(tmp / "meta.json", meta)
    return ExampleSet(out)


def _as_arrays(*, inputs, targets, events, true_positions, positions, amplitudes) -> dict:
    """The arrays of :func:`write_dataset` in their stored dtypes, shapes checked."""
    arrays = dict(
        inputs=np.asarray(inputs, dtype=np.float32),
        targets=(np.asarray(targets) != 0).astype(np.uint8),
        events=np.asarray(events, dtype=np.int64),
        true_positions=np.asarray(true_positions, dtype=np.float64),
        positions=np.asarray(positions, dtype=np.float64),
    )
    if amplitudes is not None:
        arrays["amplitudes"] = np.asarray(amplitudes, dtype=np.float32)
    inputs, true_positions = arrays["inputs"], arrays["true_positions"]
    if inputs.ndim != 4:
        raise ValueError(f"inputs must have shape (n, C, n_rows, n_times), got {inputs.shape}.")
    if inputs.shape[0] == 0:
        raise ValueError("inputs holds 0 examples; an example set needs at least one.")
    if true_positions.ndim != 3:
        raise ValueError(
            f"true_positions must have shape (n, k_max, 3), got {true_positions.shape}."
        )
    _check_layout(
        inputs, arrays["targets"], arrays["events"], true_positions, arrays["positions"],
        arrays.get("amplitudes"), where="write_dataset",
    )  # fmt: skip
    return arrays


def _check_meta_fields(meta: dict) -> None:
    missing = [
        k
        for k in (*COMPATIBILITY_KEYS, *FINGERPRINT_KEYS)
        if k not in meta and k not in ("n_rows", "n_times")
    ]
    if missing:
        raise ValueError(f"meta lacks the required field(s) {sorted(set(missing))}.")
