"""``bench core``: our vectorised simulate-and-invert path versus the thesis's MNE path.

(a) 642 single-dipole events of the thesis design (ico3 right hemisphere sweep, 10 Hz bursts)
on the template: our :func:`~napari_meg_unet.simulate.simulate` plus batched kernels for every
method, versus the thesis path, :func:`mne.simulation.simulate_raw` from a SourceEstimate per
event with the same forward, noise from the same covariance (:func:`mne.simulation.add_noise`)
and :func:`mne.minimum_norm.apply_inverse_raw` for MNE, dSPM and sLORETA.

The float32 torch core (:class:`~napari_meg_unet.simulate.torch_core.TorchCore`, the
training stream's path) does the same work in the same run: operator and kernels (float64,
computed once), then the 642 events simulated and turned into MNE/dSPM/sLORETA images of
every source of both hemispheres (normalised input stacks, float32), timed with and without
the one-off kernel computation.

(b) batched kernel application versus an :func:`mne.minimum_norm.apply_inverse` loop over
epochs (and :func:`mne.minimum_norm.apply_inverse_epochs`), with the outputs compared.
"""

from __future__ import annotations

import time

import mne
import numpy as np

from .._machine import machine_description
from .._validation import check_int
from ..configs import METHODS, InverseConfig, SimulationConfig
from ..headmodel import make_template_headmodel
from ..inverse import apply_inverse_batch, apply_kernel, compute_kernel, make_inverse
from ..progress import Progress
from ..simulate import simulate

THESIS_METHODS = ("MNE", "dSPM", "sLORETA")
#: The thesis design: a right-hemisphere sweep of 10 Hz bursts at whitened SNR 1.
THESIS_SIMULATION = SimulationConfig(design="sweep", hemi="rh", timecourse="thesis", snr=1.0)
#: Fixed orientation, depth weighting 0.8 (both paths).
INVERSE = InverseConfig()


def _ours(hm, *, methods, lambda2, seed):
    t0 = time.perf_counter()
    sim = simulate(hm, **THESIS_SIMULATION.replace(seed=seed).as_kwargs())
    t_sim = time.perf_counter() - t0
    inv = make_inverse(hm, loose=INVERSE.loose, depth=INVERSE.depth, verbose=False)
    out = apply_inverse_batch(inv, sim.data, methods=methods, lambda2=lambda2, verbose=False)
    return time.perf_counter() - t0, t_sim, sim, out


def _ours_float32(hm, *, methods, lambda2, seed, n_events, chunk=256):
    """The float32 torch core: kernels once, then simulate + images of every source.

    Returns ``(total s, kernel s, simulate-and-images s, stacks shape)``.
    """
    from ..simulate.torch_core import TorchCore, compute_kernels

    sim = THESIS_SIMULATION.replace(precision="float32")
    inverse = INVERSE.replace(methods=methods, lambda2=lambda2, hemi="both", nave=1)
    t0 = time.perf_counter()
    kernels = compute_kernels(hm, inverse, verbose=False)
    t_kernels = time.perf_counter() - t0
    core = TorchCore(hm, sim, inverse, kernels=kernels, device="cpu", verbose=False)
    stacks = [  # kept, as the thesis path keeps its SourceEstimates
        core.draw(min(chunk, n_events - start), seed=seed, index=block, first_event=start).inputs
        for block, start in enumerate(range(0, n_events, chunk))
    ]
    total = time.perf_counter() - t0
    shape = (sum(len(s) for s in stacks), *stacks[0].shape[1:])
    return total, t_kernels, total - t_kernels, shape


