"""The threshold of the reported dipole moments (``peers.field.MOMENT_RCOND``) on validation.

Usage::

    python benchmarks/moment_rcond.py SENSOR_NET_FILE [N_EVENTS] [OUT_JSON]

Simulates ``N_EVENTS`` (default 60) validation events of the `benchmark` preset's 2–5
dipoles at whitened SNR 1 (seed 777: not a test set of any run) and scores the
time-course error and DLE of the several-source sensor network (``SENSOR_NET_FILE``, e.g.
from ``benchmarks/sensor_net_device.py``) and of its two dipole fits for each candidate
threshold. Prints a table and writes ``OUT_JSON`` (default ``moment-rcond.json``).
"""

import json
import sys

import numpy as np

from napari_meg_unet import peers
from napari_meg_unet.bench.accuracy.presets import get_preset
from napari_meg_unet.evaluation import score_estimates
from napari_meg_unet.headmodel import make_template_headmodel
from napari_meg_unet.peers import field, iter_run_peer
from napari_meg_unet.progress import plain
from napari_meg_unet.simulate import simulate

CANDIDATES = (1e-10, 0.01, 0.05, 0.1, 0.2)
network_file = sys.argv[1]
n_events = int(sys.argv[2]) if len(sys.argv) > 2 else 60
out = sys.argv[3] if len(sys.argv) > 3 else "moment-rcond.json"
p = get_preset("benchmark")
hm = make_template_headmodel(spacing=p.spacing, modality=p.modality)
val = simulate(hm, config=p.simulation_config(hm, kind="multi", n=n_events, snr=1.0, seed=777),
               seed=777, verbose=False)  # fmt: skip
settings = simulate(hm, config=p.simulation_config(hm, kind="multi", n=1, snr=p.train_snr,
                                                   seed=1), seed=1, verbose=False)  # fmt: skip
rows = []
print("| estimator | threshold | mean TC error | median | max | mean DLE (mm) |")
print("|---|---|---|---|---|---|")
for name in ("sensor-net", "sensor-net-fit", "sensor-net-fit-mne"):
    peer = peers.get_peer(name)
    params = {**peer.defaults, "network_file": network_file, "threshold": 0.3, "bic_weight": 0.5}
    state = peer.prepare(hm, val.info, params=params, training=settings)
    for rcond in CANDIDATES:
        field.MOMENT_RCOND = rcond
        run = plain(iter_run_peer)(peer, state, val, np.arange(len(val)))
        s = score_estimates(run.estimates, val, hm, events=run.events)
        tc, dle = s["tc_error"], s["dle_mm"]
        rows.append({"estimator": peer.label, "rcond": rcond, "tc_mean": float(np.nanmean(tc)),
                     "tc_median": float(np.nanmedian(tc)), "tc_max": float(np.nanmax(tc)),
                     "dle_mean_mm": float(np.nanmean(dle))})  # fmt: skip
        r = rows[-1]
        print(f"| {r['estimator']} | {rcond:g} | {r['tc_mean']:.3f} | {r['tc_median']:.3f} | "
              f"{r['tc_max']:.2f} | {r['dle_mean_mm']:.2f} |", flush=True)
with open(out, "w") as f:
    json.dump({"network_file": network_file, "n_events": n_events, "seed": 777, "rows": rows},
              f, indent=1)
