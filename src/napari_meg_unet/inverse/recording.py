"""Inverting a recording: every condition with its own nave, source estimates out."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .._config import takes_config
from .._logging import verbose as _verbose
from ..configs import InverseConfig
from ..progress import Progress, plain
from ._data import _pick_data_channels, check_data_finite, warn_flat_channels
from ._docs import fill_doc
from .diagnostics import _data_operators
from .estimates import rank_report, source_estimates
from .kernels import compute_kernel
from .operator import make_inverse
from .stacks import _normalise


@dataclass(eq=False)
class ConditionEstimates:
    """The inverse of one condition (segment) of a recording.

    Attributes
    ----------
    segment : recordings.Segment
    nave : int
        The nave the kernels were made for (the condition's own unless forced).
    stcs : dict
        ``{method: SourceEstimate}`` (a list per epoch for an epochs segment).
    snr : recordings.MeasuredSNR | None
        Whitened SNR of an averaged response (with the head model's covariance).
    explained : dict
        Mean explained (whitened) variance per data fit, ``{"MNE/dSPM/sLORETA": x}``.
    """

    segment: object
    nave: int
    stcs: dict
    snr: object = None
    explained: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.segment.name

    def stack(self, rows, normalisation) -> np.ndarray:
        """Network-layout images (n_items, n_methods, n_rows, n_times), float32."""
        per_method = []
        for stcs in self.stcs.values():
            items = stcs if isinstance(stcs, list) else [stcs]
            block = np.stack([np.asarray(s.data)[rows] for s in items])
            per_method.append(_normalise(block.astype(np.float64), normalisation))
        return np.stack(per_method, axis=1).astype(np.float32)

    def summary(self) -> dict:
        return dict(
            segment=self.segment.summary(), nave=self.nave, methods=list(self.stcs),
            snr=None if self.snr is None else self.snr.summary(), explained=self.explained,
        )  # fmt: skip


@dataclass(eq=False)
class RecordingInverse:
    """The operator, its rank report and one :class:`ConditionEstimates` per condition.

    ``kernels(nave)`` gives the (cached) imaging kernels of the methods for ``nave``.
    """

    inv: object
    rank: object
    conditions: list
    kernels: object = None


class _PerNave:
    """Kernels and data-fit operators of one operator, computed once per nave."""

    def __init__(self, inv, config, method_params, pick_ori, fingerprint):
        self.inv, self.config, self.params = inv, config, method_params
        self.pick_ori, self.fingerprint = pick_ori, fingerprint
        self._kernels, self._fits = {}, {}

    def kernels(self, nave) -> dict:
        if nave not in self._kernels:
            self._kernels[nave] = {
                m: compute_kernel(
                    self.inv, method=m, lambda2=self.config.lambda2, nave=nave,
                    pick_ori="normal" if self.pick_ori == "normal" else None,
                    method_params=self.params, fingerprint=self.fingerprint, verbose="error",
                )
                for m in self.config.methods
            }  # fmt: skip
        return self._kernels[nave]

    def explained(self, data, ch_names, nave) -> dict:
        """Mean explained whitened variance per data fit (as :func:`explained_variance`)."""
        out = {}
        for method in self.config.methods:
            key = "eLORETA" if method == "eLORETA" else "MNE/dSPM/sLORETA"
            if key in out:
                continue
            if (key, nave) not in self._fits:
                self._fits[key, nave] = _data_operators(
                    self.inv, lambda2=self.config.lambda2, nave=nave, method=method,
                    method_params=self.params, verbose="error",
                )  # fmt: skip
            names, white, fit = self._fits[key, nave]
            x = _pick_data_channels(np.asarray(data), ch_names, names)
            w = np.matmul(white, x)
            res = w - np.matmul(white @ fit, x)
            out[key] = float(np.mean(1.0 - (res * res).sum((-2, -1)) / (w * w).sum((-2, -1))))
        return out


def check_segments(segments, used) -> None:
    """NaN/Inf (an error naming the recording, condition and epoch) and flat channels (a
    warning) among the channels ``used`` by an inverse."""
    for seg in segments:
        data = seg.get_data()
        where = f"{seg.source} ({seg.name})"
        check_data_finite(data[np.newaxis] if data.ndim == 2 else data, where=where,
                          axis_name="epoch", ch_names=seg.ch_names, used=used)  # fmt: skip
        warn_flat_channels(data, seg.ch_names, where=where, used=used)


@fill_doc
@takes_config(InverseConfig)
@_verbose
def iter_invert_recording(hm, data, *, recording=None, pick_ori=None, method_params=None,
                          check=True, config, verbose=None):  # fmt: skip
    """Source estimates of every condition of a recording, yielding progress.

    Parameters
    ----------
    %(hm)s
        Its operator (``loose``, ``depth``) inverts every condition.
    data : path-like | BIDSPath | mne.Evoked | list | mne.Epochs | mne.io.Raw | list of Segment
        Read with :func:`~napari_meg_unet.recordings.read_segments` (``recording``).
    recording : RecordingConfig | None
        How the recording is read (conditions, epochs, crop, filters).
    pick_ori : None | 'normal' | 'vector'
        As in :func:`mne.minimum_norm.apply_inverse`.
    %(method_params)s
    check : bool
        Check the data for NaN/Inf and flat channels first (:func:`check_segments`).
    %(options)s
    %(verbose)s

    Yields
    ------
    %(progress_yields)s

    Returns
    -------
    result : RecordingInverse
        Each condition inverted with its own ``nave`` (unless ``nave`` is
        given), its measured SNR (averaged responses) and explained variance;
        ``result.rank`` states the whitener's rank and the data's (SSS) rank.
    """
    from ..configs import RecordingConfig
    from ..recordings import Segment, measure_snr, read_segments

    if isinstance(data, list) and data and all(isinstance(s, Segment) for s in data):
        segments = data
    else:
        segments = read_segments(data, config=recording or RecordingConfig())
    total = len(segments) + 1
    if check:
        check_segments(segments, set(hm.ch_names) - set(hm.info["bads"]))
    yield Progress("inverse", 0, total, "operator")
    inv = make_inverse(hm, loose=config.loose, depth=config.depth, verbose=verbose)
    rank = rank_report(inv, segments[0].info)
    cache = _PerNave(inv, config, method_params, pick_ori, hm.fingerprint)
    conditions = []
    for ii, seg in enumerate(segments):
        yield Progress("inverse", ii + 1, total, seg.name)
        array = seg.get_data()
        nave = seg.nave if config.nave is None else config.nave
        stcs = source_estimates(inv, seg, kernels=cache.kernels(nave), pick_ori=pick_ori)
        snr = measure_snr(seg, hm.noise_cov) if seg.kind == "evoked" else None
        explained = cache.explained(array, seg.ch_names, nave)
        conditions.append(ConditionEstimates(seg, nave, stcs, snr, explained))
    yield Progress("inverse", total, total, "done")
    return RecordingInverse(inv, rank, conditions, cache.kernels)


invert_recording = plain(iter_invert_recording)
