"""Main-thread responsiveness of the Train dock widget while a network trains.

A QTimer fires every ``--interval`` ms in the Qt main thread while the Train
widget simulates its data sets and trains (in its napari ``thread_worker``);
the gaps between consecutive beats show how long the event loop was blocked.
Target: max gap < 100 ms.

Run it with a display (``xvfb-run -a`` on a headless machine)::

    xvfb-run -a python benchmarks/gui_heartbeat.py --out heartbeat.json

Prints the gap statistics and writes them (with the machine, the settings and
the training summary) as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np


def _parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="write the result as JSON to this file")
    parser.add_argument("--interval", type=float, default=10.0, help="heartbeat period (ms)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--n-train", type=int, default=64)
    parser.add_argument("--n-val", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--model", default="thesis", choices=("thesis", "mesh"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cache-dir", help="head-model cache (default: the user cache)")
    return parser.parse_args(argv)


def _train_widget(args):
    """A viewer showing the template cortex, with a Train dock widget set up from ``args``."""
    import napari
    from napari.layers import Layer

    from napari_meg_unet import layers
    from napari_meg_unet._qt._train import TrainWidget
    from napari_meg_unet.headmodel import make_template_headmodel

    hm = make_template_headmodel(spacing="ico3", modality="meg", cache_dir=args.cache_dir)
    viewer = napari.Viewer(show=True)
    mesh = layers.cortex_mesh_from_headmodel(hm, full=False)
    viewer.add_layer(
        Layer.create(*layers.cortex_layer(mesh, name="cortex", metadata={"headmodel": hm}))
    )
    widget = TrainWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Train")
    out_dir = Path(tempfile.mkdtemp(prefix="napari-meg-unet-heartbeat-"))
    widget.out_dir.value = str(out_dir)
    widget.model.value = args.model
    widget.epochs.value = args.epochs
    widget.n_train.value = args.n_train
    widget.n_val.value = args.n_val
    widget.batch_size.value = args.batch_size
    widget.device.value = args.device
    return viewer, widget


def _measure(widget, interval_ms):
    """Train with the widget while a timer beats; returns (beat times, event times, seconds)."""
    from qtpy.QtCore import QEventLoop, QTimer

    beats: list[float] = []
    timer = QTimer()
    timer.setInterval(int(interval_ms))
    timer.timeout.connect(lambda: beats.append(time.perf_counter()))
    loop = QEventLoop()
    batches: list[float] = []
    original = widget._event
    widget._event = lambda event: (batches.append(time.perf_counter()), original(event))

    # let the new window finish its first paints before measuring
    warm_up = QEventLoop()
    QTimer.singleShot(1000, warm_up.quit)
    warm_up.exec()

    timer.start()
    start = time.perf_counter()
    worker = widget.start()
    if worker is None:
        raise SystemExit(f"training did not start: {widget.last_error}")
    worker.finished.connect(loop.quit)
    loop.exec()
    elapsed = time.perf_counter() - start
    timer.stop()
    return beats, batches, elapsed


def _result(args, widget, beats, batches, elapsed) -> dict:
    import torch

    from napari_meg_unet import __version__
    from napari_meg_unet._qt._tasks import default_threads

    gaps = np.diff(beats) * 1e3
    return {
        "benchmark": "gui_heartbeat",
        "version": __version__,
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "torch_threads_training": default_threads(),
        },
        "settings": vars(args),
        "duration_s": elapsed,
        "n_beats": int(len(beats)),
        "n_events": len(batches),
        "gap_ms": {
            "max": float(gaps.max()),
            "p99": float(np.percentile(gaps, 99)),
            "median": float(np.median(gaps)),
            "n_over_100ms": int((gaps > 100).sum()),
        },
        "training": {
            key: widget.summary.get(key)
            for key in ("epochs_done", "best_epoch", "best_dle_mm", "stopped")
        },
    }


def main(argv=None) -> dict:
    args = _parse_args(argv)
    viewer, widget = _train_widget(args)
    beats, batches, elapsed = _measure(widget, args.interval)
    viewer.close()
    if widget.last_error:
        raise SystemExit(f"training failed: {widget.last_error}")
    result = _result(args, widget, beats, batches, elapsed)
    print(
        f"{result['n_beats']} beats over {elapsed:.1f} s ({result['n_events']} training events): "
        f"max gap {result['gap_ms']['max']:.1f} ms, p99 {result['gap_ms']['p99']:.1f} ms, "
        f"median {result['gap_ms']['median']:.1f} ms, {result['gap_ms']['n_over_100ms']} gaps "
        "over 100 ms"
    )
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2, default=float) + "\n")
    return result


if __name__ == "__main__":
    main()
