"""The Predict dock on an opened recording: the core's path (resampling, windows), its layers.

A tiny network trained on the template at 100 Hz and 16 samples is applied to
an evoked file recorded (simulated) at 250 Hz with 100 samples per condition:
the check says what is adapted, Predict adds one prediction stack (one image
per condition, at the network's rate) and shows it on the cortex; a recording
lacking channels is refused naming them.
"""

from __future__ import annotations

import mne
import numpy as np
import pytest

napari = pytest.importorskip("napari")

pytestmark = pytest.mark.gui

PLUGIN = "napari-meg-unet"


@pytest.fixture(scope="module")
def tiny_net(template_hm, tmp_path_factory):
    """A mesh U-Net trained for one epoch on template simulations at 100 Hz, 16 samples."""
    from napari_meg_unet.dataset import make_splits
    from napari_meg_unet.train import train

    out = tmp_path_factory.mktemp("tiny-net")
    sets = make_splits(template_hm, design="multi", n_train=8, n_val=4, n_test=4, seed=1,
                       out=out / "sets", n_dipoles=1, sfreq=100.0, n_times=16,
                       timecourse="realistic", hemi="both", verbose=False)  # fmt: skip
    train(model="mesh", preset="cpu", mesh=template_hm, train=sets["train"], val=sets["val"],
          out_dir=out / "run", epochs=1, batch_size=4, device="cpu", root_features=4)  # fmt: skip
    return out / "run" / "best.pt"


def _write_recording(hm, path, *, drop=0):
    """Two conditions simulated at 250 Hz (100 samples from -0.1 s), as an evoked file."""
    from napari_meg_unet.simulate import simulate

    sim = simulate(hm, design="multi", n_events=2, n_dipoles=1, snr=5.0, sfreq=250.0,
                   n_times=100, seed=3, verbose="error")  # fmt: skip
    evokeds = []
    for i in range(2):
        ev = mne.EvokedArray(sim.data[i], sim.info, tmin=-0.1, nave=4, comment=f"cond {i}")
        evokeds.append(ev.drop_channels(ev.ch_names[:drop]) if drop else ev)
    mne.write_evokeds(path, evokeds, overwrite=True, verbose="error")
    return path


def _viewer_with(make_napari_viewer, qtbot, settle, hm, path):
    """A viewer with the template cortex (the head model) and the recording opened."""
    from napari_meg_unet._qt._common import make_layers
    from napari_meg_unet._qt._layerqueue import queue_for
    from napari_meg_unet._qt._prepare import cortex_tuple

    viewer = make_napari_viewer()
    queue_for(viewer).add(make_layers([cortex_tuple(hm, hemi="both", source="anatomy")]))
    settle(viewer)
    assert viewer.open(str(path), plugin=PLUGIN) == []  # read in a worker
    name = f"MEG {path.name.removesuffix('.fif')}"
    qtbot.waitUntil(lambda: name in viewer.layers, timeout=60_000)
    settle(viewer)
    return viewer, name


def _predict_widget(viewer, layer, checkpoint, qtbot):
    from napari_meg_unet._qt._predict import PredictWidget

    widget = PredictWidget(viewer)
    if "cpu" in widget.device.choices:
        widget.device.value = "cpu"
    widget.data_layer.value = layer
    widget.checkpoint.value = str(checkpoint)
    qtbot.waitUntil(lambda: widget.check.text().startswith(("Not usable", "Compatible")),
                    timeout=60_000)  # fmt: skip
    return widget


def test_predict_on_a_recording_of_another_rate_and_length(
    make_napari_viewer, qtbot, settle, template_hm, tiny_net, tmp_path
):
    hm = template_hm
    path = _write_recording(hm, tmp_path / "rec-ave.fif")
    viewer, name = _viewer_with(make_napari_viewer, qtbot, settle, hm, path)
    widget = _predict_widget(viewer, name, tiny_net, qtbot)
    text = widget.check.text()
    assert widget.compatible and text.startswith("Compatible"), text
    assert "sampling rate: 250 Hz (data) != 100 Hz (network): the data are resampled to 100 Hz" in (
        text
    )
    assert "window(s) of 16 samples (160 ms) over 40 samples" in text
    assert "nave: 4 (data) != 1 (network)" in text

    # Cancel stops the step: no layer is added
    widget.predict()
    widget.cancel()
    qtbot.waitUntil(lambda: not widget.busy, timeout=120_000)
    assert widget.cancelled and widget.status.text() == "cancelled"
    assert "prediction (mesh)" not in viewer.layers

    widget.predict()
    qtbot.waitUntil(lambda: not widget.busy, timeout=180_000)
    assert widget.last_error is None, widget.last_error
    settle(viewer)
    pred = viewer.layers["prediction (mesh)"]
    n_rows = len(hm.rows("both"))
    assert pred.data.shape == (2, 1, n_rows, 40)  # 100 samples at 250 Hz -> 40 at 100 Hz
    assert 0 <= pred.data.min() and pred.data.max() <= 1
    meta = pred.metadata
    assert meta["unit"] == "probability" and meta["sfreq"] == pytest.approx(100.0)
    assert meta["tmin"] == pytest.approx(-0.1, abs=0.01)
    assert pred.scale[-1] == pytest.approx(0.01)  # seconds per sample at the network's rate
    assert meta["labels"] == ["cond 0", "cond 1"] and meta["simulation"] is None
    assert any("resampled to 100 Hz" in note for note in meta["notes"])
    assert any(note.startswith("noise covariance:") for note in meta["notes"])
    titles = list(viewer.layers["titles"].features["title"])
    assert "prediction (mesh) [p]" in titles
    cortex = viewer.layers["cortex"]
    assert cortex.metadata["shows"] == "prediction (mesh)"
    assert cortex.metadata["notes"] == meta["notes"]
    values = np.asarray(cortex.data[2])
    assert values.shape[0] == 40 and values.max() > 0
    status = widget.status.text()
    assert "2 condition(s), 40 samples at 100 Hz" in status and "resampled to 100 Hz" in status
    assert widget.check.text().startswith("Compatible")
    widget.close()


