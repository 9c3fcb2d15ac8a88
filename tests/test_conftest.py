"""The test harness itself: real-data tests can never silently drop out of CI."""

from pathlib import Path

import pytest

from conftest import REPO, locate_shared_data


def test_missing_shared_data_skips_locally(monkeypatch, tmp_path):
    monkeypatch.setenv("NAPARI_MEG_UNET_DATA", str(tmp_path))
    monkeypatch.delenv("NAPARI_MEG_UNET_REQUIRE_DATA", raising=False)
    with pytest.raises(pytest.skip.Exception):
        locate_shared_data()


def test_missing_shared_data_fails_when_required(monkeypatch, tmp_path):
    monkeypatch.setenv("NAPARI_MEG_UNET_DATA", str(tmp_path))
    monkeypatch.setenv("NAPARI_MEG_UNET_REQUIRE_DATA", "1")
    with pytest.raises(pytest.fail.Exception, match="forbids skipping"):
        locate_shared_data()


def test_ci_requires_the_shared_data():
    script = (REPO / ".ci" / "run").read_text()
    assert "NAPARI_MEG_UNET_REQUIRE_DATA=1" in script
    assert Path(REPO / ".ci" / "run").stat().st_mode & 0o111
