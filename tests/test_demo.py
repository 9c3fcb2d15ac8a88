"""``napari-meg-unet demo``: end to end on the tiny configuration, and its target logic."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import re

import pytest

from napari_meg_unet.cli import main
from napari_meg_unet.demo import DEMO_SETTINGS, demo_target

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_demo(template_hm, tmp_path_factory):
    """``napari-meg-unet demo --tiny --json`` run once (progress bars on stderr)."""
    out = tmp_path_factory.mktemp("demo") / "report"
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(["demo", "--out", str(out), "--tiny", "--seed", "1", "--json"])
    return code, json.loads(stdout.getvalue()), stderr.getvalue(), out


def test_demo_writes_report_folder(tiny_demo):
    code, result, stderr, out = tiny_demo
    assert code == 0
    assert "train mesh U-Net" in stderr  # the progress bar of the training stage
    for name in ("report.md", "results.json", "dle_kde.png", "training_curves.png",
                 "example.png"):  # fmt: skip
        assert (out / name).is_file(), name
    for name in ("dle_kde.png", "training_curves.png", "example.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in (out / "per_vertex").iterdir())[0].endswith(".npy")
    saved = json.loads((out / "results.json").read_text())
    assert saved["demo"]["target"] == result["target"]
    assert saved["demo"]["tiny"] is True
    assert saved["demo"]["runtime_s"] == pytest.approx(result["runtime_s"])
    assert saved["command"].startswith("napari-meg-unet demo --out")
    # the target is computed from the scored rows, not asserted
    rows = saved["conditions"]["single-snr1"]["results"]
    net = next(r for r in rows if r["estimator"] == "mesh U-Net")["dle_mm"]["mean"]
    dspm = next(r for r in rows if (r["estimator"], r["protocol"]) == ("dSPM", "window"))
    assert result["target"]["met"] == (net < dspm["dle_mm"]["mean"])
    assert result["target"]["network_dle_mm"] == net


def test_demo_report_contents(tiny_demo):
    _, result, _, out = tiny_demo
    text = (out / "report.md").read_text()
    assert text == result["table"]
    verdict = "MET" if result["target"]["met"] else "NOT MET"
    assert f"**Target {verdict}:**" in text
    assert "| estimator | protocol | n | s/event | DLE (mm) | SD (mm) | OA | AUC |" in text
    # n events scored, seconds per event, then DLE as mean [95% CI]
    scored = r"\| [0-9]+ \| [0-9.e-]+ \| [0-9.]+ \[[0-9.]+, [0-9.]+\] \|"
    for method in ("MNE", "dSPM", "sLORETA", "eLORETA"):
        assert re.search(rf"^\| {method} \| window {scored}", text, re.MULTILINE), method
        assert f"| {method} | samples |" in text
    assert re.search(rf"^\| mesh U-Net \| window {scored}", text, re.MULTILINE)
    assert "Grid floor" in text and "0.000 [0.000, 0.000] mm" in text  # tiny runs on-grid
    assert "- Command: `napari-meg-unet demo --out" in text
    assert "- Machine: " in text and " cores" in text
    assert re.search(r"- Runtime: \d+ s", text)
    assert "Tiny test configuration" in text
    for image in ("dle_kde.png", "training_curves.png", "example.png"):
        assert f"]({image})" in text


def test_demo_refuses_existing_folder(tiny_demo, capsys):
    _, _, _, out = tiny_demo
    before = (out / "report.md").read_text()
    assert main(["demo", "--out", str(out), "--tiny", "--no-progress"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "report.md").read_text() == before


def test_demo_target_is_computed(tiny_demo):
    _, _, _, out = tiny_demo
    summary = json.loads((out / "results.json").read_text())
    rows = summary["conditions"]["single-snr1"]["results"]
    dspm = next(r for r in rows if (r["estimator"], r["protocol"]) == ("dSPM", "window"))
    net = next(r for r in rows if r["estimator"] == "mesh U-Net")
    for net_mean, met in ((dspm["dle_mm"]["mean"] - 0.5, True), (dspm["dle_mm"]["mean"], False),
                          (dspm["dle_mm"]["mean"] + 3.0, False)):  # fmt: skip
        changed = copy.deepcopy(summary)
        row = next(r for r in changed["conditions"]["single-snr1"]["results"]
                   if r is not None and r["estimator"] == "mesh U-Net")  # fmt: skip
        row["dle_mm"] = {**net["dle_mm"], "mean": net_mean}
        target = demo_target(changed)
        assert target["met"] is met
        assert target["ratio_vs_dspm_window"] == pytest.approx(
            net_mean / dspm["dle_mm"]["mean"]
        )
    no_net = copy.deepcopy(summary)
    no_net["conditions"]["single-snr1"]["results"] = [r for r in rows if r is not net]
    with pytest.raises(ValueError, match="no network"):
        demo_target(no_net)


def test_demo_settings_are_the_readme_job():
    assert DEMO_SETTINGS["networks"] == (("mesh", "small"),)
    assert DEMO_SETTINGS["n_test"] == 642  # the whole right hemisphere, once each


def test_demo_protocol_is_the_small_benchmark_preset():
    """The core demo spells its protocol out; it must stay ``bench accuracy``'s small preset."""
    from napari_meg_unet.accuracy import with_overrides
    from napari_meg_unet.bench.accuracy import get_preset
    from napari_meg_unet.demo import DEMO_PROTOCOL, TINY_SETTINGS

    assert DEMO_PROTOCOL == get_preset("small", **DEMO_SETTINGS)
    assert with_overrides(DEMO_PROTOCOL, **TINY_SETTINGS) == get_preset("small", **TINY_SETTINGS)
