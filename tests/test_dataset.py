"""Learning datasets: on-disk layout, lazy torch access, compatibility, disjoint splits."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from napari_meg_unet import dataset as ds_mod
from napari_meg_unet.dataset import (
    ExampleDataset,
    ExampleSet,
    IncompatibleDataError,
    build_dataset,
    check_compatible,
    check_disjoint,
    dataset_fingerprint,
    make_splits,
    read_dataset,
    split_seeds,
    write_dataset,
)
from napari_meg_unet.dataset import splits as splits_mod

N_ROWS, N_TIMES, METHODS = 12, 8, ["MNE", "dSPM", "sLORETA"]


def _meta(**changes):
    meta = dict(
        headmodel_fingerprint="hm0",
        ch_names=[f"MEG {i:04d}" for i in range(20)],
        hemi="rh",
        methods=list(METHODS),
        lambda2=1.0 / 9.0,
        nave=1,
        loose=0.0,
        depth=0.8,
        normalisation="column-max",
        simulation={"seed": 0},
        event_offset=0,
        sfreq=100.0,
        tmin=0.0,
    )
    meta.update(changes)
    return meta


def _write(path, n=6, seed=0, *, inputs=None, overwrite=False, **meta_changes):
    rng = np.random.default_rng(seed)
    if inputs is None:
        inputs = rng.standard_normal((n, len(METHODS), N_ROWS, N_TIMES)).astype(np.float32)
    targets = rng.random((len(inputs), N_ROWS, N_TIMES)) > 0.9
    true_positions = np.full((len(inputs), 2, 3), np.nan)
    true_positions[:, 0] = rng.standard_normal((len(inputs), 3)) * 0.05
    offset = meta_changes.get("event_offset", 0)
    return write_dataset(
        path,
        inputs=inputs,
        targets=targets,
        events=offset + np.arange(len(inputs)),
        true_positions=true_positions,
        positions=rng.standard_normal((N_ROWS, 3)) * 0.05,
        meta=_meta(**meta_changes),
        overwrite=overwrite,
    )


def test_write_and_read_roundtrip(tmp_path):
    """Arrays come back memory-mapped and equal; meta and fingerprint are recorded."""
    rng = np.random.default_rng(1)
    inputs = rng.standard_normal((5, 3, N_ROWS, N_TIMES)).astype(np.float32)
    targets = (rng.random((5, N_ROWS, N_TIMES)) > 0.8).astype(np.int64) * 7  # any nonzero
    examples = write_dataset(
        tmp_path / "set",
        inputs=inputs,
        targets=targets,
        events=np.arange(5),
        true_positions=np.zeros((5, 1, 3)),
        positions=np.ones((N_ROWS, 3)),
        meta=_meta(),
    )
    again = read_dataset(tmp_path / "set")
    for arr in (again.inputs, again.targets, again.events, again.true_positions):
        assert isinstance(arr, np.memmap)
        assert not arr.flags.writeable
    np.testing.assert_array_equal(again.inputs, inputs)
    assert again.targets.dtype == np.uint8
    np.testing.assert_array_equal(again.targets, targets != 0)
    assert len(again) == 5 and again.n_rows == N_ROWS and again.n_times == N_TIMES
    assert again.meta == examples.meta
    assert again.meta["in_channels"] == 3 and again.meta["k_max"] == 1
    assert again.fingerprint == dataset_fingerprint(again.meta)
    assert again.meta["methods"] == METHODS and "MNE/dSPM/sLORETA" in repr(again)
    # No temporary directory is left next to the set.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]


def test_write_refuses_overwrite_and_bad_shapes(tmp_path):
    original = np.array(_write(tmp_path / "set").inputs)
    with pytest.raises(FileExistsError, match="overwrite"):
        _write(tmp_path / "set", seed=2)
    np.testing.assert_array_equal(read_dataset(tmp_path / "set").inputs, original)
    replaced = _write(tmp_path / "set", seed=2, overwrite=True)
    assert not np.array_equal(replaced.inputs, original)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]
    with pytest.raises(ValueError, match="0 examples"):
        _write(tmp_path / "empty", inputs=np.zeros((0, 3, N_ROWS, N_TIMES), np.float32))
    with pytest.raises(ValueError, match="methods"):
        _write(tmp_path / "bad", methods=["MNE"])
    with pytest.raises(ValueError, match="targets has shape"):
        write_dataset(
            tmp_path / "bad2",
            inputs=np.zeros((2, 3, N_ROWS, N_TIMES), np.float32),
            targets=np.zeros((2, N_ROWS + 1, N_TIMES)),
            events=np.arange(2),
            true_positions=np.zeros((2, 1, 3)),
            positions=np.zeros((N_ROWS, 3)),
            meta=_meta(),
        )
    with pytest.raises(ValueError, match="lacks the required field"):
        meta = _meta()
        del meta["normalisation"]
        write_dataset(
            tmp_path / "bad3",
            inputs=np.zeros((2, 3, N_ROWS, N_TIMES), np.float32),
            targets=np.zeros((2, N_ROWS, N_TIMES)),
            events=np.arange(2),
            true_positions=np.zeros((2, 1, 3)),
            positions=np.zeros((N_ROWS, 3)),
            meta=meta,
        )


def test_fingerprint_depends_on_defining_parameters():
    base = dataset_fingerprint(_meta())
    assert dataset_fingerprint(_meta()) == base
    for change in (
        dict(headmodel_fingerprint="hm1"),
        dict(simulation={"seed": 1}),
        dict(methods=["MNE", "dSPM"]),
        dict(lambda2=1.0),
        dict(nave=4),
        dict(loose=0.2),
        dict(depth=None),
        dict(normalisation="none"),
        dict(hemi="lh"),
        dict(event_offset=10),
    ):
        assert dataset_fingerprint(_meta(**change)) != base, change
    # Fields that do not define the set do not change it.
    assert dataset_fingerprint(_meta(tmin=0.5)) == base


def test_open_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="example-set directory"):
        ExampleSet(tmp_path / "missing")
    (tmp_path / "nometa").mkdir()
    with pytest.raises(FileNotFoundError, match="no meta.json"):
        ExampleSet(tmp_path / "nometa")
    examples = _write(tmp_path / "set")
    (examples.path / "targets.npy").unlink()
    with pytest.raises(FileNotFoundError, match="targets.npy"):
        ExampleSet(examples.path)
    examples = _write(tmp_path / "set2")
    meta = json.loads((examples.path / "meta.json").read_text())
    meta["n_rows"] = 99
    (examples.path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="n_rows=99"):
        ExampleSet(examples.path)
    examples = _write(tmp_path / "set3")
    (examples.path / "inputs.npy").write_bytes(b"not an npy file")
    with pytest.raises(ValueError, match="not a readable .npy"):
        ExampleSet(examples.path)


def test_torch_dataset_reads_lazily(tmp_path):
    examples = _write(tmp_path / "set", n=7)
    data = examples.torch_dataset()
    assert isinstance(data, torch.utils.data.Dataset) and isinstance(data, ExampleDataset)
    assert len(data) == 7
    # Nothing is opened until the first access; pickling drops open maps.
    assert data._set is None
    x, y, i = data[3]
    assert x.dtype == torch.float32 and x.shape == (3, N_ROWS, N_TIMES)
    assert y.dtype == torch.uint8 and y.shape == (N_ROWS, N_TIMES)
    np.testing.assert_array_equal(x.numpy(), examples.inputs[3])
    assert int(i) == 3
    import pickle

    assert pickle.loads(pickle.dumps(data))._set is None
    # A batch keeps the requested (unsorted) order.
    order = [5, 0, 3]
    xb, yb, ib = data[order]
    np.testing.assert_array_equal(xb.numpy(), examples.inputs[order])
    np.testing.assert_array_equal(yb.numpy(), examples.targets[order])
    assert ib.tolist() == order
    assert data[-1][2] == 6
    with pytest.raises(IndexError):
        data[7]


def test_check_compatible_names_fields_and_values():
    check_compatible(_meta(), _meta(simulation={"seed": 5}))  # other simulation: fine
    with pytest.raises(IncompatibleDataError) as err:
        check_compatible(
            _meta(),
            _meta(methods=["MNE"], normalisation="none", lambda2=1.0, hemi="lh"),
            names=("train", "val"),
        )
    message = str(err.value)
    for text in (
        "methods: ['MNE', 'dSPM', 'sLORETA'] (train) != ['MNE'] (val)",
        "normalisation: 'column-max' (train) != 'none' (val)",
        "lambda2: 0.111",
        "hemi: 'rh' (train) != 'lh' (val)",
    ):
        assert text in message
    with pytest.raises(IncompatibleDataError, match="headmodel_fingerprint: 'hm0'"):
        check_compatible(_meta(), _meta(headmodel_fingerprint="other"))
    with pytest.raises(IncompatibleDataError, match="n_rows: 12"):
        check_compatible(dict(_meta(), n_rows=12), dict(_meta(), n_rows=13))
    fewer = _meta(ch_names=[f"MEG {i:04d}" for i in range(19)] + ["EEG 001"])
    with pytest.raises(IncompatibleDataError, match=r"only in b: \['EEG 001'\]"):
        check_compatible(_meta(), fewer)
    shuffled = _meta(ch_names=_meta()["ch_names"][::-1])
    with pytest.raises(IncompatibleDataError, match="different order"):
        check_compatible(_meta(), shuffled)
    with pytest.raises(IncompatibleDataError, match="<missing>"):
        incomplete = _meta()
        del incomplete["depth"]
        check_compatible(_meta(), incomplete)
    # Restricting the keys skips the others.
    check_compatible(_meta(), _meta(hemi="lh"), keys=["methods"])


def test_check_disjoint_detects_leaks(tmp_path):
    train = _write(tmp_path / "train", n=6, seed=0)
    val = _write(tmp_path / "val", n=4, seed=1, event_offset=6)
    test = _write(tmp_path / "test", n=4, seed=2, event_offset=10)
    report = check_disjoint({"train": train, "val": val, "test": test})
    assert report["test"] == {"n_examples": 4, "n_distinct": 4}

    # A test set repeating one of its examples.
    dup = np.array(test.inputs)
    dup[3] = dup[1]
    dup_test = _write(tmp_path / "dup", inputs=dup, event_offset=10)
    with pytest.raises(ValueError, match="1 duplicated example.*'test'"):
        check_disjoint({"train": train, "test": dup_test})
    # A test example equal to a training one (the thesis' leak).
    leak = np.array(test.inputs)
    leak[2] = train.inputs[4]
    leak_test = _write(tmp_path / "leak", inputs=leak, event_offset=10)
    with pytest.raises(ValueError, match=r"1 example\(s\) of 'test' equal examples of 'train'"):
        check_disjoint({"train": train, "test": leak_test})
    # Shared event ids.
    same_events = _write(tmp_path / "same", n=4, seed=3, event_offset=4)
    with pytest.raises(ValueError, match="event id"):
        check_disjoint({"train": train, "test": same_events})


def test_split_seeds_are_distinct_and_reproducible():
    seeds = split_seeds(0)
    assert set(seeds) == {"train", "val", "test"}
    assert len(set(seeds.values())) == 3
    assert split_seeds(0) == seeds and split_seeds(1) != seeds
    children = np.random.SeedSequence(0).spawn(3)
    assert seeds["train"] == int(children[0].generate_state(1, dtype=np.uint32)[0])


# --------------------------------------------------------------------------- real pipeline
@pytest.fixture(scope="module")
def small_sim(template_hm):
    from napari_meg_unet.simulate import simulate

    return simulate(
        template_hm, design="multi", n_events=5, n_dipoles=(1, 2), hemi="rh", seed=3,
        verbose=False,
    )  # fmt: skip


def test_build_dataset_matches_inverse_stack(template_hm, small_sim, tmp_path):
    """Chunked building equals the one-shot inverse stack; targets/positions follow the truth."""
    from napari_meg_unet.inverse import inverse_stack

    hm, sim = template_hm, small_sim
    events_seen = []
    gen = ds_mod.iter_build_dataset(hm, sim, out=tmp_path / "set", chunk=2, amplitudes=True,
                                    verbose=False)  # fmt: skip
    while True:
        try:
            events_seen.append(next(gen))
        except StopIteration as stop:
            examples = stop.value
            break
    assert events_seen[-1].done == events_seen[-1].total
    rows = hm.rows("rh")
    assert examples.inputs.shape == (5, 3, len(rows), sim.data.shape[2])
    expected = inverse_stack(hm, sim.data, hemi="rh", verbose=False)
    np.testing.assert_allclose(examples.inputs, expected, rtol=1e-6, atol=1e-7)
    for i in range(5):
        truth = sim.truth(i, rows=rows)
        np.testing.assert_array_equal(examples.targets[i], truth != 0)
        np.testing.assert_allclose(examples.amplitudes[i], truth, rtol=1e-6)
        idx = sim.event_sources(i)
        pos = examples.true_positions[i]
        np.testing.assert_allclose(pos[: len(idx)], sim.sources["position"][idx])
        assert np.isnan(pos[len(idx) :]).all()
    np.testing.assert_allclose(examples.positions, hm.positions[rows])
    meta = examples.meta
    assert meta["headmodel_fingerprint"] == hm.fingerprint
    assert meta["ch_names"] == hm.ch_names
    assert meta["simulation"]["fingerprint"] == sim.fingerprint
    assert meta["simulation"]["params"]["seed"] == 3
    assert (meta["lambda2"], meta["nave"], meta["loose"], meta["depth"]) == (1 / 9, 1, 0.0, 0.8)
    assert meta["sfreq"] == pytest.approx(sim.sfreq)
    assert [p.name for p in tmp_path.iterdir()] == ["set"]
    with pytest.raises(FileExistsError):
        build_dataset(hm, sim, out=tmp_path / "set", verbose=False)
    # A different normalisation gives a different, incompatible set.
    other = build_dataset(hm, sim, out=tmp_path / "global", normalisation="global-max",
                          events=[4, 1], verbose=False)  # fmt: skip
    np.testing.assert_array_equal(other.targets[0], examples.targets[4])
    assert other.fingerprint != examples.fingerprint
    with pytest.raises(IncompatibleDataError, match="normalisation"):
        check_compatible(examples.meta, other.meta)


def test_build_dataset_refuses_other_hemisphere(template_hm, small_sim, tmp_path):
    with pytest.raises(ValueError, match="outside hemi='lh'"):
        build_dataset(template_hm, small_sim, hemi="lh", out=tmp_path / "x", verbose=False)
    assert not (tmp_path / "x").exists()


def test_make_splits_disjoint(template_hm, tmp_path):
    sets = make_splits(
        template_hm, design="multi", n_train=4, n_val=2, n_test=2, seed=7,
        out=tmp_path / "splits", n_dipoles=1, verbose=False,
    )  # fmt: skip
    assert [len(sets[k]) for k in ("train", "val", "test")] == [4, 2, 2]
    events = [set(np.asarray(sets[k].events).tolist()) for k in ("train", "val", "test")]
    assert events == [{0, 1, 2, 3}, {4, 5}, {6, 7}]
    seeds = {k: sets[k].meta["simulation"]["params"]["seed"] for k in sets}
    assert seeds == split_seeds(7)
    info = json.loads((tmp_path / "splits" / "splits.json").read_text())
    assert info["disjoint"]["test"]["n_distinct"] == 2
    for name in ("val", "test"):
        check_compatible(sets["train"].meta, sets[name].meta)


def test_make_splits_refuses_leaking_splits(template_hm, tmp_path, monkeypatch):
    """Identical seeds make identical splits: make_splits must refuse and leave nothing."""
    monkeypatch.setattr(splits_mod, "split_seeds", lambda seed: dict(train=1, val=2, test=1))
    with pytest.raises(ValueError, match="of 'test' equal examples of 'train'"):
        make_splits(
            template_hm, design="multi", n_train=2, n_val=2, n_test=2, seed=0,
            out=tmp_path / "splits", n_dipoles=1, verbose=False,
        )  # fmt: skip
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------- configs, guards, bad data
def test_make_splits_configs_equal_keywords(template_hm, tmp_path):
    """The config form gives the same sets as the keyword form; unknown keywords are named."""
    from napari_meg_unet.configs import DatasetConfig, InverseConfig, SimulationConfig

    kwargs = dict(design="multi", n_train=2, n_val=1, n_test=1, seed=5, n_dipoles=1,
                  hemi="lh", lambda2=0.5, verbose=False)  # fmt: skip
    by_keywords = make_splits(template_hm, out=tmp_path / "kw", **kwargs)
    by_configs = make_splits(
        template_hm,
        dataset=DatasetConfig(n_train=2, n_val=1, n_test=1, seed=5),
        simulation=SimulationConfig(design="multi", n_events=9, n_dipoles=1, seed=123),
        inverse=InverseConfig(hemi="lh", lambda2=0.5),
        out=tmp_path / "cfg",
        verbose=False,
    )
    for name in ("train", "val", "test"):
        assert by_configs[name].fingerprint == by_keywords[name].fingerprint
        np.testing.assert_array_equal(by_configs[name].inputs, by_keywords[name].inputs)
        assert by_configs[name].meta["hemi"] == "lh"
    with pytest.raises(TypeError, match="did you mean 'n_dipoles'"):
        make_splits(template_hm, out=tmp_path / "x", design="multi", n_dipole=1)
    with pytest.raises(ValueError, match="n_events is set by make_splits"):
        make_splits(template_hm, out=tmp_path / "x", design="multi", n_events=3)
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("short", ["available_memory", "free_disk"])
def test_size_guard_refuses_before_any_work(template_hm, small_sim, tmp_path, monkeypatch, short):
    """Too little memory or disk: refused before simulating or inverting, nothing on disk."""
    from napari_meg_unet import _resources, simulate
    from napari_meg_unet._resources import InsufficientResourcesError
    from napari_meg_unet.dataset import building

    def no_work(*args, **kwargs):
        raise AssertionError("work started before the size guard")

    monkeypatch.setattr(_resources, short, lambda *args: 1024)
    monkeypatch.setattr(simulate, "iter_simulate", no_work)
    monkeypatch.setattr(building, "_inverse_kernels", no_work)
    monkeypatch.setattr(splits_mod, "_inverse_kernels", no_work)
    with pytest.raises(InsufficientResourcesError, match="force=True"):
        make_splits(template_hm, design="multi", n_train=2, n_val=1, n_test=1,
                    out=tmp_path / "splits", n_dipoles=1)  # fmt: skip
    with pytest.raises(InsufficientResourcesError, match="example set of 5 examples"):
        build_dataset(template_hm, small_sim, out=tmp_path / "set")
    assert list(tmp_path.iterdir()) == []


def test_size_estimate_scales_with_the_request(template_hm):
    from napari_meg_unet.configs import DatasetConfig, SimulationConfig

    def estimate(n_train, **sim):
        dataset, simulation, inverse = ds_mod.split_configs(
            dataset=DatasetConfig(n_train=n_train, n_val=10, n_test=10),
            simulation=SimulationConfig(**sim),
        )
        n_rows = len(template_hm.rows(inverse.hemi))
        sizes = {"train": n_train, "val": 10, "test": 10}
        sims = {k: splits_mod._split_simulation(simulation, n=n, n_hemi_rows=n_rows, seed=0)
                for k, n in sizes.items()}  # fmt: skip
        return splits_mod._splits_estimate(
            template_hm, sims, sizes, inverse, amplitudes=False, chunk=256
        )

    small, big = estimate(100), estimate(256_800)
    n_rows = len(template_hm.rows("rh"))
    inputs = 256_800 * 3 * n_rows * 32 * 4
    assert inputs < big.disk < 1.5 * inputs
    assert big.memory > 256_800 * len(template_hm.ch_names) * 32 * 4  # the training simulation
    assert small.disk < big.disk / 1000 and small.memory < big.memory


def test_non_finite_inputs_name_the_file_and_example(tmp_path):
    examples = _write(tmp_path / "set", n=6)
    read_dataset(examples.path, check_finite=True)  # clean: fine
    inputs = np.load(examples.path / "inputs.npy", mmap_mode="r+")
    inputs[4, 1, 2, 3] = np.nan
    inputs.flush()
    del inputs
    message = r"inputs.npy' contains NaN or Inf values: example 4"
    with pytest.raises(ValueError, match=message):
        read_dataset(examples.path, check_finite=True)
    with pytest.raises(ValueError, match=message):
        read_dataset(examples.path).check_finite(chunk=2)
    amplitudes = np.full((6, N_ROWS, N_TIMES), 1.0, np.float32)
    amplitudes[2, 0, 0] = np.inf
    np.save(examples.path / "amplitudes.npy", amplitudes)
    np.save(examples.path / "inputs.npy", np.zeros((6, len(METHODS), N_ROWS, N_TIMES), np.float32))
    with pytest.raises(ValueError, match=r"amplitudes.npy' contains NaN or Inf values: example 2"):
        read_dataset(examples.path, check_finite=True)


def test_dataset_command_size_guard_and_force(tmp_path, capsys, monkeypatch, template_hm):
    from napari_meg_unet import _resources
    from napari_meg_unet.cli import main

    monkeypatch.setattr(_resources, "free_disk", lambda *args: 1024)
    out = tmp_path / "ds"
    argv = ["dataset", "--out", str(out), "--design", "multi", "--n-dipoles", "1",
            "--n-train", "2", "--n-val", "1", "--n-test", "1", "--no-progress"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "free" in err and "--force" in err and "Traceback" not in err
    assert not out.exists()
    assert main([*argv, "--force", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["splits"]["test"]["n"] == 1
