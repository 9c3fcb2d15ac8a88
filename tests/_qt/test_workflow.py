"""The dock widgets driven programmatically: head model -> simulate -> inverse -> train ->
predict -> evaluate on a tiny configuration, Stop mid-training, failing steps."""

from __future__ import annotations

import numpy as np
import pytest

from napari_meg_unet import layers

napari = pytest.importorskip("napari")
from napari.layers import Layer  # noqa: E402

pytestmark = pytest.mark.gui

PLUGIN = "napari-meg-unet"
WIDGETS = ("Head model", "Simulate", "Inverse", "Train", "Predict", "Evaluate", "View")


def _wait(qtbot, widget, timeout=240_000):
    from napari_meg_unet._qt._layerqueue import queue_for

    qtbot.waitUntil(lambda: not widget.busy, timeout=timeout)
    qtbot.waitUntil(lambda: queue_for(widget.viewer).idle, timeout=60_000)


def _dock(viewer, name):
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name)
    return widget


def _train_dock(viewer, template_hm, out, *, epochs):
    """The Train dock on a viewer whose only layer is a cortex carrying the head model (all
    training needs), set to a tiny CPU run of ``epochs`` epochs of 8 batches into ``out``."""
    hm_layer = layers.cortex_layer(
        layers.cortex_mesh_from_headmodel(template_hm, full=False), name="cortex",
        metadata={"headmodel": template_hm},
    )  # fmt: skip
    viewer.add_layer(Layer.create(*hm_layer))
    train_w = _dock(viewer, "Train")
    train_w.out_dir.value = str(out)
    train_w.epochs.value, train_w.n_train.value, train_w.n_val.value = epochs, 32, 4
    train_w.batch_size.value, train_w.device.value = 4, "cpu"
    return train_w


@pytest.fixture
def errors(monkeypatch):
    """Error notifications shown by the widgets."""
    from napari_meg_unet._qt import _common

    seen = []
    monkeypatch.setattr(_common, "notify_error", seen.append)
    return seen


def test_manifest_and_docks(make_napari_viewer):
    from napari.plugins import _initialize_plugins, _npe2
    from npe2 import PluginManager

    viewer = make_napari_viewer()
    pm = PluginManager.instance()
    pm.discover()
    manifest = pm.get_manifest(PLUGIN)
    assert [w.display_name for w in manifest.contributions.widgets] == list(WIDGETS)
    assert [s.key for s in manifest.contributions.sample_data] == [
        "single_dipoles", "multi_dipoles",
    ]  # fmt: skip
    assert manifest.contributions.readers[0].accepts_directories
    assert "*.fif.gz" in manifest.contributions.readers[0].filename_patterns
    assert {w.layer_types[0] for w in manifest.contributions.writers} == {"image", "surface"}
    # `napari -w napari-meg-unet __all__` (the README) docks every widget
    _initialize_plugins()
    docks = [wnames for kind, (pname, wnames) in _npe2.widget_iterator()
             if kind == "dock" and pname == PLUGIN]  # fmt: skip
    assert [list(w) for w in docks] == [list(WIDGETS)]
    for name in WIDGETS:
        widget = _dock(viewer, name)
        assert widget.viewer.__wrapped__ is viewer and not widget.busy


