"""Density of per-event DLEs: one curve for the report's figures and the Evaluate widget."""

from __future__ import annotations

import numpy as np

from .._validation import check_int, check_number

#: Points of the default evaluation grid of :func:`dle_density`.
DENSITY_POINTS = 400


def _check_distances(values, name="values"):
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError(f"{name} must hold at least one distance.")
    if not np.isfinite(values).all():
        raise ValueError(f"{name} must be finite (drop NaN first).")
    if (values < 0).any():
        raise ValueError(f"{name} holds negative distances.")
    return values


def dle_density_grid(values, *, xmax=None, n_points=DENSITY_POINTS):
    """Evaluation points of DLE densities, from 0 to ``xmax`` (mm).

    Parameters
    ----------
    values : array
        All the DLEs (mm) drawn on one axis (several estimators concatenated);
        finite and non-negative.
    xmax : float | None
        Right end; by default ``1.1 * p99 + 1`` mm with ``p99`` the 99th
        percentile of ``values`` (the long tail is cut, and the axis is never
        empty).
    n_points : int
        Number of points.

    Returns
    -------
    grid : array, shape (n_points,)
        ``numpy.linspace(0, xmax, n_points)``.
    """
    n_points = check_int(n_points, "n_points", minimum=2)
    if xmax is None:
        xmax = float(np.percentile(_check_distances(values), 99) * 1.1 + 1.0)
    xmax = check_number(xmax, "xmax", minimum=0.0)
    return np.linspace(0.0, xmax, n_points)


def dle_density(values, grid=None):
    r"""Gaussian kernel density of per-event DLEs, reflected at 0.

    Parameters
    ----------
    values : array, shape (n,)
        Per-event DLEs in mm (e.g. :func:`per_event_mean` of ``dle_mm``);
        finite and non-negative.
    grid : array | None
        Points (mm) at which the density is evaluated; by default
        :func:`dle_density_grid` of ``values``.

    Returns
    -------
    grid : array
        The evaluation points.
    density : array | None
        Density (1/mm) at ``grid``; None when ``values`` holds fewer than two
        distinct values, for which a kernel density is undefined (draw the
        value as a vertical line instead).

    Notes
    -----
    A distance cannot be negative, so the Gaussian kernel estimate
    :math:`\hat f_h` is reflected at 0: :math:`f(x) = \hat f_h(x) + \hat f_h(-x)`
    for :math:`x \ge 0`, which integrates to 1 over :math:`[0, \infty)` and
    does not drop towards 0 mm. The bandwidth follows Scott's rule,
    :math:`h = s\, n^{-1/5}` with :math:`s` the sample standard deviation
    (``ddof=1``) of the :math:`n` values (:class:`scipy.stats.gaussian_kde`
    with ``bw_method="scott"``).
    """
    from scipy.stats import gaussian_kde

    values = _check_distances(values)
    grid = dle_density_grid(values) if grid is None else np.asarray(grid, dtype=np.float64)
    if values.size < 2 or np.ptp(values) == 0:
        return grid, None
    kde = gaussian_kde(values, bw_method="scott")
    return grid, kde(grid) + kde(-grid)
