"""Tests of the vectorised simulation (designs, SNR, noise, off-grid, I/O, CLI)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import mne
import numpy as np
import pytest
from scipy.sparse import csgraph
from scipy.spatial import cKDTree

from napari_meg_unet.progress import Progress
from napari_meg_unet.simulate import (
    SOURCE_COLUMNS,
    THESIS_SFREQ,
    iter_simulate,
    load_simulation,
    simulate,
    simulation_fingerprint,
)
from napari_meg_unet.simulate import core as simulate_mod


def _whitener(hm, cov=None):
    """MNE's PCA whitener (rank x n_channels) of ``cov`` (default hm.noise_cov)."""
    cov = (hm.noise_cov if cov is None else cov).copy()
    cov["data"] = np.asarray(cov["data"], dtype=np.float64)  # FIF data are big-endian
    W, ch_names, rank = mne.cov.compute_whitener(
        cov, hm.info, pca=True, return_rank=True, verbose=False
    )
    assert ch_names == hm.ch_names
    return W, rank


def _measured_snr(sim, i, W, rank):
    onset, stop = sim.window(i)
    white = W @ sim.signal(i)[:, onset:stop]
    nave = sim.meta["params"]["nave"]
    return np.sqrt((white**2).sum(axis=0).mean() / rank) * np.sqrt(nave)


def _with(hm, **attrs):
    """Shallow copy of a head model with some (cached) attributes replaced."""
    out = copy.copy(hm)
    out.__dict__.pop("fingerprint", None)
    out.__dict__.update(attrs)
    return out


@pytest.fixture(scope="module")
def dense(template_hm):
    from napari_meg_unet.headmodel import make_dense_sources

    # the spacing an off-grid template sweep uses by default
    return make_dense_sources(template_hm, spacing=simulate_mod.SWEEP_DENSE_SPACING)


# --------------------------------------------------------------------------- designs
def test_sweep_covers_every_row_exactly_k_times(template_hm):
    hm = template_hm
    sim = simulate(hm, hemi="rh", n_repeats=2, noise=None, seed=3)
    rows = hm.rows("rh")
    assert len(sim) == 2 * len(rows)
    assert np.array_equal(np.diff(sim.event_indptr), np.ones(len(sim)))
    counts = np.bincount(sim.sources["row"], minlength=hm.n_sources)
    assert (counts[rows] == 2).all()
    assert counts.sum() == 2 * len(rows)  # nothing from the other hemisphere
    order = sim.sources["row"]
    assert not np.array_equal(order, np.sort(order))
    assert not np.array_equal(order, np.tile(rows, 2))
    # a different seed shuffles differently but covers the same rows
    other = simulate(hm, hemi="rh", n_repeats=2, noise=None, seed=4)
    assert not np.array_equal(other.sources["row"], order)
    assert np.array_equal(np.sort(other.sources["row"]), np.sort(order))
    # on-grid dipoles sit exactly at their rows with the row normals
    assert np.array_equal(sim.sources["position"], hm.positions[order])
    assert np.array_equal(sim.sources["normal"], hm.normals[order])
    assert (sim.sources["dense_vertex"] == -1).all()
    assert (sim.sources["grid_distance"] == 0).all()
    assert (sim.sources["hemi"] == 1).all()
    assert np.array_equal(sim.sources["vertex"], np.concatenate(hm.vertno)[order])
    assert np.array_equal(sim.rows, rows)
    # noise-free: the data are the float32 forward fields times the time courses
    i = 7
    expected = hm.gain[:, [order[i]]] @ sim.timecourses[[i]]
    np.testing.assert_allclose(sim.data[i], expected, rtol=1e-6, atol=1e-6 * abs(expected).max())
    assert sim.data.dtype == np.float32


def test_sweep_both_hemispheres(template_hm):
    sim = simulate(template_hm, hemi="both", noise=None)
    counts = np.bincount(sim.sources["row"], minlength=template_hm.n_sources)
    assert (counts == 1).all()
    assert set(np.unique(sim.sources["hemi"])) == {0, 1}


def test_multi_distinct_rows_and_min_separation(template_hm):
    hm = template_hm
    sim = simulate(
        hm, design="multi", hemi="lh", n_events=60, n_dipoles=(2, 5),
        min_separation_mm=40.0, noise=None, timecourse="realistic", seed=1,
    )  # fmt: skip
    counts = np.diff(sim.event_indptr)
    assert len(sim) == 60 and counts.min() >= 2 and counts.max() <= 5
    assert len(np.unique(counts)) > 1
    lh = set(hm.rows("lh").tolist())
    min_dist = np.inf
    for i in range(len(sim)):
        idx = sim.event_sources(i)
        rows = sim.sources["row"][idx]
        assert len(np.unique(rows)) == len(rows)
        assert set(rows.tolist()) <= lh
        assert (sim.sources["event"][idx] == i).all()
        pos = hm.positions[rows]
        d = np.linalg.norm(pos[:, None] - pos[None], axis=-1)[np.triu_indices(len(rows), 1)]
        min_dist = min(min_dist, d.min())
        # each dipole has its own time course
        assert len(np.unique(sim.sources["frequency"][idx])) == len(idx)
        assert np.array_equal(sim.active_rows(i), np.sort(rows))
    assert min_dist >= 0.040
    # a fixed count
    sim = simulate(hm, design="multi", n_events=5, n_dipoles=3, noise=None)
    assert (np.diff(sim.event_indptr) == 3).all()