@pytest.mark.slow
def test_full_workflow(make_napari_viewer, qtbot, template_hm, tmp_path, errors):
    viewer = make_napari_viewer()
    w = {name: _dock(viewer, name) for name in WIDGETS}

    # head model (template, loaded from the session cache) + spectrum + cortex layer
    w["Head model"].build()
    _wait(qtbot, w["Head model"])
    hm = w["Head model"].headmodel
    assert hm.fingerprint == template_hm.fingerprint
    assert viewer.layers["cortex"].metadata["headmodel"] is hm
    spectrum = w["Head model"].spectrum
    assert spectrum["lambda2"] == pytest.approx(1 / 9)
    assert "condition number" in w["Head model"].summary.text()
    w["Head model"].lambda2.value = "1/100"
    assert w["Head model"].spectrum["lambda2_marker"] == pytest.approx(0.1)

    # simulate 4 single dipoles in rh
    sim_w = w["Simulate"]
    sim_w.n_events.value, sim_w.hemi.value, sim_w.seed.value = 4, "rh", 3
    sim_w.simulate()
    _wait(qtbot, sim_w)
    sim = sim_w.simulation
    rows = hm.rows("rh")
    assert viewer.layers["sensor data"].data.shape == (4, 1, len(hm.ch_names), sim.data.shape[2])
    truth = viewer.layers["truth"]
    assert truth.data.shape == (4, 1, len(rows), sim.data.shape[2])
    np.testing.assert_allclose(truth.data[2, 0], sim.truth(2, rows=rows), rtol=1e-6)
    cortex = viewer.layers["cortex"]
    assert cortex.metadata["shows"] == "truth" and cortex.vertex_values.shape[:2] == (32, 4)
    assert len(viewer.layers["truth sources"].data) == 4  # one source per event, on the truth
    assert viewer.layers["sensor data"].metadata["simulation"] is sim

    # inverse: MNE and dSPM with lambda2 typed as a fraction
    inv_w = w["Inverse"]
    inv_w.method_boxes["sLORETA"].value = False
    inv_w.lambda2.value = "1/9"
    inv_w.show.value = "dSPM"
    inv_w.compute()
    _wait(qtbot, inv_w)
    for method in ("MNE", "dSPM"):
        layer = viewer.layers[method]
        assert layer.data.shape == truth.data.shape
        np.testing.assert_allclose(layer.scale, truth.scale)
        assert layer.metadata["lambda2"] == pytest.approx(1 / 9, rel=1e-15)
        assert layer.colormap.name == "bwr" and layer.metadata["simulation"] is sim
    assert "sLORETA" not in viewer.layers
    from napari_meg_unet.inverse import apply_kernel, compute_kernel, make_inverse

    kernel = compute_kernel(make_inverse(hm, verbose="error"), method="dSPM", lambda2=1 / 9,
                            verbose="error")  # fmt: skip
    np.testing.assert_allclose(
        viewer.layers["dSPM"].data[1, 0], apply_kernel(kernel, sim.data[1])[rows],
        rtol=1e-4, atol=1e-4,
    )  # fmt: skip
    assert "explained variance" in inv_w.explained.text() and "dSPM" in inv_w.explained.text()
    assert viewer.layers["cortex"].metadata["shows"] == "dSPM"
    assert len(viewer.layers["truth sources"].data) == 3 * 4  # on truth, MNE and dSPM
    # stacks and the cortex do not overlap on the shared axes
    boxes = {}
    for name in ("truth", "MNE", "dSPM", "sensor data"):
        ext = viewer.layers[name].extent.world
        boxes[name] = (ext[0][-2], ext[1][-2], ext[0][-1], ext[1][-1])
    cortex_x_max = viewer.layers["cortex"].extent.world[1][-1]
    assert cortex_x_max < min(b[2] for b in boxes.values())
    assert boxes["truth"][3] <= boxes["MNE"][2] and boxes["MNE"][3] <= boxes["dSPM"][2]

    # train 1 epoch on CPU, tiny sets
    train_w = w["Train"]
    train_w.out_dir.value = str(tmp_path / "train")
    train_w.epochs.value, train_w.n_train.value, train_w.n_val.value = 1, 16, 4
    train_w.batch_size.value, train_w.device.value, train_w.lr.value = 8, "cpu", "1/100"
    train_w.start()
    _wait(qtbot, train_w)
    assert train_w.last_error is None, train_w.last_error
    assert len(train_w.losses) == 2 and len(train_w.val_dle) == 1
    assert train_w.snr.value == "3" and train_w.n_times.value == 32  # as the simulation
    # the loss/DLE plot is rendered off the main thread and shown
    qtbot.waitUntil(lambda: train_w.plot.n_rendered > 0, timeout=10_000)
    assert not train_w.plot.pixmap().isNull()
    best = train_w.checkpoints["best"]
    assert (tmp_path / "train" / "run" / "best.pt").samefile(best)

    # predict on the simulation with the checkpoint
    pred_w = w["Predict"]
    pred_w.data_layer.value = "sensor data"
    pred_w.checkpoint.value = best
    qtbot.waitUntil(lambda: pred_w.check.text().startswith(("Compatible", "Not usable")),
                    timeout=60_000)  # fmt: skip
    assert pred_w.compatible, pred_w.check.text()
    pred_w.predict()
    _wait(qtbot, pred_w)
    pred = viewer.layers["prediction (thesis)"]
    assert pred.data.shape == truth.data.shape and pred.colormap.name == "probability"
    assert viewer.layers["cortex"].metadata["shows"] == "prediction (thesis)"
    assert 0 <= pred.data.min() and pred.data.max() <= 1
    from napari_meg_unet.inverse import inverse_stack
    from napari_meg_unet.train import predict

    stack = inverse_stack(hm, sim.data, hemi="rh", verbose="error")
    np.testing.assert_allclose(
        pred.data[:, 0], predict(best, stack, headmodel=hm, device="cpu"), atol=1e-5
    )

    # evaluate: linear methods of the inverse layers + the network, CIs, export
    eval_w = w["Evaluate"]
    eval_w.n_boot.value = 200
    eval_w.evaluate()
    _wait(qtbot, eval_w)
    rows_shown = [eval_w.table.item(i, 0).text() for i in range(eval_w.table.rowCount())]
    assert rows_shown == ["MNE", "dSPM", "prediction (thesis)"]
    assert "[" in eval_w.table.item(0, 2).text()  # mean [CI]
    qtbot.waitUntil(lambda: "mean DLE (MNE)" in viewer.layers, timeout=60_000)
    dle_map = viewer.layers["mean DLE (MNE)"]
    assert dle_map.metadata["estimator"] == "MNE"
    assert np.isfinite(dle_map.vertex_values).any()
    csv = eval_w.export(tmp_path / "eval.csv")
    assert csv.read_text().count("\n") == 1 + 3 * 4
    with pytest.raises(FileExistsError):
        eval_w.export(tmp_path / "eval.csv")
    assert errors == []


