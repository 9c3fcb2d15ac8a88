"""Widget settings kept between sessions: a small JSON file in the user's config directory.

``<user config dir>/napari-meg-unet/widgets.json`` (platformdirs; the
``NAPARI_MEG_UNET_CONFIG`` environment variable names another folder) holds,
per widget, the values worth keeping: the training output folder, the last
checkpoint, devices, the display options. Written atomically; an unreadable
file is ignored (the defaults apply) and replaced at the next save. Qt-free.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

#: Environment variable naming the folder of the settings file (tests, portable set-ups).
ENV = "NAPARI_MEG_UNET_CONFIG"


def settings_path() -> Path:
    folder = os.environ.get(ENV)
    if not folder:
        import platformdirs

        folder = platformdirs.user_config_dir("napari-meg-unet", appauthor=False)
    return Path(folder) / "widgets.json"


def load(section: str) -> dict:
    """The saved values of one widget (``{}`` when none or unreadable)."""
    try:
        data = json.loads(settings_path().read_text())
    except (OSError, ValueError):
        return {}
    values = data.get(section) if isinstance(data, dict) else None
    return dict(values) if isinstance(values, dict) else {}


def save(section: str, values: dict) -> Path | None:
    """Merge ``values`` into the saved values of ``section`` (JSON-friendly values only)."""
    from .._io import write_json

    path = settings_path()
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            data = {}
    except (OSError, ValueError):
        data = {}
    current = data.get(section) if isinstance(data.get(section), dict) else {}
    current.update({k: v for k, v in values.items() if v is not None})
    data[section] = current
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return write_json(path, data)
    except OSError:  # a read-only home must not break a widget
        return None
