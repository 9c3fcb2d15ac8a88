"""The Evaluate widget and the report draw the same DLE density for the same data (issue 9)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")

pytestmark = pytest.mark.gui


def test_widget_and_report_draw_the_same_dle_density(make_napari_viewer, monkeypatch, tmp_path):
    from napari_meg_unet import report
    from napari_meg_unet._qt._evaluate import EvaluateWidget
    from napari_meg_unet.evaluation import Evaluation

    rng = np.random.default_rng(0)
    dle = {
        ("dSPM", "samples"): np.r_[rng.gamma(3.0, 5.0, 59), np.nan],  # 3 maps per event
        ("MNE", "window"): rng.gamma(2.0, 4.0, 20),
        ("net", "window"): np.full(20, 4.0),  # one distinct value: a vertical line
    }
    events = {key: np.repeat(np.arange(20), len(v) // 20) for key, v in dle.items()}
    widget = EvaluateWidget(make_napari_viewer())
    widget.evaluation = Evaluation(
        scores={k: {"dle_mm": dle[k], "event": events[k]} for k in dle}
    )
    widget._draw_density()  # rendered off the main thread
    assert widget.plot.wait()
    gui = {line.get_label(): line.get_xydata() for line in widget.plot.figure.axes[0].lines}

    # The report is fed per-event means computed independently of the widget.
    per_event = {
        f"{est} ({prot})": np.array(
            [np.nanmean(dle[est, prot][events[est, prot] == e]) for e in range(20)]
        )
        for est, prot in dle
    }
    figures = []
    monkeypatch.setattr(report, "save_figure", lambda fig, path, **kw: figures.append(fig))
    report.plot_dle_kde(per_event, tmp_path / "kde.png")
    drawn = {line.get_label().split(": mean")[0]: line.get_xydata() for line in
             figures[0].axes[0].lines}  # fmt: skip
    assert set(gui) == set(drawn) == set(per_event)
    for label, curve in gui.items():
        np.testing.assert_allclose(curve, drawn[label], rtol=1e-12, atol=0)
