"""Docstring entries shared by the accuracy protocol's entry points (see :mod:`.._docs`)."""

from __future__ import annotations

from .._docs import docdict

docdict["accuracy_run"] = """\
checkpoint_dir : path-like | None
    Directory of trained networks, one sub-directory per network
    (``<kind>-<model>-<preset>/best.pt``): existing ones are loaded instead
    of trained, missing ones are trained there. None trains into the
    temporary work directory (networks are discarded).
work_dir : path-like | None
    Where the temporary example sets go (default: the system temporary
    directory); removed at the end.
device : str
    Torch device for training and prediction: ``"auto"`` (CUDA, then Apple
    MPS, then CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``.
seed : int
    Master seed of every simulation, weight initialisation and bootstrap.
epochs : int | None
    Epochs per network, replacing the preset's.
max_train_s : float | None
    Wall-clock limit per network: once it is exceeded (and at least one
    epoch was validated), training stops before the next batch; the best
    epoch so far is used and the result records the stop.
stability : bool
    Also run the thesis §4.3 experiments
    (:func:`~napari_meg_unet.accuracy.iter_stability`).
n_boot : int
    Bootstrap resamples of the confidence intervals.
num_threads : int | None
    CPU threads for training (see :func:`~napari_meg_unet.train.fit`).
command : str | None
    The command line, recorded in the result."""
