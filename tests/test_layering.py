"""The layering rule, read from the source: the core never imports ``bench``, ``cli`` or ``_qt``.

An AST scan of every module under ``src/napari_meg_unet`` (imports inside
functions included): a subpackage of :data:`LAYERS` may only be imported by the
subpackages listed for it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = "napari_meg_unet"
SRC = Path(__file__).resolve().parents[1] / "src" / PACKAGE
#: Subpackage -> the subpackages allowed to import it (the core is allowed none of them).
LAYERS = {
    "bench": ("bench", "cli"),
    "cli": ("cli",),
    "_qt": ("_qt",),
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(path: Path):
    """``(line, absolute module name)`` of every import in the file at ``path``."""
    return _imports(path.read_text(), _module_name(path), is_package=path.name == "__init__.py")


def _imports(source: str, module: str, *, is_package: bool):
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            yield node.lineno, target
            for alias in node.names:  # "from . import bench" imports the subpackage
                yield node.lineno, f"{target}.{alias.name}"


def _layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != PACKAGE or len(parts) < 2:
        return None
    return parts[1]


def test_scan_resolves_relative_imports():
    driver = SRC / "bench" / "accuracy" / "driver.py"
    assert _module_name(driver) == f"{PACKAGE}.bench.accuracy.driver"
    imported = {name for _, name in _imported(driver)}
    assert f"{PACKAGE}.accuracy" in imported and f"{PACKAGE}.bench.accuracy.presets" in imported
    # what the core demo module once did, in each spelling
    for source in ("from .bench.accuracy import find_row", "from . import bench",
                   f"import {PACKAGE}.bench.accuracy", "def f():\n    from .bench import x"):
        names = {name for _, name in _imports(source, f"{PACKAGE}.demo", is_package=False)}
        assert "bench" in {_layer(n) for n in names}, source
    names = {n for _, n in _imports("from ..bench import x", f"{PACKAGE}.cli", is_package=True)}
    assert f"{PACKAGE}.bench" in names  # a package's __init__ counts levels from itself


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_layers_are_imported_only_from_above(layer):
    offences = []
    for path in sorted(SRC.rglob("*.py")):
        own = _layer(_module_name(path))
        if own in LAYERS[layer]:
            continue
        for line, name in _imported(path):
            if _layer(name) == layer:
                offences.append(f"{path.relative_to(SRC.parent)}:{line} imports {name}")
    assert not offences, f"only {LAYERS[layer]} may import {PACKAGE}.{layer}:\n" + "\n".join(
        offences
    )


#: The levels of docs/architecture.md: a module may import its own level and the ones below.
LEVELS = {
    "foundation": (
        "__init__", "_config", "_docs", "_io", "_logging", "_machine", "_parse", "_resources",
        "_validation", "configs", "device", "fingerprint", "progress",
    ),
    "model": (
        "bids", "coreg", "headmodel", "inverse", "metrics", "models", "peers", "recordings",
        "simulate",
    ),
    "pipelines": (
        "accuracy", "checkpoint", "dataset", "demo", "evaluation", "layers", "report", "train",
        "training_for_recording",
    ),
    "applications": ("_qt", "_reader", "_sample_data", "_writer", "bench", "cli"),
}  # fmt: skip
_LEVEL = {name: rank for rank, names in enumerate(LEVELS.values()) for name in names}


def test_every_module_has_a_level():
    names = {p.stem if p.is_file() else p.name for p in SRC.iterdir()}
    names = {n for n in names if not n.startswith("__pycache__") and n != "napari"}
    assert names - {"__init__"} <= set(_LEVEL), sorted(names - set(_LEVEL))


def test_modules_import_only_their_level_and_below():
    offences = []
    for path in sorted(SRC.rglob("*.py")):
        own = _layer(_module_name(path)) or "__init__"
        for line, name in _imported(path):
            target = _layer(name)
            if target in _LEVEL and _LEVEL[target] > _LEVEL[own]:
                offences.append(f"{path.relative_to(SRC.parent)}:{line} imports {name}")
    assert not offences, "a module imports a higher level:\n" + "\n".join(offences)
