"""Screenshots of every step (docs/): a plain FIF file, a BIDS folder, and the simulation workflow.

Set ``NAPARI_MEG_UNET_SCREENSHOTS=docs`` to (re)write the documentation
screenshots from these tests (``docs/screenshot-*.png`` and ``docs/screenshot.png``);
otherwise they are written to a temporary folder. Each test also checks that
the canvas shows what the step made (not an empty or clipped canvas).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.gui, pytest.mark.slow]

PLUGIN = "napari-meg-unet"
SIZE = (1600, 1000)


def _folder(tmp_path) -> Path:
    target = os.environ.get("NAPARI_MEG_UNET_SCREENSHOTS")
    return Path(target) if target else tmp_path


def _drawn_fraction(image: np.ndarray) -> float:
    """Fraction of canvas pixels that differ from the (uniform) background."""
    rgb = image[..., :3].astype(int)
    background = np.median(rgb.reshape(-1, 3), axis=0)
    return float((np.abs(rgb - background).sum(axis=-1) > 30).mean())


def _camera_on(viewer, layers) -> bool:
    """Whether the camera looks at the middle of ``layers`` (their box in the displayed axes)."""
    from napari_meg_unet._qt._layerqueue import _world_box, camera_of

    lo, hi = _world_box(viewer, layers)
    center = np.asarray(camera_of(viewer).center, float)[-len(lo):]
    return bool(np.all(center >= lo - 1e-9) and np.all(center <= hi + 1e-9))


class Session:
    """A shown viewer with docked widgets, and helpers to run steps and take screenshots."""

    def __init__(self, make_napari_viewer, qtbot, folder, names):
        self.viewer = make_napari_viewer(show=True)
        self.viewer.window.resize(*SIZE)
        self.qtbot, self.folder = qtbot, folder
        self.docks, self.w = {}, {}
        for name in names:
            self.docks[name], self.w[name] = self.viewer.window.add_plugin_dock_widget(
                PLUGIN, name, tabify=True
            )

    def settle(self, widget=None, timeout=600_000):
        from napari_meg_unet._qt._layerqueue import queue_for

        if widget is not None:
            self.qtbot.waitUntil(lambda: not widget.busy, timeout=timeout)
            assert widget.last_error is None, widget.last_error
        self.qtbot.waitUntil(lambda: queue_for(self.viewer).idle, timeout=timeout)
        self.qtbot.wait(300)

    def shot(self, name, dock=None, *, canvas_min=0.02):
        if dock is not None:
            self.docks[dock].show()
            self.docks[dock].raise_()
        self.qtbot.wait(500)
        canvas = self.viewer.screenshot(canvas_only=True, flash=False)
        assert _drawn_fraction(canvas) > canvas_min, name
        shot = self.viewer.screenshot(canvas_only=False, flash=False)
        from imageio.v3 import imwrite

        path = self.folder / name
        imwrite(path, shot)
        assert path.stat().st_size > 10_000
        return path


@pytest.mark.sample
def test_plain_fif_walkthrough(make_napari_viewer, qtbot, shared_data, tmp_path):
    s = Session(make_napari_viewer, qtbot, _folder(tmp_path), ("Head model", "Inverse", "View"))
    viewer = s.viewer
    evoked = shared_data / "sample" / "MEG" / "test-ave.fif.gz"
    viewer.open(str(evoked), plugin=PLUGIN)
    qtbot.waitUntil(lambda: "MEG test-ave" in viewer.layers, timeout=120_000)
    s.settle()
    viewer.dims.set_current_step(0, 0)
    assert viewer.dims.axis_labels[-4].startswith("event 0: Left Auditory")
    s.shot("screenshot-fif-1-open.png", "Head model")
    hm_w = s.w["Head model"]
    hm_w.source.value = "recording"
    hm_w.recording.value = "MEG test-ave"
    hm_w.build()
    s.settle(hm_w)
    assert "coregistered" in hm_w.summary.text()
    s.shot("screenshot-fif-2-headmodel.png", "Head model")
    inv = s.w["Inverse"]
    inv.data_layer.value = "MEG test-ave"
    inv.show.value = "dSPM"
    inv.compute()
    s.settle(inv)
    cortex = viewer.layers["cortex"]
    assert cortex.metadata["shows"] == "dSPM"  # the Inverse widget's choice, kept by View
    assert viewer.dims.ndisplay == 3
    assert _camera_on(viewer, [cortex, *(viewer.layers[m] for m in ("MNE", "dSPM", "sLORETA"))])
    sfreq = cortex.metadata["napari_meg_unet"]["sfreq"]
    tmin = cortex.metadata["napari_meg_unet"]["tmin"]
    viewer.dims.set_current_step(0, int(round((0.09 - tmin) * sfreq)))  # the auditory N100m
    viewer.dims.set_current_step(1, 0)  # Left Auditory
    s.w["View"].set_view("rh lateral")
    # a side view looks along the images' time axis: the stacks and the sensor band
    # (beside the cortex, in the line of sight) are hidden and the camera is on the cortex
    assert viewer.dims.ndisplay == 3
    shown = [layer.name for layer in viewer.layers if layer.visible]
    assert set(shown) == {"cortex"}, shown
    assert _camera_on(viewer, [cortex])
    # the left hemisphere is clipped at head x = 0, in world coordinates (where vispy clips)
    (plane,) = cortex.experimental_clipping_planes
    assert plane.position[-1] == pytest.approx(cortex.translate[-1])
    s.shot("screenshot-fif-3-inverse.png", "Inverse", canvas_min=0.2)
    s.w["View"].set_view("top")
    assert all(viewer.layers[m].visible for m in ("MNE", "dSPM", "sLORETA", "MEG test-ave"))


@pytest.mark.sample
def test_bids_walkthrough(make_napari_viewer, qtbot, shared_data, tmp_path):
    import mne
    import mne_bids

    raw = mne.io.read_raw_fif(shared_data / "sample" / "MEG" / "sample_audvis_trunc_raw_sss.fif",
                              verbose="error")  # fmt: skip
    raw.set_annotations(mne.Annotations(raw.first_time + np.array([0.25, 0.6]), [0, 0],
                                        ["auditory", "visual"],
                                        orig_time=raw.info["meas_date"]))  # fmt: skip
    root = tmp_path / "bids"
    mne_bids.write_raw_bids(
        raw, mne_bids.BIDSPath(subject="sample", task="audvis", root=root, datatype="meg"),
        verbose="error",
    )  # fmt: skip
    s = Session(make_napari_viewer, qtbot, _folder(tmp_path), ("Head model", "Inverse", "View"))
    viewer = s.viewer
    viewer.open(str(root), plugin=PLUGIN)
    qtbot.waitUntil(lambda: "cortex sub-sample" in viewer.layers, timeout=120_000)
    s.settle()
    assert viewer.dims.ndisplay == 3
    s.shot("screenshot-bids-1-open.png", "Head model")
    hm_w = s.w["Head model"]
    hm_w.source.value = "recording"
    hm_w.build()
    s.settle(hm_w)
    inv = s.w["Inverse"]
    inv.data_layer.value = "MEG sub-sample_task-audvis"
    inv.tmin.value, inv.tmax.value = -0.05, 0.2
    inv.compute()
    s.settle(inv)
    s.shot("screenshot-bids-2-inverse.png", "Inverse")


def test_simulation_workflow(make_napari_viewer, qtbot, template_hm, tmp_path):
    names = ("Head model", "Simulate", "Inverse", "Train", "Predict", "Evaluate", "View")
    folder = _folder(tmp_path)
    s = Session(make_napari_viewer, qtbot, folder, names)
    viewer, w = s.viewer, s.w
    w["Head model"].build()
    s.settle(w["Head model"])
    sim_w = w["Simulate"]
    sim_w.design.value, sim_w.n_events.value, sim_w.hemi.value = "multi", 8, "both"
    sim_w.n_dipoles.value, sim_w.n_dipoles_max.value, sim_w.snr.value = 1, 2, 3.0
    sim_w.min_separation.value = 40.0
    sim_w.simulate()
    s.settle(sim_w)
    viewer.dims.set_current_step(0, 10)
    s.shot("screenshot-sim-1-simulate.png", "Simulate")
    inv = w["Inverse"]
    inv.show.value = "sLORETA"
    inv.compute()
    s.settle(inv)
    viewer.dims.set_current_step(0, 10)
    s.shot("screenshot-sim-2-inverse.png", "Inverse")
    s.shot("screenshot.png", "Inverse")
    train = w["Train"]
    train.out_dir.value = str(tmp_path / "train")
    train.epochs.value, train.n_train.value, train.n_val.value = 2, 64, 16
    train.batch_size.value, train.device.value = 8, "cpu"
    train.start()
    s.settle(train, timeout=1_800_000)
    train.plot.wait()
    qtbot.wait(500)
    s.shot("screenshot-sim-3-train.png", "Train")
    pred = w["Predict"]
    pred.data_layer.value = "sensor data"
    pred.checkpoint.value = train.checkpoints["best"]
    qtbot.waitUntil(lambda: pred.check.text().startswith(("Compatible", "Not usable")),
                    timeout=60_000)  # fmt: skip
    pred.predict()
    s.settle(pred)
    viewer.dims.set_current_step(0, 10)
    s.shot("screenshot-sim-4-predict.png", "Predict")
    ev = w["Evaluate"]
    ev.n_boot.value = 500
    ev.evaluate()
    s.settle(ev)
    qtbot.waitUntil(lambda: any(n.name.startswith("mean DLE") for n in viewer.layers),
                    timeout=120_000)  # fmt: skip
    s.settle()
    ev.plot.wait()
    s.shot("screenshot-sim-5-evaluate.png", "Evaluate")
    view = w["View"]
    view.source.value = "prediction (thesis)"
    view.beside.value = True
    qtbot.waitUntil(lambda: "cortex (truth)" in viewer.layers, timeout=60_000)
    s.settle()
    viewer.layers["mean DLE (MNE)"].visible = False
    view.threshold.value = 0.3
    viewer.dims.set_current_step(0, 10)
    view.set_view("top")
    s.shot("screenshot-sim-6-view.png", "View")
