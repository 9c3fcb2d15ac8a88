"""Main-thread responsiveness of the plugin for every step of the workflow.

A QTimer fires every ``--interval`` ms in the Qt main thread while each step
runs: open a BIDS folder (written from the shared sample raw with mne-bids),
open a plain FIF file (the shared sample evoked), build the template head
model, simulate, invert, train, predict, evaluate, and change what the cortex
shows. The gaps between consecutive beats show how long napari's event loop
was blocked. Target: no gap over 100 ms.

Each gap is also attributed: the benchmark times every call of the plugin's
main-thread handlers (progress, the widgets' result handlers, each piece of
the layer queue's finishing work, the cortex controller) and every canvas
paint (vispy ``on_draw``); what remains of a long gap is napari's own work
(layer-list entries, slicing, vispy nodes). On a
machine without a GPU, Xvfb renders with Mesa's software rasteriser, so a
single paint of a full-HD canvas costs tens to hundreds of milliseconds; the
table says how much of each step's longest gap was painting.

Run it with a display (``xvfb-run -a -s "-screen 0 1920x1200x24"`` on a
headless machine)::

    xvfb-run -a -s "-screen 0 1920x1200x24" python benchmarks/gui_heartbeat.py \\
        --out benchmarks/results/gui_heartbeat.json

Prints a Markdown table and writes it (with the machine and the settings) as JSON.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

PLUGIN = "napari-meg-unet"


def _parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="write the result as JSON to this file")
    parser.add_argument("--interval", type=float, default=10.0, help="heartbeat period (ms)")
    parser.add_argument("--size", type=int, nargs=2, default=(1920, 1150), metavar=("W", "H"),
                        help="viewer window size (px)")  # fmt: skip
    parser.add_argument("--data", default=os.environ.get("NAPARI_MEG_UNET_DATA"),
                        help="the shared data folder (sample/MEG/...)")  # fmt: skip
    parser.add_argument("--events", type=int, default=8, help="simulated events")
    parser.add_argument("--n-train", type=int, default=32)
    parser.add_argument("--n-val", type=int, default=8)
    parser.add_argument("--skip", nargs="*", default=(), help="steps to leave out")
    return parser.parse_args(argv)


# =========================================================================== timing
class Probe:
    """Times every call of some functions (main-thread handlers, paints)."""

    def __init__(self):
        self.calls: dict[str, list] = {}
        self._undo = []

    def wrap(self, owner, name: str, label: str) -> None:
        original = getattr(owner, name)
        calls = self.calls.setdefault(label, [])

        @functools.wraps(original)
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                calls.append((start, time.perf_counter() - start))

        setattr(owner, name, timed)
        self._undo.append((owner, name, original))

    def restore(self) -> None:
        for owner, name, original in reversed(self._undo):
            setattr(owner, name, original)

    def longest(self, label, start, stop) -> float:
        durations = [d for t, d in self.calls.get(label, []) if start <= t <= stop]
        return 1e3 * max(durations, default=0.0)


def _install_probe() -> Probe:
    from vispy.scene.canvas import SceneCanvas

    from napari_meg_unet._qt import _common, _cortex, _layerqueue

    probe = Probe()
    probe.wrap(SceneCanvas, "on_draw", "paint")
    probe.wrap(_layerqueue.LayerQueue, "_put", "add one layer (napari)")
    probe.wrap(_layerqueue.LayerQueue, "_finish", "layout + camera")
    probe.wrap(_common.DockWidget, "_yielded", "plugin handler")
    probe.wrap(_cortex.CortexController, "_assign", "plugin handler")
    # the widgets' result handlers (what runs in the main thread when a step returns)
    from napari_meg_unet._qt import _evaluate, _headmodel, _inverse, _predict, _simulate

    for owner, name in ((_headmodel.HeadModelWidget, "_built"),
                        (_simulate.SimulateWidget, "_done"), (_inverse.InverseWidget, "_done"),
                        (_predict.PredictWidget, "_done"), (_evaluate.EvaluateWidget, "_done"),
                        (_evaluate.EvaluateWidget, "_show_map")):  # fmt: skip
        probe.wrap(owner, name, "plugin handler")
    return probe


class Heartbeat:
    def __init__(self, interval_ms):
        from qtpy.QtCore import QTimer

        self.beats: list[float] = []
        self.timer = QTimer()
        self.timer.setInterval(int(interval_ms))
        self.timer.timeout.connect(lambda: self.beats.append(time.perf_counter()))

    def gaps(self, start, stop) -> np.ndarray:
        beats = np.asarray([b for b in self.beats if start <= b <= stop])
        return np.diff(beats) * 1e3 if len(beats) > 1 else np.zeros(1)


def _run_until(predicate, timeout=900.0) -> float:
    from qtpy.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    start = time.perf_counter()
    check = QTimer()
    check.setInterval(20)
    check.timeout.connect(lambda: (predicate() or time.perf_counter() - start > timeout)
                          and loop.quit())  # fmt: skip
    check.start()
    loop.exec()
    check.stop()
    if not predicate():
        raise SystemExit(f"timed out after {timeout:.0f} s")
    return time.perf_counter() - start


# =========================================================================== steps
def _bids_dataset(data: Path) -> Path:
    import mne
    import mne_bids

    raw = mne.io.read_raw_fif(data / "sample" / "MEG" / "sample_audvis_trunc_raw_sss.fif",
                              verbose="error")  # fmt: skip
    raw.set_annotations(mne.Annotations(raw.first_time + np.array([0.25, 0.6]), [0, 0],
                                        ["auditory", "visual"],
                                        orig_time=raw.info["meas_date"]))  # fmt: skip
    root = Path(tempfile.mkdtemp(prefix="heartbeat-bids-")) / "ds"
    bp = mne_bids.BIDSPath(subject="sample", task="audvis", root=root, datatype="meg")
    mne_bids.write_raw_bids(raw, bp, verbose="error")
    return root


def _steps(viewer, docks, args, data: Path, work: Path) -> list:
    """``(name, start, done)``: ``start()`` begins the step, ``done()`` says it has ended."""
    from napari_meg_unet._qt._cortex import controller_for
    from napari_meg_unet._qt._layerqueue import queue_for

    queue = queue_for(viewer)

    def idle(widget=None):
        return lambda: (widget is None or not widget.busy) and queue.idle

    w = docks
    bids_root = _bids_dataset(data)
    evoked = data / "sample" / "MEG" / "test-ave.fif.gz"

    def opened(name):
        return lambda: name in viewer.layers and queue.idle

    def set_train():
        t = w["Train"]
        t.out_dir.value = str(work / "train")
        t.epochs.value, t.n_train.value, t.n_val.value = 1, args.n_train, args.n_val
        t.batch_size.value, t.device.value = 8, "cpu"
        return t.start()

    def set_predict():
        p = w["Predict"]
        p.data_layer.value = "sensor data"
        p.checkpoint.value = w["Train"].checkpoints["best"]
        return p.predict()

    controller = controller_for(viewer)

    def show(name):
        return lambda: controller.show(name)

    def cortex_shows(name):
        return lambda: viewer.layers["cortex"].metadata.get("shows") == name and queue.idle

    sim_w = w["Simulate"]
    sim_w.n_events.value, sim_w.hemi.value, sim_w.snr.value = args.events, "rh", 3.0
    return [
        ("open BIDS folder", lambda: viewer.open(str(bids_root), plugin=PLUGIN),
         opened("cortex sub-sample")),
        ("open plain FIF (evoked)", lambda: viewer.open(str(evoked), plugin=PLUGIN),
         opened("MEG test-ave")),
        ("head model (template)", w["Head model"].build, idle(w["Head model"])),
        ("simulate", sim_w.simulate, idle(sim_w)),
        ("inverse (MNE, dSPM, sLORETA)", w["Inverse"].compute, idle(w["Inverse"])),
        ("train (1 epoch)", set_train, idle(w["Train"])),
        ("predict", set_predict, idle(w["Predict"])),
        ("evaluate", w["Evaluate"].evaluate,
         lambda: not w["Evaluate"].busy and queue.idle and any(
             layer.name.startswith("mean DLE") for layer in viewer.layers)),
        ("cortex source: MNE (mapped)", show("MNE"), cortex_shows("MNE")),
        ("cortex source: truth (cached)", show("truth"), cortex_shows("truth")),
        ("cortex source: MNE (cached)", show("MNE"), cortex_shows("MNE")),
    ]  # fmt: skip


# =========================================================================== main
def _machine() -> dict:
    import torch

    from napari_meg_unet import __version__

    return {
        "version": __version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "display": os.environ.get("DISPLAY"),
    }


def _row(name, seconds, gaps, probe, start, stop) -> dict:
    return {
        "step": name,
        "duration_s": round(seconds, 2),
        "max_gap_ms": round(float(gaps.max()), 1),
        "p99_gap_ms": round(float(np.percentile(gaps, 99)), 1),
        "n_over_100ms": int((gaps > 100).sum()),
        "longest_paint_ms": round(probe.longest("paint", start, stop), 1),
        "longest_layer_add_ms": round(probe.longest("add one layer (napari)", start, stop), 1),
        "longest_plugin_handler_ms": round(
            max(probe.longest("plugin handler", start, stop),
                probe.longest("layout + camera", start, stop)), 1),  # fmt: skip
    }


def _table(rows) -> str:
    head = ("| step | s | max gap (ms) | p99 (ms) | gaps > 100 ms | longest paint (ms) | "
            "longest layer add (ms) | longest plugin handler (ms) |")  # fmt: skip
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['step']} | {r['duration_s']} | {r['max_gap_ms']} | {r['p99_gap_ms']} | "
            f"{r['n_over_100ms']} | {r['longest_paint_ms']} | {r['longest_layer_add_ms']} | "
            f"{r['longest_plugin_handler_ms']} |"
        )
    return "\n".join(lines)


def main(argv=None) -> dict:
    import napari

    args = _parse_args(argv)
    if not args.data:
        raise SystemExit("set --data or NAPARI_MEG_UNET_DATA to the shared data folder")
    data = Path(args.data)
    work = Path(tempfile.mkdtemp(prefix="napari-meg-unet-heartbeat-"))
    os.environ.setdefault("NAPARI_MEG_UNET_CONFIG", str(work / "config"))
    viewer = napari.Viewer(show=True)
    viewer.window.resize(*args.size)
    docks = {}
    for name in ("Head model", "Simulate", "Inverse", "Train", "Predict", "Evaluate", "View"):
        _, docks[name] = viewer.window.add_plugin_dock_widget(PLUGIN, name, tabify=True)
    probe = _install_probe()
    beat = Heartbeat(args.interval)
    beat.timer.start()
    idle_start = time.perf_counter()
    _idle(3.0)
    idle_gaps = beat.gaps(idle_start, time.perf_counter())
    rows = []
    for name, start_step, done in _steps(viewer, docks, args, data, work):
        if name in args.skip:
            continue
        t0 = time.perf_counter()
        start_step()
        seconds = _run_until(done)
        _idle(1.0)  # the last paints of the step
        t1 = time.perf_counter()
        errors = {k: w.last_error for k, w in docks.items() if w.last_error}
        if errors:
            raise SystemExit(f"{name} failed: {errors}")
        rows.append(_row(name, seconds, beat.gaps(t0, t1), probe, t0, t1))
        print(_table(rows[-1:]).splitlines()[-1], flush=True)
    beat.timer.stop()
    probe.restore()
    viewer.close()
    result = {
        "benchmark": "gui_heartbeat",
        "machine": _machine(),
        "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(args).items()},
        "idle": {"max_gap_ms": round(float(idle_gaps.max()), 1),
                 "median_gap_ms": round(float(np.median(idle_gaps)), 1)},  # fmt: skip
        "steps": rows,
    }
    print()
    print(_table(rows))
    print(f"\nidle: max gap {result['idle']['max_gap_ms']} ms")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return result


def _idle(seconds: float) -> None:
    from qtpy.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    QTimer.singleShot(int(seconds * 1000), loop.quit)
    loop.exec()


if __name__ == "__main__":
    main()
