"""Train a network for one recording: its head model, noise, sampling rate, channels and SNR.

:func:`iter_train_for_recording` (and :func:`train_for_recording`) read a raw,
epochs, evoked or BIDS recording (:mod:`.reading`, the one place that reads
files: a swap point for the package's general recording reader), choose its
noise covariance (:mod:`.noise`: given, a matching empty-room recording, the
epochs' pre-stimulus baseline, or ad hoc), build or reuse its head model
(:mod:`.anatomy`: its FreeSurfer subject, coregistered when no transform is
given, or the coregistered fsaverage5 template), measure its whitened SNR as
the simulations define it (:mod:`.snr`), simulate training data at its
sampling rate, channels, nave and SNR range, and train the network (the mesh
U-Net's ``cpu`` recipe by default). ``OUT/recording.json`` says what was
chosen and why.
"""

from .anatomy import iter_recording_headmodel
from .noise import EMPTYROOM_MAX_DAYS, NoiseChoice, choose_noise_cov
from .reading import Recording, common_nave, read_recording
from .run import (
    REPORT_NAME,
    SIMULATION_DEFAULTS,
    TRAINING_DEFAULTS,
    iter_train_for_recording,
    train_for_recording,
)
from .snr import DEFAULT_SNR_RANGE, measure_snr, training_snr_range

__all__ = [
    "DEFAULT_SNR_RANGE",
    "EMPTYROOM_MAX_DAYS",
    "REPORT_NAME",
    "SIMULATION_DEFAULTS",
    "TRAINING_DEFAULTS",
    "NoiseChoice",
    "Recording",
    "choose_noise_cov",
    "common_nave",
    "iter_recording_headmodel",
    "iter_train_for_recording",
    "measure_snr",
    "read_recording",
    "train_for_recording",
    "training_snr_range",
]
