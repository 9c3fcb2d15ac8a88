"""The ``napari-meg-unet inverse`` subcommand."""

from __future__ import annotations

import json

import mne
import numpy as np
import pytest
from mne.minimum_norm import apply_inverse, read_inverse_operator
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
        mne.EvokedArray(x, hm.info, tmin=-0.01, nave=4, comment=f"c {i}", verbose=False)
        for i, x in enumerate(data)
    ]
    fname = tmp_path / "conds-ave.fif"
    mne.write_evokeds(fname, evokeds, verbose=False)
    out = tmp_path / "out"
    args = ["--data", fname, "--out", out, "--methods", "dSPM", "MNE", "--lambda2", "1/4"]
    rc, stdout, stderr = _run(capsys, *args, "--json", "--npy")
    assert rc == 0, stderr
    summary = json.loads(stdout)
    assert summary["methods"] == ["dSPM", "MNE"]
    assert summary["nave"] == 4 and summary["lambda2"] == 0.25 and summary["hemi"] == "rh"
    assert [c["segment"]["name"] for c in summary["conditions"]] == ["c 0", "c 1"]
    inv = make_inverse(hm, loose=0.0, depth=0.8, verbose=False)
    # one source estimate per condition and method, as MNE's apply_inverse makes it
    for cond, evoked in zip(("c_0", "c_1"), mne.read_evokeds(fname, verbose=False), strict=True):
        for method in ("dSPM", "MNE"):
            stc = mne.read_source_estimate(out / "stc" / f"{cond}-{method}")
            ref = apply_inverse(evoked, inv, 0.25, method, verbose=False)
            assert stc.tmin == pytest.approx(ref.tmin, abs=1e-6)
            assert stc.tstep == pytest.approx(ref.tstep, rel=1e-6)
            assert_allclose(stc.data, ref.data, rtol=1e-5, atol=1e-6 * np.abs(ref.data).max())
    n_rh = len(hm.rows("rh"))
    assert summary["stack_shape"] == [2, n_rh, 6]
    expected = inverse_stack(hm, data, methods=("dSPM", "MNE"), lambda2=0.25, nave=4)
    for mi, method in enumerate(("dSPM", "MNE")):
        stack = np.load(out / f"stack-{method}.npy")
        assert stack.dtype == np.float32 and stack.shape == (2, n_rh, 6)
        assert_allclose(stack, expected[:, mi], rtol=1e-5, atol=1e-6)
    kernel = load_kernel(out / "kernel-dSPM.npy")
    ref = compute_kernel(inv, method="dSPM", lambda2=0.25, nave=4, verbose=False)
    assert kernel.fingerprint == hm.fingerprint and kernel.nave == 4
    assert_allclose(kernel.K, ref.K, rtol=1e-10, atol=1e-12 * np.abs(ref.K).max())
    assert_allclose(apply_kernel(kernel, data), apply_kernel(ref, data), rtol=1e-9, atol=1e-3)
    back = read_inverse_operator(out / "operator-inv.fif", verbose=False)
    assert back["nsource"] == hm.n_sources
    spec = svd_spectrum(inv, lambda2=0.25)
    assert summary["svd"]["condition_number"] == pytest.approx(spec["condition_number"])
    assert summary["svd"]["rank"] == spec["rank"] and summary["rank"]["whitener"] == 306
    ev = explained_variance(inv, data, lambda2=0.25, nave=4, verbose=False)
    assert summary["explained_variance"]["MNE/dSPM/sLORETA"]["mean"] == pytest.approx(ev.mean())
    assert json.loads((out / "summary.json").read_text())["methods"] == ["dSPM", "MNE"]

    # the output is not replaced without --overwrite, and is with it
    rc, _, stderr = _run(capsys, *args)
    assert rc == 2 and "already exists" in stderr and "--overwrite" in stderr
    rc, stdout, stderr = _run(capsys, *args, "--overwrite", "--hemi", "lh", "--npy")
    assert rc == 0, stderr
    assert "condition number" in stdout and "explained variance" in stdout
    assert "c 0: nave 4, 6 samples" in stdout and "whitener rank 306" in stdout
    assert np.load(out / "stack-MNE.npy").shape == (2, len(hm.rows("lh")), 6)
    # without --npy: source estimates only
    rc, _, stderr = _run(capsys, *args, "--overwrite", "--condition", "c 1")
    assert rc == 0, stderr
    assert sorted(p.name for p in (out / "stc").iterdir()) == [
        "c_1-MNE-lh.stc", "c_1-MNE-rh.stc", "c_1-dSPM-lh.stc", "c_1-dSPM-rh.stc"]  # fmt: skip
    assert not (out / "stack-MNE.npy").exists()


