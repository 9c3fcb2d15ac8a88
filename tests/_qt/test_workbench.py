"""The workbench a researcher sees: visible truth, titles, hover text, camera, cortex choices,
views, sliders, saving, safety checks, settings, Cancel and closing.

One viewer for the module (made once: a template simulation, its inverses added
through the layer queue); the tests look at it and change display options.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from napari_meg_unet import layers
from napari_meg_unet.layers import META_KEY

napari = pytest.importorskip("napari")

pytestmark = pytest.mark.gui

PLUGIN = "napari-meg-unet"


def _pump(predicate, timeout=120.0):
    from qtpy.QtWidgets import QApplication

    deadline = time.monotonic() + timeout
    while not predicate():
        QApplication.processEvents()
        time.sleep(0.01)
        if time.monotonic() > deadline:
            raise TimeoutError("the viewer did not settle")


@pytest.fixture(scope="module")
def bench(template_hm, _gui_environment):
    """A shown viewer with a 3-event rh simulation, its truth, markers and 3 inverses."""
    from napari_meg_unet._qt._common import make_layers
    from napari_meg_unet._qt._inputs import InverseInputs
    from napari_meg_unet._qt._layerqueue import queue_for
    from napari_meg_unet._qt._sensors import sensor_data
    from napari_meg_unet._qt._tasks import iter_inverse_step
    from napari_meg_unet._sample_data import simulation_layers
    from napari_meg_unet.progress import run
    from napari_meg_unet.simulate import simulate

    hm = template_hm
    sim = simulate(hm, design="multi", n_events=3, n_dipoles=(1, 2), hemi="rh", snr=5.0, seed=4,
                   verbose="error")  # fmt: skip
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1600, 1000)
    queue = queue_for(viewer)
    queue.add(make_layers(simulation_layers(hm, sim, layout=False)))
    _pump(lambda: queue.idle)
    sdata = sensor_data(viewer.layers["sensor data"].metadata, hm=hm)
    step = run(iter_inverse_step(hm, sdata, InverseInputs(), data_layer="sensor data",
                                 show="dSPM"))  # fmt: skip
    added = []
    queue.add(make_layers(step.layers), then=added.extend)
    _pump(lambda: queue.idle)
    yield {"viewer": viewer, "hm": hm, "sim": sim, "added": added}
    viewer.close()


def test_truth_is_marked_on_every_stack_and_the_cortex(bench):
    viewer, sim = bench["viewer"], bench["sim"]
    n_sources = len(sim.sources["event"])
    markers = viewer.layers["truth sources"]
    stacks = [lay for lay in viewer.layers if lay.metadata[META_KEY]["role"] == "stack"]
    assert [s.name for s in stacks] == ["truth", "MNE", "dSPM", "sLORETA"]
    assert len(markers.data) == n_sources * len(stacks)
    # each marker lies inside one of the stacks, on the row of a true source
    for event, _, y, x in markers.data:
        inside = [s for s in stacks if s.extent.world[0][-1] <= x <= s.extent.world[1][-1]]
        assert len(inside) == 1
        stack = inside[0]
        row, sample = np.round(stack.world_to_data((event, 0, y, x))[-2:] - 0.5).astype(int)
        truth = viewer.layers["truth"].data
        assert truth[int(event), 0, row].any()
    cortex_markers = viewer.layers["truth sources (cortex)"]
    assert len(cortex_markers.data) == n_sources
    np.testing.assert_allclose(cortex_markers.scale[-3:], viewer.layers["cortex"].scale[-3:])
    assert cortex_markers.blending == "translucent_no_depth"


def test_titles_and_units_in_the_canvas(bench):
    titles = list(bench["viewer"].layers["titles"].features["title"])
    for text in ("truth [A·m]", "MNE [A·m]", "dSPM [F]", "sLORETA [F]", "cortex: dSPM [F]"):
        assert text in titles
    assert any(t.startswith("sensor data: mag ±") for t in titles)
    assert bench["viewer"].layers["titles"].text.values.tolist() == titles


def test_hover_names_vertex_time_and_unit(bench):
    viewer, sim, hm = bench["viewer"], bench["sim"], bench["hm"]
    truth = viewer.layers["truth"]
    event = int(sim.sources["event"][0])
    row = int(np.flatnonzero(np.asarray(sim.rows) == sim.sources["row"][0])[0])
    sample = sim.window(event)[0] + 3
    world = truth.data_to_world((event, 0, row, sample))
    status = truth.get_status(world, world=True)["coordinates"]
    vertex = int(hm.vertno[1][sim.sources["row"][0] - len(hm.vertno[0])])
    assert status.startswith(f"truth: rh vertex {vertex} (row {row}), t = ")
    assert f"{1e3 * sample / sim.sfreq:.1f} ms" in status and status.endswith("A·m")
    sensor = viewer.layers["sensor data"]
    status = sensor.get_status(sensor.data_to_world((0, 0, 150, 5)), world=True)["coordinates"]
    assert "(grad)" in status and status.endswith("fT/cm")


def test_sliders_in_ms_with_event_names(bench):
    viewer = bench["viewer"]
    viewer.dims.set_current_step(0, 10)
    viewer.dims.set_current_step(1, 2)
    labels = viewer.dims.axis_labels
    sfreq = bench["sim"].sfreq
    assert labels[0] == f"cortex time {1e3 * 10 / sfreq:.1f} ms"
    assert labels[1] == "event 2: event 2"
    assert viewer.layers["cortex"].scale[0] == pytest.approx(1 / sfreq)


def test_camera_shows_the_new_layers_in_3d(bench):
    viewer = bench["viewer"]
    assert viewer.dims.ndisplay == 3
    names = [layer.name for layer in bench["added"]]
    assert {"MNE", "dSPM", "sLORETA", "cortex"} <= set(names)
    from napari_meg_unet._qt._layerqueue import camera_of, canvas_size

    height, width = canvas_size(viewer)
    camera = camera_of(viewer)
    zoom, center = camera.zoom, np.asarray(camera.center)
    for layer in bench["added"]:
        if layer.metadata[META_KEY]["role"] in ("titles", "markers", "cortex-markers"):
            continue
        lo, hi = layer.extent.world[0][-2:], layer.extent.world[1][-2:]
        # the layer's (row, col) box lies in the canvas, and is not a thumbnail
        half = np.array([height, width]) / 2 / zoom
        assert np.all(lo >= center[-2:] - half - 1e-9) and np.all(hi <= center[-2:] + half + 1e-9)
    span = max(lay.extent.world[1][-1] for lay in bench["added"]) - min(
        lay.extent.world[0][-1] for lay in bench["added"])  # fmt: skip
    assert span * zoom > 0.5 * width


def test_cortex_shows_any_stack_from_a_cache(bench):
    from napari_meg_unet._qt._cortex import controller_for

    viewer = bench["viewer"]
    controller = controller_for(viewer)
    computed = controller.n_computed
    # the truth (simulated) and dSPM (the inverse step) came with their cortex values
    controller.show("truth")
    assert viewer.layers["cortex"].metadata["shows"] == "truth"
    truth = viewer.layers["truth"]
    mesh = viewer.layers["cortex"].metadata["mesh"]
    np.testing.assert_allclose(viewer.layers["cortex"].vertex_values,
                               mesh.values(truth.data[:, 0]), rtol=1e-6)  # fmt: skip
    lo, hi = truth.contrast_limits  # signed limits rounded up to a labelled colorbar end
    expected = (lo, hi) if lo >= 0 else (-layers.nice_ceiling(hi), layers.nice_ceiling(hi))
    assert tuple(viewer.layers["cortex"].contrast_limits) == pytest.approx(expected)
    assert controller.n_computed == computed
    # MNE is mapped once, in a worker thread
    controller.show("MNE")
    _pump(lambda: viewer.layers["cortex"].metadata.get("shows") == "MNE")
    assert controller.n_computed == computed + 1
    mne_layer = viewer.layers["MNE"]
    np.testing.assert_allclose(viewer.layers["cortex"].vertex_values,
                               mesh.values(mne_layer.data[:, 0]), rtol=1e-6)  # fmt: skip
    # going back and forth recomputes nothing
    for name in ("dSPM", "truth", "MNE"):
        controller.show(name)
        assert viewer.layers["cortex"].metadata["shows"] == name
    assert controller.n_computed == computed + 1
    # the titles follow in the next event-loop turns (the layer queue moves one layer a turn)
    from napari_meg_unet._qt._layerqueue import queue_for

    _pump(lambda: queue_for(viewer).idle)
    assert "cortex: MNE [A·m]" in list(viewer.layers["titles"].features["title"])


def test_truth_beside_threshold_and_views(bench):
    from napari_meg_unet._qt._cortex import controller_for
    from napari_meg_unet.layers import colormaps

    viewer = bench["viewer"]
    controller = controller_for(viewer)
    controller.show("dSPM")
    controller.truth_beside(True)
    _pump(lambda: "cortex (truth)" in viewer.layers)
    beside = viewer.layers["cortex (truth)"]
    cortex = viewer.layers["cortex"]
    assert beside.metadata["shows"] == "truth"
    assert beside.extent.world[0][-2] > cortex.extent.world[1][-2]  # below, no overlap
    controller.set_threshold(0.5)
    colors = cortex.colormap.map(np.array([0.5]))  # middle of bwr: grey now
    assert np.allclose(colors[0], colormaps.NEUTRAL, atol=0.02)
    controller.set_view("rh medial")
    planes = cortex.experimental_clipping_planes
    assert len(planes) == 1 and tuple(planes[0].normal) == (0.0, 0.0, 1.0)
    from napari_meg_unet._qt._layerqueue import camera_of

    direction = np.asarray(camera_of(viewer).view_direction)
    np.testing.assert_allclose(np.abs(direction), [0, 0, 1], atol=1e-6)
    # vispy clips in world coordinates: the plane lies at head x = 0 of this cortex
    assert planes[0].position[-1] == pytest.approx(cortex.translate[-1])
    # a side view looks along the images' time axis: the stacks, sensor band, markers
    # and titles (in the line of sight) are hidden, the camera looks at the cortex
    assert viewer.dims.ndisplay == 3
    shown = {layer.name for layer in viewer.layers if layer.visible}
    assert shown <= {"cortex", "cortex (truth)", "truth sources (cortex)"}, shown
    assert "cortex" in shown and "MNE" in controller.hidden_for_view
    lo = np.min([c.extent.world[0][-3:] for c in (cortex, beside)], axis=0)
    hi = np.max([c.extent.world[1][-3:] for c in (cortex, beside)], axis=0)
    center = np.asarray(camera_of(viewer).center)[-3:]
    assert np.all(center >= lo) and np.all(center <= hi)
    controller.set_view("top")
    assert len(cortex.experimental_clipping_planes) == 0
    assert all(viewer.layers[n].visible for n in ("truth", "MNE", "dSPM", "sensor data", "titles"))
    assert controller.hidden_for_view == []
    controller.set_threshold(0.0)
    controller.truth_beside(False)
    assert "cortex (truth)" not in viewer.layers


def test_save_an_estimate_with_napari(bench, tmp_path):
    import mne

    viewer = bench["viewer"]
    viewer.layers.selection.active = viewer.layers["dSPM"]
    written = viewer.layers.save(str(tmp_path / "dspm.stc"), selected=True, plugin=PLUGIN)
    assert any(p.endswith("dspm.json") for p in written)
    stc = mne.read_source_estimate(tmp_path / "dspm_001_event-1")
    np.testing.assert_allclose(stc.data, viewer.layers["dSPM"].data[1, 0], rtol=1e-5)


def test_evaluate_refuses_predictions_for_other_rows(bench, qtbot):
    from napari.layers import Layer

    from napari_meg_unet._qt._evaluate import EvaluateWidget

    viewer, sim, hm = bench["viewer"], bench["sim"], bench["hm"]
    lh_rows = hm.rows("lh")  # same number of rows as rh on fsaverage5: shapes would agree
    probs = np.random.default_rng(0).random((len(sim), len(lh_rows), sim.data.shape[2]))
    fake = layers.stack_layer(probs, name=layers.prediction_name("thesis"), sfreq=sim.sfreq,
                              metadata={"simulation": sim, "hemi": "lh", "rows": lh_rows,
                                        "headmodel": hm})  # fmt: skip
    viewer.add_layer(Layer.create(*fake))
    try:
        widget = EvaluateWidget(viewer)
        widget.data_layer.value = "sensor data"
        widget.evaluate()
        assert not widget.busy
        assert "made for the rows of lh but the simulation's sources lie in rh" in (
            widget.last_error
        )
        widget.close()
    finally:
        viewer.layers.remove("prediction (thesis)")


def test_predict_refuses_a_network_of_the_other_hemisphere(bench, tmp_path, qtbot):
    import torch

    from napari_meg_unet._qt._predict import PredictWidget
    from napari_meg_unet.checkpoint import save_checkpoint

    hm, sim = bench["hm"], bench["sim"]
    meta = {"headmodel_fingerprint": hm.fingerprint, "ch_names": list(hm.ch_names),
            "hemi": "lh", "n_times": sim.data.shape[2], "sfreq": 250.0, "methods": ["MNE"],
            "lambda2": 1 / 9}  # fmt: skip
    path = save_checkpoint(tmp_path / "best.pt", {
        "format": "napari-meg-unet-checkpoint", "format_version": 1, "kind": "best",
        "model_name": "thesis", "model_config": {}, "model": {"w": torch.zeros(1)},
        "dataset_meta": meta, "epoch": 1,
    })  # fmt: skip
    widget = PredictWidget(bench["viewer"])
    widget.data_layer.value = "sensor data"
    widget.checkpoint.value = str(path)
    qtbot.waitUntil(lambda: widget.check.text().startswith(("Not usable", "Compatible")),
                    timeout=30_000)  # fmt: skip
    text = widget.check.text()
    assert not widget.compatible and text.startswith("Not usable")
    assert "trained on lh sources but the simulation's sources lie in rh" in text
    assert f"trained at 250 Hz but the data are sampled at {sim.sfreq:.6g} Hz" in text
    assert widget.hemi.value == "lh" and widget.network_hemi == "lh"  # the network's, shown
    widget.close()


def test_settings_are_kept(bench, tmp_path):
    from napari_meg_unet._qt._train import TrainWidget

    first = TrainWidget(bench["viewer"])
    first.out_dir.value = str(tmp_path / "runs")
    first.device.value = "cpu"
    first._launch(resume=True)  # fails (nothing to resume) but keeps the choices
    second = TrainWidget(bench["viewer"])
    assert str(second.out_dir.value) == str(tmp_path / "runs")
    assert second.device.value == "cpu"
    # the training settings follow the simulation
    assert second.hemi.value == "rh" and second.snr.value == "5"
    assert second.n_times.value == bench["sim"].data.shape[2]
    for widget in (first, second):
        widget.close()


def test_failed_start_keeps_the_loss_curve(bench, tmp_path, qtbot):
    from napari_meg_unet._qt._train import TrainWidget

    widget = TrainWidget(bench["viewer"])
    widget.out_dir.value = str(tmp_path)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "last.pt").write_bytes(b"x")  # an earlier run is there
    widget.losses = [(1, 0.9), (2, 0.8)]
    widget.start()
    qtbot.waitUntil(lambda: not widget.busy, timeout=30_000)
    assert "already holds a training run" in widget.last_error
    assert widget.losses == [(1, 0.9), (2, 0.8)]
    widget.close()


def test_docks_do_not_clip_and_combos_show_full_names(bench):
    from napari_meg_unet._qt._inverse import InverseWidget

    widget = InverseWidget(bench["viewer"])
    inner = widget._scroll.widget()
    assert widget.minimumWidth() >= min(inner.sizeHint().width(), 520)
    combo = widget.data_layer.native
    combo.setCurrentText("sensor data")
    assert combo.toolTip() == "sensor data"
    assert combo.view().minimumWidth() >= combo.fontMetrics().horizontalAdvance("sensor data")
    widget.close()


def test_cancel_a_running_step(bench, qtbot):
    """Cancel stops a step at its next event; nothing is added."""
    from napari_meg_unet._qt._simulate import SimulateWidget

    viewer = bench["viewer"]
    before = [layer.name for layer in viewer.layers]
    widget = SimulateWidget(viewer)
    widget.design.value = "sweep"  # 642 events: many progress events
    widget.simulate()
    qtbot.waitUntil(lambda: widget.progress.value() > 0 or not widget.busy, timeout=120_000)
    widget.cancel()
    qtbot.waitUntil(lambda: not widget.busy, timeout=60_000)
    assert widget.cancelled and widget.status.text() == "cancelled"
    assert widget.last_error is None
    assert [layer.name for layer in viewer.layers] == before
    widget.close()


def test_shutdown_waits_for_the_step(bench, qtbot):
    from napari_meg_unet._qt._common import DockWidget

    widget = DockWidget(bench["viewer"])
    widget.finish()
    stop_seen = threading.Event()

    def slow():
        from napari_meg_unet.progress import Progress

        for i in range(500):
            if widget._stop.is_set():
                stop_seen.set()
                return "stopped"
            time.sleep(0.01)
            yield Progress("slow", i, 500, "")

    widget.run(slow(), on_return=lambda value: None)
    assert widget.busy
    assert widget.shutdown(timeout=10)
    assert stop_seen.is_set()
    qtbot.waitUntil(lambda: not widget.busy, timeout=10_000)
    widget.close()


def test_layer_queue_refills_the_cortex_one_piece_a_turn(template_hm, bench):
    """A cortex already shown is refilled in place (no remove + add); finishing is piecewise."""
    from napari_meg_unet._qt._common import make_layers
    from napari_meg_unet._qt._layerqueue import LayerQueue
    from napari_meg_unet._qt._prepare import cortex_tuple

    hm, sim = template_hm, bench["sim"]
    viewer = napari.Viewer(show=False)
    try:
        queue = LayerQueue(viewer)
        queue.add(make_layers([cortex_tuple(hm, hemi="both", source="anatomy")], viewer))
        _pump(lambda: queue.idle)
        cortex = viewer.layers["cortex"]
        assert cortex.ndim == 3 and not cortex.colorbar.visible
        added = queue.n_added
        stack = np.asarray(bench["viewer"].layers["truth"].data[:, 0])
        values = make_layers([cortex_tuple(hm, hemi=sim.meta["params"]["hemi"], source="truth",
                                           stack=stack, sfreq=sim.sfreq)], viewer)  # fmt: skip
        removed = []
        viewer.layers.events.removed.connect(lambda e: removed.append(e.value.name))
        pieces = []
        finish = queue._finish
        queue._finish = lambda job: (pieces.append(1), finish(job))[1]
        queue.add(values)
        _pump(lambda: queue.idle)
        assert viewer.layers["cortex"] is cortex and removed == []  # the same layer, refilled
        assert cortex.ndim == 5 and cortex.metadata["shows"] == "truth"
        assert cortex.colorbar.visible
        assert cortex.scale[0] == pytest.approx(1 / sim.sfreq)  # the time axis, placed
        assert len(pieces) >= 3  # layout, colorbar, camera: each a turn of its own
        # anatomy again: the same layer, 3-D, no colorbar
        queue.add(make_layers([cortex_tuple(hm, hemi="both", source="anatomy")], viewer))
        _pump(lambda: queue.idle)
        assert viewer.layers["cortex"] is cortex and cortex.ndim == 3
        assert not cortex.colorbar.visible and queue.n_added == added  # no layer added
    finally:
        viewer.close()
