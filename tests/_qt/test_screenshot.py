"""A screenshot of the workflow: the canvas must show the stacks and the cortex together.

Set ``NAPARI_MEG_UNET_SCREENSHOT=docs/screenshot.png`` to (re)write the
documentation screenshot from this test.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.gui, pytest.mark.slow]

PLUGIN = "napari-meg-unet"


def _drawn_fraction(image: np.ndarray) -> float:
    """Fraction of canvas pixels that differ from the (uniform) background."""
    rgb = image[..., :3].astype(int)
    background = np.median(rgb.reshape(-1, 3), axis=0)
    return float((np.abs(rgb - background).sum(axis=-1) > 30).mean())


def test_workflow_screenshot(make_napari_viewer, qtbot, template_hm, tmp_path):
    viewer = make_napari_viewer(show=True)
    viewer.window.resize(1500, 950)
    docks = {}
    for name in ("Head model", "Simulate", "Inverse"):
        _, docks[name] = viewer.window.add_plugin_dock_widget(PLUGIN, name, tabify=True)
    docks["Head model"].build()
    qtbot.waitUntil(lambda: not docks["Head model"].busy, timeout=120_000)
    sim_w = docks["Simulate"]
    # cortical patches: their rows stay visible in the downscaled truth image
    sim_w.design.value, sim_w.extent.value = "extended", 15.0
    sim_w.n_events.value, sim_w.hemi.value, sim_w.snr.value = 4, "both", 5.0
    sim_w.simulate()
    qtbot.waitUntil(lambda: not sim_w.busy, timeout=120_000)
    inv_w = docks["Inverse"]
    inv_w.show.value = "sLORETA"
    inv_w.compute()
    qtbot.waitUntil(lambda: not inv_w.busy, timeout=120_000)
    assert None is docks["Head model"].last_error is sim_w.last_error is inv_w.last_error
    assert viewer.dims.ndisplay == 3
    viewer.dims.set_current_step(0, 12)  # cortex time: inside the simulated bursts
    viewer.reset_view()

    stacks = ["truth", "MNE", "dSPM", "sLORETA", "sensor data"]
    everything = [layer.name for layer in viewer.layers]
    for visible in (["cortex"], stacks):
        for layer in viewer.layers:
            layer.visible = layer.name in visible
        viewer.reset_view()
        qtbot.wait(200)
        assert _drawn_fraction(viewer.screenshot(canvas_only=True)) > 0.02, visible
    for name in everything:
        viewer.layers[name].visible = True
    viewer.layers.selection.active = viewer.layers["cortex"]
    viewer.reset_view()
    qtbot.wait(300)
    shot = viewer.screenshot(canvas_only=False, flash=False)
    assert shot.shape[0] > 500 and shot.shape[1] > 1000
    target = os.environ.get("NAPARI_MEG_UNET_SCREENSHOT")
    path = Path(target) if target else tmp_path / "screenshot.png"
    from imageio.v3 import imwrite

    imwrite(path, shot)
    assert path.stat().st_size > 10_000