@pytest.mark.slow
def test_stop_training_leaves_checkpoint(make_napari_viewer, qtbot, template_hm, tmp_path):
    from napari_meg_unet.checkpoint import load_checkpoint
    from napari_meg_unet.train import BatchDone

    viewer = make_napari_viewer()
    train_w = _train_dock(viewer, template_hm, tmp_path / "t", epochs=3)
    seen = []

    def stop_after_first_batch(event):
        seen.append(event)
        if isinstance(event, BatchDone) and event.batch == 1:
            train_w.stop()

    original = train_w._event
    train_w._event = lambda e: (original(e), stop_after_first_batch(e))
    train_w.start()
    assert not train_w.start_button.isEnabled() and train_w.stop_button.isEnabled()
    _wait(qtbot, train_w)
    assert train_w.last_error is None, train_w.last_error
    assert train_w.summary["stopped"]
    n_batches = sum(isinstance(e, BatchDone) for e in seen)
    assert n_batches < 3 * 8  # stopped long before the 3 epochs of 8 batches
    last = load_checkpoint(tmp_path / "t" / "run" / "last.pt")
    assert last["batch"] >= 1
    assert "stopped in epoch 1" in train_w.status.text()
    # the UI is usable again: controls enabled, and Resume finishes the run
    assert train_w.start_button.isEnabled() and not train_w.stop_button.isEnabled()
    losses = list(train_w.losses)
    train_w.epochs.value = 1
    train_w.resume()
    _wait(qtbot, train_w)
    assert train_w.last_error is None, train_w.last_error
    assert not train_w.summary["stopped"] and train_w.summary["epochs_done"] == 1
    # the curve continues where it stopped: batch indices keep counting
    assert train_w.losses[: len(losses)] == losses
    assert train_w.losses[len(losses)][0] > losses[-1][0]


@pytest.mark.slow
def test_closing_the_viewer_stops_training_and_saves(make_napari_viewer, qtbot, template_hm,
                                                      tmp_path):  # fmt: skip
    from napari_meg_unet.checkpoint import load_checkpoint
    from napari_meg_unet.train import BatchDone

    viewer = make_napari_viewer(show=True)
    train_w = _train_dock(viewer, template_hm, tmp_path / "t", epochs=50)
    batches = []
    original = train_w._event
    train_w._event = lambda e: (original(e), batches.append(e) if isinstance(e, BatchDone)
                                else None)  # fmt: skip
    train_w.start()
    qtbot.waitUntil(lambda: len(batches) >= 2, timeout=240_000)
    viewer.close()  # the window's close event stops the training, which saves last.pt
    last = load_checkpoint(tmp_path / "t" / "run" / "last.pt")
    assert last["epoch"] < 50
    qtbot.waitUntil(lambda: train_w.worker is None, timeout=60_000)  # the thread has ended


