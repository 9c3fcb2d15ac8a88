"""The sensor network's best window on a sample evoked against mne.fit_dipole on the same data.

Usage (after ``train --for-recording ... --sensor-network --out OUT`` and ``predict
--checkpoint OUT/network/sensor-net.pt ... --out PRED``, see docs/real-anatomy.md)::

    python benchmarks/sensor_net_sample.py OUT PRED

The shared data's folder is ``NAPARI_MEG_UNET_DATA`` (default ``../shared/data``).
"""

import json
import os
import sys

import mne
import numpy as np

from napari_meg_unet.headmodel import load_headmodel
from napari_meg_unet.models.sensor_dipole import load_sensor_dipole_net

D = os.path.join(os.environ.get("NAPARI_MEG_UNET_DATA", "../shared/data"), "sample")
out, pred = sys.argv[1], sys.argv[2]
net = load_sensor_dipole_net(f"{out}/network/sensor-net.pt")
hm = load_headmodel(f"{out}/headmodel", verbose=False)
meta = json.load(open(f"{pred}/meta.json"))
cond = meta["conditions"][0]
dip = mne.read_dipole(f"{pred}/{cond['file']}", verbose=False)
ev = mne.read_evokeds(f"{D}/MEG/test-ave.fif.gz", condition="Left Auditory", verbose=False)
print("windows", len(dip), "times", np.round(dip.times, 3), "gof", np.round(dip.gof, 0))
k = int(np.argmax(dip.gof))
n = net.trained_on["n_times"]
# the window holding the best-fit sample (half-window steps)
starts = np.arange(0, len(ev.times) - n + 1, n // 2)
start = int(starts[np.argmax(dip.gof)])
win = ev.copy().pick(net.ch_names).crop(ev.times[start], ev.times[start + n - 1])
print("window", win.times[0], win.times[-1], len(win.times))
w, _ = mne.cov.compute_whitener(hm.noise_cov, win.info, pca=True, verbose=False)
_, _, vt = np.linalg.svd(w @ win.data, full_matrices=False)
pattern = mne.EvokedArray((win.data @ vt[0])[:, None], win.info, nave=ev.nave, verbose=False)
fit, _ = mne.fit_dipole(pattern, hm.noise_cov, hm.bem, trans=hm.trans, accuracy="accurate",
                        verbose=False)
print("sensor net", np.round(dip.pos[k] * 1000, 1), "gof", round(float(dip.gof[k]), 1),
      "t", dip.times[k])
print("fit_dipole", np.round(fit.pos[0] * 1000, 1), "gof", round(float(fit.gof[0]), 1))
print("distance mm", round(float(np.linalg.norm(dip.pos[k] - fit.pos[0]) * 1000), 1))
