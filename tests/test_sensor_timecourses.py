"""The sensor network's sources as moment time courses over a recording (a source estimate)."""

from __future__ import annotations

import mne
import numpy as np
import pytest
import torch

from napari_meg_unet.models.sensor_dipole import SCALE, make_sensor_dipole_net
from napari_meg_unet.models.sensor_timecourses import _owners, predict_source_estimate

SFREQ = 250.0


def _answering(net, positions, logits=None):
    """``net`` made to answer ``positions`` (and slot ``logits``) for every input."""
    out = torch.zeros(net.n_sources, 4 if net.n_sources > 1 else 3)
    out[:, :3] = (torch.as_tensor(positions, dtype=torch.float32) - net.centre) / SCALE
    if logits is not None:
        out[:, 3] = torch.as_tensor(logits, dtype=torch.float32)
    with torch.no_grad():
        net.mlp[-1].weight.zero_()
        net.mlp[-1].bias.copy_(out.reshape(-1))
    net.trained_on = {"sfreq": SFREQ, "n_times": 32, "nave": 1}
    return net


def _two_sources(hm):
    """Rows of two sources (one per hemisphere), their courses and the noiseless recording."""
    rows = np.array([int(hm.rows("lh")[30]), int(hm.rows("rh")[7])])
    t = np.arange(100)
    courses = np.stack([10e-9 * np.sin(2 * np.pi * t / 40.0), -5e-9 * np.hanning(100)])
    return rows, courses, hm.gain[:, rows] @ courses


def test_windows_are_stitched_at_their_centres():
    owners = _owners([0, 16, 32], 32, 70)
    np.testing.assert_array_equal(owners[:24], 0)
    np.testing.assert_array_equal(owners[24:40], 1)
    np.testing.assert_array_equal(owners[40:64], 2)
    np.testing.assert_array_equal(owners[64:], -1)  # after the last window: none


def test_several_sources_get_their_moment_time_courses(template_hm, seen_moment):
    hm = template_hm
    rows, courses, data = _two_sources(hm)
    net = _answering(make_sensor_dipole_net(hm, hm.info, hidden=(8,), n_sources=3),
                     np.vstack([hm.positions[rows], [[0.0, 0.0, 0.07]]]), [5.0, 5.0, -5.0])
    stc = predict_source_estimate(net, data, hm, sfreq=SFREQ, tmin=-0.1, pick_ori="normal")
    # the moments as the fits report them: the orientations the sensors see
    w = net.whitener.numpy()
    seen = np.stack([seen_moment(w, hm, r, np.outer(hm.normals[r], c))
                     for r, c in zip(rows, courses, strict=True)])  # fmt: skip
    assert isinstance(stc, mne.SourceEstimate) and stc.subject == hm.subject
    assert stc.tmin == pytest.approx(-0.1) and stc.tstep == pytest.approx(1 / SFREQ)
    np.testing.assert_array_equal(stc.vertices[0], [hm.vertno[0][30]])
    np.testing.assert_array_equal(stc.vertices[1], [hm.vertno[1][7]])
    covered = slice(0, 96)  # windows start every 16 samples up to 64: the last 4 are not covered
    along = np.einsum("rk,rkt->rt", hm.normals[rows], seen)
    np.testing.assert_allclose(stc.data[:, covered], along[:, covered], rtol=1e-6,
                               atol=1e-6 * np.abs(courses).max())  # fmt: skip
    assert np.all(np.abs(along) <= np.abs(courses) * (1 + 1e-9))  # at most the true moment
    np.testing.assert_array_equal(stc.data[:, 96:], 0)
    vector = predict_source_estimate(net, data, hm, sfreq=SFREQ)
    assert isinstance(vector, mne.VectorSourceEstimate)
    np.testing.assert_allclose(vector.data[..., covered], seen[..., covered], rtol=1e-6,
                               atol=1e-6 * np.abs(courses).max())  # fmt: skip


def test_one_source_and_checked_inputs(template_hm, seen_moment):
    hm = template_hm
    rows, courses, data = _two_sources(hm)
    net = _answering(make_sensor_dipole_net(hm, hm.info, hidden=(8,)), hm.positions[rows[1]])
    single = hm.gain[:, rows[1:]] @ courses[1:]
    stc = predict_source_estimate(net, single, hm, sfreq=SFREQ, pick_ori="normal")
    assert [len(v) for v in stc.vertices] == [0, 1]
    seen = seen_moment(net.whitener.numpy(), hm, rows[1], np.outer(hm.normals[rows[1]], courses[1]))
    np.testing.assert_allclose(stc.data[0, :96], (hm.normals[rows[1]] @ seen)[:96], rtol=1e-6,
                               atol=1e-15)  # fmt: skip
    with pytest.raises(ValueError, match="sampled at 500 Hz"):
        predict_source_estimate(net, data, hm, sfreq=500.0)
    with pytest.raises(ValueError, match="pick_ori"):
        predict_source_estimate(net, data, hm, sfreq=SFREQ, pick_ori="vector")
    with pytest.raises(ValueError, match="fewer than the network's window"):
        predict_source_estimate(net, data[:, :10], hm, sfreq=SFREQ)
