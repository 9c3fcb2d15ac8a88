"""``python -m napari_meg_unet.cli``: the same as the ``napari-meg-unet`` command."""

import sys

from . import main

sys.exit(main())
