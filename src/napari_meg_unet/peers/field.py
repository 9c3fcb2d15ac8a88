"""Forward fields at continuous positions and the multi-dipole least-squares refinement.

:class:`DipoleField` computes the free-orientation gain of dipoles anywhere
in the head with the head model's own sensors and conductor (the conductor of
the BEM dipole peer, :func:`.dipole.fit_conductor`): it uses the field
computation :func:`mne.fit_dipole` uses internally (``_prep_field_computation``
and ``_compute_forwards_meeg`` of :mod:`mne.forward`), set up once per head
model, so one position costs about a millisecond (a public
:func:`mne.make_forward_dipole` call sets up the conductor each time). At the
head model's sources it reproduces ``hm.fwd``'s gain (tested).

:func:`refine_dipoles` fits ``m`` dipoles to an event's noise-whitened data
by nonlinear least squares over their positions with their moments solved
linearly at every step (variable projection, Golub & Pereyra 1973):

- the data are the event's ``k = m`` dominant temporal components in the
  whitened space (``U_k S_k`` of the SVD of ``W X``). For one dipole this is
  the epoch's dominant pattern, the data of the dipole peer's ``window`` mode
  (the least-squares fit over all samples of a fixed dipole); for ``m``
  dipoles it is the ``m``-dimensional signal subspace, which the ``m`` fixed
  dipoles with their own time courses can explain;
- with ``orientations="free"`` each dipole has a free orientation: its three
  whitened gain columns ``W G_i`` span the fit. Keeping only the two
  strongest orientations, as :func:`mne.fit_dipole` does when the third
  singular value is below 0.2 of the first (``orientations="mne"``), leaves
  out the weak but non-zero radial field that a BEM gives the cortex's
  normal dipoles: with the exact forward, two noiseless off-grid dipoles
  were then fitted 10 mm off, and single dipoles at SNR 1 2.4 mm off instead
  of 1.4 mm (docs/benchmark.md). With a forward that is not the one that made
  the data (a conductor-model error), that weak third orientation absorbs the
  model's error instead and the free fit is the worse one (4.7 against 3.7
  mm). The *reported* moment keeps MNE's rule in both cases, so that a
  poorly seen radial component fitted to noise does not inflate it;
- the residual ``P_perp(r) Y_k`` (projection off the dipoles' columns) is
  minimised with :func:`scipy.optimize.least_squares` (trust-region
  reflective, forward-difference Jacobian, positions in mm) in a box of
  ``max_shift_mm`` around the initial positions, for at most ``max_nfev``
  evaluations; the gain of an unchanged dipole is cached, so a Jacobian costs
  ``3 m`` one-position field computations;
- with ``select``, the number of dipoles is chosen among the first ``k = 1
  ... m`` initial positions (strongest first): each is fitted to the same
  ``m`` components and the ``k`` of the lowest Bayesian information criterion
  ``RSS + w k (3 + 3 m) log(n)`` is kept (``w = 1``, the textbook BIC, unless
  ``bic_weight`` says otherwise) (``RSS``: whitened residual sum of
  squares, the noise has unit variance there; ``3 + 3 m`` parameters per
  dipole: its position and its moment on each component; ``n``: the entries
  fitted). A dipole fitted to noise alone lowers the RSS by about its number
  of parameters, less than the penalty; pairs of spurious dipoles with large
  opposite moments fitting the noise were what a fit of every proposal made
  of ambiguous single-source maps;
- with ``candidates`` (a :class:`CandidateScan`), dipoles the initial
  positions missed may be added: the candidate whose gain explains most of
  the current fit's residual starts one more dipole, all are refitted to the
  ``max_dipoles`` dominant components, and the larger fit is kept while its
  BIC is lower;
- with ``n_dipoles`` (the number of sources known, as RAP-MUSIC is told it),
  exactly that many dipoles are fitted to as many components: the first
  ``n_dipoles`` initial positions, and, when there are fewer, dipoles the
  ``candidates`` scan starts, one at a time, each addition refitting all.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._validation import check_choice, check_int, check_number

#: MNE's rule for the third orientation of a reported moment (``sing[2] / sing[0] > 0.2``).
THIRD_ORIENTATION_RATIO = 0.2
#: Orientations a fitted dipole may take: all three, or MNE's rule (the weak third left out).
ORIENTATIONS = ("free", "mne")
#: The reported moments leave out the directions of the dipoles' joint whitened field
#: weaker than this fraction of the strongest (nearly collinear dipoles, whose exact
#: least-squares moments are large and opposite: noise, see :func:`reported_moments`);
#: chosen on a validation simulation (``benchmarks/moment_rcond.py``).
MOMENT_RCOND = 0.1


class DipoleField:
    """Free-orientation gain ``(n_channels, 3 m)`` of dipoles at any positions (head frame).

    Parameters
    ----------
    info : mne.Info
        The channels (the data's, in their order).
    bem : mne.bem.ConductorModel
        The conductor (BEM solution or sphere model).
    trans : mne.transforms.Transform | None
        Head <-> MRI transform of a BEM (None for a sphere in head coordinates).
    """

    def __init__(self, info, bem, trans):
        from mne import pick_types
        from mne.forward._compute_forward import _prep_field_computation
        from mne.forward._make_forward import _prep_eeg_channels, _prep_meg_channels, _setup_bem
        from mne.transforms import _get_trans

        mri_head_t, _ = _get_trans(trans)
        n_eeg = len(pick_types(info, meg=False, eeg=True, exclude=()))
        sensors = {}
        if len(pick_types(info, meg=True, eeg=False, ref_meg=False, exclude=())):
            sensors["meg"] = _prep_meg_channels(info, accuracy="accurate", exclude=(),
                                                verbose=False)  # fmt: skip
        if n_eeg:
            sensors["eeg"] = _prep_eeg_channels(info, exclude=(), verbose=False)
        if not sensors:
            raise ValueError("DipoleField needs MEG or EEG channels.")
        bem = _setup_bem(bem, repr(bem), n_eeg, mri_head_t, verbose=False)
        self._sensors = sensors
        self._data = _prep_field_computation(sensors=sensors, bem=bem, n_jobs=None,
                                             verbose=False)  # fmt: skip
        names = [n for s in sensors.values() for n in s["ch_names"]]
        self._order = np.array([names.index(n) for n in info["ch_names"]])

    def gain(self, positions) -> np.ndarray:
        """The gain ``(n_channels, 3 m)`` of dipoles at ``positions`` (m, 3), x/y/z moments."""
        from mne.forward._compute_forward import _compute_forwards_meeg

        rr = np.ascontiguousarray(np.asarray(positions, np.float64).reshape(-1, 3))
        fields = _compute_forwards_meeg(rr, sensors=self._sensors, fwd_data=self._data,
                                        n_jobs=None, silent=True)  # fmt: skip
        return np.concatenate(list(fields.values()), axis=1).T[self._order]


@dataclass
class DipoleFit:
    """Dipoles refined by :func:`refine_dipoles`.

    Attributes
    ----------
    positions : ndarray, shape (m, 3)
        Metres, head coordinates.
    moments : ndarray, shape (m, 3, n_times)
        Moment time courses (A·m) reconstructed from the fitted components.
    gof : float
        Goodness of fit of the fitted components (1 - residual / data energy).
    nfev : int
        Residual evaluations of the optimiser.
    residual : ndarray, shape (n, k)
        What the dipoles leave of the fitted (whitened) components.
    """

    positions: np.ndarray
    moments: np.ndarray
    gof: float
    nfev: int
    residual: np.ndarray

    @property
    def rss(self) -> float:
        """Residual sum of squares of the fitted (whitened) components."""
        return float(np.sum(self.residual**2))

    @property
    def amplitudes(self) -> np.ndarray:
        """Mean ``|moment|`` over the epoch per dipole (A·m)."""
        return np.linalg.norm(self.moments, axis=1).mean(axis=-1)


def dipole_basis(gw, orientations="free"):
    """Orthonormal columns of one dipole's whitened gain (n, 3) and their map to moments.

    The moment of coefficients ``c`` is ``to_moment @ c``: ``V / s`` on the
    orientations kept by MNE's rule (:data:`THIRD_ORIENTATION_RATIO`), 0 on the other.
    ``orientations="free"``: three columns; ``"mne"``: only the kept ones.
    """
    u, s, vt = np.linalg.svd(gw, full_matrices=False)
    keep = kept_orientations(s)
    to_moment = np.where(keep, vt.T / np.where(keep, s, 1.0), 0.0)
    if orientations == "mne":
        return u[:, keep], to_moment[:, keep]
    return u, to_moment


def kept_orientations(s) -> np.ndarray:
    """Which of a dipole's orientations (singular values ``s``, descending) MNE's rule keeps."""
    keep = s > 0
    if s[0] > 0 and s[2] / s[0] <= THIRD_ORIENTATION_RATIO:
        keep[2] = False
    return keep


def visible_projectors(field, whitener, positions) -> np.ndarray:
    """Projectors ``(m, 3, 3)`` onto the orientations the sensors see at ``positions`` (m, 3).

    Those MNE's rule keeps (:data:`THIRD_ORIENTATION_RATIO`) in the whitened
    gain: for MEG, the weak, nearly radial third orientation is left out.
    """
    positions = np.asarray(positions, np.float64).reshape(-1, 3)
    gw = (whitener @ field.gain(positions)).reshape(whitener.shape[0], -1, 3)
    out = np.empty((len(positions), 3, 3))
    for i in range(len(positions)):
        _, s, vt = np.linalg.svd(gw[:, i], full_matrices=False)
        kept = vt[kept_orientations(s)]
        out[i] = kept.T @ kept
    return out


class _Problem:
    """The variable-projection residual of ``Y`` (n, k) for dipole positions in mm."""

    def __init__(self, field, w, y, orientations="free"):
        self.field, self.w, self.y, self.orientations = field, w, y, orientations
        self._cache = {}

    def basis(self, x_mm):
        parts = []
        for r in np.asarray(x_mm, float).reshape(-1, 3):
            key = r.tobytes()
            if key not in self._cache:
                if len(self._cache) > 256:
                    self._cache.clear()
                self._cache[key] = dipole_basis(self.w @ self.field.gain(r[None] / 1e3),
                                                 self.orientations)
            parts.append(self._cache[key])
        return parts

    def coefficients(self, x_mm):
        parts = self.basis(x_mm)
        b = np.concatenate([u for u, _ in parts], axis=1)
        c = np.linalg.lstsq(b, self.y, rcond=1e-10)[0]
        return parts, b, c

    def residual(self, x_mm):
        _, b, c = self.coefficients(x_mm)
        return (self.y - b @ c).ravel()


def _components(y_full, k):
    """The ``k`` dominant temporal components ``U_k S_k`` of ``y_full`` and ``V_k^T``."""
    u, s, vt = np.linalg.svd(y_full, full_matrices=False)
    k = min(k, len(s))
    return u[:, :k] * s[:k], vt[:k]


def _check_fit_input(whitener, data, initial):
    initial = np.asarray(initial, np.float64)
    if initial.ndim != 2 or initial.shape[1] != 3 or len(initial) == 0:
        raise ValueError(f"initial must have shape (m, 3) with m >= 1, got {initial.shape}.")
    if not np.isfinite(initial).all():
        raise ValueError("initial positions must be finite.")
    data = np.asarray(data, np.float64)
    if data.ndim != 2 or data.shape[0] != whitener.shape[1]:
        raise ValueError(
            f"data must have shape ({whitener.shape[1]}, n_times), got {data.shape}."
        )
    return initial, data


def _fit(field, whitener, y, vt, initial, *, max_shift_mm, max_nfev, orientations) -> DipoleFit:
    """Fit dipoles started at ``initial`` (m, 3) to the components ``y`` (n, k)."""
    from scipy.optimize import least_squares

    problem = _Problem(field, whitener, y, orientations)
    x0 = initial.ravel() * 1e3
    result = least_squares(
        problem.residual, x0, bounds=(x0 - max_shift_mm, x0 + max_shift_mm), method="trf",
        diff_step=1e-3, x_scale=1.0, xtol=1e-5, ftol=1e-8, max_nfev=max_nfev,
    )  # fmt: skip
    parts, b, c = problem.coefficients(result.x)
    residual = y - b @ c
    energy = float(np.sum(y**2))
    gof = 1.0 - float(np.sum(residual**2)) / energy if energy > 0 else 0.0
    return DipoleFit(result.x.reshape(-1, 3) / 1e3, reported_moments(parts, y) @ vt, gof,
                     int(result.nfev), residual)  # fmt: skip


def reported_moments(parts, y) -> np.ndarray:
    """The moments ``(m, 3, k)`` (A·m) of dipoles with bases ``parts`` fitted to ``y`` (n, k).

    ``parts`` are the dipoles' :func:`dipole_basis` (orthonormal whitened
    field columns, map to moments). The coefficients are the least squares on
    the joint basis with its directions weaker than :data:`MOMENT_RCOND` of
    the strongest left out: two dipoles a few millimetres apart have nearly
    the same field, and their exact moments are large, opposite and mostly
    noise (mean time-course errors of 0.7–3.9 — up to four times the truth's
    norm — on 2–5 dipoles at SNR 1 without it, 0.39–0.87 with it,
    ``benchmarks/moment_rcond.py``). The fit itself (positions, residual)
    uses the full projection.
    """
    return reported_fit(parts, y)[0]


def reported_fit(parts, y) -> tuple[np.ndarray, np.ndarray]:
    """:func:`reported_moments` and the residual energy ``(k,)`` of the full projection.

    One SVD of the joint basis gives both: the moments from its directions
    stronger than :data:`MOMENT_RCOND` of the strongest, the residual (what
    the dipoles, all their orientations fitted, leave of each column of
    ``y``) from all of them.
    """
    b = np.concatenate([u for u, _ in parts], axis=1)
    u, s, vt = np.linalg.svd(b, full_matrices=False)
    spanned = s > s[0] * max(b.shape) * np.finfo(float).eps
    kept = s > s[0] * MOMENT_RCOND
    projected = u.T @ y
    c = vt[kept].T @ (projected[kept] / s[kept, np.newaxis])
    residual = np.sum(y**2, axis=0) - np.sum(projected[spanned] ** 2, axis=0)
    moments, start = [], 0
    for basis, to_moment in parts:
        moments.append(to_moment @ c[start : start + basis.shape[1]])
        start += basis.shape[1]
    return np.stack(moments), np.maximum(residual, 0.0)


def dipole_moments(field, whitener, data, positions) -> np.ndarray:
    """Moment time courses ``(m, 3, n_times)`` (A·m) of dipoles fixed at ``positions`` (m, 3).

    The least-squares fit of the dipoles together to every sample of the
    whitened ``data`` (n_channels, n_times): what a researcher reads off
    dipoles once they are placed (:func:`reported_moments`). All three
    orientations take part in the fit (fitting only two would push the weak
    third's field into them: 7% of the moment of noiseless off-grid pairs);
    the moments *reported* leave the weak third out (MNE's rule,
    :data:`THIRD_ORIENTATION_RATIO`), which the sensors barely see and noise
    would dominate.
    """
    positions = np.asarray(positions, np.float64).reshape(-1, 3)
    data = np.asarray(data, np.float64)
    if not len(positions):
        return np.empty((0, 3, data.shape[1]))
    problem = _Problem(field, whitener, whitener @ data, "free")
    return reported_moments(problem.basis(positions * 1e3), problem.y)


def refine_dipoles(
    field, whitener, data, initial, *, max_shift_mm=20.0, max_nfev=30, select=False,
    candidates=None, max_dipoles=None, orientations="free", n_dipoles=None, bic_weight=1.0,
):  # fmt: skip
    """Refine dipole positions on one event's data (see the module docstring).

    Parameters
    ----------
    field : DipoleField
        Gains at continuous positions (the data's channels).
    whitener : array, shape (rank, n_channels)
        Noise whitener.
    data : array, shape (n_channels, n_times)
        The event's sensor data.
    initial : array, shape (m, 3)
        Initial positions (metres, head coordinates), ``m >= 1``, strongest
        first when ``select``.
    max_shift_mm : float
        Each coordinate stays within this distance of its initial value.
    max_nfev : int
        Residual evaluations of the optimiser (beyond the Jacobians').
    select : bool
        Fit the first ``k = 1 ... m`` dipoles of ``initial`` to the same ``m``
        components and keep the ``k`` of the lowest BIC (see the module
        docstring) instead of all ``m``.
    candidates : CandidateScan | None
        With ``select``, dipoles may also be *added*: the candidate position
        that explains most of the fit's residual starts one more dipole, all
        are refitted, and the larger fit is kept while it lowers the BIC, up to
        ``max_dipoles`` (see the module docstring).
    max_dipoles : int | None
        The most dipoles with ``candidates`` (default ``m``); the components
        fitted are then ``max(m, max_dipoles)``.
    orientations : {"free", "mne"}
        ``"free"``: each dipole's three gain columns span the fit; ``"mne"``:
        its third orientation is left out when weak (MNE's rule), as
        :func:`mne.fit_dipole` fits (see the module docstring).
    n_dipoles : int | None
        Fit exactly this many dipoles (no ``select``): the first ``n_dipoles``
        of ``initial`` and, when ``initial`` has fewer, dipoles the
        ``candidates`` scan starts (required then).
    bic_weight : float
        Weight ``w`` of the BIC's penalty in ``select`` (see the module docstring);
        below 1 keeps weaker dipoles.

    Returns
    -------
    fit : DipoleFit
    """
    initial, data = _check_fit_input(whitener, data, initial)
    max_shift_mm = check_number(max_shift_mm, "max_shift_mm", minimum=0, strict=True)
    max_nfev = check_int(max_nfev, "max_nfev", minimum=1)
    bic_weight = check_number(bic_weight, "bic_weight", minimum=0, strict=True)
    m = len(initial)
    max_dipoles = m if max_dipoles is None else check_int(max_dipoles, "max_dipoles", minimum=1)
    adding = select and candidates is not None
    orientations = check_choice(orientations, "orientations", ORIENTATIONS)
    options = dict(max_shift_mm=max_shift_mm, max_nfev=max_nfev, orientations=orientations)
    if n_dipoles is not None:
        return _fit_exactly(field, whitener, data, initial, n_dipoles, select=select,
                            candidates=candidates, options=options)  # fmt: skip
    y, vt = _components(whitener @ data, max(m, max_dipoles) if adding else m)
    if not select or (m == 1 and not adding):
        return _fit(field, whitener, y, vt, initial, **options)
    log_n = bic_weight * np.log(y.size)

    def bic(fit):
        return fit.rss + len(fit.positions) * (3 + 3 * y.shape[1]) * log_n

    best = min((_fit(field, whitener, y, vt, initial[:k], **options) for k in range(1, m + 1)),
               key=bic)  # fmt: skip
    while adding and len(best.positions) < max_dipoles:
        start = candidates.best_start(best.residual, best.positions)
        if start is None:
            break
        trial = _fit(field, whitener, y, vt, np.vstack([best.positions, start]), **options)
        if bic(trial) >= bic(best):
            break
        best = trial
    return best


def _fit_exactly(field, whitener, data, initial, n_dipoles, *, select, candidates, options):
    """:func:`refine_dipoles` with ``n_dipoles``: exactly that many dipoles."""
    n = check_int(n_dipoles, "n_dipoles", minimum=1)
    if select:
        raise ValueError("n_dipoles fixes the number of dipoles; it cannot be used with select.")
    if n > len(initial) and candidates is None:
        raise ValueError(
            f"n_dipoles={n} but only {len(initial)} initial positions: the missing dipoles "
            "need candidates (a CandidateScan) to start them."
        )
    y, vt = _components(whitener @ data, n)
    fit = _fit(field, whitener, y, vt, initial[:n], **options)
    while len(fit.positions) < n:
        start = candidates.best_start(fit.residual, fit.positions)
        if start is None:
            break
        fit = _fit(field, whitener, y, vt, np.vstack([fit.positions, start]), **options)
    return fit


class CandidateScan:
    """Where to start one more dipole: the candidate that explains most of a fit's residual.

    Parameters
    ----------
    field : DipoleField
        Gains at continuous positions.
    whitener : array, shape (rank, n_channels)
        Noise whitener.
    positions : array, shape (n_candidates, 3)
        Candidate positions (metres), e.g. the head model's source positions.
    min_distance_mm : float
        Candidates closer than this to a fitted dipole are not proposed.

    The whitened free-orientation gain of every candidate is computed once; a
    scan projects the residual of the fitted dipoles, ``P_perp(r) Y``, on each
    candidate's orthonormal gain basis and returns the position of the largest
    projected energy (a one-dipole scan of the residual, as a RAP-MUSIC step
    on the data instead of their subspace).
    """

    def __init__(self, field, whitener, positions, *, min_distance_mm=10.0):
        positions = np.asarray(positions, np.float64)
        if positions.ndim != 2 or positions.shape[1] != 3 or len(positions) == 0:
            raise ValueError(f"positions must have shape (n, 3), got {positions.shape}.")
        self.positions = positions
        self.min_distance = check_number(min_distance_mm, "min_distance_mm", minimum=0) / 1e3
        gw = (whitener @ field.gain(positions)).reshape(whitener.shape[0], -1, 3)
        self.bases = np.stack([dipole_basis(gw[:, i])[0] for i in range(len(positions))])

    def best_start(self, residual, fitted) -> np.ndarray | None:
        """The candidate position (3,) explaining most of a fit's whitened ``residual`` (n, k),
        none within ``min_distance_mm`` of the ``fitted`` positions (m, 3)."""
        energy = np.einsum("gnk,nc->gkc", self.bases, residual)
        energy = (energy**2).sum(axis=(1, 2))
        near = np.linalg.norm(self.positions[:, None] - np.asarray(fitted)[None], axis=-1)
        energy[(near < self.min_distance).any(axis=1)] = -np.inf
        if not np.isfinite(energy).any():
            return None
        return self.positions[int(np.argmax(energy))]