def test_signal_equals_mne_apply_forward(template_hm):
    """The noise-free data of on-grid dipoles and patches equal MNE's forward projection."""
    hm = template_hm
    for kwargs in (dict(design="multi", n_events=3), dict(design="extended", n_events=3)):
        sim = simulate(hm, hemi="both", noise=None, timecourse="realistic", seed=6, **kwargs)
        for i in range(len(sim)):
            stc = mne.SourceEstimate(
                sim.truth(i), vertices=hm.vertno, tmin=0.0, tstep=1.0 / sim.sfreq
            )
            evoked = mne.apply_forward(hm.fwd_fixed, stc, sim.info, verbose=False)
            assert evoked.ch_names == sim.info["ch_names"]
            expected = evoked.data
            np.testing.assert_allclose(sim.signal(i), expected, rtol=1e-10, atol=0)
            np.testing.assert_allclose(sim.data[i], expected, rtol=1e-6, atol=0)


def test_multi_impossible_requests(template_hm):
    with pytest.raises(ValueError, match="min_separation_mm"):
        simulate(template_hm, design="multi", n_events=3, n_dipoles=4, min_separation_mm=200.0)
    with pytest.raises(ValueError, match="n_dipoles=700"):
        simulate(template_hm, design="multi", n_events=3, n_dipoles=700)
    with pytest.raises(ValueError, match="n_events is required"):
        simulate(template_hm, design="multi")


def test_extended_patches_connected_within_extent(template_hm):
    hm = template_hm
    extent = 20.0
    sim = simulate(hm, design="extended", hemi="rh", n_events=40, extent_mm=extent, seed=2)
    rows_rh = hm.rows("rh")
    local = np.full(hm.n_sources, -1)
    local[rows_rh] = np.arange(len(rows_rh))
    adjacency = hm.adjacency("rh")
    sizes = []
    for i in range(len(sim)):
        (s,) = sim.event_sources(i)
        seed_row = sim.sources["row"][s]
        members = sim.member_rows[sim.member_indptr[s] : sim.member_indptr[s + 1]]
        weights = sim.member_weights[sim.member_indptr[s] : sim.member_indptr[s + 1]]
        sizes.append(len(members))
        assert seed_row in members
        assert np.isin(members, rows_rh).all()
        dist = np.linalg.norm(hm.positions[members] - hm.positions[seed_row], axis=1)
        assert dist.max() <= extent / 1000.0
        sub = adjacency[local[members]][:, local[members]]
        n_comp, _ = csgraph.connected_components(sub, directed=False)
        assert n_comp == 1
        # truth: every member row carries weight x time course, nothing else
        truth = sim.truth(i)
        assert np.array_equal(np.flatnonzero(np.abs(truth).sum(axis=1)), np.sort(members))
        np.testing.assert_allclose(
            truth[members], weights[:, None] * sim.timecourses[s][None, :], rtol=1e-12
        )
        # the field is the weighted sum of the members' gain columns
        field = hm.gain[:, members] @ weights
        np.testing.assert_allclose(sim.fields[sim.sources["field"][s]], field, rtol=1e-12)
        # no vertex within the extent that touches the patch was left out
        outside = np.setdiff1d(rows_rh, members)
        near = outside[
            np.linalg.norm(hm.positions[outside] - hm.positions[seed_row], axis=1)
            <= extent / 1000.0
        ]
        touching = adjacency[local[near]][:, local[members]].sum(axis=1)
        assert (np.asarray(touching) == 0).all()
    assert max(sizes) > 1  # 20 mm patches span several ico3 vertices
    # seeds sweep the rows when n_events is None
    sim = simulate(hm, design="extended", hemi="lh", extent_mm=0.0, noise=None)
    assert np.array_equal(np.sort(sim.sources["row"]), hm.rows("lh"))
    assert (np.diff(sim.member_indptr) == 1).all()


