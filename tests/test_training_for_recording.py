"""``train --for-recording``: reading a recording, its noise covariance, its SNR, the whole run."""

from __future__ import annotations

import json
import warnings

import mne
import numpy as np
import pytest

from napari_meg_unet import training_for_recording as tfr
from napari_meg_unet.cli import main

RAW = "sample/MEG/sample_audvis_trunc_raw_sss.fif"
AVE = "sample/MEG/test-ave.fif.gz"


def _raw_with_events(shared_data, tmp_path, n_copies=1):
    """The SSS raw (``n_copies`` times end to end) with a trigger every 0.25 s from 0.25 s."""
    raw = mne.io.read_raw_fif(shared_data / RAW, preload=True, verbose=False)
    if n_copies > 1:
        raw = mne.concatenate_raws([raw.copy() for _ in range(n_copies)], verbose=False)
    stim = raw.ch_names.index("STI 014")  # MNE's default trigger channel
    raw._data[mne.pick_types(raw.info, meg=False, stim=True)] = 0
    sfreq = raw.info["sfreq"]
    for onset in np.arange(0.25, raw.times[-1], 0.25):
        raw._data[stim, int(onset * sfreq) : int(onset * sfreq) + 3] = 1
    fname = tmp_path / f"events{n_copies}_raw.fif"
    raw.save(fname, verbose=False, overwrite=True)
    return fname


# ----------------------------------------------------------------------------- reading
@pytest.mark.sample
def test_read_evoked_epochs_and_raw(shared_data, tmp_path):
    rec = tfr.read_recording(shared_data / AVE)
    assert rec.kind == "evoked" and rec.naves == [3, 6, 6, 6] and rec.epochs is None
    assert rec.conditions[0] == "Left Auditory" and np.isclose(rec.sfreq, 600.614990234375)
    assert tfr.common_nave(rec)[0] == 6
    one = tfr.read_recording(shared_data / AVE, condition="Left Auditory")
    assert one.naves == [3] and tfr.common_nave(one) == (3, "nave 3")
    with pytest.raises(ValueError, match="condition 'Nope'.*Left Auditory"):
        tfr.read_recording(shared_data / AVE, condition="Nope")
    raw = tfr.read_recording(shared_data / RAW)
    assert raw.kind == "raw" and raw.naves == [1] and "no events" in raw.notes[0]
    assert raw.evokeds[0].times[0] == 0.0
    fname = _raw_with_events(shared_data, tmp_path)
    ev = tfr.read_recording(fname)
    assert ev.kind == "raw" and ev.epochs is not None and "3 events" in ev.notes[0]
    assert len(ev.epochs) == 2  # the third runs past the end
    assert ev.evokeds[0].nave == len(ev.epochs) and ev.evokeds[0].times[0] < 0
    ev.epochs.save(tmp_path / "x-epo.fif", verbose=False)
    ep = tfr.read_recording(tmp_path / "x-epo.fif")
    assert ep.kind == "epochs" and len(ep.epochs) == len(ev.epochs)
    with pytest.raises(FileNotFoundError, match="nothere"):
        tfr.read_recording(tmp_path / "nothere_raw.fif")


@pytest.mark.sample
def test_read_bids_recording(shared_data, tmp_path):
    import mne_bids

    raw = mne.io.read_raw_fif(_raw_with_events(shared_data, tmp_path), verbose=False)
    bids_path = mne_bids.BIDSPath(subject="01", task="aud", datatype="meg", root=tmp_path / "bids")
    events = mne.find_events(raw, verbose=False)
    mne_bids.write_raw_bids(raw, bids_path, events=events, event_id={"tone": 1}, verbose=False)
    rec = tfr.read_recording(bids_path.fpath)
    assert rec.bids_path is not None and rec.kind == "raw" and rec.conditions == ["tone"]
    assert rec.epochs is not None and len(rec.epochs) == 2  # the third runs past the end


