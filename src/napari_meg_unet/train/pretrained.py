"""The pretrained template network shipped with the package.

A small mesh U-Net (preset ``cpu``) trained on the embedded fsaverage5 template
(ico3, MEG, both hemispheres) by ``benchmarks/train_pretrained.py`` (seeded and
deterministic; its settings are in the checkpoint's ``dataset_meta`` and
``training``). :func:`~napari_meg_unet.train.predict_recording` applies it to
any recording: the recording's inverse maps are mapped onto the template's
sources (``mne.compute_source_morph``, or an MNI mapping for subjects without
a spherical registration), the network runs there, and its probabilities are
mapped back. The checkpoint is stripped for distribution (no optimiser or RNG
state: it cannot be resumed).
"""

from __future__ import annotations

from pathlib import Path

#: File name of the shipped network (package data under ``train/pretrained``).
PRETRAINED_FILE = "template-mesh-meg.pt"
#: The command that makes it (from the repository root).
PRETRAINED_COMMAND = "python benchmarks/train_pretrained.py --install"


def pretrained_checkpoint() -> Path:
    """Path of the shipped template network's checkpoint.

    Raises
    ------
    FileNotFoundError
        When the package was installed without it, naming the command that makes it.
    """
    path = Path(__file__).parent / "pretrained" / PRETRAINED_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"The pretrained template network is missing ({str(path)!r}); make it with "
            f"'{PRETRAINED_COMMAND}' from the repository root."
        )
    return path
