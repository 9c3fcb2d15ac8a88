"""A trained network on a real recording: any sampling rate, any length, any subject.

:func:`predict_recording` turns each condition of a recording
(:func:`~napari_meg_unet.recordings.read_segments`) into a
:class:`mne.SourceEstimate` of the network's probabilities:

1. compatibility (:func:`~napari_meg_unet.checkpoint.check_recording_compatible`):
   every difference between the data and the network is named, and either
   adapted (said in the output) or refused;
2. the data are resampled to the network's sampling rate;
3. the inverse maps are made as the network's training images were
   (its methods, lambda2, loose, depth and nave) with the data's head model;
4. for a template network and another subject, the maps are mapped onto the
   template's sources (:func:`~napari_meg_unet.recordings.source_mapping`);
5. the network slides over the recording in windows of its training length
   (:mod:`.windows`), each normalised as a training image, and the window
   maps are stitched;
6. the probabilities are mapped back onto the subject's sources.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from .._config import takes_config
from .._logging import verbose as _verbose
from ..checkpoint import check_recording_compatible, data_record, load_checkpoint
from ..configs import NetworkApplyConfig, RecordingConfig
from ..inverse import rank_report
from ..progress import Progress, plain
from .inference import iter_probabilities, load_model
from .windows import cut_windows, stitch, window_starts

logger = logging.getLogger(__name__)

#: What the values of a network's source estimate are.
PROBABILITY_UNIT = "probability (0 to 1) of an active source at the vertex and time"


@dataclass(eq=False)
class RecordingPrediction:
    """A network's source estimate of one condition of a recording.

    Attributes
    ----------
    name : str
        The condition.
    stc : mne.SourceEstimate
        Probabilities (:data:`PROBABILITY_UNIT`) on the data's head-model
        sources, at the network's sampling rate; rows of a hemisphere the
        network does not cover are 0.
    nave : int
        The condition's own number of averaged trials.
    notes : list of str
        Everything adapted on the way (resampling, nave, head-model mapping...).
    """

    name: str
    stc: object
    nave: int
    notes: list = field(default_factory=list)
    unit: str = PROBABILITY_UNIT

    def summary(self) -> dict:
        return dict(
            name=self.name, nave=self.nave, unit=self.unit, tmin=float(self.stc.tmin),
            tstep=float(self.stc.tstep), sfreq=1.0 / float(self.stc.tstep),
            n_times=int(self.stc.data.shape[-1]), n_sources=int(self.stc.data.shape[0]),
            subject=self.stc.subject, max=float(self.stc.data.max()), notes=list(self.notes),
        )  # fmt: skip


def _segments_of(data, recording):
    from ..recordings import Segment, read_segments

    if isinstance(data, Segment):
        return [data]
    if isinstance(data, list | tuple) and data and all(isinstance(s, Segment) for s in data):
        return list(data)
    return read_segments(data, config=recording or RecordingConfig())


def _is_template_network(record) -> bool:
    from ..headmodel import TEMPLATE_SUBJECT

    return record["headmodel"].get("subject") == TEMPLATE_SUBJECT


def _iter_headmodel(record, headmodel, segments, noise_cov, notes):
    """The head model making the inverse maps (the coregistered template when none is given)."""
    if headmodel is not None:
        return headmodel
    if not _is_template_network(record):
        raise ValueError(
            f"This network was trained on the head model of {record['headmodel'].get('subject')!r}"
            " (not the template): pass the recording's head model (headmodel=, --headmodel)."
        )
    from ..coreg import iter_make_template_anatomy_headmodel

    spec = record["headmodel"]
    hm, _ = yield from iter_make_template_anatomy_headmodel(
        segments[0].info, spacing=spec.get("spacing", "ico3"),
        modality=spec.get("modality", "meg"),
        noise_cov="adhoc" if noise_cov is None else noise_cov, verbose="error",
    )  # fmt: skip
    notes.append(
        "head model: the fsaverage5 template coregistered to the recording "
        f"({hm.provenance['coregistration'].get('method', 'fit to the digitisation')}), noise "
        f"covariance {'ad hoc' if noise_cov is None else 'given'}"
    )
    return hm


def _mapping(hm, record, hemi, subjects_dir, morph):
    """``(mapping or None, headmodel dict for the check)``."""
    from ..recordings import source_mapping, template_sources

    info = {"fingerprint": hm.fingerprint}
    if hm.fingerprint == record["headmodel_fingerprint"] or not _is_template_network(record):
        return None, info
    spec = record["headmodel"]
    template = template_sources(spec.get("spacing", "ico3"))
    counts = [len(v) for v in template.vertno]
    expected = [spec.get("n_sources_lh"), spec.get("n_sources_rh")]
    if None not in expected and counts != expected:
        raise ValueError(
            f"The template's {spec.get('spacing')} sources ({counts}) are not the network's "
            f"({expected} per hemisphere); the network's head model left some out."
        )
    mapping = source_mapping(hm, template, hemi=hemi, subjects_dir=subjects_dir, method=morph)
    info.update(mapping=mapping.method, description=mapping.description)
    return mapping, info


def _check(ckpt, record, segments, hm, hm_info, hemi, inverse, config):
    notes_per_segment = []
    for seg in segments:
        report = check_recording_compatible(
            ckpt, sfreq=seg.sfreq, n_times=seg.n_times, ch_names=seg.ch_names,
            bads=seg.info["bads"], needed_channels=hm.ch_names, nave=seg.nave, hemi=hemi,
            headmodel=hm_info, inverse=inverse, resample=config.resample,
            source=f"{seg.source} ({seg.name})",
        )  # fmt: skip
        notes_per_segment.append(report.adapted)
    return notes_per_segment


def _kernels(hm, record):
    from ..inverse import compute_kernel, make_inverse

    inv = make_inverse(hm, loose=record["loose"], depth=record["depth"], verbose="error")
    kernels = {
        m: compute_kernel(inv, method=m, lambda2=record["lambda2"], nave=int(record["nave"]),
                          fingerprint=hm.fingerprint, verbose="error")
        for m in record["methods"]
    }  # fmt: skip
    return inv, kernels


def _iter_segment(model, seg, kernels, hm, mapping, record, config):
    """Probabilities (n_items, n_rows of hm, n_times) of one (resampled) segment."""
    from ..inverse import make_input_stack

    rows = hm.rows(record["hemi"])
    data = seg.get_data(hm.ch_names)
    data = data[np.newaxis] if data.ndim == 2 else data
    images = make_input_stack(kernels, data, rows=rows, normalisation="none")
    starts = window_starts(seg.n_times, record["n_times"], config.overlap)
    out = np.empty((len(data), len(rows), seg.n_times), np.float32)
    for ii, image in enumerate(images):
        if mapping is not None:
            image = np.stack([mapping.to_template @ m for m in image])
        windows = cut_windows(image, starts, record["n_times"], record["normalisation"])
        probs = yield from iter_probabilities(
            model, windows, batch_size=config.batch_size, stage=f"predict {seg.name}",
            label="windows",
        )  # fmt: skip
        stitched = stitch(probs, starts, seg.n_times)
        out[ii] = stitched if mapping is None else mapping.from_template @ stitched
    return out


def _to_stc(probs_i, hm, rows, seg):
    from ..inverse import make_source_estimate

    values = np.zeros((hm.n_sources, probs_i.shape[-1]))
    values[rows] = probs_i
    return make_source_estimate(values, hm.vertno, tmin=seg.tmin, tstep=1.0 / seg.sfreq,
                                subject=hm.subject)  # fmt: skip


def _window_note(record, segments, config) -> str | None:
    """How the network's windows cover the (resampled) segments."""
    if not segments:
        return None
    window, rate = record["n_times"], record["sfreq"]
    counts = set()
    for seg in segments:
        to = rate if (rate and config.resample) else seg.sfreq
        n = round(seg.n_times * to / seg.sfreq)
        counts.add((n, len(window_starts(n, window, config.overlap))))
    n, k = max(counts)
    ms = f" ({1e3 * window / rate:.0f} ms)" if rate else ""
    return (
        f"windows: {k} window(s) of {window} samples{ms} over {n} samples per condition, "
        f"consecutive windows sharing {config.overlap:.0%}, stitched"
    )


