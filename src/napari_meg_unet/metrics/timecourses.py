"""The time-course error of dipoles: their moments (A·m) against the true sources'.

A dipole estimate says where the sources are *and* what they do: the moment
time course of each dipole (A·m), what a researcher reads off a fit. The
**time-course error** of one event compares the estimated moments with the true
ones over the event's active window:

- each true source is matched to at most one dipole by optimal assignment on
  their distances (:func:`scipy.optimize.linear_sum_assignment`, as the DLE
  matches peaks);
- only the orientations the sensors *see* at each true source are compared
  (``visible``: a projector per source, e.g. onto the orientations MNE's rule
  keeps at that position, :func:`napari_meg_unet.peers.field.visible_projectors`):
  a radial dipole produces almost no magnetic field outside the head, so no
  estimator can recover that part of a moment, nor should it be scored on it.
  A matched dipole's moment is projected with its source's projector;
- the error is the norm of what differs, relative to the norm of the truth::

      sqrt( sum_matched ||P_i (m_j - s_i)||^2 + sum_missed ||P_i s_i||^2
            + sum_extra ||m_j||^2 ) / sqrt( sum_i ||P_i s_i||^2 )

  with ``s_i`` the true moment ``(3, n_window)`` of source ``i``, ``P_i`` its
  projector and ``m_j`` the estimated moment of dipole ``j``. 0 is perfect;
  1 is what an estimate of no dipole scores; a dipole with the right time
  course but in the wrong place still counts as matched (its place is the
  DLE's business), one with the wrong sign or amplitude does not.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment


def time_course_error(positions, moments, true_positions, true_moments, *, visible=None,
                      window=None) -> float:  # fmt: skip
    """The time-course error of one event's dipoles (see the module docstring).

    Parameters
    ----------
    positions : array, shape (m, 3)
        The estimated dipoles' positions (metres).
    moments : array, shape (m, 3, n_times)
        Their moment time courses (A·m).
    true_positions : array, shape (k, 3)
        The true sources' positions (metres).
    true_moments : array, shape (k, 3, n_times)
        Their moments (A·m): a dipole's orientation times its time course.
    visible : array, shape (k, 3, 3) | None
        Projector onto the orientations seen at each true source; None
        compares the full moments.
    window : (int, int) | None
        The samples compared (start, stop); None: all.

    Returns
    -------
    error : float
        NaN when the (visible) true moments are zero over the window.
    """
    positions = np.asarray(positions, float).reshape(-1, 3)
    true_positions = np.asarray(true_positions, float).reshape(-1, 3)
    k = len(true_positions)
    sl = slice(None) if window is None else slice(int(window[0]), int(window[1]))
    proj = np.broadcast_to(np.eye(3), (k, 3, 3)) if visible is None else np.asarray(visible)
    if proj.shape != (k, 3, 3):
        raise ValueError(f"visible must have shape ({k}, 3, 3), got {proj.shape}.")
    true = np.einsum("kab,kbt->kat", proj,
                     np.asarray(true_moments, float).reshape(k, 3, -1)[..., sl])  # fmt: skip
    truth = float(np.sum(true**2))
    if truth == 0:
        return float("nan")
    if not len(positions):  # nothing estimated
        return 1.0
    est = np.asarray(moments, float).reshape(len(positions), 3, -1)[..., sl]
    if est.shape[-1] != true.shape[-1]:
        raise ValueError(f"The estimated moments have {est.shape[-1]} samples, the true "
                         f"{true.shape[-1]}.")  # fmt: skip
    error = truth + float(np.sum(est**2))
    dist = np.linalg.norm(true_positions[:, np.newaxis] - positions[np.newaxis], axis=-1)
    rows, cols = linear_sum_assignment(dist)
    # a matched pair replaces the two unmatched terms by the norm of their projected difference
    for i, j in zip(rows, cols, strict=True):
        error += (np.sum((proj[i] @ est[j] - true[i]) ** 2) - np.sum(est[j] ** 2)
                  - np.sum(true[i] ** 2))  # fmt: skip
    return float(np.sqrt(max(error, 0.0) / truth))
