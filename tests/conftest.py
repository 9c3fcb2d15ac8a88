"""Shared fixtures: the template head model (built once per session) and the shared data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def pytest_configure(config):
    # MNE logs at INFO by default and one of its INFO messages (depth prior
    # limits) has a broken %-format that pytest's log capture turns into an
    # error; tests only need warnings.
    import mne

    mne.set_log_level("WARNING")


def shared_data_dir() -> Path:
    return Path(os.environ.get("NAPARI_MEG_UNET_DATA", REPO.parent / "shared" / "data"))


def require_shared_data() -> bool:
    """CI sets ``NAPARI_MEG_UNET_REQUIRE_DATA=1``: missing shared data then fails, never skips."""
    return os.environ.get("NAPARI_MEG_UNET_REQUIRE_DATA", "") not in ("", "0")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of ../shared/data; skips the test when it is absent (fails under CI)."""
    return locate_shared_data()


def locate_shared_data() -> Path:
    path = shared_data_dir()
    if not (path / "sample" / "MEG" / "sample_audvis_trunc_raw_sss.fif").is_file():
        message = f"shared sample data not found at {path} (set NAPARI_MEG_UNET_DATA)"
        if require_shared_data():
            pytest.fail(message + "; NAPARI_MEG_UNET_REQUIRE_DATA=1 forbids skipping")
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """A per-session head-model cache so tests never touch the user's cache."""
    path = tmp_path_factory.mktemp("hm-cache")
    os.environ["NAPARI_MEG_UNET_CACHE"] = str(path)
    return path


@pytest.fixture(scope="session")
def template_hm(cache_dir):
    """The default template head model: fsaverage5 ico3, MEG, ad-hoc covariance."""
    from napari_meg_unet.headmodel import make_template_headmodel

    return make_template_headmodel(spacing="ico3", modality="meg", cache_dir=cache_dir)


@pytest.fixture(scope="session")
def template_hm_megeeg(cache_dir):
    """Template head model with MEG+EEG (sphere model, average-reference projector)."""
    from napari_meg_unet.headmodel import make_template_headmodel

    return make_template_headmodel(spacing="ico3", modality="meg+eeg", cache_dir=cache_dir)


@pytest.fixture(scope="session")
def sample_hm(shared_data, cache_dir):
    """The sample subject's MEG head model (small-src x1000, 320-triangle 1-layer BEM, the
    non-SSS covariance), from the evoked file's sensors."""
    from napari_meg_unet.headmodel import make_headmodel

    meg, subj = shared_data / "sample" / "MEG", shared_data / "sample" / "subjects"
    return make_headmodel(
        info=meg / "test-ave.fif.gz", trans=meg / "sample_audvis_trunc-trans.fif",
        bem=subj / "sample/bem/sample-320-bem-sol.fif", src=subj / "sample/bem/small-src.fif.gz",
        noise_cov=meg / "sample_audvis_trunc-cov.fif", subjects_dir=subj, subject="sample",
        modality="meg", verbose="error",
    )  # fmt: skip


@pytest.fixture
def bench_accuracy_options(monkeypatch) -> dict:
    """What ``bench accuracy`` on the CLI hands its driver: the preset and options (filled
    by the run, which then stops with "stop here")."""
    from napari_meg_unet.bench.accuracy import driver

    seen = {}

    def fake(preset, **options):
        seen.update(options, preset=preset)
        raise ZeroDivisionError("stop here")

    monkeypatch.setattr(driver, "iter_run_accuracy", fake)
    return seen


@pytest.fixture(scope="session")
def seen_moment():
    """What a noiseless source's reported moment is: the orientations the sensors see.

    ``seen_moment(whitener, hm, row, moment)``: the moment ``(3,)`` or ``(3, n_times)``
    (A·m, head coordinates) of a source at ``hm``'s ``row`` as the fits report it — its
    component on the orientations MNE's rule keeps in the whitened free gain.
    """
    import numpy as np

    from napari_meg_unet.models.sensor_dipole import NearestSourceMoments
    from napari_meg_unet.peers.field import kept_orientations

    def seen(whitener, hm, row, moment):
        fit = NearestSourceMoments(hm, hm.ch_names, np.asarray(whitener, float))
        _, s, vt = np.linalg.svd(fit._gain[:, 3 * row:3 * row + 3], full_matrices=False)
        kept = vt[kept_orientations(s)]
        axes = fit._axes[row]  # rows: the source's axes in head coordinates
        return axes.T @ (kept.T @ (kept @ (axes @ np.asarray(moment, float))))

    return seen