# ----------------------------------------------------------------------------- noise covariance
@pytest.mark.sample
def test_noise_covariance_choice(shared_data, tmp_path):
    rec = tfr.read_recording(shared_data / RAW)
    cov_file = shared_data / "sample" / "MEG" / "sample_audvis_trunc-cov.fif"
    given = tfr.choose_noise_cov(rec, noise_cov=cov_file)
    assert given.kind == "given" and given.cov == cov_file
    # the shared empty room is another site's MaxShield recording: named, refused, ad hoc
    erm = shared_data / "erm" / "test_move_anon_erm_raw.fif"
    choice = tfr.choose_noise_cov(rec, emptyroom=erm)
    assert choice.kind == "ad hoc" and choice.cov == "adhoc"
    assert "lacks 306 of the recording's MEG channels" in choice.reason
    assert "no single trials" in choice.reason
    # an empty room with the same channels, processing and date is used ...
    er = mne.io.read_raw_fif(shared_data / RAW, verbose=False)
    er.save(tmp_path / "same_raw.fif", verbose=False)
    choice = tfr.choose_noise_cov(rec, emptyroom=tmp_path / "same_raw.fif")
    assert choice.kind == "empty-room" and isinstance(choice.cov, mne.Covariance)
    # ... unless it is too old
    old = mne.io.read_raw_fif(shared_data / RAW, verbose=False)
    old.set_meas_date(rec.info["meas_date"].timestamp() - 90 * 86400)
    old.save(tmp_path / "old_raw.fif", verbose=False)
    choice = tfr.choose_noise_cov(rec, emptyroom=tmp_path / "old_raw.fif")
    assert choice.kind == "ad hoc" and "90 days" in choice.reason
    # epochs with a baseline give the baseline covariance
    short = tfr.choose_noise_cov(tfr.read_recording(_raw_with_events(shared_data, tmp_path)))
    assert short.kind == "ad hoc" and "120 samples for 306 channels" in short.reason
    ev = tfr.read_recording(_raw_with_events(shared_data, tmp_path, n_copies=4))
    choice = tfr.choose_noise_cov(ev)
    assert choice.kind == "baseline" and f"baseline of {len(ev.epochs)} epochs" in choice.reason
    assert choice.cov["nfree"] > 0


# ----------------------------------------------------------------------------- SNR
def test_measured_snr_is_the_simulations_snr(template_hm):
    """A dipole scaled to whitened SNR 2 in a 32-sample window, after 50 baseline samples."""
    hm = template_hm
    rng = np.random.default_rng(0)
    whitener, _ = mne.cov.compute_whitener(hm.noise_cov, hm.info, pca=True, verbose=False)
    n_base, n_win, nave, target = 200, 32, 4, 2.0
    wave = np.zeros(n_base + 64)
    wave[n_base + 10 : n_base + 10 + n_win] = np.sin(np.linspace(0, np.pi, n_win))
    signal = np.outer(hm.gain[:, 100], wave)
    rms = np.sqrt(((whitener @ signal[:, n_base + 10 : n_base + 10 + n_win]) ** 2).mean())
    signal *= target / (rms * np.sqrt(nave))
    cov = np.asarray(hm.noise_cov.data, float)
    colour = np.diag(np.sqrt(cov)) if cov.ndim == 1 else np.linalg.cholesky(cov)
    noise = colour @ rng.standard_normal(signal.shape) / np.sqrt(nave)
    evoked = mne.EvokedArray(signal + noise, hm.info, tmin=-n_base / hm.info["sfreq"], nave=nave,
                             comment="test", verbose=False)  # fmt: skip
    m = tfr.measure_snr(evoked, hm, n_times=n_win)
    assert m["baseline"] and abs(m["noise_mean_square"] - 1.0) < 0.1
    assert abs(m["peak_snr"] - target) < 0.25
    assert abs(m["peak_tmin"] - evoked.times[n_base + 10]) < 3 / hm.info["sfreq"]
    # an underestimated covariance (noise 10x the model) gives the same SNR via the baseline
    loud = mne.EvokedArray(signal * 10 + noise * 10, hm.info, tmin=evoked.times[0], nave=nave,
                           verbose=False)  # fmt: skip
    assert abs(tfr.measure_snr(loud, hm, n_times=n_win)["peak_snr"] - target) < 0.25
    pure = mne.EvokedArray(noise, hm.info, tmin=evoked.times[0], nave=nave, verbose=False)
    assert tfr.measure_snr(pure, hm, n_times=n_win)["peak_snr"] < 0.7


def test_training_snr_range():
    measured = [{"condition": "a", "peak_snr": 0.8}, {"condition": "b", "peak_snr": 2.0}]
    (lo, hi), why = tfr.training_snr_range(measured, measurable=True)
    assert (lo, hi) == (0.4, 4.0) and "a 0.80, b 2.00" in why
    rng, why = tfr.training_snr_range(measured, measurable=False)
    assert rng == tfr.DEFAULT_SNR_RANGE and "cannot be measured" in why
    rng, _ = tfr.training_snr_range([{"condition": "a", "peak_snr": 100.0}], measurable=True)
    assert rng == (30.0, 30.0)  # within the bounds