def _thesis_path(hm, sim, *, methods, lambda2):
    """The thesis path: simulate_raw per event, add_noise, then apply_inverse_raw per method.

    Each event's SourceEstimate holds only its active vertex (a whole-cortex
    SourceEstimate makes ``simulate_raw`` allocate the forward for every time
    sample); the per-event raws are concatenated so that noise and each
    inverse method run once over all events — the most favourable way to run
    this path.
    """
    t0 = time.perf_counter()
    info = sim.info.copy()
    raws = []
    for i in range(len(sim)):
        rows = sim.active_rows(i)
        truth = sim.truth(i, rows=rows)
        n_lh = len(hm.vertno[0])
        lh, rh = rows[rows < n_lh], rows[rows >= n_lh]
        vertices = [hm.vertno[0][lh], hm.vertno[1][rh - n_lh]]
        data = np.concatenate([truth[rows < n_lh], truth[rows >= n_lh]])
        stc = mne.SourceEstimate(data, vertices, tmin=0.0, tstep=1.0 / sim.sfreq)
        raws.append(mne.simulation.simulate_raw(info, stc, forward=hm.fwd_fixed, verbose=False))
    raw = mne.concatenate_raws(raws, verbose=False)
    mne.simulation.add_noise(raw, hm.noise_cov, rng=0, verbose=False)
    inv = mne.minimum_norm.make_inverse_operator(
        info, hm.fwd, hm.noise_cov, loose=INVERSE.loose, depth=INVERSE.depth, verbose=False
    )
    for method in methods:
        mne.minimum_norm.apply_inverse_raw(raw, inv, lambda2, method=method, verbose=False)
    return time.perf_counter() - t0


def _epoch_loop(hm, sim, *, method, lambda2, n_epochs):
    """apply_inverse on each epoch's evoked versus our batched kernel; outputs compared."""
    epochs = sim.to_epochs(verbose=False)[:n_epochs]
    inv = make_inverse(hm, loose=INVERSE.loose, depth=INVERSE.depth, verbose=False)
    t0 = time.perf_counter()
    ref = np.stack(
        [
            mne.minimum_norm.apply_inverse(
                mne.EvokedArray(e, epochs.info, tmin=0.0, nave=1, verbose=False),
                inv,
                lambda2,
                method=method,
                verbose=False,
            ).data
            for e in epochs.get_data()
        ]
    )
    t_loop = time.perf_counter() - t0
    t0 = time.perf_counter()
    stcs = mne.minimum_norm.apply_inverse_epochs(
        epochs, inv, lambda2, method=method, nave=1, verbose=False
    )
    ref_epochs = np.stack([s.data for s in stcs])
    t_epochs = time.perf_counter() - t0
    t0 = time.perf_counter()
    kernel = compute_kernel(inv, method=method, lambda2=lambda2, verbose=False)
    ours = apply_kernel(kernel, epochs.get_data())
    t_ours = time.perf_counter() - t0
    scale = np.abs(ref).max()
    return {
        "method": method,
        "n_epochs": len(epochs),
        "apply_inverse_loop_s": t_loop,
        "apply_inverse_epochs_s": t_epochs,
        "batched_kernel_s": t_ours,
        "speedup_vs_loop": t_loop / t_ours,
        "speedup_vs_apply_inverse_epochs": t_epochs / t_ours,
        "max_abs_diff_rel_loop": float(np.abs(ours - ref).max() / scale),
        "max_abs_diff_rel_epochs": float(np.abs(ours - ref_epochs).max() / scale),
    }