def test_cli_epochs_and_nave(template_hm, tmp_path, capsys):
    hm = template_hm
    data = _data(hm.info, 3, 5, seed=1)
    epochs = mne.EpochsArray(data, hm.info, tmin=0.0, baseline=None, verbose=False)
    fname = tmp_path / "x-epo.fif"
    epochs.save(fname, verbose=False)
    rc, stdout, stderr = _run(
        capsys, "--data", fname, "--out", tmp_path / "o", "--methods", "sLORETA", "--json",
        "--normalisation", "none", "--each-epoch", "--npy",
    )  # fmt: skip
    assert rc == 0, stderr
    summary = json.loads(stdout)
    assert summary["nave"] == 1 and summary["n_samples"] == 3
    inv = make_inverse(hm, verbose=False)
    on_disk = mne.read_epochs(fname, verbose=False).get_data()  # saved as float32
    ref = apply_kernel(compute_kernel(inv, method="sLORETA", verbose=False), on_disk)
    stack = np.load(tmp_path / "o" / "stack-sLORETA.npy")
    assert_allclose(stack, ref[:, hm.rows("rh")], rtol=1e-5, atol=1e-6 * np.abs(ref).max())
    assert (tmp_path / "o" / "stc" / "epochs-sLORETA-2-lh.stc").is_file()
    # by default the epochs are averaged per condition, with nave = the number of epochs
    rc, stdout, stderr = _run(capsys, "--data", fname, "--out", tmp_path / "a", "--json",
                              "--methods", "dSPM")  # fmt: skip
    assert rc == 0, stderr
    assert json.loads(stdout)["nave"] == 3
    stc = mne.read_source_estimate(tmp_path / "a" / "stc" / "1-dSPM")
    ref = apply_inverse(mne.read_epochs(fname, verbose=False).average(), inv, 1 / 9, "dSPM",
                        verbose=False)  # fmt: skip
    assert_allclose(stc.data, ref.data, rtol=1e-5, atol=1e-6 * np.abs(ref.data).max())

    # conditions with different nave: one output per condition, each with its own nave
    evokeds = [
        mne.EvokedArray(x, hm.info, nave=nave, comment=f"n{nave}", verbose=False)
        for x, nave in zip(data[:2], (3, 6), strict=True)
    ]
    fname = tmp_path / "mixed-ave.fif"
    mne.write_evokeds(fname, evokeds, verbose=False)
    rc, stdout, stderr = _run(capsys, "--data", fname, "--out", tmp_path / "m", "--json",
                              "--methods", "dSPM")  # fmt: skip
    assert rc == 0, stderr
    summary = json.loads(stdout)
    assert summary["nave"] == [3, 6] and [c["nave"] for c in summary["conditions"]] == [3, 6]
    for evoked in mne.read_evokeds(fname, verbose=False):
        stc = mne.read_source_estimate(tmp_path / "m" / "stc" / f"{evoked.comment}-dSPM")
        ref = apply_inverse(evoked, inv, 1 / 9, "dSPM", verbose=False)  # its own nave
        assert_allclose(stc.data, ref.data, rtol=1e-5, atol=1e-6 * np.abs(ref.data).max())
    assert (tmp_path / "m" / "kernel-dSPM-nave3.npy").is_file()
    assert load_kernel(tmp_path / "m" / "kernel-dSPM-nave6.npy").nave == 6
    rc, stdout, stderr = _run(capsys, "--data", fname, "--out", tmp_path / "m", "--nave", "5",
                              "--json", "--overwrite")  # fmt: skip
    assert rc == 0, stderr
    assert json.loads(stdout)["nave"] == 5


def test_cli_sss_raw_with_a_non_sss_covariance_states_the_rank(shared_data, tmp_path, capsys):
    meg, subj = shared_data / "sample" / "MEG", shared_data / "sample" / "subjects"
    hm_dir = tmp_path / "hm"
    assert main(["headmodel", "--info", str(meg / "test-ave.fif.gz"), "--trans",
                 str(meg / "sample_audvis_trunc-trans.fif"), "--bem",
                 str(subj / "sample/bem/sample-320-bem-sol.fif"), "--src",
                 str(subj / "sample/bem/small-src.fif.gz"), "--subjects-dir", str(subj),
                 "--subject", "sample", "--cov", str(meg / "sample_audvis_trunc-cov.fif"),
                 "--out", str(hm_dir), "--no-progress"]) == 0  # fmt: skip
    capsys.readouterr()
    rc, stdout, stderr = _run(capsys, "--data", meg / "sample_audvis_trunc_raw_sss.fif",
                              "--headmodel", hm_dir, "--tmin", "0.1", "--tmax", "0.9",
                              "--methods", "dSPM", "--out", tmp_path / "o")  # fmt: skip
    assert rc == 0, stderr
    assert "noise covariance: whitener rank 302" in stdout
    assert "Maxwell-filtered (SSS)" in stdout and "not SSS-processed" in stdout
    assert "raw: nave 1, 241 samples at 300.307 Hz from 0.100 s [cropped to 0.1..0.9 s]" in stdout
    stc = mne.read_source_estimate(tmp_path / "o" / "stc" / "raw-dSPM")
    assert stc.tmin == pytest.approx(0.1, abs=2e-3) and stc.data.shape[1] == 241


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
                                  "--methods", "MNE", "--npy")  # fmt: skip
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
