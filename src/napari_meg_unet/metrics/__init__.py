"""Evaluation metrics for source estimates: DLE, SD, OA, AUC, EMD and their aggregation.

Conventions
-----------
- An *estimate map* is an array over the image rows, shape ``(n_rows,)``; a
  time course of maps is ``(n_rows, n_times)`` and is turned into maps with
  :func:`sample_maps` (one map per time sample, the thesis protocol) or
  :func:`window_map` (mean absolute value over a window). A stack of maps to
  score together is ``(n_maps, n_rows)``.
- ``positions`` ``(n_rows, 3)`` are the positions of those rows in **metres**
  (head coordinates); true source positions are metres too and may lie off the
  grid.
- Distances are reported in **millimetres** (keys ending in ``_mm``); the
  thesis spatial dispersion is in :math:`\\sqrt{\\mathrm{cm}}`
  (``sd_thesis_sqrtcm``); amplitude ratios and AUCs are unitless.
- An optional ``adjacency`` (scipy sparse, ``n_rows x n_rows``, e.g.
  :meth:`HeadModel.adjacency`) makes multi-source peak finding use local maxima
  on the mesh; without it, peaks are found greedily with non-maximum
  suppression within ``peak_radius_mm``.

Definitions follow ``docs/inverse-math.md`` §4: Hauk et al. (2011) / Molins et
al. (2008) as implemented by :func:`mne.minimum_norm.resolution_metrics`
(``peak_err``, ``sd_ext``), the thesis variants (§4.4) and the deep-learning
metrics (§4.5: close/far AUC after Grova et al. 2006, exact earth mover's
distance).

Layout: :mod:`.peaks` (peak finding, DLE), :mod:`.dispersion` (SD, OA),
:mod:`.auc`, :mod:`.emd`, :mod:`.timing` (time courses to maps),
:mod:`.scoring` (stacks of maps, events), :mod:`.points` (point estimates:
dipoles at continuous positions, :class:`PointEstimates`), :mod:`.timecourses`
(the time-course error of dipoles' moments), :mod:`.events`
(one estimate per event of any kind, with a protocol), :mod:`.aggregate`
(per-event means, bootstrap CIs) and :mod:`.density` (the DLE density drawn by
the report and the Evaluate widget).
"""

from __future__ import annotations

from ._common import M_TO_CM, M_TO_MM
from .aggregate import (
    NAN_POLICIES,
    aggregate,
    bootstrap_ci,
    format_aggregate,
    per_event_mean,
    per_vertex_mean,
)
from .auc import auc_close_far, roc_auc
from .density import DENSITY_POINTS, dle_density, dle_density_grid
from .dispersion import OA_KINDS, SD_KINDS, overall_amplitude, spatial_dispersion
from .emd import earth_movers_distance
from .events import score_events
from .peaks import peak_localisation_error
from .points import UNDEFINED_FOR_POINTS, PointEstimates, score_points
from .scoring import score_event, score_maps
from .timecourses import time_course_error
from .timing import sample_maps, window_map

__all__ = [
    "DENSITY_POINTS",
    "M_TO_CM",
    "M_TO_MM",
    "NAN_POLICIES",
    "OA_KINDS",
    "SD_KINDS",
    "UNDEFINED_FOR_POINTS",
    "PointEstimates",
    "aggregate",
    "auc_close_far",
    "bootstrap_ci",
    "dle_density",
    "dle_density_grid",
    "earth_movers_distance",
    "format_aggregate",
    "overall_amplitude",
    "peak_localisation_error",
    "per_event_mean",
    "per_vertex_mean",
    "roc_auc",
    "sample_maps",
    "score_event",
    "score_events",
    "score_maps",
    "score_points",
    "spatial_dispersion",
    "time_course_error",
    "window_map",
]
