"""The whitened SNR of a recording, defined as the simulations define it.

The simulations scale every event to a whitened SNR (``docs/simulation.md``):
the RMS, over the event's active samples and the ``r`` whitened channels, of
the noise-free signal whitened by the head model's noise covariance, times
``sqrt(nave)``. For an average of ``nave`` trials that is the RMS of the
average whitened with the covariance divided by ``nave``. Measured data hold
signal and noise: per sample, the mean square of the whitened average is
``snr(t)**2 + m`` where ``m`` is the noise's own mean square, 1 when the
covariance describes the noise. ``m`` is measured on the pre-stimulus
baseline when there is one (so an ad hoc or mismatched covariance does not
inflate the SNR), else taken as 1, and the SNR of a window is
``sqrt(max(mean_square / m - 1, 0))``.
"""

from __future__ import annotations

import mne
import numpy as np

#: Fewest baseline samples for measuring the noise's mean square.
MIN_BASELINE_SAMPLES = 10
#: Training SNRs span the measured ones from this fraction of the lowest ...
SNR_SPAN_LOW = 0.5
#: ... to this multiple of the highest ...
SNR_SPAN_HIGH = 2.0
#: ... within these bounds.
SNR_BOUNDS = (0.1, 30.0)
#: The training SNR range when the recording's SNR cannot be measured (as ``bench accuracy``'s).
DEFAULT_SNR_RANGE = (0.5, 3.0)


def _whitened_mean_square(evoked, hm) -> np.ndarray:
    """Per-sample mean square over the whitened channels of ``evoked`` (average scaling)."""
    missing = [ch for ch in hm.ch_names if ch not in evoked.ch_names]
    if missing:
        raise ValueError(
            f"The recording lacks {len(missing)} channel(s) of the head model, e.g. "
            f"{missing[0]!r}."
        )
    data = evoked.copy().pick(hm.ch_names).reorder_channels(hm.ch_names).data
    whitener, _ = mne.cov.compute_whitener(hm.noise_cov, hm.info, rank=hm.noise_rank["mne"],
                                           pca=True, verbose=False)  # fmt: skip
    white = whitener @ data * np.sqrt(evoked.nave)
    return (white**2).mean(axis=0)


def _peak_window(ms: np.ndarray, times: np.ndarray, n_times: int) -> tuple[float, float]:
    """Mean square of the post-stimulus window of ``n_times`` samples with the most, its start."""
    post = np.flatnonzero(times >= 0)
    if len(post) < n_times:
        post = np.arange(len(ms))
    n = min(n_times, len(post))
    seg = ms[post]
    sums = np.convolve(seg, np.ones(n), mode="valid") / n
    i = int(np.argmax(sums))
    return float(sums[i]), float(times[post[i]])


def measure_snr(evoked, hm, *, n_times: int) -> dict:
    """The whitened SNR of one average: in its strongest window and after the stimulus.

    Parameters
    ----------
    evoked : mne.Evoked
        The average (``nave`` trials); samples before 0 are its baseline.
    hm : HeadModel
        Its channels, noise covariance and noise rank define the whitening.
    n_times : int
        Samples of the window (those of the network's input).

    Returns
    -------
    snr : dict
        ``condition``, ``nave``, ``peak_snr`` (the window of ``n_times``
        samples after 0 with the most power), ``peak_tmin`` (its start, s),
        ``post_snr`` (all samples after 0), ``noise_mean_square`` (of the
        baseline, 1 when there is none), ``baseline`` (whether measured).
    """
    ms = _whitened_mean_square(evoked, hm)
    times = evoked.times
    base = times < 0
    measured = int(base.sum()) >= MIN_BASELINE_SAMPLES
    noise = float(ms[base].mean()) if measured else 1.0
    peak, tmin = _peak_window(ms, times, n_times)
    post = ms[times >= 0] if (times >= 0).any() else ms
    return {
        "condition": evoked.comment, "nave": int(evoked.nave),
        "peak_snr": float(np.sqrt(max(peak / noise - 1.0, 0.0))), "peak_tmin": tmin,
        "post_snr": float(np.sqrt(max(post.mean() / noise - 1.0, 0.0))),
        "noise_mean_square": noise, "baseline": measured,
    }  # fmt: skip


def training_snr_range(measured: list, *, measurable: bool) -> tuple[tuple, str]:
    """The SNR range of the training data, spanning the measured peak SNRs, and why."""
    lo_b, hi_b = SNR_BOUNDS
    peaks = [m["peak_snr"] for m in measured]
    if not measurable or not peaks or max(peaks) <= 0:
        why = ("the recording's SNR cannot be measured (no baseline and an ad hoc covariance)"
               if not measurable else "no signal above the noise was measured")  # fmt: skip
        return DEFAULT_SNR_RANGE, f"{why}: the default range {DEFAULT_SNR_RANGE}"
    lo = min(max(SNR_SPAN_LOW * min(p for p in peaks if p > 0), lo_b), hi_b)
    hi = max(min(SNR_SPAN_HIGH * max(peaks), hi_b), lo)
    text = ", ".join(f"{m['condition']} {m['peak_snr']:.2f}" for m in measured)
    return (round(lo, 4), round(hi, 4)), (
        f"measured peak whitened SNR {text}; training at {lo:.2f}-{hi:.2f} "
        f"({SNR_SPAN_LOW:g}x the lowest to {SNR_SPAN_HIGH:g}x the highest, within {SNR_BOUNDS})"
    )
