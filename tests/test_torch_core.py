"""The float32 torch core: same draws in float32 and float64, the float64 reference path's
numerics and distributions, counter-based seeding, and the model-error hook."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from napari_meg_unet.configs import InverseConfig, SimulationConfig
from napari_meg_unet.inverse import compute_kernel, make_input_stack, make_inverse
from napari_meg_unet.simulate import simulate
from napari_meg_unet.simulate.noise import _noise_model
from napari_meg_unet.simulate.torch_core import TorchCore, TrueModel

METHODS = ("MNE", "dSPM", "sLORETA", "eLORETA")
OFF_GRID = SimulationConfig(off_grid=True, timecourse="realistic", snr=(0.5, 3.0), n_times=16)
MULTI = SimulationConfig(design="multi", n_events=1, timecourse="realistic", snr=(0.5, 3.0),
                         n_times=16, min_separation_mm=20.0)  # fmt: skip


@pytest.fixture(scope="module")
def kernels(template_hm):
    inv = make_inverse(template_hm, loose=0.0, depth=0.8, verbose=False)
    return {m: compute_kernel(inv, method=m, lambda2=1 / 9, verbose=False)
            for m in METHODS}  # fmt: skip


def _core(hm, sim, kernels, dtype=torch.float32, methods=METHODS, **kwargs):
    inv = InverseConfig(methods=methods, hemi=sim.hemi)
    return TorchCore(hm, sim, inv, dtype=dtype, kernels=kernels, **kwargs)


@pytest.mark.parametrize("sim", [OFF_GRID, MULTI, SimulationConfig(design="extended", n_times=20)],
                         ids=["off-grid-sweep", "multi", "extended"])  # fmt: skip
def test_float32_equals_float64_from_the_same_draws(template_hm, kernels, sim):
    b32 = _core(template_hm, sim, kernels).draw(12, seed=4, index=3)
    b64 = _core(template_hm, sim, kernels, dtype=torch.float64).draw(12, seed=4, index=3)
    for key in ("row", "key", "onset", "duration", "model"):
        assert torch.equal(b32.layout[key], b64.layout[key]), key
    scale = b64.data.abs().max()
    torch.testing.assert_close(b32.data.double(), b64.data, rtol=0, atol=float(scale) * 1e-5)
    torch.testing.assert_close(b32.inputs.double(), b64.inputs, rtol=0, atol=1e-4)
    torch.testing.assert_close(b32.layout["scale"], b64.layout["scale"], rtol=1e-5, atol=0)
    assert torch.equal(b32.targets, b64.targets)
    assert b32.inputs.dtype == torch.float32 and b32.inputs.shape == (12, 4, 642, sim.n_times)


def test_float32_stacks_equal_the_float64_reference_inverse(template_hm, kernels):
    """The core's images of its own data equal make_input_stack's (numpy, float64) images."""
    core = _core(template_hm, MULTI, kernels)
    batch = core.draw(10, seed=1, index=0)
    data = batch.data.transpose(1, 2).double().numpy()
    ref = make_input_stack([kernels[m] for m in METHODS], data, rows=template_hm.rows("rh"))
    np.testing.assert_allclose(batch.inputs.numpy(), ref, rtol=0, atol=2e-5)
    f32 = make_input_stack([kernels[m] for m in METHODS], data, rows=template_hm.rows("rh"),
                           precision="float32")  # fmt: skip
    np.testing.assert_allclose(f32, ref, rtol=0, atol=2e-5)


def test_whitened_snr_is_exact_and_truth_matches_the_table(template_hm):
    """Each float32 event has the requested whitened SNR (computed here in float64 from the
    simulation's own time courses and fields), as the numpy path."""
    sim = simulate(template_hm, precision="float32", design="multi", n_events=20, n_times=16,
                   timecourse="realistic", snr=(0.5, 3.0), seed=3)  # fmt: skip
    whitener, _ = _noise_model(template_hm, "cov")
    for i in range(len(sim)):
        signal = sim.signal(i)
        src = sim.event_sources(i)
        on = sim.sources["onset"][src].min()
        off = (sim.sources["onset"][src] + sim.sources["duration"][src]).max()
        w = whitener @ signal[:, on:off]
        snr = np.sqrt((w**2).mean())
        assert snr == pytest.approx(sim.sources["snr"][src[0]], rel=1e-5)
        # the data are signal + noise: the noise-free part is the gain times the time courses
        rows = sim.sources["row"][src]
        np.testing.assert_allclose(
            signal, template_hm.gain[:, rows] @ sim.timecourses[src], rtol=1e-12, atol=0
        )


def test_distributions_match_the_numpy_path(template_hm, kernels):
    """The float32 path and the float64 numpy path draw the same distributions (other draws)."""
    common = dict(design="multi", n_events=400, n_times=16, timecourse="realistic",
                  snr=(0.5, 3.0), off_grid=True)  # fmt: skip
    a = simulate(template_hm, precision="float32", seed=1, **common)
    b = simulate(template_hm, seed=1, **common)
    sa, sb = a.sources, b.sources
    for col in ("frequency", "duration", "onset", "phase", "snr", "grid_distance"):
        assert stats.ks_2samp(sa[col], sb[col]).pvalue > 1e-3, col
    assert stats.ks_2samp(np.diff(a.event_indptr), np.diff(b.event_indptr)).pvalue > 1e-3
    # dipole positions: coordinates of the sources
    for axis in range(3):
        assert stats.ks_2samp(sa["position"][:, axis], sb["position"][:, axis]).pvalue > 1e-3
    # input-stack statistics: per-example dSPM peak row's distance to the nearest true source
    rows = template_hm.rows("rh")
    stacks = {}
    for name, s in (("f32", a), ("f64", b)):
        stack = make_input_stack([kernels["dSPM"]], np.asarray(s.data[:200], np.float64),
                                 rows=rows, normalisation="none")[:, 0]  # fmt: skip
        peak = np.abs(stack).mean(axis=-1).argmax(axis=1)
        dist = [np.linalg.norm(s.sources["position"][s.event_sources(i)]
                               - template_hm.positions[rows[peak[i]]], axis=1).min()
                for i in range(200)]  # fmt: skip
        stacks[name] = (np.abs(stack).max(axis=(1, 2)), np.asarray(dist))
    assert stats.ks_2samp(stacks["f32"][1], stacks["f64"][1]).pvalue > 1e-3
    ratio = np.median(stacks["f32"][0]) / np.median(stacks["f64"][0])
    assert 0.85 < ratio < 1.15


def test_sweep_uses_every_row_n_repeats_times(template_hm):
    sim = simulate(template_hm, precision="float32", n_repeats=2, n_times=20, seed=5, chunk=100)
    counts = np.bincount(sim.sources["row"], minlength=template_hm.n_sources)
    assert (counts[template_hm.rows("rh")] == 2).all() and counts[template_hm.rows("lh")].sum() == 0
    # each block of 642 consecutive events is one full sweep
    assert len(np.unique(sim.sources["row"][:642])) == 642


def test_counter_based_batches(template_hm, kernels):
    core = _core(template_hm, MULTI, kernels)
    a, b = core.draw(6, seed=2, index=5, rank=1), core.draw(6, seed=2, index=5, rank=1)
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.layout["row"], b.layout["row"])
    for other in (core.draw(6, seed=2, index=5, rank=0), core.draw(6, seed=2, index=6, rank=1),
                  core.draw(6, seed=3, index=5, rank=1)):  # fmt: skip
        assert not torch.equal(a.data, other.data)


