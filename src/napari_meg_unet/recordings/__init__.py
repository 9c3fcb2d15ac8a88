"""Recordings: from a FIF or BIDS recording to the sensor data the inverses and networks need.

- :mod:`.segments`: :class:`Segment`, one condition (or a continuous crop, or
  a set of epochs) as an MNE object with its ``nave`` and what was done to it.
- :mod:`.reading`: :func:`read_segments` reads evoked files (every condition,
  each with its own ``nave``), epochs, raw files (cropped, or cut around their
  events and averaged per condition), BIDS recordings and MNE objects, with
  optional filtering (:class:`~napari_meg_unet.configs.RecordingConfig`).
- :mod:`.snr`: :func:`measure_snr`, a recording's whitened SNR with the
  simulations' definition.
- :mod:`.morph`: :func:`source_mapping`, a subject's source rows onto the
  template's and back (``mne.compute_source_morph`` or an MNI mapping).
"""

from __future__ import annotations

from ..configs import RecordingConfig
from .morph import (
    SourceMapping,
    TemplateSources,
    has_sphere_registration,
    source_mapping,
    subject_mni,
    template_sources,
)
from .reading import DEFAULT_EPOCH, fif_kind, read_segments
from .segments import SEGMENT_KINDS, Segment
from .snr import MeasuredSNR, measure_snr

__all__ = [
    "DEFAULT_EPOCH",
    "SEGMENT_KINDS",
    "MeasuredSNR",
    "RecordingConfig",
    "Segment",
    "SourceMapping",
    "TemplateSources",
    "fif_kind",
    "has_sphere_registration",
    "measure_snr",
    "read_segments",
    "source_mapping",
    "subject_mni",
    "template_sources",
]
