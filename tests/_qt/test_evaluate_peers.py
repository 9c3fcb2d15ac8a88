"""The Evaluate widget scores the peers next to the linear inverses (issue 11)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")

pytestmark = pytest.mark.gui


def test_evaluate_widget_scores_peers(make_napari_viewer, qtbot, settle, template_hm,
                                      monkeypatch):  # fmt: skip
    from napari_meg_unet._qt import _common
    from napari_meg_unet._qt._common import make_layers
    from napari_meg_unet._qt._evaluate import EvaluateWidget
    from napari_meg_unet._qt._layerqueue import queue_for
    from napari_meg_unet._sample_data import simulation_layers
    from napari_meg_unet.simulate import simulate

    errors = []
    monkeypatch.setattr(_common, "notify_error", errors.append)
    viewer = make_napari_viewer()
    sim = simulate(template_hm, design="multi", n_events=4, n_dipoles=(1, 2), hemi="rh",
                   snr=3.0, timecourse="realistic", seed=5, verbose="error")  # fmt: skip
    queue_for(viewer).add(make_layers(simulation_layers(template_hm, sim, layout=False), viewer))
    settle(viewer)
    widget = EvaluateWidget(viewer)
    widget.data_layer.value = "sensor data"
    widget.n_boot.value = 100
    widget.peers.value = ["rap-music", "lcmv"]
    widget.peer_events.value = 3
    widget.evaluate()
    qtbot.waitUntil(lambda: not widget.busy, timeout=240_000)
    assert widget.last_error is None and errors == []
    rows = [widget.table.item(i, 0).text() for i in range(widget.table.rowCount())]
    assert {"RAP-MUSIC (n given)", "LCMV", "dSPM"} <= set(rows)
    # RAP-MUSIC's dipoles carry moments: the table shows their time-course error, n/a for maps
    titles = [widget.table.horizontalHeaderItem(j).text()
              for j in range(widget.table.columnCount())]  # fmt: skip
    tc = titles.index("TC error")
    cells = {rows[i]: widget.table.item(i, tc).text() for i in range(len(rows))}
    assert cells["LCMV"] == "n/a" and cells["dSPM"] == "n/a"
    assert cells["RAP-MUSIC (n given)"][0].isdigit()
    ev = widget.evaluation
    assert ev.summary[("RAP-MUSIC (n given)", "window")]["n_events"] == 3
    assert ev.summary[("dSPM", "window")]["dle_mm"]["n_events"] == 4
    search = ev.meta["peers"]["lcmv"]
    assert search["disjoint_check"]["disjoint"] and len(search["candidates"]) > 1
    assert sim.fingerprint not in [v["simulation"] for v in search["validation"]]
    # a peer's per-vertex DLE (from its own estimates) is drawn like the others'
    widget.map_of.value = "RAP-MUSIC (n given) (window)"
    qtbot.waitUntil(lambda: "mean DLE (RAP-MUSIC (n given))" in viewer.layers, timeout=60_000)
    shown = viewer.layers["mean DLE (RAP-MUSIC (n given))"]
    assert np.isfinite(shown.metadata["per_row_scored"]).any()
    widget.close()


def test_evaluate_inputs_check_the_peers():
    from napari_meg_unet._qt._inputs import EvaluateInputs

    EvaluateInputs(peers=("sensor-net-fit",), peer_events=5).validate()
    with pytest.raises(ValueError, match="peer"):
        EvaluateInputs(peers=("music",)).validate()
    with pytest.raises(ValueError, match="peer events"):
        EvaluateInputs(peers=("lcmv",), peer_events=0).validate()
