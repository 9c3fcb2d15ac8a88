"""GUI test set-up: widget settings in a temporary folder, the session's head-model cache.

Both are set before any worker process starts, so the children inherit them.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session", autouse=True)
def _gui_environment(tmp_path_factory, cache_dir):
    import os

    os.environ["NAPARI_MEG_UNET_CONFIG"] = str(tmp_path_factory.mktemp("widget-settings"))
    yield
    from napari_meg_unet._qt._engine import POOL

    POOL.shutdown()


@pytest.fixture(autouse=True)
def _own_widget_settings(tmp_path, monkeypatch):
    """Each test starts from default widget settings (none saved by an earlier test)."""
    monkeypatch.setenv("NAPARI_MEG_UNET_CONFIG", str(tmp_path / "widget-settings"))


@pytest.fixture
def settle(qtbot):
    """``settle(viewer)`` waits until the viewer's layer queue has added everything."""
    from napari_meg_unet._qt._layerqueue import queue_for

    def wait(viewer, timeout=60_000):
        qtbot.waitUntil(lambda: queue_for(viewer).idle, timeout=timeout)

    return wait
