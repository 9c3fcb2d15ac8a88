"""Layer data made ready off the main thread: stacks, cortex values, titles, DLE maps.

Qt-free; runs in the worker process (:mod:`._engine`) or a worker thread. The
main thread only turns these tuples into layers and adds them
(:mod:`._layerqueue`).
"""

from __future__ import annotations

import numpy as np

from .. import layers
from ..layers.cortex import cortex_mesh, cortex_size, headmodel_cortex

#: Name of the cortex layer whose values the widgets update.
CORTEX = "cortex"
#: Name of the cortex layer showing the truth beside an estimate.
CORTEX_TRUTH = "cortex (truth)"
#: Name of the canvas titles layer.
TITLES = "titles"

__all__ = ["CORTEX", "CORTEX_TRUTH", "TITLES", "cortex_mesh", "cortex_size", "cortex_tuple",
           "per_source_dle", "stack_tuple", "titles_tuple"]  # fmt: skip


def cortex_tuple(hm, **kwargs):
    """Cortex Surface layer data (see :func:`..layers.cortex.headmodel_cortex`)."""
    kwargs.setdefault("name", CORTEX)
    return headmodel_cortex(hm, **kwargs)


def stack_tuple(stack, *, name, sfreq, tmin=0.0, metadata=None, group=None, row_order=None):
    """A stack layer's data tuple (see :func:`..layers.stack_layer`)."""
    return layers.stack_layer(
        stack, name=name, sfreq=sfreq, tmin=tmin, metadata=metadata, group=group,
        row_order=row_order,
    )  # fmt: skip


def titles_tuple():
    return layers.titles_layer(name=TITLES)


def per_source_dle(estimates, sim, hm, *, protocol="window") -> np.ndarray:
    """Mean DLE (mm) per row of ``sim.rows`` from every true source of every event.

    The evaluation's per-vertex map uses single-source events only; for
    multi-dipole events each true source is matched to a peak by the DLE's
    optimal assignment (:func:`..metrics.peak_localisation_error`) and its own
    distance goes to its row. Rows that never carry a source are NaN.
    """
    from ..metrics import peak_localisation_error, sample_maps, window_map

    rows = np.asarray(sim.rows)
    row_of = np.full(hm.n_sources, -1)
    row_of[rows] = np.arange(len(rows))
    positions = hm.positions[rows]
    adjacency = hm.adjacency(sim.meta["params"]["hemi"])
    total, count = np.zeros(len(rows)), np.zeros(len(rows))
    src = sim.sources
    for i in range(len(sim)):
        idx = sim.event_sources(i)
        true = np.asarray(src["position"])[idx]
        true_rows = row_of[np.asarray(src["row"])[idx]]
        if protocol == "window":
            maps = [window_map(estimates[i], slice(None))]
        else:
            maps = list(sample_maps(estimates[i], samples=sim.window(i))[0])
        for m in maps:
            dist = peak_localisation_error(m, positions, true, adjacency=adjacency)
            for row, d in zip(true_rows, dist["dle_per_source_mm"], strict=True):
                if row >= 0 and np.isfinite(d):
                    total[row] += d
                    count[row] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)
