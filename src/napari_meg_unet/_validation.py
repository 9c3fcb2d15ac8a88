"""The package's one set of argument checks.

Every public function validates its options up front with these helpers, so an
error names the parameter and what was expected in the same words everywhere.
Type and option checks reuse MNE's (``mne.utils._validate_type`` and
``_check_option``) where their messages fit.
"""

from __future__ import annotations

import math
from numbers import Integral, Real
from pathlib import Path

import numpy as np

__all__ = [
    "check_choice",
    "check_choices",
    "check_file",
    "check_finite_data",
    "check_fraction",
    "check_int",
    "check_number",
    "check_range",
    "check_type",
]


def check_type(value, types, name: str):
    """``value`` must be an instance of ``types`` (MNE's ``_validate_type`` wording)."""
    from mne.utils import _validate_type

    _validate_type(value, types, name)
    return value


def check_choice(value, name: str, options):
    """``value`` must be one of ``options``; ValueError naming both otherwise."""
    options = tuple(options)
    try:
        ok = value in options
    except TypeError:  # unhashable / incomparable values
        ok = False
    if not ok:
        raise ValueError(f"{name} must be one of {options}, got {value!r}.")
    return value


def check_choices(values, name: str, options, *, allow_empty: bool = False) -> tuple:
    """A sequence of distinct entries of ``options`` (a single string is one entry)."""
    if isinstance(values, str):
        values = (values,)
    try:
        values = tuple(values)
    except TypeError:
        raise ValueError(
            f"{name} must be a sequence of {tuple(options)}, got {values!r}."
        ) from None
    if not values and not allow_empty:
        raise ValueError(f"{name} must name at least one of {tuple(options)}.")
    for value in values:
        check_choice(value, name, options)
    if len(set(values)) != len(values):
        raise ValueError(f"{name} lists an entry twice: {values!r}.")
    return values


def check_int(value, name: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """An integer (not a bool) within ``[minimum, maximum]``."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise ValueError(f"{name} must be an integer, got {value!r}.")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be an integer <= {maximum}, got {value!r}.")
    return int(value)


def check_number(
    value,
    name: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    strict: bool = True,
) -> float:
    """A finite real number; ``minimum`` is exclusive when ``strict``, else inclusive.

    ``check_number(x, "snr", minimum=0)`` accepts only ``x > 0``;
    ``check_number(x, "loose", minimum=0, maximum=1, strict=False)`` accepts ``0 <= x <= 1``.
    """
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ValueError(f"{name} must be a number, got {value!r}.")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}.")
    if minimum is not None and (value <= minimum if strict else value < minimum):
        raise ValueError(f"{name} must be {'>' if strict else '>='} {minimum:g}, got {value!r}.")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum:g}, got {value!r}.")
    return value


def check_fraction(value, name: str, *, allow_zero: bool = True) -> float:
    """A number in ``[0, 1]`` (``(0, 1]`` without ``allow_zero``)."""
    return check_number(value, name, minimum=0.0, maximum=1.0, strict=not allow_zero)


def check_range(value, name: str, checker) -> tuple:
    """A scalar or a ``(lo, hi)`` pair with ``lo <= hi``; returns ``(lo, hi)``.

    ``checker(v, name)`` validates each end.
    """
    if isinstance(value, tuple | list | np.ndarray):
        if len(value) != 2:
            raise ValueError(f"{name} must be a number or a (lo, hi) pair, got {value!r}.")
        lo, hi = (checker(v, name) for v in value)
        if lo > hi:
            raise ValueError(f"{name} range must have lo <= hi, got ({lo}, {hi}).")
        return lo, hi
    v = checker(value, name)
    return v, v


def check_file(path, what: str) -> Path:
    """An existing file; FileNotFoundError naming ``what`` and the path otherwise."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Expected {what} at {str(path)!r}; no such file.")
    return path


def check_finite_data(data, *, where: str, axis_name: str = "event", chunk: int = 4096):
    """Raise ValueError naming ``where`` and the first non-finite ``axis_name`` index.

    ``data`` is scanned in chunks along its first axis, so memory-mapped arrays
    are never loaded whole.
    """
    data = np.asarray(data) if not hasattr(data, "shape") else data
    n = data.shape[0] if data.ndim else 1
    for start in range(0, max(n, 1), chunk):
        block = np.asarray(data[start : start + chunk]) if data.ndim else np.asarray(data)
        finite = np.isfinite(block)
        if finite.all():
            continue
        bad = ~finite.reshape(len(block), -1).all(axis=1) if data.ndim else np.array([True])
        first = start + int(np.flatnonzero(bad)[0])
        n_bad = int(bad.sum())
        more = "" if n_bad == 1 else f" (and {n_bad - 1} more in this block)"
        raise ValueError(
            f"{where} contains NaN or Inf values: {axis_name} {first}{more}. "
            "Remove or repair them before running this step."
        )
    return data
