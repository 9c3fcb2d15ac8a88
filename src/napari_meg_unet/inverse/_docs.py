"""Docstring entries repeated across the inverse submodules (added to the package docdict)."""

from __future__ import annotations

from .._docs import docdict, fill_doc

__all__ = ["docdict", "fill_doc"]

docdict.update(
    {
        "inv_operator": """\
inv : mne.minimum_norm.InverseOperator
    An unprepared operator (e.g. from :func:`make_inverse`).""",
        "method_params": """\
method_params : dict | None
    eLORETA options; missing keys take :data:`ELORETA_DEFAULTS`
    (``force_equal`` is always passed explicitly to MNE).""",
        "data_ch_names": """\
ch_names : list of str | None
    Channel names of ``data`` (axis -2); when given, the kernel's channels
    are picked from it by name. Otherwise ``data`` must already have the
    kernel's channels in order.""",
        "kernel_backend": """\
backend : 'numpy' | 'torch'
    Array library for the kernel product. ``torch`` runs on ``device``.""",
        "kernel_device": """\
device : str | torch.device | None
    Torch device of the ``torch`` backend; None or ``'auto'`` picks CUDA
    when available, else the CPU (the kernels are float64, which Apple MPS
    lacks). An explicit device this machine does not have is an error
    (:func:`napari_meg_unet.device.resolve_device`).""",
    }
)
