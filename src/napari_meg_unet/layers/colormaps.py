"""Colormaps as plain dicts napari accepts (``{"name", "colors", "controls"}``), no napari import.

- ``probability``: dark grey at 0 rising through magma's purple/orange to
  yellow, so that an empty map (a hemisphere without sources) stays visible
  on napari's black canvas instead of vanishing as magma's black does.
- :func:`thresholded`: a copy of a colormap where values below a threshold
  (``|value|`` for signed maps) show the neutral colour: grey on the cortex
  (the anatomy), white in the middle of ``bwr``.
"""

from __future__ import annotations

import numpy as np

#: Anatomy grey of the cortex below a threshold.
NEUTRAL = (0.72, 0.72, 0.72, 1.0)

#: magma from its dark purple (not black) to yellow, after a dark grey start.
_PROBABILITY = (
    (0.25, 0.25, 0.25, 1.0),
    (0.316654, 0.07169, 0.48538, 1.0),
    (0.716387, 0.214982, 0.47529, 1.0),
    (0.986175, 0.535621, 0.38212, 1.0),
    (0.987053, 0.991438, 0.749504, 1.0),
)

CUSTOM = {
    "probability": {
        "name": "probability",
        "colors": np.array(_PROBABILITY),
        "controls": np.linspace(0.0, 1.0, len(_PROBABILITY)),
    },
}


def resolve(colormap):
    """A napari colormap argument: custom names become their dict, others pass through."""
    if isinstance(colormap, str) and colormap in CUSTOM:
        spec = CUSTOM[colormap]
        return {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in spec.items()}
    return colormap


def _sample(colormap, n: int = 64) -> np.ndarray:
    """``n`` RGBA colours of a colormap (custom, or matplotlib's of that name)."""
    if isinstance(colormap, dict) or colormap in CUSTOM:
        spec = resolve(colormap) if isinstance(colormap, str) else colormap
        x = np.linspace(0, 1, n)
        colors = np.asarray(spec["colors"], float)
        return np.stack([np.interp(x, spec["controls"], colors[:, k]) for k in range(4)], axis=1)
    import matplotlib

    return np.asarray(matplotlib.colormaps[colormap](np.linspace(0, 1, n)))


def thresholded(colormap, threshold: float, limits, *, signed: bool, name: str | None = None):
    """``colormap`` with values below ``threshold`` shown in the neutral grey.

    Parameters
    ----------
    colormap : str | dict
        A napari/matplotlib colormap name or a dict of this module.
    threshold : float
        In data units; for signed maps it applies to ``|value|``.
    limits : (float, float)
        The layer's contrast limits (the colormap spans them).
    signed : bool
        Whether the map is signed (threshold on both sides of 0).
    name : str | None
        Name of the new colormap (default: ``"<name> > <threshold>"``).

    Returns
    -------
    colormap : dict
        ``{"name", "colors", "controls"}``; the colormap itself when
        ``threshold <= 0``.
    """
    lo, hi = float(limits[0]), float(limits[1])
    base_name = colormap if isinstance(colormap, str) else colormap.get("name", "custom")
    if threshold <= 0 or hi <= lo:
        return resolve(colormap)
    colors = _sample(colormap)
    x = np.linspace(0.0, 1.0, len(colors))
    values = lo + x * (hi - lo)
    below = np.abs(values) < threshold if signed else values < threshold
    colors = colors.copy()
    colors[below] = NEUTRAL
    # sharp edges: duplicate controls at the threshold crossings
    controls, out = [], []
    for i in range(len(x)):
        if i and below[i] != below[i - 1]:
            controls.append(x[i] - 1e-6)
            out.append(colors[i - 1])
        controls.append(x[i])
        out.append(colors[i])
    return {
        "name": name or f"{base_name} > {threshold:.3g}",
        "colors": np.asarray(out),
        "controls": np.clip(np.asarray(controls), 0.0, 1.0),
    }


def with_missing(colormap, fraction: float, *, name: str | None = None):
    """``colormap`` over the top ``1 - fraction`` of the range, the neutral grey below.

    A map's missing values are set below its range and shown grey: the values
    within the range keep exactly the colours of ``colormap``.
    """
    colors = _sample(colormap)
    start = float(np.clip(fraction, 1e-3, 0.5))
    base_name = colormap if isinstance(colormap, str) else colormap.get("name", "custom")
    return {
        "name": name or f"{base_name}, grey: no value",
        "colors": np.vstack([[NEUTRAL, NEUTRAL], colors]),
        "controls": np.r_[0.0, start - 1e-6, start + (1 - start) * np.linspace(0, 1, len(colors))],
    }
