"""The test harness itself: real-data tests can never silently drop out of CI."""

import importlib.util
from pathlib import Path

import pytest


def _top_conftest():
    # By path: with tests/_qt/conftest.py also loaded, the name 'conftest' is ambiguous.
    spec = importlib.util.spec_from_file_location(
        "_tests_conftest", Path(__file__).with_name("conftest.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_CONFTEST = _top_conftest()
REPO, locate_shared_data = _CONFTEST.REPO, _CONFTEST.locate_shared_data


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
