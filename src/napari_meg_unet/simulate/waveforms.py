"""Source waveforms (the ``"thesis"`` and ``"realistic"`` presets) and per-event SNRs."""

from __future__ import annotations

import math

import numpy as np

from ..configs import (
    REALISTIC_DURATION,
    REALISTIC_FREQ,
    REALISTIC_REL_AMPLITUDE,
    THESIS_DURATION,
    THESIS_FREQ,
)


def _draw_waveforms(timecourse, n_src, *, n_times, sfreq, rng) -> dict:
    """Unit-peak waveforms (n_src, n_times) with their onset/duration/frequency/phase."""
    if timecourse == "thesis":
        onset = np.full(n_src, (n_times - THESIS_DURATION) // 2, np.int64)
        duration = np.full(n_src, THESIS_DURATION, np.int64)
        frequency = np.full(n_src, THESIS_FREQ)
        phase = np.zeros(n_src)
        rel_amplitude = np.ones(n_src)
        taper = False
    else:
        f_hi = min(REALISTIC_FREQ[1], 0.4 * sfreq)
        frequency = rng.uniform(REALISTIC_FREQ[0], f_hi, n_src)
        phase = rng.uniform(0.0, 2 * np.pi, n_src)
        d_lo = max(3, math.ceil(REALISTIC_DURATION[0] * n_times))
        d_hi = max(d_lo, math.floor(REALISTIC_DURATION[1] * n_times))
        duration = rng.integers(d_lo, d_hi + 1, n_src).astype(np.int64)
        onset = np.floor(rng.random(n_src) * (n_times - duration + 1)).astype(np.int64)
        rel_amplitude = np.exp(rng.uniform(*np.log(REALISTIC_REL_AMPLITUDE), n_src))
        taper = True
    tau = np.arange(n_times)[None, :] - onset[:, None]
    active = (tau >= 0) & (tau < duration[:, None])
    unit = np.sin(2 * np.pi * frequency[:, None] * tau / sfreq + phase[:, None])
    if taper:  # Hann window of duration + 2 points without its zero end points
        unit *= np.sin(np.pi * (tau + 1) / (duration[:, None] + 1)) ** 2
    unit = np.where(active, unit, 0.0)
    peak = np.abs(unit).max(axis=1)
    unit /= np.where(peak > 0, peak, 1.0)[:, None]
    return dict(
        unit=unit,
        onset=onset,
        duration=duration,
        frequency=frequency,
        phase=phase,
        rel_amplitude=rel_amplitude,
    )


def _draw_event_snr(snr, n_events, rng) -> np.ndarray:
    """Each event's SNR: ``snr`` (lo, hi) fixed, or drawn log-uniformly when lo < hi."""
    lo, hi = snr
    if lo == hi:
        return np.full(n_events, lo)
    return np.exp(rng.uniform(*np.log(snr), n_events))
