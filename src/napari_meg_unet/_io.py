"""Atomic file writing and JSON helpers shared by every module that writes to disk."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np


def current_umask() -> int:
    """The process umask (read from /proc on Linux, else by setting and restoring it)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_path(path: Path) -> None:
    """Flush one file's (or directory entry's) data to disk."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) if path.is_dir() else os.O_RDONLY
    try:
        fd = os.open(path, flags)
    except OSError:  # e.g. directories cannot be opened on some platforms
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _finalise_tree(root: Path, umask: int) -> None:
    """Give a temporary file/tree the permissions the umask asks for and fsync it."""
    if root.is_dir():
        for dirpath, _dirnames, filenames in os.walk(root):
            for name in filenames:
                _fsync_path(Path(dirpath) / name)
        root.chmod(0o777 & ~umask)
    else:
        root.chmod(0o666 & ~umask)
    _fsync_path(root)


def check_output_path(path, *, overwrite: bool, what: str = "output") -> Path:
    """Return ``path`` as a Path, refusing an existing one unless ``overwrite``."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(
            f"The {what} path {str(path)!r} already exists; pass overwrite=True "
            "(CLI: --overwrite) to replace it."
        )
    return path


def check_writable_output(path, *, overwrite: bool, what: str = "output") -> Path:
    """:func:`check_output_path`, and the folder that will hold ``path`` must be writable.

    The nearest existing ancestor of ``path`` (its parent, or a folder above a
    parent that will be created) must be a writable folder; the error names
    ``path`` itself, not the temporary path a writer would fail on later.
    """
    path = check_output_path(path, overwrite=overwrite, what=what)
    parent = path.absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise NotADirectoryError(
            f"Cannot write the {what} {str(path)!r}: {str(parent)!r} is not a folder."
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(
            f"Cannot write the {what} {str(path)!r}: the folder {str(parent)!r} is not writable."
        )
    return path


@contextlib.contextmanager
def atomic_path(path, *, suffix: str | None = None):
    """Yield a temporary path next to ``path`` and rename it onto ``path`` on success.

    Nothing already at ``path`` is touched if the body raises. The result gets
    the permissions the umask gives new files (0644 under umask 022) and is
    flushed to disk (``fsync``) before the rename.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = suffix if suffix is not None else "".join(path.suffixes)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        # mkstemp makes 0600 files: give the result the permissions of any other new file
        _finalise_tree(tmp, current_umask())
        os.replace(tmp, path)
        _fsync_path(path.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def replace_dir(src, dst, *, overwrite: bool, what: str = "output") -> None:
    """Rename the directory ``src`` onto ``dst``, moving an existing ``dst`` aside first.

    The old ``dst`` is removed only after the new one is in place.
    """
    src, dst = Path(src), Path(dst)
    if not dst.exists():
        os.replace(src, dst)
        return
    check_output_path(dst, overwrite=overwrite, what=what)  # re-checked: it may be new
    old = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=".old", dir=dst.parent))
    old.rmdir()
    os.replace(dst, old)
    os.replace(src, dst)
    if old.is_dir():
        shutil.rmtree(old, ignore_errors=True)
    else:
        old.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path, *, overwrite: bool, what: str = "output"):
    """Yield a temporary sibling directory that replaces ``path`` when the body succeeds.

    An existing ``path`` is refused up front unless ``overwrite``; on failure the
    temporary directory is removed and ``path`` is left untouched. The folder
    gets the permissions the umask gives new folders (0755 under umask 022) and
    every file in it is flushed to disk (``fsync``) before the rename.
    """
    path = check_output_path(path, overwrite=overwrite, what=what)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        # mkdtemp makes 0700 folders: give the result the permissions of any other new folder
        _finalise_tree(tmp, current_umask())
        replace_dir(tmp, path, overwrite=overwrite, what=what)
        _fsync_path(path.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serialisable")


def to_json(obj: Any, **kwargs) -> str:
    """Serialise ``obj`` with numpy scalars/arrays and paths converted."""
    return json.dumps(obj, default=_json_default, **kwargs)


def write_json(path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(to_json(obj, indent=2, sort_keys=True) + "\n")
    return path


def read_json(path) -> dict:
    """Read a JSON file with a clear error naming the file."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(
            f"Expected a JSON file at {str(path)!r}; it does not exist."
        ) from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{str(path)!r} is not valid JSON: {err}") from None


def save_npy(path, array: np.ndarray) -> Path:
    """Save one array with ``np.save`` atomically (loadable with ``mmap_mode``)."""
    path = Path(path)
    with atomic_path(path, suffix=".npy") as tmp:
        np.save(tmp, np.ascontiguousarray(array), allow_pickle=False)
    return path
