"""One piece of recorded sensor data to invert: a condition, a continuous crop or an epoch set."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import mne
import numpy as np

from .._validation import check_int, check_number

#: Kinds of :class:`Segment`.
SEGMENT_KINDS = ("evoked", "epochs", "raw")


@dataclass(eq=False)
class Segment:
    """Sensor data of one condition (or one continuous crop), as an MNE object.

    Attributes
    ----------
    name : str
        The condition (an evoked's comment, an event name) or ``"raw"``.
    inst : mne.Evoked | mne.Epochs | mne.io.BaseRaw
        The data. A raw segment is already cropped to the requested span.
    nave : int
        Averaged trials the data represent (an evoked's own ``nave``; 1 for
        raw data and single epochs).
    time_offset : float
        Added to ``inst.times`` to give the time of each sample (a raw crop
        restarts its own times at 0; this keeps the crop's start). 0 for
        evoked and epochs.
    source : str
        Where the data came from (file, BIDS recording, object), for messages.
    notes : list of str
        What was done to the data on the way (filtering, resampling, ...).
    """

    name: str
    inst: object
    nave: int = 1
    time_offset: float = 0.0
    source: str = "data"
    notes: list = field(default_factory=list)

    def __post_init__(self):
        if not isinstance(self.inst, mne.Evoked | mne.BaseEpochs | mne.io.BaseRaw):
            raise TypeError(
                "Segment.inst must be an mne.Evoked, mne.Epochs or mne.io.Raw, got "
                f"{type(self.inst).__name__}."
            )
        self.nave = check_int(int(self.nave), "nave", minimum=1)

    @property
    def kind(self) -> str:
        if isinstance(self.inst, mne.Evoked):
            return "evoked"
        return "epochs" if isinstance(self.inst, mne.BaseEpochs) else "raw"

    @property
    def info(self) -> mne.Info:
        return self.inst.info

    @property
    def ch_names(self) -> list[str]:
        return list(self.inst.ch_names)

    @property
    def sfreq(self) -> float:
        return float(self.inst.info["sfreq"])

    @property
    def tmin(self) -> float:
        """Time (s) of the first sample."""
        return float(self.inst.times[0]) + self.time_offset

    @property
    def n_times(self) -> int:
        return len(self.inst.times)

    @property
    def duration(self) -> float:
        return self.n_times / self.sfreq

    def get_data(self, picks=None) -> np.ndarray:
        """float64 data, (n_channels, n_times), or (n_epochs, n_channels, n_times) for epochs.

        ``picks`` are channel names (in the order wanted); missing ones are an
        error naming them.
        """
        names = self.ch_names
        if picks is None:
            sel = np.arange(len(names))
        else:
            index = {name: ii for ii, name in enumerate(names)}
            missing = [name for name in picks if name not in index]
            if missing:
                raise ValueError(
                    f"{self.source} ({self.name}) lacks {len(missing)} channel(s) that are "
                    f"needed: {missing[:10]}{' ...' if len(missing) > 10 else ''}."
                )
            sel = np.array([index[name] for name in picks], int)
        if self.kind == "evoked":
            data = self.inst.data
        elif self.kind == "epochs":
            data = self.inst.get_data(copy=False)
        else:
            data = self.inst.get_data()
        return np.asarray(data[..., sel, :], dtype=np.float64)

    def describe(self) -> str:
        span = f"{self.tmin:.3f}..{self.tmin + (self.n_times - 1) / self.sfreq:.3f} s"
        what = f"{len(self.inst)} epochs" if self.kind == "epochs" else self.kind
        return (
            f"{self.name!r} ({what}, nave {self.nave}, {self.n_times} samples at "
            f"{self.sfreq:.4g} Hz, {span})"
        )

    def resampled(self, sfreq, *, verbose=None) -> Segment:
        """A copy at ``sfreq`` (MNE's FFT resampling); the same segment when already there.

        The step is recorded in :attr:`notes`.
        """
        sfreq = check_number(sfreq, "sfreq", minimum=0.0)
        if np.isclose(sfreq, self.sfreq, rtol=1e-6, atol=0.0):
            return self
        inst = self.inst.copy()
        if self.kind == "epochs":
            inst.load_data()
        inst.resample(sfreq, verbose=verbose if verbose is not None else "error")
        note = f"resampled from {self.sfreq:.6g} Hz to {sfreq:.6g} Hz"
        return replace(self, inst=inst, notes=[*self.notes, note])

    def summary(self) -> dict:
        """JSON-friendly description."""
        return dict(
            name=self.name, kind=self.kind, nave=self.nave, sfreq=self.sfreq, tmin=self.tmin,
            n_times=self.n_times, source=self.source, notes=list(self.notes),
            n_epochs=len(self.inst) if self.kind == "epochs" else None,
        )  # fmt: skip
