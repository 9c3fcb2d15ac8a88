"""Docstring entries repeated by the head-model builders (see :mod:`napari_meg_unet._docs`)."""

from __future__ import annotations

from .._docs import docdict

docdict.update(
    noise_cov="""\
noise_cov : "adhoc" | mne.Covariance | path-like
    Noise covariance (see :func:`~napari_meg_unet.headmodel.prepare_noise_cov`):
    ``"adhoc"`` (the default), a covariance, a ``-cov.fif`` file, or an
    empty-room raw FIF file from which a covariance is computed.""",
    modality="""\
modality : "meg" | "eeg" | "meg+eeg"
    Sensor modality.""",
    cache_dir="""\
cache_dir : path-like | None
    Head-model cache directory (template subject and BEM, cached models);
    None: :func:`~napari_meg_unet.headmodel.cache_root`.""",
)