# --------------------------------------------------------------------------- off-grid
@pytest.mark.slow
def test_off_grid_sweep(template_hm, dense):
    hm = template_hm
    k = 2
    sim = simulate(hm, off_grid=True, n_repeats=k, hemi="rh", noise=None, seed=5)
    assert sim.meta["dense_spacing"] == dense.spacing
    rows = hm.rows("rh")
    counts = np.bincount(sim.sources["row"], minlength=hm.n_sources)
    assert (counts[rows] == k).all() and counts.sum() == k * len(rows)
    d = sim.sources["dense_vertex"]
    assert (d >= 0).all()
    pos = sim.sources["position"]
    assert np.array_equal(pos, np.asarray(dense.positions)[d])
    assert np.array_equal(sim.sources["normal"], np.asarray(dense.normals)[d])
    hemi = sim.sources["hemi"]
    assert (hemi == 1).all() and np.array_equal(np.asarray(dense.hemi)[d], hemi)
    assert np.isin(sim.sources["vertex"], dense.vertno[1]).all()
    assert not np.isin(sim.sources["vertex"], template_hm.vertno[1]).any()
    # the true positions are not coarse positions
    coarse_dist, _ = cKDTree(hm.positions).query(pos)
    assert coarse_dist.min() > 1e-4
    # the recorded row is the nearest coarse row of the hemisphere
    dist, nearest = cKDTree(hm.positions[rows]).query(pos)
    assert np.array_equal(sim.sources["row"], rows[nearest])
    np.testing.assert_allclose(sim.sources["grid_distance"], dist, rtol=1e-12)
    # the field is the dense gain column; the truth sits at the nearest row
    i = 3
    (s,) = sim.event_sources(i)
    np.testing.assert_array_equal(sim.fields[sim.sources["field"][s]], dense.gain[:, d[s]])
    truth = sim.truth(i)
    assert np.array_equal(np.flatnonzero(np.abs(truth).sum(axis=1)), [sim.sources["row"][s]])
    # random dense choices: repeats of one coarse row do not all use the same vertex
    first = {}
    varied = False
    for row, vert in zip(sim.sources["row"], d, strict=True):
        varied |= first.setdefault(row, vert) != vert
    assert varied


def test_off_grid_multi(template_hm, dense):
    hm = template_hm
    sim = simulate(
        hm, design="multi", off_grid=True, n_events=20, n_dipoles=(2, 3),
        min_separation_mm=30.0, hemi="lh", noise=None, dense_spacing=dense.spacing,
    )  # fmt: skip
    rows = hm.rows("lh")
    _, nearest = cKDTree(hm.positions[rows]).query(sim.sources["position"])
    assert np.array_equal(sim.sources["row"], rows[nearest])
    for i in range(len(sim)):
        r = sim.sources["row"][sim.event_sources(i)]
        assert len(np.unique(r)) == len(r)
    with pytest.raises(ValueError, match="off_grid"):
        simulate(hm, design="extended", off_grid=True, n_events=2)


def test_off_grid_sweep_needs_every_row_covered(template_hm, dense, monkeypatch):
    """Dense sources leaving a row without a nearest dense vertex cannot be swept."""
    from napari_meg_unet import headmodel

    row = int(template_hm.rows("rh")[10])
    keep = np.asarray(dense.nearest_row) != row
    sparse_dense = copy.copy(dense)
    for name in ("positions", "normals", "hemi", "nearest_row", "grid_distance"):
        setattr(sparse_dense, name, np.asarray(getattr(dense, name))[keep])
    sparse_dense.gain = np.asarray(dense.gain)[:, keep]

    def fake_dense(hm, *, spacing=None, verbose=None):
        yield Progress("dense sources", 1, 1)
        return sparse_dense

    monkeypatch.setattr(headmodel, "iter_make_dense_sources", fake_dense)
    with pytest.raises(ValueError, match=rf"1 row\(s\) of hemi='rh' \(first \[{row}\]\)"):
        simulate(template_hm, off_grid=True, noise=None)
    # the multi design only draws among the rows that have dense vertices
    sim = simulate(
        template_hm, design="multi", off_grid=True, n_events=200, n_dipoles=3, noise=None
    )
    assert row not in sim.sources["row"]


