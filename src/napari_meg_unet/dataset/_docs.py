"""Docstring entries shared by the dataset builders (added to the package's docdict)."""

from __future__ import annotations

from .._docs import docdict

docdict.update(
    {
        "dataset_chunk": """\
chunk : int
    Events per inverse computation / write: the images are computed ``chunk``
    events at a time and written into memory-mapped ``.npy`` files, so sets
    larger than memory can be built.""",
        "dataset_force": """\
force : bool
    Build even when the estimated memory or disk use exceeds what is
    available (CLI: ``--force``); otherwise such a request is refused before
    any work is done (:func:`napari_meg_unet._resources.check_resources`).""",
    }
)
