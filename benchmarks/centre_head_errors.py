"""Where a centre-head network's single-dipole errors come from: the peak, or the head.

Simulates fresh single-dipole events of the ``benchmark`` preset (off-grid, realistic time
courses, whitened SNR 1; a seed of its own, not the test set's), runs the network
(``models/centre.py``) and splits the events by where its peak (argmax of the window map)
lies relative to the grid vertex nearest to the true dipole: the same vertex, its 1-ring,
its 2-ring (the centre head's ring), or farther. Per group: the share of events and the mean
DLE (mm) of the grid argmax, of the centre head at the peak (the ``centre-head`` estimator)
and of the centre head with its ring centred on the nearest vertex (as in training: what the
head itself learned, the peak aside). Prints a table and writes JSON::

    python benchmarks/centre_head_errors.py runs/ckpt-centre/single-mesh-cpu-centre/best.pt \\
        --out benchmarks/results/centre-head-errors.json
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from napari_meg_unet._io import write_json
from napari_meg_unet._machine import machine_description
from napari_meg_unet.accuracy.hybrids import NetworkMaps
from napari_meg_unet.bench.accuracy import get_preset
from napari_meg_unet.headmodel import make_template_headmodel
from napari_meg_unet.models import MeshHierarchy
from napari_meg_unet.models.centre import centre_positions, ring_table
from napari_meg_unet.simulate import simulate


def _placed(centres, at, positions, rings) -> np.ndarray:
    return np.array([centre_positions(c, [v], positions, rings)[0]
                     for c, v in zip(centres, at, strict=True)])  # fmt: skip


def _groups(peak, nearest, mesh) -> dict:
    """Masks: the peak is the nearest vertex, in its 1-ring, in its 2-ring, farther."""
    one, two = ring_table(mesh, hops=1), ring_table(mesh, hops=2)

    def within(table, mask):
        return np.array([n in table[p][mask[p]] for p, n in zip(peak, nearest, strict=True)])

    same = peak == nearest
    ring1 = within(*one) & ~same
    ring2 = within(*two) & ~same & ~ring1
    return {"peak = nearest vertex": same, "peak in its 1-ring": ring1,
            "peak in its 2-ring": ring2, "peak farther": ~(same | ring1 | ring2)}  # fmt: skip


def run(args) -> dict:
    t0 = time.perf_counter()
    p = get_preset("benchmark")
    hm = make_template_headmodel(spacing=p.spacing, modality=p.modality, verbose=False)
    config = p.simulation_config(hm, kind="single", n=args.n_events, snr=1.0, seed=args.seed)
    sim = simulate(hm, **config.to_dict(), verbose=False)
    maps = NetworkMaps(args.checkpoint, hm, sim.info)
    positions = np.asarray(hm.positions[maps.rows])
    window, centres = maps.window_maps_and_centres(np.asarray(sim.data))
    mesh = MeshHierarchy.from_headmodel(hm, maps.inverse.hemi)
    rings = ring_table(mesh)
    true = np.array([np.asarray(sim.sources["position"])[sim.event_sources(i)][0]
                     for i in range(len(window))])  # fmt: skip
    peak = window.argmax(axis=1)
    nearest = np.linalg.norm(positions[None] - true[:, None], axis=-1).argmin(axis=1)

    def dle(estimates):
        return np.linalg.norm(estimates - true, axis=1) * 1000.0

    errors = {
        "grid argmax": dle(positions[peak]),
        "centre head at the peak": dle(_placed(centres, peak, positions, rings)),
        "centre head at the nearest vertex": dle(_placed(centres, nearest, positions, rings)),
    }
    floor = dle(positions[nearest])
    rows = [{"group": "all events", "share": 1.0, "floor_mm": float(floor.mean()),
             **{k: float(v.mean()) for k, v in errors.items()}}]  # fmt: skip
    for name, sel in _groups(peak, nearest, mesh).items():
        rows.append({"group": name, "share": float(sel.mean()),
                     "floor_mm": float(floor[sel].mean()) if sel.any() else None,
                     **{k: float(v[sel].mean()) if sel.any() else None
                        for k, v in errors.items()}})  # fmt: skip
    return {"benchmark": "centre-head-errors", "checkpoint": str(args.checkpoint),
            "n_events": int(len(window)), "seed": args.seed, "snr": 1.0,
            "machine": machine_description(), "rows": rows,
            "total_s": time.perf_counter() - t0}  # fmt: skip


def table(result) -> str:
    keys = ("grid argmax", "centre head at the peak", "centre head at the nearest vertex")
    lines = ["| events | share | grid floor | " + " | ".join(keys) + " |",
             "|---|---|---|" + "---|" * len(keys)]  # fmt: skip
    for row in result["rows"]:
        cells = ["–" if row[k] is None else f"{row[k]:.2f}" for k in ("floor_mm", *keys)]
        lines.append(f"| {row['group']} | {100 * row['share']:.0f}% | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="a centre-head network's best.pt (single dipoles)")
    parser.add_argument("--n-events", type=int, default=642)
    parser.add_argument("--seed", type=int, default=987654)
    parser.add_argument("--out", help="JSON file to write")
    args = parser.parse_args(argv)
    result = run(args)
    print(table(result))
    if args.out:
        write_json(args.out, result)
        print(json.dumps({"written": args.out}))


if __name__ == "__main__":
    main()