def test_min_separation_is_respected(template_hm, kernels):
    batch = _core(template_hm, MULTI, kernels).draw(40, seed=0, index=0)
    for e in range(40):
        pos = batch.true_positions[e][batch.layout["valid"][e]].numpy()
        rows = batch.layout["row"][e][batch.layout["valid"][e]].numpy()
        assert len(np.unique(rows)) == len(rows)
        if len(pos) > 1:
            grid = template_hm.positions[rows]
            d = np.linalg.norm(grid[:, None] - grid[None], axis=-1)
            assert d[np.triu_indices(len(grid), 1)].min() >= 0.020


def test_model_error_signal_uses_the_true_gain_and_nominal_kernels(template_hm, kernels):
    """The hook: events draw one of the alternative gains; the images use the nominal kernels."""
    rng = np.random.default_rng(0)
    gain = template_hm.gain * (1 + 0.3 * rng.standard_normal(template_hm.gain.shape))
    stand_in = TrueModel(gain=gain, name="perturbed")
    sim = SimulationConfig(noise=None, n_times=20)
    nominal = _core(template_hm, sim, kernels)
    perturbed = _core(template_hm, sim, kernels, model_error=[template_hm, stand_in])
    batch = perturbed.draw(64, seed=0, index=0)
    model = batch.layout["model"]
    assert set(model.tolist()) == {1, 2}  # both drawn
    ref = nominal.draw(64, seed=0, index=0)
    for e in range(64):
        row = int(batch.layout["row"][e, 0])
        g = template_hm.gain if int(model[e]) == 1 else gain
        tc = batch.layout["timecourse"][e, 0].double().numpy()
        np.testing.assert_allclose(batch.data[e].double().numpy(), np.outer(tc, g[:, row]),
                                   rtol=1e-4, atol=1e-6 * np.abs(g[:, row]).max() * abs(tc).max())
    # the images are the nominal kernels applied to the (perturbed) data
    torch.testing.assert_close(batch.inputs, nominal.stack(batch.data.transpose(1, 2)))
    nominal_events = model == 1
    assert not torch.equal(batch.data[~nominal_events], ref.data[~nominal_events])
    # the float32 simulation records which forward models made it
    out = simulate(template_hm, precision="float32", noise=None, n_times=20, seed=0,
                   model_error=[stand_in])  # fmt: skip
    assert out.meta["model_error"] == ["perturbed"]
    i = 0
    row = out.sources["row"][i]
    np.testing.assert_allclose(out.signal(i), np.outer(gain[:, row], out.timecourses[i]),
                               rtol=1e-12)  # fmt: skip