def iter_bench_core(*, spacing="ico3", lambda2=1.0 / 9.0, repeats=3, n_epochs=30, seed=0):
    """Run the core benchmark (generator of Progress; returns the result dict)."""
    check_int(repeats, "repeats", minimum=1)
    yield Progress("bench core", 0, 5, message="head model")
    hm = make_template_headmodel(spacing=spacing, modality="meg", verbose=False)
    ours, ours_sim = [], []
    for _ in range(repeats):
        t, t_sim, sim, _ = _ours(hm, methods=METHODS, lambda2=lambda2, seed=seed)
        ours.append(t)
        ours_sim.append(t_sim)
    yield Progress("bench core", 1, 5, message="thesis path")
    t_thesis = _thesis_path(hm, sim, methods=THESIS_METHODS, lambda2=lambda2)
    yield Progress("bench core", 2, 5, message="ours (thesis methods)")
    ours3 = min(
        _ours(hm, methods=THESIS_METHODS, lambda2=lambda2, seed=seed)[0] for _ in range(repeats)
    )
    yield Progress("bench core", 3, 5, message="float32 torch core")
    f32 = min(
        (_ours_float32(hm, methods=THESIS_METHODS, lambda2=lambda2, seed=seed, n_events=len(sim))
         for _ in range(repeats)),
        key=lambda r: r[0],
    )  # fmt: skip
    f32_steady = min(
        _ours_float32(hm, methods=THESIS_METHODS, lambda2=lambda2, seed=seed,
                      n_events=len(sim))[2]
        for _ in range(repeats)
    )  # fmt: skip
    yield Progress("bench core", 4, 5, message="epoch loop")
    loops = [_epoch_loop(hm, sim, method=m, lambda2=lambda2, n_epochs=n_epochs) for m in METHODS]
    yield Progress("bench core", 5, 5)
    return {
        "benchmark": "core",
        "machine": machine_description(),
        "mne_version": mne.__version__,
        "headmodel": hm.summary(),
        "n_events": len(sim),
        "n_times": int(sim.data.shape[2]),
        "simulate_and_invert": {
            "ours_all_4_methods_s": min(ours),
            "ours_simulation_only_s": min(ours_sim),
            "ours_3_thesis_methods_s": ours3,
            "thesis_path_3_methods_s": t_thesis,
            "speedup_same_methods": t_thesis / ours3,
            "speedup_vs_ours_all_4_methods": t_thesis / min(ours),
        },
        "float32_core": {
            "total_s": f32[0],
            "kernels_s": f32[1],
            "simulate_and_images_s": min(f32[2], f32_steady),
            "stacks_shape": list(f32[3]),
            "speedup_total": t_thesis / f32[0],
            "speedup_excluding_kernels": t_thesis / min(f32[2], f32_steady),
        },
        "kernel_application": loops,
    }


def _float32_rows(result: dict) -> list:
    f = result.get("float32_core")
    if f is None:
        return []
    return [
        f"| float32 torch core: operator + kernels + simulate + MNE, dSPM, sLORETA images "
        f"(all sources) | {f['total_s']:.3f} |",
        f"| of which operator + kernels (float64, once per head model) | {f['kernels_s']:.3f} |",
        f"| of which simulate + images | {f['simulate_and_images_s']:.3f} |",
        f"| **speed-up of the float32 core, same run** | **{f['speedup_total']:.0f}x** "
        f"({f['speedup_excluding_kernels']:.0f}x without the kernels) |",
    ]


def format_table(result: dict) -> str:
    s = result["simulate_and_invert"]
    m = result["machine"]
    lines = [
        f"bench core — {result['n_events']} thesis-design events x {result['n_times']} samples, "
        f"template {result['headmodel']['spacing']} ({result['headmodel']['n_channels']} ch), "
        f"{m['cpu']} ({m['cores']} cores), MNE {result['mne_version']}",
        "",
        "| path | time (s) |",
        "|---|---|",
        f"| ours: simulate + MNE, dSPM, sLORETA | {s['ours_3_thesis_methods_s']:.3f} |",
        f"| ours: simulate + MNE, dSPM, sLORETA, eLORETA | {s['ours_all_4_methods_s']:.3f} |",
        f"| thesis: simulate_raw + add_noise + apply_inverse_raw x3 | "
        f"{s['thesis_path_3_methods_s']:.3f} |",
        f"| speed-up (same 3 methods) | {s['speedup_same_methods']:.0f}x |",
        *_float32_rows(result),
        "",
        "| method | epochs | apply_inverse loop (s) | apply_inverse_epochs (s) | batched (s) "
        "| speed-up vs loop | vs apply_inverse_epochs | max rel. diff |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["kernel_application"]:
        lines.append(
            f"| {r['method']} | {r['n_epochs']} | {r['apply_inverse_loop_s']:.2f} | "
            f"{r['apply_inverse_epochs_s']:.2f} | {r['batched_kernel_s']:.4f} | "
            f"{r['speedup_vs_loop']:.0f}x | {r['speedup_vs_apply_inverse_epochs']:.0f}x | "
            f"{max(r['max_abs_diff_rel_loop'], r['max_abs_diff_rel_epochs']):.1e} |"
        )
    return "\n".join(lines)
