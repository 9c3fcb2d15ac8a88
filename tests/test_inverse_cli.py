"""The ``napari-meg-unet inverse`` subcommand."""

from __future__ import annotations

import json

import mne
import numpy as np
import pytest
from mne.minimum_norm import read_inverse_operator
from numpy.testing import assert_allclose

from napari_meg_unet.cli import main
from napari_meg_unet.inverse import (
    apply_kernel,
    compute_kernel,
    explained_variance,
    inverse_stack,
    load_kernel,
    make_inverse,
    svd_spectrum,
)


@pytest.fixture(autouse=True, scope="module")
def _quiet_mne():
    # napari's pytest plugin turns numpy log arguments into strings, which breaks MNE's
    # "%d" info messages; only warnings and errors are logged here.
    with mne.use_log_level("warning"):
        yield


def _data(info, n, n_times, seed):
    rng = np.random.default_rng(seed)
    scale = {"mag": 1e-13, "grad": 2e-12, "eeg": 5e-6}
    sd = np.array([scale.get(t, 1.0) for t in info.get_channel_types()])
    return rng.standard_normal((n, len(sd), n_times)) * sd[:, None]


def _run(capsys, *argv):
    rc = main(["inverse", *map(str, argv), "--no-progress"])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def test_cli_evoked_file(template_hm, tmp_path, capsys):
    hm = template_hm
    data = _data(hm.info, 2, 6, seed=0)
    evokeds = [
        mne.EvokedArray(x, hm.info, tmin=0.0, nave=4, comment=f"c{i}", verbose=False)
        for i, x in enumerate(data)
    ]
    fname = tmp_path / "conds-ave.fif"
    mne.write_evokeds(fname, evokeds, verbose=False)
    out = tmp_path / "out"
    args = ["--data", fname, "--out", out, "--methods", "dSPM", "MNE", "--lambda2", "1/4"]
    rc, stdout, stderr = _run(capsys, *args, "--json")
    assert rc == 0, stderr
    summary = json.loads(stdout)
    assert summary["methods"] == ["dSPM", "MNE"]
    assert summary["nave"] == 4 and summary["lambda2"] == 0.25 and summary["hemi"] == "rh"
    n_rh = len(hm.rows("rh"))
    assert summary["stack_shape"] == [2, n_rh, 6]
    expected = inverse_stack(hm, data, methods=("dSPM", "MNE"), lambda2=0.25, nave=4)
    for mi, method in enumerate(("dSPM", "MNE")):
        stack = np.load(out / f"stack-{method}.npy")
        assert stack.dtype == np.float32 and stack.shape == (2, n_rh, 6)
        assert_allclose(stack, expected[:, mi], rtol=1e-5, atol=1e-6)
    inv = make_inverse(hm, loose=0.0, depth=0.8, verbose=False)
    kernel = load_kernel(out / "kernel-dSPM.npy")
    ref = compute_kernel(inv, method="dSPM", lambda2=0.25, nave=4, verbose=False)
    assert kernel.fingerprint == hm.fingerprint and kernel.nave == 4
    assert_allclose(kernel.K, ref.K, rtol=1e-10, atol=1e-12 * np.abs(ref.K).max())
    assert_allclose(apply_kernel(kernel, data), apply_kernel(ref, data), rtol=1e-9, atol=1e-3)
    back = read_inverse_operator(out / "operator-inv.fif", verbose=False)
    assert back["nsource"] == hm.n_sources
    spec = svd_spectrum(inv, lambda2=0.25)
    assert summary["svd"]["condition_number"] == pytest.approx(spec["condition_number"])
    assert summary["svd"]["rank"] == spec["rank"]
    ev = explained_variance(inv, data, lambda2=0.25, nave=4, verbose=False)
    assert summary["explained_variance"]["MNE/dSPM/sLORETA"]["mean"] == pytest.approx(ev.mean())
    assert json.loads((out / "summary.json").read_text())["methods"] == ["dSPM", "MNE"]

    # the output is not replaced without --overwrite, and is with it
    rc, _, stderr = _run(capsys, *args)
    assert rc == 2 and "already exists" in stderr and "--overwrite" in stderr
    rc, stdout, stderr = _run(capsys, *args, "--overwrite", "--hemi", "lh")
    assert rc == 0, stderr
    assert "condition number" in stdout and "explained variance" in stdout
    assert np.load(out / "stack-MNE.npy").shape == (2, len(hm.rows("lh")), 6)


def test_cli_epochs_and_nave(template_hm, tmp_path, capsys):
    hm = template_hm
    data = _data(hm.info, 3, 5, seed=1)
    epochs = mne.EpochsArray(data, hm.info, tmin=0.0, baseline=None, verbose=False)
    fname = tmp_path / "x-epo.fif"
    epochs.save(fname, verbose=False)
    rc, stdout, stderr = _run(
        capsys, "--data", fname, "--out", tmp_path / "o", "--methods", "sLORETA", "--json",
        "--normalisation", "none",
    )  # fmt: skip
    assert rc == 0, stderr
    summary = json.loads(stdout)
    assert summary["nave"] == 1 and summary["n_samples"] == 3
    inv = make_inverse(hm, verbose=False)
    on_disk = mne.read_epochs(fname, verbose=False).get_data()  # saved as float32
    ref = apply_kernel(compute_kernel(inv, method="sLORETA", verbose=False), on_disk)
    stack = np.load(tmp_path / "o" / "stack-sLORETA.npy")
    assert_allclose(stack, ref[:, hm.rows("rh")], rtol=1e-5, atol=1e-6 * np.abs(ref).max())

    evokeds = [
        mne.EvokedArray(x, hm.info, nave=nave, comment=str(nave), verbose=False)
        for x, nave in zip(data[:2], (3, 6), strict=True)
    ]
    fname = tmp_path / "mixed-ave.fif"
    mne.write_evokeds(fname, evokeds, verbose=False)
    rc, _, stderr = _run(capsys, "--data", fname, "--out", tmp_path / "m")
    assert rc == 2 and "different nave" in stderr and "--nave" in stderr
    rc, stdout, stderr = _run(capsys, "--data", fname, "--out", tmp_path / "m", "--nave", "5",
                              "--json")  # fmt: skip
    assert rc == 0, stderr
    assert json.loads(stdout)["nave"] == 5


