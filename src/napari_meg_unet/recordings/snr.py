"""The measured SNR of a recording, defined as the simulations define theirs.

A simulation's ``snr`` is the RMS over the event window (and over the
whitened dimensions) of the noise-free signal whitened by the noise
covariance of the *average* (``noise_cov / nave``). For recorded data the
noise is not known sample by sample, so the whitened power at each time is
compared with the whitened noise power:

    snr(t) = sqrt(max(p(t) / p_noise - 1, 0)),   p(t) = mean_i w_i(t)^2

where ``w = W_nave @ data`` (MNE's whitener of the covariance scaled by
``1 / nave``, :func:`mne.cov.compute_whitener`) and ``p_noise`` is the mean
whitened power over the pre-stimulus baseline when there is one (``tmin <
0``), else 1 (what a correct covariance gives). The baseline estimate is
robust to a covariance that does not match the data (e.g. a non-SSS
covariance on Maxwell-filtered data, whose whitened noise is not white); the
output says which was used.
"""

from __future__ import annotations

from dataclasses import dataclass

import mne
import numpy as np

from .._validation import check_int
from .segments import Segment


@dataclass(frozen=True)
class MeasuredSNR:
    """Whitened SNR of one evoked response.

    Attributes
    ----------
    times : ndarray
        Times (s).
    snr : ndarray
        ``snr(t)`` at every time.
    peak : float
        Largest ``snr(t)`` in the analysis window.
    peak_time : float
        Its time (s).
    window_rms : float
        RMS of the signal part over the analysis window (a simulation's ``snr``).
    window : tuple of float
        The analysis window (s).
    noise_power : float
        Whitened noise power per dimension used (1 when not measured).
    noise_from : str
        ``"baseline"`` or ``"covariance"``.
    rank : int
        Whitened dimensions.
    nave : int
        Averaged trials the whitener was scaled for.
    """

    times: np.ndarray
    snr: np.ndarray
    peak: float
    peak_time: float
    window_rms: float
    window: tuple
    noise_power: float
    noise_from: str
    rank: int
    nave: int

    def summary(self) -> dict:
        return dict(
            peak=self.peak, peak_time=self.peak_time, window_rms=self.window_rms,
            window=list(self.window), noise_power=self.noise_power, noise_from=self.noise_from,
            rank=self.rank, nave=self.nave,
        )  # fmt: skip

    def describe(self) -> str:
        return (
            f"whitened SNR peak {self.peak:.2f} at {1e3 * self.peak_time:.0f} ms, RMS "
            f"{self.window_rms:.2f} over {1e3 * self.window[0]:.0f}..{1e3 * self.window[1]:.0f} "
            f"ms (rank {self.rank}, nave {self.nave}, noise level from the {self.noise_from})"
        )


def _whitened_power(data, info, noise_cov, nave, rank):
    """Mean whitened power per time over the good data channels the covariance has."""
    bads = set(info["bads"]) | set(noise_cov["bads"])
    data_picks = mne.pick_types(info, meg=True, eeg=True, ref_meg=False, exclude=[])
    picks = [ii for ii in data_picks
             if info["ch_names"][ii] in noise_cov.ch_names and info["ch_names"][ii] not in bads]
    if not picks:
        raise ValueError("The data share no good MEG/EEG channel with the noise covariance.")
    info = mne.pick_info(info, picks)
    with info._unlock():
        info["bads"] = []
    cov = noise_cov.copy()
    cov["data"] = np.asarray(cov["data"], dtype=np.float64)  # FIF data are big-endian
    W, ch_names = mne.cov.compute_whitener(cov, info, pca=True, rank=rank, verbose="error")
    sel = [picks[info["ch_names"].index(ch)] for ch in ch_names]
    white = np.sqrt(nave) * (W @ data[sel])
    return np.mean(white**2, axis=0), W.shape[0]


def measure_snr(data, noise_cov, *, window="auto", nave=None, rank=None) -> MeasuredSNR:
    """Whitened SNR of an evoked response (the simulations' definition).

    Parameters
    ----------
    data : mne.Evoked | Segment
        An averaged response (a segment of kind ``"evoked"``).
    noise_cov : mne.Covariance
        Noise covariance of single trials (its channels are picked from the data).
    window : tuple of float | None | "auto"
        Analysis window ``(tmin, tmax)`` in seconds (None ends: the data's);
        ``"auto"``: from 0 s (after the stimulus) when the data reach it, else
        every sample.
    nave : int | None
        Trials averaged (None: the data's own).
    rank : None | 'info' | dict
        As in :func:`mne.cov.compute_whitener` (``'info'`` for SSS data with
        an SSS-processed covariance).

    Returns
    -------
    snr : MeasuredSNR
    """
    if isinstance(data, Segment):
        if data.kind != "evoked":
            raise ValueError(
                f"measure_snr needs an averaged response, got a {data.kind} segment "
                f"({data.name!r}); average the epochs first."
            )
        nave = data.nave if nave is None else nave
        data = data.inst
    if not isinstance(data, mne.Evoked):
        raise TypeError(f"data must be an mne.Evoked or a Segment, got {type(data).__name__}.")
    nave = check_int(int(data.nave if nave is None else nave), "nave", minimum=1)
    if not isinstance(noise_cov, mne.Covariance):
        raise TypeError(f"noise_cov must be an mne.Covariance, got {type(noise_cov).__name__}.")
    times = data.times
    if isinstance(window, str):
        if window != "auto":
            raise ValueError(f"window must be (tmin, tmax), None or 'auto', got {window!r}.")
        window = (0.0, None) if times[-1] >= 0 else None
    lo = times[0] if window is None or window[0] is None else window[0]
    hi = times[-1] if window is None or window[1] is None else window[1]
    in_window = (times >= lo) & (times <= hi)
    if not in_window.any():
        raise ValueError(f"window {window} holds no sample of the data ({times[0]:.3f}..."
                         f"{times[-1]:.3f} s).")  # fmt: skip
    power, dims = _whitened_power(data.data, data.info, noise_cov, nave, rank)
    baseline = times < 0
    if baseline.sum() >= 10:
        noise_power, noise_from = float(power[baseline].mean()), "baseline"
    else:
        noise_power, noise_from = 1.0, "covariance"
    snr_t = np.sqrt(np.maximum(power / noise_power - 1.0, 0.0))
    sel = np.flatnonzero(in_window)
    peak = sel[np.argmax(snr_t[sel])]
    rms = float(np.sqrt(max(power[sel].mean() / noise_power - 1.0, 0.0)))
    return MeasuredSNR(
        times=times.copy(), snr=snr_t, peak=float(snr_t[peak]), peak_time=float(times[peak]),
        window_rms=rms, window=(float(lo), float(hi)), noise_power=noise_power,
        noise_from=noise_from, rank=int(dims), nave=nave,
    )  # fmt: skip
