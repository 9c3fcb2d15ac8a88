"""Report building blocks: markdown tables and PNG figures (Agg, Qt-free)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from napari_meg_unet import report
from napari_meg_unet.metrics import dle_density, dle_density_grid

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _agg(mean, low, high):
    return {"mean": mean, "ci_low": low, "ci_high": high, "ci": 0.95, "n_events": 10}


def _is_png(path):
    data = path.read_bytes()
    return data[:8] == PNG_MAGIC and len(data) > 1000


def test_format_aggregate():
    assert report.format_aggregate(_agg(12.345, 11.0, 13.5)) == "12.3 [11.0, 13.5]"
    assert report.format_aggregate(_agg(0.91234, 0.9, 0.93)) == "0.912 [0.900, 0.930]"
    assert report.format_aggregate(_agg(12.345, 11.0, 13.5), digits=2) == "12.35 [11.00, 13.50]"
    assert report.format_aggregate(None) == "n/a"
    assert report.format_aggregate(_agg(np.nan, np.nan, np.nan)) == "n/a"
    assert report.format_aggregate({"mean": 3.0, "ci_low": np.nan, "ci_high": 4.0}) == "3.000"


def test_results_table():
    rows = [
        {"estimator": "dSPM", "protocol": "window", "dle_mm": _agg(17.5, 16.8, 18.1),
         "sd_mm": _agg(61.2, 60.5, 61.8), "oa": _agg(206.9, 202.9, 210.9),
         "auc": _agg(0.93, 0.918, 0.941)},
        {"estimator": "dSPM", "protocol": "samples", "dle_mm": _agg(30.0, 29.0, 31.0),
         "sd_mm": _agg(60.0, 59.0, 61.0), "oa": _agg(100.0, 99.0, 101.0), "auc": None},
    ]  # fmt: skip
    table = report.results_table(rows)
    lines = table.splitlines()
    assert lines[0] == "| estimator | protocol | DLE (mm) | SD (mm) | OA | AUC |"
    assert lines[1] == "|---|---|---|---|---|---|"
    assert lines[2] == (
        "| dSPM | window | 17.5 [16.8, 18.1] | 61.2 [60.5, 61.8] | 206.9 [202.9, 210.9] "
        "| 0.930 [0.918, 0.941] |"
    )
    assert lines[3].endswith("| n/a |")
    assert len(lines) == 4
    # the time-course error (dipoles' moments) is shown only when a row has it
    with_tc = report.results_table([*rows, {**rows[0], "estimator": "fit",
                                            "tc_error": _agg(0.4, 0.3, 0.5)}])  # fmt: skip
    assert with_tc.splitlines()[0].endswith("| AUC | TC error |")
    assert with_tc.splitlines()[2].endswith("| n/a |")
    assert with_tc.splitlines()[4].endswith("| 0.400 [0.300, 0.500] |")
    only = report.results_table(rows, metrics=["dle_mm"], columns=["estimator"])
    assert only.splitlines()[0] == "| estimator | DLE (mm) |"
    with pytest.raises(ValueError, match="lacks the key"):
        report.results_table([{"estimator": "x", "protocol": "window"}])
    with pytest.raises(ValueError, match="metrics must be among"):
        report.results_table(rows, metrics=["speed"])
    with pytest.raises(ValueError, match="sequence of dicts"):
        report.results_table(rows[0])


def test_key_value_table():
    text = report.key_value_table({"runtime (s)": 12.3456, "cores": 2})
    assert text.splitlines() == ["| quantity | value |", "|---|---|", "| runtime (s) | 12.35 |",
                                 "| cores | 2 |"]  # fmt: skip


def test_plot_dle_kde(tmp_path):
    rng = np.random.default_rng(1)
    dle = {
        "dSPM (window)": rng.gamma(3.0, 5.0, 100),
        "dSPM (per sample)": rng.gamma(6.0, 5.0, 100),
        "mesh U-Net (window)": np.r_[rng.gamma(2.0, 3.0, 99), np.nan],
        "constant": np.full(5, 4.0),  # a KDE of one value is undefined: drawn as a line
    }
    path = report.plot_dle_kde(dle, tmp_path / "kde.png", grid_floor_mm=4.0, title="t")
    assert _is_png(path)
    with pytest.raises(FileExistsError, match="overwrite"):
        report.plot_dle_kde(dle, path)
    report.plot_dle_kde(dle, path, overwrite=True)
    with pytest.raises(ValueError, match="negative"):
        report.plot_dle_kde({"x": np.array([-1.0, 2.0])}, tmp_path / "neg.png")
    with pytest.raises(ValueError, match="no finite"):
        report.plot_dle_kde({"x": np.array([np.nan])}, tmp_path / "nan.png")
    with pytest.raises(ValueError, match="non-empty dict"):
        report.plot_dle_kde({}, tmp_path / "empty.png")
    with pytest.raises(ValueError, match=".png"):
        report.plot_dle_kde(dle, tmp_path / "kde.jpg")
    assert not (tmp_path / "neg.png").exists()


def test_plot_dle_kde_draws_metrics_dle_density(tmp_path, monkeypatch):
    # One density for the report and the Evaluate widget (issue 9).
    rng = np.random.default_rng(2)
    dle = {"MNE (window)": rng.gamma(3.0, 5.0, 50), "one value": np.array([3.0])}
    figures = []
    monkeypatch.setattr(report, "save_figure", lambda fig, path, **kw: figures.append(fig))
    report.plot_dle_kde(dle, tmp_path / "kde.png")
    lines = {line.get_label().split(": mean")[0]: line for line in figures[0].axes[0].lines}
    grid = dle_density_grid(np.concatenate(list(dle.values())))
    np.testing.assert_array_equal(lines["MNE (window)"].get_xdata(), grid)
    np.testing.assert_array_equal(
        lines["MNE (window)"].get_ydata(), dle_density(dle["MNE (window)"], grid)[1]
    )
    assert list(lines["one value"].get_xdata()) == [3.0, 3.0]  # a vertical line


def test_plot_training_curves(tmp_path):
    history = [
        {"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.2 / e, "dle_mm": 20.0 - e}
        for e in (1, 2, 3)
    ]
    batches = {"epoch": list(np.linspace(0.1, 3, 30)), "loss": list(np.linspace(1, 0.3, 30))}
    path = report.plot_training_curves(
        {"mesh U-Net": history}, tmp_path / "curves.png", references={"dSPM": 17.0},
        batch_losses={"mesh U-Net": batches},
    )  # fmt: skip
    assert _is_png(path)
    with pytest.raises(ValueError, match="not in histories"):
        report.plot_training_curves({"a": history}, tmp_path / "b.png",
                                    batch_losses={"b": batches})  # fmt: skip
    with pytest.raises(ValueError, match="different length"):
        report.plot_training_curves({"a": history}, tmp_path / "b.png",
                                    batch_losses={"a": {"epoch": [1.0], "loss": []}})  # fmt: skip
    with pytest.raises(ValueError, match="lack 'dle_mm'"):
        report.plot_training_curves({"x": [{"epoch": 1, "train_loss": 1.0, "val_loss": 1.0}]},
                                    tmp_path / "bad.png")  # fmt: skip
    with pytest.raises(ValueError, match="is empty"):
        report.plot_training_curves({"x": []}, tmp_path / "bad.png")


def test_plot_example_and_row_pooling(tmp_path):
    n_rows, n_times = 642, 32
    truth = np.zeros((n_rows, n_times))
    truth[485, 10:20] = 1.0
    pooled = report._pool_rows(truth, 3)
    assert pooled.shape == (214, n_times)
    assert pooled[485 // 3, 10:20].tolist() == [1.0] * 10
    assert pooled.sum() == 10.0
    assert report._pool_rows(np.ones((5, 2)), 2).shape == (3, 2)
    est = np.random.default_rng(2).standard_normal((n_rows, n_times))
    path = report.plot_example(
        {"truth": truth, "dSPM": est, "network": np.abs(est)},
        tmp_path / "example.png", times=np.arange(n_times) / 250.0, true_rows=[485],
    )  # fmt: skip
    assert _is_png(path)
    with pytest.raises(ValueError, match="one shape"):
        report.plot_example({"a": truth, "b": truth[:10]}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="times must have shape"):
        report.plot_example({"a": truth}, tmp_path / "x.png", times=np.arange(3))


def test_report_is_qt_free_and_leaves_pyplot_alone(tmp_path):
    code = (
        "import sys, numpy as np\n"
        "from napari_meg_unet import report\n"
        f"report.plot_dle_kde({{'a': np.arange(1.0, 20.0)}}, r'{tmp_path / 'a.png'}')\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'qtpy', 'napari', 'matplotlib.pyplot')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    assert _is_png(tmp_path / "a.png")
