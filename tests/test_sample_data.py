"""Sample data: simulated dipoles on the template head as napari layers."""

from __future__ import annotations

import numpy as np
import pytest

from napari_meg_unet import _sample_data, layers


@pytest.fixture(scope="module")
def sample(template_hm):
    from napari_meg_unet.simulate import simulate

    sim = simulate(template_hm, verbose="error", **_sample_data.SAMPLES["multi"])
    return sim, {kw["name"]: (d, kw, t) for d, kw, t in
                 _sample_data.simulation_layers(template_hm, sim)}  # fmt: skip


def test_simulation_layers(template_hm, sample):
    sim, out = sample
    assert list(out) == ["sensor data", "truth", "truth sources", "cortex",
                         "truth sources (cortex)", "titles"]  # fmt: skip
    n_events, n_ch, n_times = sim.data.shape
    data, kw, kind = out["sensor data"]
    assert kind == "image" and data.shape == (n_events, 1, n_ch, n_times)
    assert kw["metadata"]["simulation"] is sim and kw["metadata"]["headmodel"] is template_hm
    truth, tkw, _ = out["truth"]
    rows = template_hm.rows("both")
    assert truth.shape == (n_events, 1, len(rows), n_times)
    for i in (0, n_events - 1):
        np.testing.assert_allclose(truth[i, 0], sim.truth(i, rows=rows), rtol=1e-6)
    # the multi-dipole design puts 2 to 4 sources in each event
    for i in range(n_events):
        assert 2 <= len(sim.active_rows(i)) <= 4
    assert tkw["scale"][-1] == pytest.approx(1 / sim.sfreq)
    (verts, faces, values), ckw, kind = out["cortex"]
    assert kind == "surface" and values.shape == (n_times, n_events, len(verts))
    mesh = ckw["metadata"]["mesh"]
    np.testing.assert_allclose(values, mesh.values(truth[:, 0]))
    # the cortex shows the truth with the truth's colours (its top rounded up to a labelled
    # colorbar end), and time in seconds
    top = layers.nice_ceiling(tkw["contrast_limits"][1])
    assert ckw["contrast_limits"] == pytest.approx((-top, top))
    assert top / tkw["contrast_limits"][1] < 1.7
    assert ckw["metadata"][layers.META_KEY]["sfreq"] == pytest.approx(sim.sfreq)
    # every source is marked (stacks and cortex)
    assert len(out["truth sources (cortex)"][0]) == len(sim.sources["event"])
    # the truth of event 3 reaches the cortex at its active rows
    active = sim.active_rows(3)
    shown = set(np.unique(mesh.row_of_vertex[np.abs(values[:, 3]).max(axis=0) > 0]))
    assert shown == set(active.tolist())


def test_samples_are_fixed():
    assert _sample_data.SAMPLES["single"]["n_dipoles"] == 1
    assert _sample_data.SAMPLES["single"]["seed"] == _sample_data.SAMPLES["multi"]["seed"] == 0


@pytest.mark.gui
def test_open_sample(make_napari_viewer, qtbot, template_hm):
    """The sample opens in a worker: the call returns at once, the layers arrive after."""
    import time

    viewer = make_napari_viewer()
    start = time.perf_counter()
    viewer.open_sample("napari-meg-unet", "single_dipoles")
    assert time.perf_counter() - start < 2.0
    assert [layer.name for layer in viewer.layers] == ["titles"]
    qtbot.waitUntil(lambda: "truth sources (cortex)" in viewer.layers, timeout=180_000)
    # the layer queue adds one layer per event-loop turn, then lays them out, fills the
    # titles and switches to 3D (the cortex arrived) in a turn of its own
    from napari_meg_unet._qt._layerqueue import queue_for

    qtbot.waitUntil(lambda: queue_for(viewer).idle, timeout=10_000)
    truth = viewer.layers["truth"]
    sim = truth.metadata["simulation"]
    assert all(len(sim.active_rows(i)) == 1 for i in range(len(sim)))
    assert layers.META_KEY in viewer.layers["cortex"].metadata
    assert viewer.dims.ndisplay == 3 and len(viewer.layers["titles"].data) >= 3
