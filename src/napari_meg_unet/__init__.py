"""napari-meg-unet: MEG source imaging with linear inverses and U-Nets.

The package root and every core module import without Qt or napari; the napari
plugin lives in the private ``_qt`` subpackage and the npe2 entry modules.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("napari-meg-unet")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
