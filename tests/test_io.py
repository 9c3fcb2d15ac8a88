"""Atomic writes: nothing already on disk is lost or half-written."""

import json
import os
import stat

import numpy as np
import pytest

from napari_meg_unet import _io
from napari_meg_unet._io import atomic_dir, current_umask, save_npy, write_json


def test_atomic_path_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "a.json"
    _io.write_json(target, {"v": 1})
    with pytest.raises(RuntimeError), _io.atomic_path(target) as tmp:
        tmp.write_text("partial")
        raise RuntimeError("boom")
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_atomic_dir_refuses_and_replaces(tmp_path):
    out = tmp_path / "out"
    with _io.atomic_dir(out, overwrite=False) as tmp:
        (tmp / "x.txt").write_text("1")
    assert (out / "x.txt").read_text() == "1"
    with pytest.raises(FileExistsError, match="already exists"):
        with _io.atomic_dir(out, overwrite=False):
            pass
    with pytest.raises(ValueError), _io.atomic_dir(out, overwrite=True) as tmp:
        (tmp / "y.txt").write_text("2")
        raise ValueError("fail mid-write")
    assert sorted(p.name for p in out.iterdir()) == ["x.txt"]
    with _io.atomic_dir(out, overwrite=True) as tmp:
        (tmp / "y.txt").write_text("2")
    assert sorted(p.name for p in out.iterdir()) == ["y.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_save_npy_mmap_and_json_errors(tmp_path):
    path = _io.save_npy(tmp_path / "a.npy", np.arange(6.0).reshape(2, 3))
    assert np.load(path, mmap_mode="r")[1, 2] == 5.0
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="bad.json"):
        _io.read_json(tmp_path / "bad.json")
    with pytest.raises(FileNotFoundError, match="missing.json"):
        _io.read_json(tmp_path / "missing.json")
    assert _io.to_json({"a": np.float32(1.5), "b": np.arange(2)}) == '{"a": 1.5, "b": [0, 1]}'


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_outputs_respect_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        save_npy(tmp_path / "a.npy", np.zeros(3))
        write_json(tmp_path / "b.json", {"x": 1})
        with atomic_dir(tmp_path / "folder", overwrite=False) as tmp:
            (tmp / "inner.txt").write_text("x")
            (tmp / "sub").mkdir()
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.npy").stat().st_mode) == 0o666 & ~umask
    assert stat.S_IMODE((tmp_path / "b.json").stat().st_mode) == 0o666 & ~umask
    assert stat.S_IMODE((tmp_path / "folder").stat().st_mode) == 0o777 & ~umask
    assert stat.S_IMODE((tmp_path / "folder" / "inner.txt").stat().st_mode) == 0o666 & ~umask
    assert stat.S_IMODE((tmp_path / "folder" / "sub").stat().st_mode) == 0o777 & ~umask
    assert current_umask() == old


def test_files_are_fsynced_before_the_rename(tmp_path, monkeypatch):
    import napari_meg_unet._io as io

    order = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(io.os, "fsync", lambda fd: (order.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(
        io.os, "replace", lambda a, b: (order.append("replace"), real_replace(a, b))[1]
    )
    save_npy(tmp_path / "a.npy", np.zeros(3))
    assert order[0] == "fsync" and "replace" in order
    order.clear()
    with atomic_dir(tmp_path / "d", overwrite=False) as tmp:
        (tmp / "x.txt").write_text("x")
    assert order.index("fsync") < order.index("replace")