# --------------------------------------------------------------------------- SNR / noise
@pytest.mark.parametrize(
    "kwargs",
    [
        dict(),
        dict(snr=3.5, nave=4, noise=None),
        dict(design="multi", n_events=30, snr=(0.5, 8.0), timecourse="realistic", nave=2),
        dict(design="extended", n_events=10, extent_mm=15.0, snr=0.2, noise="white"),
    ],
)
def test_snr_is_exact(template_hm, kwargs):
    hm = template_hm
    sim = simulate(hm, seed=11, **kwargs)
    if kwargs.get("noise") == "white":
        sigma2 = _white_variance(hm)
        cov = mne.Covariance(np.diag(sigma2), hm.ch_names, [], [], 1)
        W, rank = _whitener(hm, cov)
    else:
        W, rank = _whitener(hm)
    assert sim.meta["noise_rank"] == rank
    measured = np.array([_measured_snr(sim, i, W, rank) for i in range(len(sim))])
    event_snr = sim.sources["snr"][sim.event_indptr[:-1]]
    np.testing.assert_allclose(measured, event_snr, rtol=1e-10)
    snr = kwargs.get("snr", 1.0)
    if isinstance(snr, tuple):
        assert (event_snr >= snr[0]).all() and (event_snr <= snr[1]).all()
        assert len(np.unique(event_snr)) == len(sim)
    else:
        assert (event_snr == snr).all()
    # every source of an event records the event's SNR
    assert np.array_equal(sim.sources["snr"], event_snr[sim.sources["event"]])
    # amplitudes are the time-course peaks
    np.testing.assert_allclose(
        np.abs(sim.timecourses).max(axis=1), sim.sources["amplitude"], rtol=1e-12
    )


def _white_variance(hm):
    var = np.asarray(hm.noise_cov.data, float)
    var = var if var.ndim == 1 else np.diag(var)
    types = np.array(hm.info.get_channel_types())
    out = np.empty(len(types))
    for kind in np.unique(types):
        out[types == kind] = var[types == kind].mean()
    return out


def _noise(sim):
    """(n_samples, n_channels) noise of all events: data minus the noise-free signal."""
    noise = np.stack([np.asarray(sim.data[i], float) - sim.signal(i) for i in range(len(sim))])
    return noise.transpose(0, 2, 1).reshape(-1, noise.shape[1])


def _check_identity(cov_white, n_samples, scale=1.0):
    """Sample covariance of whitened noise ~ scale * I within 6 standard errors."""
    r = len(cov_white)
    diag_tol = 6 * np.sqrt(2.0 / n_samples) * scale
    off_tol = 6 * np.sqrt(1.0 / n_samples) * scale
    np.testing.assert_array_less(np.abs(np.diag(cov_white) - scale), diag_tol)
    off = cov_white[~np.eye(r, dtype=bool)]
    assert np.abs(off).max() < off_tol
    # and the average over many entries is much tighter than any single one
    assert abs(np.diag(cov_white).mean() - scale) < 6 * np.sqrt(2.0 / (n_samples * r)) * scale


@pytest.mark.parametrize("nave", [1, 4])
def test_noise_covariance_matches_model(template_hm, nave):
    hm = template_hm
    sim = simulate(hm, noise="cov", nave=nave, snr=2.0, seed=7)
    noise = _noise(sim)
    n = len(noise)
    W, rank = _whitener(hm)
    white = noise @ W.T
    _check_identity(white.T @ white / n, n, scale=1.0 / nave)
    # sensor space: the ad-hoc covariance is diagonal, so compare per channel
    var = np.asarray(hm.noise_cov.data, float)
    assert var.ndim == 1
    ratio = (noise**2).mean(axis=0) * nave / var
    np.testing.assert_array_less(np.abs(ratio - 1), 6 * np.sqrt(2.0 / n))


def test_noise_dense_rank_deficient_covariance(template_hm):
    """A full (non-diagonal) covariance with an SSP projector: MNE's colourer path."""
    hm = template_hm
    n_ch = len(hm.ch_names)
    rng = np.random.default_rng(0)
    mixing = rng.standard_normal((n_ch, n_ch)) * 0.1 + np.eye(n_ch)
    scale = np.sqrt(_white_variance(hm))  # per-type noise level of the ad-hoc covariance
    data = (scale[:, None] * mixing) @ (scale[:, None] * mixing).T
    cov = mne.Covariance(data, hm.ch_names, [], [], 1000)
    info = hm.info.copy()
    mag = mne.pick_types(info, meg="mag")
    vec = np.zeros((1, n_ch))
    vec[0, mag] = 1.0 / np.sqrt(len(mag))
    proj = mne.Projection(
        data=dict(nrow=1, ncol=n_ch, row_names=None, col_names=hm.ch_names, data=vec),
        desc="mean-mag",
        kind=1,
        active=False,
    )
    with info._unlock():
        info["projs"] = [proj]
    hm2 = _with(hm, noise_cov=cov, info=info)
    sim = simulate(hm2, noise="cov", snr=1.5, seed=9)
    W, rank = _whitener(hm2)
    assert rank == n_ch - 1
    measured = np.array([_measured_snr(sim, i, W, rank) for i in range(len(sim))])
    np.testing.assert_allclose(measured, 1.5, rtol=1e-10)
    noise = _noise(sim)
    n = len(noise)
    white = noise @ W.T
    _check_identity(white.T @ white / n, n)
    # the noise lies in the projector's range: nothing along the projected-out vector
    along = noise @ vec[0]
    assert np.abs(along).max() < 1e-6 * np.abs(noise @ np.roll(vec[0], 1)).max()


