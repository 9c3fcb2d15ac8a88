"""What defines an example set, and when two sets (or a set and a network) may be combined."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..fingerprint import array_fingerprint

#: Identifies the directory layout written by this package.
DATASET_FORMAT = "napari-meg-unet-example-set"
DATASET_FORMAT_VERSION = 1

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


class IncompatibleDataError(ValueError):
    """Data (or a network) made with other head-model, inverse or layout settings."""


def dataset_fingerprint(meta: dict) -> str:
    """Fingerprint of an example set from the meta fields that define it.

    The digest covers the head-model fingerprint, the simulation parameters,
    the inverse parameters (methods, ``lambda2``, ``nave``, ``loose``,
    ``depth``), the normalisation, the hemisphere and the event offset (and
    the inverse's ``precision`` when it is not float64).

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
    fields = {key: meta[key] for key in FINGERPRINT_KEYS}
    if meta.get("precision", "float64") != "float64":  # float64 sets keep their fingerprints
        fields["precision"] = meta["precision"]
    return array_fingerprint(kind="example-set", **fields)


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
