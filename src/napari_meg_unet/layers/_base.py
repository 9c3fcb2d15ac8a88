"""Names, colormaps, units and contrast limits shared by every layer made here."""

from __future__ import annotations

import mne
import numpy as np

#: Key of the layout/role information in napari layer metadata.
META_KEY = "napari_meg_unet"
#: Roles of the layers made here (``markers``: true sources on the stacks,
#: ``cortex-markers``: true sources on a cortex, ``titles``: text in the canvas).
ROLES = ("sensor", "events", "stack", "cortex", "map", "markers", "cortex-markers", "titles")
#: Stack names in display order; predictions follow.
STACK_ORDER = ("truth", "MNE", "dSPM", "sLORETA", "eLORETA")
#: Colormap per stack/layer kind: napari colormap names, or the custom maps of
#: :mod:`.colormaps` (``"probability"``: dark grey at 0, so an empty map stays visible).
COLORMAPS = {
    "truth": "bwr",
    "MNE": "bwr",
    "dSPM": "bwr",
    "sLORETA": "bwr",
    "eLORETA": "bwr",
    "prediction": "probability",
    "sensor": "gray",
    "anatomy": "gray",
    "map": "viridis",
}
#: Channel types shown in sensor images, in this order.
SENSOR_TYPES = ("mag", "grad", "eeg")
#: Spacing between bands/cells as a fraction of the band height.
GAP = 0.1
#: Largest number of cortex values (times x events x vertices) drawn on the
#: full-resolution surface; above it the source-space mesh itself is used.
MAX_CORTEX_VALUES = 20_000_000
#: Height (world units) of a sensor band for recordings longer than this (s).
MAX_SENSOR_HEIGHT = 1.0
#: Names of the world axes of the 5-axis scheme.
AXIS_LABELS = ("cortex time (s)", "event", "depth", "row", "time (s)")

SCALINGS = {kind: mne.defaults.DEFAULTS["scalings"][kind] for kind in SENSOR_TYPES}
UNITS = {kind: mne.defaults.DEFAULTS["units"][kind] for kind in SENSOR_TYPES}

#: Unit of the values of each estimate (``None`` normalisation). The truth and
#: the current estimates (MNE, eLORETA) are dipole moments; dSPM and sLORETA are
#: noise-normalised (unitless, F-like statistics); a network gives a probability.
STACK_UNITS = {
    "truth": "A·m",
    "MNE": "A·m",
    "dSPM": "F (noise-normalised)",
    "sLORETA": "F (noise-normalised)",
    "eLORETA": "A·m",
    "prediction": "probability",
}
#: Short units for the canvas titles.
SHORT_UNITS = {"F (noise-normalised)": "F", "probability": "p"}


def prediction_name(model: str) -> str:
    """Layer name of a network's prediction, e.g. ``"prediction (thesis)"``."""
    return f"prediction ({model})"


def colormap_for(name: str) -> str:
    """The colormap of a stack or layer kind (predictions share one)."""
    if name.startswith("prediction"):
        return COLORMAPS["prediction"]
    return COLORMAPS.get(name, COLORMAPS["map"])


def unit_for(name: str, normalisation: str | None = None) -> str:
    """Unit of a stack's values: ``"A·m"``, ``"F (noise-normalised)"``, ``"probability"``...

    Network input stacks scaled per image (``normalisation`` other than
    ``"none"``) are relative values whatever the method.
    """
    if normalisation not in (None, "none") and not name.startswith("prediction"):
        return f"relative ({normalisation})"
    if name.startswith("prediction"):
        return STACK_UNITS["prediction"]
    if name.startswith("mean DLE"):
        return "mm"
    return STACK_UNITS.get(name, "")


def is_signed(colormap) -> bool:
    """Whether a colormap is meant for signed values (limits symmetric about 0)."""
    name = colormap if isinstance(colormap, str) else colormap.get("name", "")
    return name.startswith("bwr")


#: Percentile of the non-zero ``|values|`` used as the top of signed contrast
#: limits (the strongest 1% saturate instead of washing out everything else).
LIMIT_PERCENTILE = 99.0


def _peak(values) -> float:
    magnitude = np.abs(np.asarray(values, dtype=np.float64))
    magnitude = magnitude[np.isfinite(magnitude) & (magnitude > 0)]
    if magnitude.size == 0:
        return 0.0
    return float(np.percentile(magnitude, LIMIT_PERCENTILE))


def _symmetric_limits(data) -> tuple[float, float]:
    peak = _peak(data)
    peak = peak if peak > 0 else 1.0
    return (-peak, peak)


def _positive_limits(data) -> tuple[float, float]:
    """The data's actual range (a near-uniform map keeps its contrast)."""
    data = np.asarray(data)
    finite = data[np.isfinite(data)]
    if finite.size == 0:
        return (0.0, 1.0)
    lo, hi = float(finite.min()), float(finite.max())
    if hi > lo:
        return (lo, hi)
    return (lo - 0.5, lo + 0.5) if lo != 0 else (0.0, 1.0)


#: Tops of signed colorbars (times a power of ten): napari's colorbar labels both of its
#: ends at these; at others (e.g. 8 or 12) it may label only its 0.
NICE_TOPS = (1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 10.0)


def nice_ceiling(value: float) -> float:
    """The smallest of :data:`NICE_TOPS` times a power of ten at or above ``value`` (> 0)."""
    value = float(value)
    if not (np.isfinite(value) and value > 0):
        return value
    power = 10.0 ** np.floor(np.log10(value))
    mantissa = value / power
    return next(t for t in NICE_TOPS if t >= mantissa * (1 - 1e-9)) * power


def limits_for(data, colormap) -> tuple[float, float]:
    """Contrast limits of ``data`` shown with ``colormap`` (symmetric for signed maps)."""
    return _symmetric_limits(data) if is_signed(colormap) else _positive_limits(data)


def _layout_meta(role, *, name, n_rows=None, n_times=None, sfreq=None, tmin=0.0, slot=None,
                 **extra) -> dict:  # fmt: skip
    meta = dict(role=role, name=name, n_rows=n_rows, n_times=n_times, sfreq=sfreq, tmin=tmin,
                slot=slot)  # fmt: skip
    meta.update(extra)
    return meta


def spread_to_neighbours(per_row, adjacency) -> np.ndarray:
    """``per_row`` with each missing (NaN) row given the mean of its valued mesh neighbours.

    Rows without a value and without a valued neighbour stay NaN; valued rows
    keep their values. For display: a per-source map of a few events is a few
    rows of hundreds.
    """
    per_row = np.asarray(per_row, float)
    if adjacency.shape != (len(per_row),) * 2:
        raise ValueError(
            f"adjacency must be ({len(per_row)}, {len(per_row)}) for {len(per_row)} rows, "
            f"got {adjacency.shape}."
        )
    valued = np.isfinite(per_row)
    adjacency = adjacency.tocsr()
    sums = adjacency @ np.where(valued, per_row, 0.0)
    counts = adjacency @ valued.astype(float)
    fill = ~valued & (counts > 0)
    out = per_row.copy()
    out[fill] = sums[fill] / counts[fill]
    return out
