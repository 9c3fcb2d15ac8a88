"""The performance benchmarks at tiny sizes: bench core's float32 path, scale, throughput."""

from __future__ import annotations

import math

import pytest

from napari_meg_unet._machine import machine_description


def test_bench_core_float32_path(template_hm):
    from napari_meg_unet.bench.core import _float32_rows, _ours_float32

    total, kernels, work, shape = _ours_float32(
        template_hm, methods=("MNE", "dSPM"), lambda2=1 / 9, seed=0, n_events=20, chunk=8
    )
    assert shape == (20, 2, 1284, 32)  # images of every source of both hemispheres
    assert total >= kernels > 0 and work > 0
    rows = _float32_rows({"float32_core": dict(
        total_s=total, kernels_s=kernels, simulate_and_images_s=work, speedup_total=10.0,
        speedup_excluding_kernels=20.0)})  # fmt: skip
    assert "10x" in rows[-1] and "20x" in rows[-1]


def test_scale_growth_exponents():
    from napari_meg_unet.bench.scale import format_table, growth

    small = dict(spacing="ico3", hemi="rh", n_rows=100, n_events=8, batch_size=2, peak_mb=10.0,
                 simulate_s=1.0, kernels_s=2.0, stacks_float64_s=1.0, core_float32_s=1.0)
    big = dict(small, spacing="ico4", n_rows=400, simulate_s=4.0, kernels_s=32.0,
               stacks_float64_s=2.0, core_float32_s=16.0)  # fmt: skip
    g = growth([big, small])["rh"]
    assert g["simulate_s"] == pytest.approx(1.0) and g["kernels_s"] == pytest.approx(2.0)
    assert g["stacks_float64_s"] == pytest.approx(0.5) and g["n_rows"] == [100, 400]
    table = format_table({"machine": machine_description(), "configs": [small, big],
                          "growth": {"rh": g}})  # fmt: skip
    assert "growth exponent k (rh: 100 -> 400 rows)" in table and "| 2.00 |" in table


@pytest.mark.slow
def test_scale_measure_runs_at_tiny_size():
    from napari_meg_unet.bench.scale import measure

    r = measure("ico3", "rh", n_events=8, batch_size=2, networks=(("mesh", "small"),))
    assert r["n_rows"] == 642 and r["peak_mb"] > 0
    for key in ("simulate_s", "kernels_s", "stacks_float64_s", "core_float32_s",
                "train_step_mesh_s", "predict_mesh_ms_per_event"):
        assert math.isfinite(r[key]) and r[key] > 0, key


@pytest.mark.slow
def test_bench_throughput_runs_at_tiny_size(tmp_path):
    from napari_meg_unet.bench.throughput import format_table, iter_bench_throughput
    from napari_meg_unet.progress import plain

    result = plain(iter_bench_throughput)(n_batches=2, networks=(("mesh", "cpu"),), batch_size=4,
                                          latency_batches=(1, 4), num_threads=1,
                                          work_dir=tmp_path)  # fmt: skip
    row = result["networks"][0]
    for key in ("generator_examples_per_s", "training_examples_per_s",
                "together_examples_per_s"):
        assert row[key] > 0, key
    assert set(row["latency"]) == {"batch_1_ms_per_event", "batch_4_ms_per_event"}
    assert "mesh U-Net `cpu`" in format_table(result)
    assert list(tmp_path.iterdir()) == []  # the temporary sets are removed
