"""The core imports without Qt or napari (checked in a subprocess that blocks them)."""

import subprocess
import sys
import textwrap

CORE_MODULES = [
    "napari_meg_unet",
    "napari_meg_unet.headmodel",
    "napari_meg_unet.simulate",
    "napari_meg_unet.inverse",
    "napari_meg_unet.metrics",
    "napari_meg_unet.evaluation",
    "napari_meg_unet.dataset",
    "napari_meg_unet.models",
    "napari_meg_unet.train",
    "napari_meg_unet.bids",
    "napari_meg_unet.layers",
    "napari_meg_unet.cli",
    "napari_meg_unet.bench.core",
]


def test_core_imports_without_qt():
    code = textwrap.dedent(
        f"""
        import importlib, importlib.abc, sys

        BLOCKED = ("napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "vispy", "superqt")

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ImportError(f"blocked GUI import: {{name}}")
                return None

        sys.meta_path.insert(0, Block())
        for name in {CORE_MODULES!r}:
            importlib.import_module(name)
        from napari_meg_unet.cli import build_parser
        build_parser()
        print("ok")
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