def test_white_noise_per_channel_type(template_hm):
    hm = template_hm
    sim = simulate(hm, noise="white", nave=2, snr=1e-3, seed=4)
    noise = _noise(sim)
    n = len(noise)
    var = noise.var(axis=0) * 2
    expected = _white_variance(hm)
    np.testing.assert_array_less(np.abs(var / expected - 1), 6 * np.sqrt(2.0 / n))
    # i.i.d. across channels: no correlation between neighbouring channels
    corr = (noise[:, :-1] * noise[:, 1:]).mean(axis=0) / np.sqrt(
        noise[:, :-1].var(axis=0) * noise[:, 1:].var(axis=0)
    )
    assert np.abs(corr).max() < 6 / np.sqrt(n)


# --------------------------------------------------------------------------- time courses
def test_thesis_timecourse(template_hm):
    sim = simulate(template_hm, noise=None)
    assert sim.sfreq == THESIS_SFREQ and sim.data.shape[2] == 32
    assert (sim.sources["onset"] == 6).all() and (sim.sources["duration"] == 20).all()
    assert sim.window(0) == (6, 26)
    t = np.arange(20) / THESIS_SFREQ
    wave = np.sin(2 * np.pi * 10.0 * t)
    wave /= np.abs(wave).max()
    unit = sim.timecourses / sim.sources["amplitude"][:, None]
    np.testing.assert_allclose(unit[:, 6:26], np.broadcast_to(wave, (len(sim), 20)), atol=1e-14)
    assert (unit[:, :6] == 0).all() and (unit[:, 26:] == 0).all()
    np.testing.assert_allclose(sim.times, np.arange(32) / THESIS_SFREQ)
    assert sim.info["sfreq"] == THESIS_SFREQ


def test_realistic_timecourse(template_hm):
    sim = simulate(
        template_hm, design="multi", n_events=50, timecourse="realistic", noise=None, seed=8
    )
    assert sim.sfreq == 250.0 and sim.data.shape[2] == 32
    onset, duration = sim.sources["onset"], sim.sources["duration"]
    assert len(np.unique(onset)) > 3 and len(np.unique(duration)) > 3
    assert (onset >= 0).all() and (onset + duration <= 32).all()
    assert (duration >= 8).all() and (duration <= 24).all()
    freq = sim.sources["frequency"]
    assert (freq >= 4).all() and (freq <= 20).all()
    phase = sim.sources["phase"]
    assert (phase >= 0).all() and (phase < 2 * np.pi).all() and len(np.unique(phase)) == len(phase)
    tc = sim.timecourses
    for s in range(len(tc)):
        inside = np.zeros(32, bool)
        inside[onset[s] : onset[s] + duration[s]] = True
        assert (tc[s, ~inside] == 0).all()
        # Hann-tapered sine: Hann window of duration + 2 points without its zero ends
        tau = np.arange(duration[s])
        taper = np.hanning(duration[s] + 2)[1:-1]
        wave = taper * np.sin(2 * np.pi * freq[s] * tau / 250.0 + phase[s])
        wave *= sim.sources["amplitude"][s] / np.abs(wave).max()
        np.testing.assert_allclose(tc[s, inside], wave, rtol=1e-9, atol=1e-12 * abs(wave).max())
    # window spans the event's sources
    i = 0
    idx = sim.event_sources(i)
    assert sim.window(i) == (onset[idx].min(), (onset[idx] + duration[idx]).max())


# --------------------------------------------------------------------------- I/O
def test_save_load_roundtrip_mmap(template_hm, tmp_path):
    sim = simulate(template_hm, design="extended", n_events=12, extent_mm=20.0, seed=1)
    path = sim.save(tmp_path / "sim")
    assert (path / "simulation.json").is_file()
    loaded = load_simulation(path)
    assert isinstance(loaded.data, np.memmap) and loaded.data.mode == "r"
    assert np.array_equal(loaded.data, sim.data)
    for name in ("timecourses", "fields", "event_indptr", "member_indptr", "member_rows",
                 "member_weights", "rows"):  # fmt: skip
        assert np.array_equal(getattr(loaded, name), getattr(sim, name)), name
        assert getattr(loaded, name).dtype == getattr(sim, name).dtype
    for col in SOURCE_COLUMNS:
        assert np.array_equal(loaded.sources[col], sim.sources[col]), col
    assert loaded.info["ch_names"] == sim.info["ch_names"]
    assert loaded.sfreq == sim.sfreq
    assert loaded.meta["params"] == json.loads(json.dumps(sim.meta["params"]))
    assert loaded.fingerprint == sim.fingerprint == simulation_fingerprint(loaded)
    for i in (0, 5):
        assert np.array_equal(loaded.truth(i), sim.truth(i))
        assert np.array_equal(loaded.signal(i), sim.signal(i))
        assert loaded.window(i) == sim.window(i)
        assert np.array_equal(loaded.active_rows(i), sim.active_rows(i))
    sidecar = json.loads((path / "simulation.json").read_text())
    assert sidecar["arrays"]["data"] == {"shape": list(sim.data.shape), "dtype": "<f4"}
    assert sidecar["headmodel"]["fingerprint"] == template_hm.fingerprint
    in_memory = load_simulation(path, mmap=False)
    assert not isinstance(in_memory.data, np.memmap)
    # existing output refused without overwrite, replaced with it
    with pytest.raises(FileExistsError, match="overwrite"):
        sim.save(path)
    other = simulate(template_hm, noise=None, seed=2)
    other.save(path, overwrite=True)
    assert load_simulation(path).fingerprint == other.fingerprint
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sim"]