@takes_config(NetworkApplyConfig)
def check_recording(
    checkpoint, data, *, headmodel, subjects_dir=None, hemi=None, recording=None, inverse=None,
    config,
) -> list[str]:  # fmt: skip
    """What applying a network to a recording will adapt, without running it.

    The same compatibility check as :func:`iter_predict_recording` (the
    recording's ``headmodel`` is required here): anything refused raises
    :class:`~napari_meg_unet.dataset.IncompatibleDataError` naming every
    reason; otherwise the adapted differences (resampling, nave, head-model
    mapping) and how the windows cover the data are returned.

    Returns
    -------
    notes : list of str
    """
    ckpt = checkpoint if isinstance(checkpoint, dict) else load_checkpoint(checkpoint)
    record = data_record(ckpt)
    segments = _segments_of(data, recording)
    _, hm_info = _mapping(headmodel, record, record["hemi"], subjects_dir, config.morph)
    adapted = _check(ckpt, record, segments, headmodel, hm_info, hemi, inverse, config)
    notes = list(dict.fromkeys(note for seg_notes in adapted for note in seg_notes))
    window = _window_note(record, segments, config)
    return notes + ([window] if window else [])


@takes_config(NetworkApplyConfig)
@_verbose
def iter_predict_recording(
    checkpoint, data, *, headmodel=None, subjects_dir=None, noise_cov=None, hemi=None,
    recording=None, inverse=None, device="auto", config, verbose=None,
):  # fmt: skip
    """A network's source estimates of a recording, one per condition, yielding progress.

    Parameters
    ----------
    checkpoint : path-like | dict
        A checkpoint (``best.pt``, a training folder, the pretrained template
        network of :func:`~napari_meg_unet.train.pretrained_checkpoint`).
    data : path-like | mne_bids.BIDSPath | mne.Evoked | list | mne.Epochs | mne.io.Raw | Segment
        The recording (read with ``recording``), or its segments.
    headmodel : HeadModel | None
        The recording's head model (its channels and sources make the inverse
        maps). None: the network's own when it is the fsaverage5 template
        (the template is coregistered to the recording's digitisation).
    subjects_dir : path-like | None
        The subject's FreeSurfer folder, to map a template network's sources
        (default: the head model's).
    noise_cov : mne.Covariance | path-like | None
        Noise covariance of the coregistered template (ad hoc when None).
    hemi : str | None
        Hemisphere asked for (None: the network's; another is refused).
    recording : RecordingConfig | None
        How the recording is read (conditions, epochs, crop, filters).
    inverse : dict | None
        Inverse settings asked for (methods, lambda2, loose, depth,
        normalisation); any that differs from the network's is refused.
    device : str
        Torch device of the network.
    %(options)s
    %(verbose)s

    Yields
    ------
    progress : Progress

    Returns
    -------
    predictions : list of RecordingPrediction
    """
    ckpt = checkpoint if isinstance(checkpoint, dict) else load_checkpoint(checkpoint)
    record = data_record(ckpt)
    yield Progress("recording", 0, 3, "reading")
    segments = _segments_of(data, recording)
    notes: list[str] = []
    hm = yield from _iter_headmodel(record, headmodel, segments, noise_cov, notes)
    yield Progress("recording", 1, 3, "compatibility")
    mapping, hm_info = _mapping(hm, record, record["hemi"], subjects_dir, config.morph)
    adapted = _check(ckpt, record, segments, hm, hm_info, hemi, inverse, config)
    yield Progress("recording", 2, 3, "inverse kernels")
    inv, kernels = _kernels(hm, record)
    notes.append(f"noise covariance: {rank_report(inv, segments[0].info).message}")
    model, _ = load_model(ckpt, device=device)
    yield Progress("recording", 3, 3, "network")
    rows = hm.rows(record["hemi"])
    predictions = []
    for seg, seg_adapted in zip(segments, adapted, strict=True):
        seg_r = seg.resampled(record["sfreq"]) if record["sfreq"] else seg
        probs = yield from _iter_segment(model, seg_r, kernels, hm, mapping, record, config)
        other = {"lh": "rh", "rh": "lh"}.get(record["hemi"])
        seg_notes = [*notes, *seg_adapted, *seg.notes] + (
            [f"the network covers hemi={record['hemi']!r}: the {other} sources are 0"]
            if other else []
        )  # fmt: skip
        names = [seg.name] if len(probs) == 1 else [f"{seg.name} {i}" for i in range(len(probs))]
        for name, p in zip(names, probs, strict=True):
            stc = _to_stc(p, hm, rows, seg_r)
            predictions.append(RecordingPrediction(name, stc, seg.nave, list(seg_notes)))
    for note in predictions[0].notes if predictions else []:
        logger.info(note)
    return predictions


predict_recording = plain(iter_predict_recording)