def test_predict_refuses_a_recording_lacking_channels(
    make_napari_viewer, qtbot, settle, template_hm, tiny_net, tmp_path
):
    hm = template_hm
    path = _write_recording(hm, tmp_path / "lack-ave.fif", drop=3)
    viewer, name = _viewer_with(make_napari_viewer, qtbot, settle, hm, path)
    widget = _predict_widget(viewer, name, tiny_net, qtbot)
    text = widget.check.text()
    assert not widget.compatible and text.startswith("Not usable"), text
    missing = hm.ch_names[:3]
    assert f"channels: 3 channel(s) of the data's head model are not in the data: {missing}" in (
        text
    )
    widget.predict()
    qtbot.waitUntil(lambda: not widget.busy, timeout=60_000)
    assert "channels: 3 channel(s)" in widget.last_error
    assert "prediction (mesh)" not in viewer.layers
    widget.close()


def _wait_check(widget, qtbot):
    qtbot.waitUntil(lambda: widget.check.text().startswith(("Not usable", "Compatible")),
                    timeout=60_000)  # fmt: skip
    return widget.check.text()


def test_predict_hemisphere_shows_the_network_and_refuses_another(
    make_napari_viewer, qtbot, settle, template_hm, tiny_net, tmp_path, monkeypatch
):
    """The hemisphere control shows the network's; another one, or data elsewhere, is refused."""
    from napari_meg_unet._qt import _common
    from napari_meg_unet._qt._common import make_layers
    from napari_meg_unet._qt._layerqueue import queue_for
    from napari_meg_unet._sample_data import simulation_layers
    from napari_meg_unet.simulate import simulate

    errors = []
    monkeypatch.setattr(_common, "notify_error", errors.append)
    hm = template_hm
    path = _write_recording(hm, tmp_path / "hemi-ave.fif")
    viewer, name = _viewer_with(make_napari_viewer, qtbot, settle, hm, path)
    widget = _predict_widget(viewer, name, tiny_net, qtbot)
    # a new checkpoint: the control shows the hemisphere the network predicts
    assert widget.compatible, widget.check.text()
    assert widget.network_hemi == "both" and widget.hemi.value == "both"
    assert not widget.hemi_chosen

    # another hemisphere chosen: the check and Predict refuse it, with a notification
    widget.hemi.value = "rh"
    qtbot.waitUntil(lambda: widget.check.text().startswith("Not usable"), timeout=60_000)
    assert "trained on both sources" in widget.check.text() and not widget.compatible
    widget.predict()
    assert not widget.busy  # refused before any work
    assert "it cannot predict rh" in widget.last_error
    assert errors and errors[-1].startswith("Predict: Not usable: the network was trained on both")
    assert "prediction (mesh)" not in viewer.layers

    # back to the network's hemisphere: usable again
    widget.hemi.value = "both"
    assert _wait_check(widget, qtbot).startswith("Compatible")

    # a simulation whose sources lie in rh only: refused as the Evaluate widget refuses
    sim = simulate(hm, design="multi", n_events=2, n_dipoles=1, hemi="rh", snr=5.0,
                   sfreq=100.0, n_times=16, timecourse="realistic", seed=2,
                   verbose="error")  # fmt: skip
    queue_for(viewer).add(make_layers(simulation_layers(hm, sim, layout=False), viewer))
    settle(viewer)
    widget.data_layer.value = "sensor data"
    text = _wait_check(widget, qtbot)
    assert text.startswith("Not usable") and "simulation's sources lie in rh" in text, text
    assert widget.hemi.value == "both"  # still the network's
    n_errors = len(errors)
    widget.predict()
    qtbot.waitUntil(lambda: not widget.busy, timeout=60_000)
    assert "simulation's sources lie in rh" in widget.last_error
    assert len(errors) == n_errors + 1 and "Not usable" in errors[-1]
    assert "prediction (mesh)" not in viewer.layers
    widget.close()