def test_dataset_and_train_share_the_recording_options(capsys):
    from napari_meg_unet.configs import RECORDING_MATCH_OPTIONS

    helps = {}
    for command in ("dataset", "train"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        helps[command] = capsys.readouterr().out
    for name in RECORDING_MATCH_OPTIONS:
        flag = "--no-off-grid" if name == "off_grid" else "--" + name.replace("_", "-")
        assert flag in helps["train"], flag
        assert ("--off-grid" if name == "off_grid" else flag) in helps["dataset"], flag


# ----------------------------------------------------------------------------- whole runs
TINY = ["--n-train", "32", "--n-val", "16", "--n-test", "16", "--epochs", "1", "--batch-size",
        "8", "--device", "cpu", "--no-progress", "--json"]  # fmt: skip


def _run(argv, capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        rc = main(["train", *argv, *TINY])
    captured = capsys.readouterr()
    assert rc == 0, captured.err[-2000:]
    return json.loads(captured.out)


def _sample_evoked_args(shared_data) -> list[str]:
    """``--for-recording`` of the sample evoked (Left Auditory) with its subject and files."""
    meg = shared_data / "sample" / "MEG"
    return ["--for-recording", str(meg / "test-ave.fif.gz"), "--condition", "Left Auditory",
            "--subjects-dir", str(shared_data / "sample" / "subjects"), "--subject", "sample",
            "--trans", str(meg / "sample_audvis_trunc-trans.fif"),
            "--noise-cov", str(meg / "sample_audvis_trunc-cov.fif")]  # fmt: skip


@pytest.mark.slow
@pytest.mark.sample
def test_train_for_the_evoked_with_the_sample_subject(shared_data, tmp_path, capsys):
    from napari_meg_unet.checkpoint import load_checkpoint

    meg = shared_data / "sample" / "MEG"
    out = tmp_path / "net"
    report = _run([*_sample_evoked_args(shared_data), "--out", str(out)], capsys)
    assert report["headmodel"]["kind"] == "subject" and report["headmodel"]["subject"] == "sample"
    assert report["headmodel"]["sources"].endswith("small-src.fif.gz")
    assert report["noise_covariance"]["kind"] == "given"
    assert report["simulation"]["off_grid"] and report["simulation"]["nave"] == 3
    lo, hi = report["simulation"]["snr"]
    (measured,) = report["measured_snr"]
    assert lo <= measured["peak_snr"] <= hi
    assert json.loads((out / "recording.json").read_text())["checkpoint"] == str(
        out / "network" / "best.pt"
    )
    assert not (out / "data").exists()  # removed unless --keep-data
    ckpt = load_checkpoint(out / "network" / "best.pt")
    meta = ckpt["dataset_meta"]
    info = mne.read_evokeds(meg / "test-ave.fif.gz", condition="Left Auditory", verbose=False).info
    assert np.isclose(meta["sfreq"], info["sfreq"]) and meta["nave"] == 3
    assert meta["ch_names"] == [ch for ch in info["ch_names"] if ch.startswith("MEG")
                                and ch != "MEG 2443"]  # fmt: skip
    assert meta["hemi"] == "both" and ckpt["model_name"] == "mesh"
    assert ckpt["headmodel_fingerprint"] == report["headmodel"]["fingerprint"]


@pytest.mark.slow
@pytest.mark.sample
@pytest.mark.parametrize("design", [[], ["--design", "multi", "--n-dipoles", "2", "3"]],
                         ids=["one", "several"])
def test_sensor_network_for_the_evoked_then_its_dipoles(shared_data, tmp_path, capsys, design):
    from napari_meg_unet.models.sensor_dipole import load_sensor_dipole_net

    meg = shared_data / "sample" / "MEG"
    out = tmp_path / "net"
    report = _run([*_sample_evoked_args(shared_data), *design, "--sensor-network",
                   "--sensor-blocks", "2", "--sensor-block", "16", "--out", str(out)],
                  capsys)  # fmt: skip
    net_file = out / "network" / "sensor-net.pt"
    assert report["checkpoint"] == str(net_file) and report["network"]["model"] == "sensor"
    assert report["network"]["best_block"] in (1, 2) and not (out / "data").exists()
    net = load_sensor_dipole_net(net_file)
    assert net.n_sources == (3 if design else 1)
    evoked = mne.read_evokeds(meg / "test-ave.fif.gz", condition="Left Auditory", verbose=False)
    assert net.trained_on["nave"] == 3 and np.isclose(net.trained_on["sfreq"],
                                                       evoked.info["sfreq"])  # fmt: skip
    assert net.ch_names == [ch for ch in evoked.ch_names if ch.startswith("MEG")
                            and ch != "MEG 2443"]  # fmt: skip
    pred = tmp_path / "dipoles"
    argv = ["predict", "--checkpoint", str(net_file), "--data", str(meg / "test-ave.fif.gz"),
            "--condition", "Left Auditory", "--out", str(pred), "--json", "--no-progress"]
    assert main(argv) == 2  # no head model: named
    assert "needs --headmodel" in capsys.readouterr().err
    assert main([*argv, "--headmodel", str(out / "headmodel")]) == 0
    meta = json.loads(capsys.readouterr().out)
    (cond,) = meta["conditions"]
    dip = mne.read_dipole(pred / cond["file"], verbose=False)
    n = net.trained_on["n_times"]
    n_windows = (len(evoked.times) - n) // (n // 2) + 1
    assert cond["n_windows"] == n_windows and cond["n_dipoles"] == len(dip)
    assert meta["network"]["n_sources"] == net.n_sources
    assert n_windows <= len(dip) <= net.n_sources * n_windows  # at least one dipole a window
    assert evoked.times[0] <= dip.times.min() and dip.times.max() <= evoked.times[-1]
    assert np.isfinite(dip.pos).all() and (np.abs(dip.pos) < 0.15).all()
    # the dipoles' time courses (A·m) along the cortex's normals, over the whole evoked
    assert cond["time_courses"] == [f"{cond['file'][:-4]}-sources-{h}.stc" for h in ("lh", "rh")]
    stc = mne.read_source_estimate(pred / cond["time_courses"][0])
    assert stc.data.shape == (cond["n_sources_with_time_courses"], len(evoked.times))
    assert stc.tmin == pytest.approx(evoked.times[0], abs=1e-6)  # .stc: float32 times
    assert 0 < np.abs(stc.data).max() < 1e-4  # A·m (nAm would read 1e9 times larger)


@pytest.mark.slow
@pytest.mark.sample
def test_train_for_the_sss_raw_on_the_template(shared_data, tmp_path, capsys):
    erm = shared_data / "erm" / "test_move_anon_erm_raw.fif"
    out = tmp_path / "net"
    report = _run(["--for-recording", str(shared_data / RAW), "--empty-room", str(erm),
                   "--no-off-grid", "--out", str(out)], capsys)  # fmt: skip
    assert report["headmodel"]["kind"] == "template"
    assert report["headmodel"]["coregistration"]["n_points"] == 146
    assert report["noise_covariance"]["kind"] == "ad hoc"
    assert "lacks 306" in report["noise_covariance"]["reason"]
    assert "SSS rank 69" in report["noise_rank"] and report["noise_rank_warning"]
    assert tuple(report["simulation"]["snr"]) == tfr.DEFAULT_SNR_RANGE
    assert np.isclose(report["simulation"]["sfreq"], 300.307, atol=1e-3)
    # reuse the saved head model for a second network
    again = _run(["--for-recording", str(shared_data / RAW), "--headmodel", str(out / "headmodel"),
                  "--no-off-grid", "--out", str(tmp_path / "again")], capsys)  # fmt: skip
    assert again["headmodel"]["kind"] == "reused"
    assert again["headmodel"]["fingerprint"] == report["headmodel"]["fingerprint"]


@pytest.mark.sample
def test_train_for_recording_bad_input(shared_data, tmp_path, capsys):
    # an example set needs its validation set (without --train: the stream, tested elsewhere)
    assert main(["train", "--train", str(tmp_path), "--out", str(tmp_path / "x"),
                 "--no-progress"]) == 2  # fmt: skip
    assert "--val DIR is required with --train" in capsys.readouterr().err
    assert main(["train", "--for-recording", str(shared_data / RAW), "--sfreq", "250",
                 "--out", str(tmp_path / "y"), "--no-progress"]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "sampled at 300.307 Hz" in err
