"""The sensor networks trained on a device (e.g. a GPU): seconds per block and validation.

Usage (on a machine with CUDA; ``OUT`` the folder for the JSON and the networks)::

    OUT=. python benchmarks/sensor_net_device.py N_SINGLE_BLOCKS N_MULTI_BLOCKS [DEVICE]

Trains the one-source and the several-source network on the `benchmark` preset's
training stream (blocks of 512 events, the recipe of ``SensorNetConfig``) on
``DEVICE`` (default cuda) and writes ``sensor_device.json``.
"""

import json
import os
import sys
import time

import torch

from napari_meg_unet.bench.accuracy.presets import get_preset
from napari_meg_unet.configs import SensorNetConfig
from napari_meg_unet.headmodel import make_template_headmodel
from napari_meg_unet.models.sensor_dipole import iter_make_sensor_dipole_net, save_sensor_dipole_net
from napari_meg_unet.progress import plain

out = os.environ.get("OUT", ".")
device = sys.argv[3] if len(sys.argv) > 3 else "cuda"
name = torch.cuda.get_device_name(0) if device.startswith("cuda") else device
print(torch.__version__, name, flush=True)
p = get_preset("benchmark")
hm = make_template_headmodel(spacing=p.spacing, modality=p.modality)
res = {}
for kind, blocks in (("single", int(sys.argv[1])), ("multi", int(sys.argv[2]))):
    sim = p.simulation_config(hm, kind=kind, n=1, snr=p.train_snr, seed=0)
    t0 = time.perf_counter()
    net, hist = plain(iter_make_sensor_dipole_net)(hm, sim, recipe=SensorNetConfig(n_blocks=blocks),
                                                   seed=12345, device=device)
    dt = time.perf_counter() - t0
    best = min(hist, key=lambda h: h["val_mm"])
    res[kind] = {"blocks": blocks, "seconds": dt, "s_per_block": dt / blocks, "best": best,
                 "last": hist[-1], "device_after": str(next(net.parameters()).device)}
    print(kind, json.dumps(res[kind]), flush=True)
    save_sensor_dipole_net(net, f"{out}/sensor-{kind}-{blocks}.pt")
with open(f"{out}/sensor_device.json", "w") as f:
    json.dump({"device": name, "torch": torch.__version__, **res}, f, indent=1)