def test_save_failure_leaves_nothing(template_hm, tmp_path, monkeypatch):
    sim = simulate(template_hm, noise=None)
    target = tmp_path / "out"
    sim.save(target)
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    calls = []

    def failing_save(fname, arr, **kwargs):
        calls.append(fname)
        if len(calls) == 3:
            raise OSError("disk full")
        with open(fname, "wb") as fid:
            np.lib.format.write_array(fid, np.asarray(arr))

    monkeypatch.setattr(simulate_mod.np, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        sim.save(tmp_path / "new")
    calls.clear()
    with pytest.raises(OSError, match="disk full"):
        simulate(template_hm, noise=None, seed=1).save(target, overwrite=True)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before


def test_load_errors(tmp_path, template_hm):
    with pytest.raises(FileNotFoundError, match="simulation.json"):
        load_simulation(tmp_path)
    sim = simulate(template_hm, noise=None)
    path = sim.save(tmp_path / "s")
    np.save(path / "data.npy", np.zeros((2, 2), np.float32))
    with pytest.raises(ValueError, match="data.npy"):
        load_simulation(path)


def test_same_seed_is_bit_identical(template_hm, tmp_path):
    kwargs = dict(design="multi", n_events=40, timecourse="realistic", snr=(0.5, 4.0))
    a = simulate(template_hm, seed=21, **kwargs).save(tmp_path / "a")
    b = simulate(template_hm, seed=21, **kwargs).save(tmp_path / "b")
    c = simulate(template_hm, seed=22, **kwargs).save(tmp_path / "c")
    names = sorted(p.name for p in a.glob("*.npy"))
    assert names == sorted(p.name for p in b.glob("*.npy")) and "data.npy" in names
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert (a / "data.npy").read_bytes() != (c / "data.npy").read_bytes()
    meta_a = json.loads((a / "simulation.json").read_text())
    meta_b = json.loads((b / "simulation.json").read_text())
    meta_a.pop("created"), meta_b.pop("created")
    assert meta_a == meta_b
    assert load_simulation(a).fingerprint != load_simulation(c).fingerprint


def test_chunking_does_not_change_output(template_hm, monkeypatch):
    ref = simulate(template_hm, design="multi", n_events=30, seed=3)
    monkeypatch.setattr(simulate_mod, "_CHUNK_BYTES", 1)  # one event per chunk
    events = list(iter_simulate(template_hm, design="multi", n_events=30, seed=3))
    assert sum(e.stage == "simulate" for e in events) == 31
    small = simulate(template_hm, design="multi", n_events=30, seed=3)
    assert np.array_equal(small.data, ref.data)
    assert small.fingerprint == ref.fingerprint


def test_iter_simulate_progress_and_epochs(template_hm):
    gen = iter_simulate(template_hm, noise=None)
    events = []
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            sim = stop.value
            break
    assert all(isinstance(e, Progress) for e in events)
    assert events[-1].done == events[-1].total == len(sim)
    epochs = sim.to_epochs()
    assert len(epochs) == len(sim) and epochs.info["sfreq"] == sim.sfreq
    np.testing.assert_allclose(epochs.get_data(), sim.data, rtol=1e-7)
    assert sim.truth(0, rows=sim.rows).shape == (len(sim.rows), 32)
    with pytest.raises(IndexError):
        sim.truth(len(sim))


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(design="random"), r"design must be one of \('sweep', 'multi', 'extended'\)"),
        (dict(timecourse="sine"), r"timecourse must be one of \('thesis', 'realistic'\)"),
        (dict(noise="pink"), r"noise must be one of \('cov', 'white', None\)"),
        (dict(hemi="left"), r"hemi must be one of \('lh', 'rh', 'both'\)"),
        (dict(snr=0.0), "snr must be > 0, got 0.0"),
        (dict(snr=-1.0), "snr must be > 0, got -1.0"),
        (dict(snr=np.inf), "snr must be a finite number, got inf"),
        (dict(snr=np.nan), "snr must be a finite number, got nan"),
        (dict(snr=(2.0, 1.0)), "snr range"),
        (dict(n_repeats=0), "n_repeats must be an integer >= 1"),
        (dict(nave=0), "nave must be an integer >= 1"),
        (dict(n_events=10), "n_events must be None for design='sweep'"),
        (dict(min_separation_mm=10.0), "min_separation_mm only applies"),
        (dict(n_times=10), "n_times must be >= 20"),
        (dict(sfreq=-5.0), "sfreq must be > 0, got -5.0"),
        (dict(seed=1.5), "seed must be an int"),
        (dict(design="extended", extent_mm=-1.0), "extent_mm"),
        (dict(design="multi", n_events=2, n_dipoles=(3, 2)), "n_dipoles range"),
        (dict(design="multi", n_events=2, n_dipoles=0), "n_dipoles must be an integer >= 1"),
        (dict(dense_spacing="ico4"), "dense_spacing only applies with off_grid=True"),
    ],
)
def test_bad_arguments(template_hm, kwargs, match):
    with pytest.raises(ValueError, match=match):
        simulate(template_hm, **kwargs)