def test_failing_steps_keep_layers(make_napari_viewer, qtbot, template_hm, monkeypatch, errors):
    from napari_meg_unet._sample_data import simulation_layers
    from napari_meg_unet.simulate import simulate

    viewer = make_napari_viewer()
    sim = simulate(template_hm, design="multi", n_events=2, hemi="lh", seed=0, verbose="error")
    for data in simulation_layers(template_hm, sim):
        viewer.add_layer(Layer.create(*data))
    before = [layer.name for layer in viewer.layers]

    inv_w = _dock(viewer, "Inverse")
    inv_w.lambda2.value = "one ninth"
    inv_w.compute()  # invalid input: refused before any work
    assert not inv_w.busy and "lambda2" in inv_w.last_error and len(errors) == 1

    def broken(*args, **kwargs):
        raise RuntimeError("simulated failure in the worker")

    inv_w.lambda2.value = "1/9"
    import napari_meg_unet._qt._inverse as inverse_module

    monkeypatch.setattr(inverse_module, "sensor_data", broken)  # runs in the worker thread
    inv_w.compute()  # fails inside the worker thread
    _wait(qtbot, inv_w, timeout=30_000)
    assert inv_w.last_error == "simulated failure in the worker"
    assert errors[-1] == "Inverse: simulated failure in the worker"
    assert inv_w.compute_button.isEnabled()
    assert [layer.name for layer in viewer.layers] == before

    pred_w = _dock(viewer, "Predict")
    pred_w.predict()  # no checkpoint chosen
    assert "checkpoint" in pred_w.last_error and not pred_w.compatible
    assert [layer.name for layer in viewer.layers] == before


def test_closed_viewer_is_freed(make_napari_viewer, qtbot, template_hm):
    """A shown viewer that read data and ran a cortex worker is freed once closed.

    napari's window keeps every worker started while it is current (its task
    status) and the plugin's registries are keyed by viewer: neither the
    workers' slots, nor a registry's value, nor a dock may lead back to the
    viewer (make_napari_viewer's leak check fails otherwise).
    """
    import gc
    import weakref

    from napari_meg_unet._qt._cortex import controller_for
    from napari_meg_unet._qt._layerqueue import queue_for

    viewer = make_napari_viewer(show=True)
    view_w = _dock(viewer, "View")
    viewer.open_sample(PLUGIN, "single_dipoles")  # read by a worker of the plugin's reader
    qtbot.waitUntil(lambda: "truth sources (cortex)" in viewer.layers, timeout=180_000)
    qtbot.waitUntil(lambda: queue_for(viewer).idle, timeout=60_000)
    view_w.beside.value = True  # maps the truth in the cortex controller's worker
    qtbot.waitUntil(lambda: "cortex (truth)" in viewer.layers, timeout=60_000)
    qtbot.waitUntil(lambda: queue_for(viewer).idle, timeout=60_000)
    qtbot.waitUntil(lambda: controller_for(viewer).worker is None, timeout=10_000)
    qt_viewer = weakref.ref(viewer.window._qt_viewer)
    del view_w
    viewer.close()
    qtbot.wait(50)
    gc.collect()
    assert qt_viewer() is None


def test_closing_a_hidden_viewer_mid_step(make_napari_viewer, qtbot, template_hm, monkeypatch):
    """A viewer that was never shown, closed while a step runs: the step is stopped and
    waited for, and its end touches none of the deleted widgets."""
    import threading

    import napari_meg_unet._qt._inverse as inverse_module
    from napari_meg_unet._sample_data import simulation_layers
    from napari_meg_unet.simulate import simulate

    viewer = make_napari_viewer()  # not shown: the docks never get a show event
    sim = simulate(template_hm, design="multi", n_events=2, hemi="lh", seed=0, verbose="error")
    for data in simulation_layers(template_hm, sim):
        viewer.add_layer(Layer.create(*data))
    inv_w = _dock(viewer, "Inverse")
    inside = threading.Event()

    def slow(*args, **kwargs):
        inside.set()
        import time

        time.sleep(1.0)
        raise RuntimeError("the step ends after the viewer closed")

    monkeypatch.setattr(inverse_module, "sensor_data", slow)  # runs in the worker thread
    inv_w.compute()
    qtbot.waitUntil(inside.is_set, timeout=30_000)
    viewer.close()  # the window's close event stops the step and waits for it
    assert inv_w._ended.is_set() and inv_w._closed
    qtbot.waitUntil(lambda: inv_w.worker is None, timeout=30_000)
    qtbot.wait(100)  # the worker's queued signals arrive: none may reach a deleted widget