def test_cli_simulation(template_hm, tmp_path, capsys):
    from napari_meg_unet.simulate import simulate

    hm = template_hm
    sim = simulate(hm, design="multi", n_events=2, n_dipoles=1, hemi="lh", n_times=20, nave=3,
                   seed=0)  # fmt: skip
    sim.save(tmp_path / "sim")
    rc, stdout, stderr = _run(capsys, "--sim", tmp_path / "sim", "--out", tmp_path / "o",
                              "--methods", "MNE", "--json")  # fmt: skip
    assert rc == 0, stderr
    summary = json.loads(stdout)
    assert (summary["hemi"], summary["nave"]) == ("lh", 3)  # taken from the simulation
    assert summary["stack_shape"] == [2, len(hm.rows("lh")), 20]
    expected = inverse_stack(hm, np.asarray(sim.data), methods=("MNE",), nave=3, hemi="lh")
    assert_allclose(np.load(tmp_path / "o" / "stack-MNE.npy"), expected[:, 0], rtol=1e-5,
                    atol=1e-6)  # fmt: skip
    # a head model that does not match the simulation is refused
    rc, _, stderr = _run(capsys, "--sim", tmp_path / "sim", "--out", tmp_path / "o2",
                         "--modality", "meg+eeg")  # fmt: skip
    assert rc == 2 and f"made with head model {hm.fingerprint}" in stderr
    assert not (tmp_path / "o2").exists()


def test_cli_refuses_nan_naming_the_file_and_event(template_hm, tmp_path, capsys):
    from napari_meg_unet.simulate import simulate

    sim = simulate(template_hm, design="multi", n_events=3, n_dipoles=1, n_times=20, seed=1)
    sim.save(tmp_path / "sim")
    data = np.load(tmp_path / "sim" / "data.npy", mmap_mode="r+")
    data[2, 5, 3] = np.nan
    data.flush()
    del data
    rc, _, stderr = _run(capsys, "--sim", tmp_path / "sim", "--out", tmp_path / "o")
    assert rc == 2 and "data.npy" in stderr and "NaN or Inf values: event 2" in stderr
    assert not (tmp_path / "o").exists()


def test_cli_flat_channels_and_size_guard(template_hm, tmp_path, capsys, monkeypatch):
    from napari_meg_unet import _resources

    hm = template_hm
    data = _data(hm.info, 2, 5, seed=3)
    flat = [name for name in hm.info.ch_names if name not in hm.info["bads"]][:30]
    data[:, [hm.info.ch_names.index(name) for name in flat]] = 0.0
    evokeds = [mne.EvokedArray(x, hm.info, nave=2, verbose=False) for x in data]
    fname = tmp_path / "flat-ave.fif"
    mne.write_evokeds(fname, evokeds, verbose=False)
    out = tmp_path / "out"

    # too little memory: refused before any work (after the flat-channel warning)
    monkeypatch.setattr(_resources, "available_memory", lambda: 2**20)
    with pytest.warns(RuntimeWarning, match=r"30 channel\(s\) are flat") as record:
        rc, _, stderr = _run(capsys, "--data", fname, "--out", out)
    assert rc == 2 and "of memory" in stderr and "--force" in stderr, stderr
    assert not out.exists()
    message = next(str(w.message) for w in record if "are flat" in str(w.message))
    assert str(fname) in message and ", ".join(flat[:10]) in message
    assert "and 20 more" in message and flat[10] not in message

    with pytest.warns(RuntimeWarning, match="are flat"):
        rc, stdout, stderr = _run(capsys, "--data", fname, "--out", out, "--force", "--json",
                                  "--methods", "MNE")  # fmt: skip
    assert rc == 0, stderr
    assert json.loads(stdout)["stack_shape"] == [2, len(hm.rows("rh")), 5]


def test_cli_bad_arguments(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["inverse", "--data", "x-ave.fif", "--out", str(tmp_path), "--lambda2", "0"])
    assert "--lambda2" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["inverse", "--data", "x-ave.fif", "--out", str(tmp_path), "--methods", "LORETA"])
    assert "invalid choice" in capsys.readouterr().err
    rc, _, stderr = _run(capsys, "--data", tmp_path / "missing-ave.fif", "--out", tmp_path / "o")
    assert rc == 2 and "does not exist" in stderr
    (tmp_path / "data.txt").write_text("x")
    rc, _, stderr = _run(capsys, "--data", tmp_path / "data.txt", "--out", tmp_path / "o")
    assert rc == 2 and "-ave.fif" in stderr