def test_headmodel_type():
    with pytest.raises(TypeError, match="hm must be a HeadModel"):
        simulate(np.zeros((3, 4)))


def test_non_finite_gain(template_hm):
    gain = template_hm.gain.copy()
    gain[3, 17] = np.nan
    with pytest.raises(ValueError, match="hm.gain contains NaN/Inf"):
        simulate(_with(template_hm, gain=gain))


# --------------------------------------------------------------------------- CLI
def test_cli_simulate(template_hm, tmp_path, capsys):
    from napari_meg_unet.cli import main

    out = tmp_path / "cli-sim"
    argv = ["simulate", "--design", "multi", "--n-events", "6", "--n-dipoles", "2", "3",
            "--snr", "2", "--seed", "4", "--timecourse", "realistic", "--out", str(out),
            "--json", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    sim = load_simulation(out)
    assert summary["n_events"] == len(sim) == 6
    assert summary["data_shape"] == [6, len(template_hm.ch_names), 32]
    assert summary["fingerprint"] == sim.fingerprint
    assert summary["headmodel_fingerprint"] == template_hm.fingerprint
    assert Path(summary["path"]) == out
    assert sim.meta["params"]["n_dipoles"] == [2, 3] and sim.meta["seed"] == 4
    direct = simulate(
        template_hm, design="multi", n_events=6, n_dipoles=(2, 3), snr=2.0, seed=4,
        timecourse="realistic",
    )  # fmt: skip
    assert np.array_equal(direct.data, sim.data)
    # refuses to overwrite, then overwrites
    assert main(argv) == 2
    assert "already exists" in capsys.readouterr().err
    assert main([*argv, "--overwrite", "--noise", "none"]) == 0
    assert load_simulation(out).meta["params"]["noise"] is None
    assert main(["simulate", "--snr", "0", "--out", str(tmp_path / "x"), "--no-progress"]) == 2
    assert "snr must be" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


# --------------------------------------------------------------------------- config
def test_config_object_and_keywords_agree(template_hm):
    from napari_meg_unet.configs import SimulationConfig

    cfg = SimulationConfig(design="multi", n_events=5, snr=(1.0, 2.0), timecourse="realistic")
    a = simulate(template_hm, config=cfg, seed=2)
    b = simulate(template_hm, design="multi", n_events=5, snr=(1, 2), timecourse="realistic",
                 seed=2)  # fmt: skip
    assert a.fingerprint == b.fingerprint
    assert a.meta["params"] == dict(
        design="multi", hemi="rh", n_repeats=1, n_events=5, n_dipoles=[2, 5],
        min_separation_mm=None, extent_mm=10.0, off_grid=False, dense_spacing=None,
        timecourse="realistic", snr=[1.0, 2.0], noise="cov", nave=1, sfreq=250.0, n_times=32,
        seed=2,
    )  # fmt: skip


# --------------------------------------------------------------------------- size guard
def test_size_guard_refuses_before_allocating(template_hm, monkeypatch):
    from napari_meg_unet import _resources
    from napari_meg_unet._resources import InsufficientResourcesError

    monkeypatch.setattr(_resources, "available_memory", lambda: 2**30)

    def no_layout(*args, **kwargs):
        raise AssertionError("the size guard must refuse before drawing anything")

    monkeypatch.setattr(simulate_mod, "_draw_layout", no_layout)
    # 256,800 events = 400 sweeps of the 642 rows of the right hemisphere
    with pytest.raises(
        InsufficientResourcesError,
        match=r"simulate 256800 events x 306 channels x 32 samples: it needs 9\.\d GiB of "
        r"memory but only 1\.0 GiB is available.*force=True",
    ):
        simulate(template_hm, n_repeats=400)
    estimate = simulate_mod.estimate_simulation(
        template_hm, simulate_mod.SimulationConfig(n_repeats=400), saving=True
    )
    assert estimate.memory > estimate.disk > 256_800 * 306 * 32 * 4
    # force lets a (tiny) request through even with almost no memory
    monkeypatch.undo()
    monkeypatch.setattr(_resources, "available_memory", lambda: 1)
    with pytest.raises(InsufficientResourcesError):
        simulate(template_hm, design="multi", n_events=2, noise=None)
    sim = simulate(template_hm, design="multi", n_events=2, noise=None, force=True)
    assert len(sim) == 2


def test_save_checks_free_disk(template_hm, tmp_path, monkeypatch):
    from napari_meg_unet import _resources
    from napari_meg_unet._resources import InsufficientResourcesError

    sim = simulate(template_hm, design="multi", n_events=3, noise=None)
    monkeypatch.setattr(_resources, "free_disk", lambda path: 1000)
    with pytest.raises(InsufficientResourcesError, match="saving a simulation of 3 events"):
        sim.save(tmp_path / "s")
    assert not (tmp_path / "s").exists()
    sim.save(tmp_path / "s", force=True)
    assert load_simulation(tmp_path / "s").fingerprint == sim.fingerprint


def test_save_streams_large_arrays_byte_identically(template_hm, tmp_path, monkeypatch):
    from napari_meg_unet.simulate import container

    sim = simulate(template_hm, design="multi", n_events=20, seed=5)
    whole = sim.save(tmp_path / "whole")
    monkeypatch.setattr(container, "_BLOCK_BYTES", 1000)  # every array is written in blocks
    blocks = load_simulation(whole).save(tmp_path / "blocks")  # from memory-mapped arrays
    names = sorted(p.name for p in whole.glob("*.npy"))
    for name in names:
        assert (whole / name).read_bytes() == (blocks / name).read_bytes(), name
    assert load_simulation(blocks).fingerprint == sim.fingerprint


def test_load_names_file_and_event_of_non_finite_data(template_hm, tmp_path):
    sim = simulate(template_hm, design="multi", n_events=6, noise=None)
    path = sim.save(tmp_path / "s")
    data = np.load(path / "data.npy", mmap_mode="r+")
    data[4, 10, 3] = np.nan
    data.flush()
    del data
    with pytest.raises(ValueError, match=r"data\.npy' contains NaN or Inf values: event 4"):
        load_simulation(path)
    with pytest.raises(ValueError, match="event 4"):
        load_simulation(path, mmap=False)


def test_cli_size_guard_and_force(template_hm, tmp_path, monkeypatch, capsys):
    from napari_meg_unet import _resources
    from napari_meg_unet.cli import main

    out = tmp_path / "big"
    monkeypatch.setattr(_resources, "available_memory", lambda: 2**30)
    assert main(["simulate", "--n-repeats", "400", "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "256800 events" in err[0] and "GiB" in err[0]
    assert "--force" in err[0] and not out.exists()
    # not enough disk: refused before simulating, naming the output; --force writes anyway
    monkeypatch.setattr(_resources, "free_disk", lambda path: 1000)
    argv = ["simulate", "--design", "multi", "--n-events", "3", "--out", str(out),
            "--no-progress"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and repr(str(out)) in err[0] and not out.exists()
    assert main([*argv, "--force", "--json"]) == 0
    assert len(load_simulation(out)) == 3
    summary = json.loads(capsys.readouterr().out)
    assert summary["estimate"].startswith("simulate 3 events x 306 channels x 32 samples: about")


def test_cli_unwritable_out_fails_first(tmp_path, monkeypatch, capsys):
    import os

    from napari_meg_unet import headmodel
    from napari_meg_unet.cli import main

    def no_headmodel(*args, **kwargs):
        raise AssertionError("the output must be checked before the head model is built")

    monkeypatch.setattr(headmodel, "iter_make_template_headmodel", no_headmodel)
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    out = blocker / "sim"
    assert main(["simulate", "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and repr(str(out)) in err and ".tmp" not in err
    monkeypatch.setattr(os, "access", lambda *args, **kwargs: False)  # as a non-root user
    out = tmp_path / "sub" / "sim"
    assert main(["simulate", "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert repr(str(out)) in err and "is not writable" in err
    # a bad option fails before anything else, too
    assert main(["simulate", "--design", "multi", "--out", str(out), "--no-progress"]) == 2
    assert "n_events is required" in capsys.readouterr().err