def test_model_error_must_share_the_sources(template_hm):
    bad = TrueModel(gain=template_hm.gain[:, :100], name="wrong")
    with pytest.raises(ValueError, match="channels x sources"):
        TorchCore(template_hm, SimulationConfig(), InverseConfig(), model_error=[bad],
                  inputs=False)  # fmt: skip
    with pytest.raises(ValueError, match="precision='float32' only"):
        simulate(template_hm, model_error=[bad])


def test_loose_kernels_give_magnitudes(template_hm):
    inv = make_inverse(template_hm, loose=0.2, depth=0.8, verbose=False)
    loose = {m: compute_kernel(inv, method=m, lambda2=1 / 9, verbose=False)
             for m in ("MNE", "dSPM")}  # fmt: skip
    sim = SimulationConfig(n_times=20)
    core = TorchCore(template_hm, sim, InverseConfig(methods=("MNE", "dSPM"), loose=0.2),
                     kernels=loose)  # fmt: skip
    batch = core.draw(4, seed=0, index=0)
    ref = make_input_stack([loose["MNE"], loose["dSPM"]], batch.data.transpose(1, 2).double(),
                           rows=template_hm.rows("rh"))  # fmt: skip
    np.testing.assert_allclose(batch.inputs.numpy(), ref, atol=2e-5)


def test_sources_must_lie_in_the_images(template_hm):
    with pytest.raises(ValueError, match="same hemisphere"):
        TorchCore(template_hm, SimulationConfig(hemi="both"), InverseConfig(hemi="rh"),
                  inputs=False)  # fmt: skip
