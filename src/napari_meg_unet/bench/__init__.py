"""Benchmarks run by ``napari-meg-unet bench <name>``: each prints a table and writes JSON.

Only the command line (:mod:`napari_meg_unet.cli`) and this package import
``napari_meg_unet.bench``; the core never does.
"""

from .._machine import machine_description

__all__ = ["machine_description"]
