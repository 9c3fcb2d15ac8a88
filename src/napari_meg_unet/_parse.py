"""Parsing numbers typed as text (CLI arguments, GUI text fields)."""

from __future__ import annotations

import math
from fractions import Fraction


def parse_number(text, *, name: str, positive: bool = True) -> float:
    """Parse ``"0.111"``, ``"1/9"``, ``"1e-3"`` or ``"2"`` as a finite float.

    Float spin boxes round ``1/9`` to 0.11 and small learning rates to 0, so
    λ² and learning rates are typed as text and parsed here.

    Raises
    ------
    ValueError
        Naming ``name`` and what was expected.
    """
    raw = str(text).strip()
    try:
        value = float(Fraction(raw))
    except (ValueError, ZeroDivisionError):
        raise ValueError(
            f"{name} must be a number such as 0.111, 1/9 or 1e-3, got {raw!r}."
        ) from None
    if not math.isfinite(value) or (positive and value <= 0):
        raise ValueError(f"{name} must be a {'positive ' if positive else ''}number, got {raw!r}.")
    return value
