"""Spatial dispersion (Molins / thesis) and overall amplitude of one map."""

from __future__ import annotations

import numpy as np

from .._validation import check_choice
from ._checks import (
    _check_adjacency,
    _check_map,
    _check_positions,
    _check_radius,
    _check_true_positions,
)
from ._common import M_TO_CM, M_TO_MM
from ._docs import fill_doc
from .peaks import _find_peaks

SD_KINDS = ("molins", "thesis")
OA_KINDS = ("thesis", "sum")


def _sd_molins(amplitude, positions, true_positions):
    """Molins SD (mm) of one map around the nearest true source."""
    power = amplitude**2
    total = power.sum()
    if total == 0:
        return np.nan
    d2 = np.min(
        np.sum((positions[:, np.newaxis] - true_positions[np.newaxis]) ** 2, axis=-1), axis=1
    )
    return float(M_TO_MM * np.sqrt(np.sum(d2 * power) / total))


def _sd_thesis(amplitude, positions, centres):
    """Thesis SD (sqrt(cm)) of one map around the nearest of ``centres``."""
    power = amplitude**2
    total = power.sum()
    if total == 0 or len(centres) == 0:
        return np.nan
    d_cm = M_TO_CM * np.min(
        np.linalg.norm(positions[:, np.newaxis] - centres[np.newaxis], axis=-1), axis=1
    )
    return float(np.sqrt(np.sum(d_cm * power) / total))


@fill_doc
def spatial_dispersion(
    estimate,
    positions,
    true_positions,
    *,
    kind="molins",
    adjacency=None,
    peak_radius_mm=20.0,
):
    r"""Spatial dispersion of one estimate map.

    Parameters
    ----------
    estimate : array, shape (n_rows,)
        The estimate map :math:`a`; its absolute value is used.
    %(metrics_positions)s
    true_positions : array, shape (3,) or (n_sources, 3)
        True source positions in metres.
    kind : ``"molins"`` | ``"thesis"``
        ``"molins"`` (Molins et al. 2008 eq. 12; Hauk et al. 2011; MNE's
        ``sd_ext``): :math:`\sqrt{\sum_i d_i^2 a_i^2 / \sum_i a_i^2}` with
        :math:`d_i` the distance from row :math:`i` to the nearest **true**
        source; **millimetres**. ``"thesis"`` (MEG-inverse-UNet, 2017):
        :math:`\sqrt{\sum_i d_i a_i^2 / \sum_i a_i^2}` with :math:`d_i` the
        distance, in cm and **not squared**, from row :math:`i` to the nearest
        **estimated peak** (the ``n_sources`` peaks of
        :func:`peak_localisation_error`); units :math:`\sqrt{\mathrm{cm}}`.
    adjacency : scipy.sparse matrix | None
        Used by ``kind="thesis"`` to find several peaks; see
        :func:`peak_localisation_error`.
    %(metrics_peak_radius_mm)s

    Returns
    -------
    sd : float
        Millimetres for ``"molins"``, :math:`\sqrt{\mathrm{cm}}` for
        ``"thesis"`` (``sd_mm`` / ``sd_thesis_sqrtcm`` in :func:`score_maps`).
        NaN for an all-zero map.
    """
    check_choice(kind, "kind", SD_KINDS)
    positions = _check_positions(positions)
    estimate = _check_map(estimate, len(positions))
    true_positions = _check_true_positions(true_positions)
    adjacency = _check_adjacency(adjacency, len(positions))
    peak_radius_mm = _check_radius(peak_radius_mm)
    amplitude = np.abs(estimate)
    if kind == "molins":
        return _sd_molins(amplitude, positions, true_positions)
    peaks = _find_peaks(amplitude, positions, len(true_positions), adjacency, peak_radius_mm)
    return _sd_thesis(amplitude, positions, positions[peaks])


def overall_amplitude(estimate, *, kind="thesis"):
    r"""Overall amplitude of one estimate map.

    Parameters
    ----------
    estimate : array, shape (n_rows,)
        The estimate map :math:`a`.
    kind : ``"thesis"`` | ``"sum"``
        ``"thesis"``: :math:`\sum_i |a_i| / \max_i |a_i|`, normalised by the
        map's own peak (unitless, in :math:`[1, n_{rows}]`; 1 for a single
        active row). ``"sum"``: :math:`\sum_i |a_i|`, absolute, in the units of
        the estimate (Hauk et al. 2011; MNE's ``sum_amp`` further divides this
        by its maximum over sources).

    Returns
    -------
    oa : float
        The overall amplitude; NaN for an all-zero map with ``kind="thesis"``.
    """
    check_choice(kind, "kind", OA_KINDS)
    amplitude = np.abs(_check_map(estimate))
    total = float(amplitude.sum())
    if kind == "sum":
        return total
    peak = amplitude.max()
    return total / peak if peak > 0 else np.nan
