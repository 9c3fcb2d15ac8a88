"""The sensor network's sources as time courses: an :class:`mne.VectorSourceEstimate` in A·m.

:func:`~.sensor_dipole.predict_dipoles` says where the network's sources are
in every window of a recording and how strong they are at their peaks; a
researcher also wants what they *do*: their moment time courses, in an object
MNE plots and extracts labels from. :func:`predict_source_estimate` fits, in
every window, the moments of the window's sources together to every sample
(each source on the free gain of the head model's source nearest to it,
:meth:`~.sensor_dipole.NearestSourceMoments.joint`) and stitches the windows:
every sample takes the window whose centre is nearest, so with the default
half-window step each window contributes its central half (the first and last
windows also their outer quarter). The result holds the head model's sources
any window used; a sample no window covers (the end of a recording that is
not a whole number of steps) is zero.
"""

from __future__ import annotations

import numpy as np

from .sensor_dipole import (
    NearestSourceMoments,
    SensorDipoleNet,
    recording_data,
    window_starts,
)


def _window_sources(net, window, scale, moments, threshold):
    """The rows ``(m,)`` and moments ``(m, 3, n)`` (A·m) of one window's sources."""
    from .sensor_sources import kept_slots

    # a one-source network answers one slot of probability 1
    slots, probabilities = net.predict_slots(window[np.newaxis] * scale)
    positions = kept_slots(slots[0], probabilities[0], threshold)
    w = net.whitener.numpy().astype(float)
    courses, _ = moments.joint(positions, w @ window)
    return moments.nearest(positions), courses


def _owners(starts, n_times, n_samples) -> np.ndarray:
    """The window (index into ``starts``) each sample takes: the one centred nearest; -1: none."""
    starts = np.asarray(starts)
    t = np.arange(n_samples)
    owner = np.argmin(np.abs(t[:, np.newaxis] + 0.5 - (starts + n_times / 2)), axis=1)
    covered = (t >= starts[owner]) & (t < starts[owner] + n_times)
    return np.where(covered, owner, -1)


def predict_source_estimate(net: SensorDipoleNet, data, hm, *, sfreq, tmin=0.0, nave=1,
                            step=None, threshold=0.5, pick_ori=None):  # fmt: skip
    """The network's sources' moment time courses over a recording (see the module docstring).

    Parameters
    ----------
    net : SensorDipoleNet
        A trained sensor network (one or several sources).
    data : array, shape (n_channels, n_times)
        The network's channels in its order, sampled at its rate.
    hm : HeadModel
        The recording's head model (its sources and free-orientation forward).
    sfreq : float
        Sampling rate (Hz), checked against the network's.
    tmin : float
        Time of the first sample (s).
    nave : int
        Trials averaged in ``data`` (the network reads data scaled to its training ``nave``).
    step : int | None
        Samples between windows (default: half a window).
    threshold : float
        Slots of a several-source network kept (probability at least this; at least one).
    pick_ori : None | "normal"
        None: the moment vectors; ``"normal"``: their components along the
        sources' cortical normals (``hm.normals``), as MNE's ``pick_ori``.

    Returns
    -------
    stc : mne.VectorSourceEstimate | mne.SourceEstimate
        Moments (A·m, head coordinates) on the sources any window used (a
        :class:`mne.SourceEstimate` with ``pick_ori="normal"``).
    """
    from .._validation import check_choice

    check_choice(pick_ori, "pick_ori", (None, "normal"))
    data, n = recording_data(net, data)
    if not np.isclose(sfreq, net.trained_on["sfreq"]):
        raise ValueError(f"The data are sampled at {sfreq:g} Hz but the network at "
                         f"{net.trained_on['sfreq']:g} Hz.")  # fmt: skip
    scale = np.sqrt(nave / net.trained_on["nave"])
    moments = NearestSourceMoments(hm, net.ch_names, net.whitener.numpy().astype(float))
    starts = list(window_starts(data.shape[1], n, step))
    owners = _owners(starts, n, data.shape[1])
    rows: dict[int, np.ndarray] = {}
    for k, start in enumerate(starts):
        mine = np.flatnonzero(owners == k)
        if not len(mine):
            continue
        found, courses = _window_sources(net, data[:, start:start + n], scale, moments, threshold)
        for row, course in zip(found, courses, strict=True):
            out = rows.setdefault(int(row), np.zeros((3, data.shape[1])))
            out[:, mine] += course[:, mine - start]
    return _estimate(hm, rows, data.shape[1], sfreq=sfreq, tmin=tmin, pick_ori=pick_ori)


def _estimate(hm, rows, n_samples, *, sfreq, tmin, pick_ori):
    """The source estimate of ``{row: moments (3, n_samples)}`` on ``hm`` (see ``pick_ori``)."""
    import mne

    order = np.array(sorted(rows), dtype=int)
    n_lh = len(hm.vertno[0])
    lh, rh = order[order < n_lh], order[order >= n_lh]
    vertices = [np.asarray(hm.vertno[0])[lh], np.asarray(hm.vertno[1])[rh - n_lh]]
    values = (np.stack([rows[r] for r in order]) if len(order)
              else np.zeros((0, 3, n_samples)))  # fmt: skip
    kw = dict(tmin=tmin, tstep=1.0 / sfreq, subject=hm.subject)
    if pick_ori == "normal":
        normals = np.asarray(hm.normals, float)[order]
        return mne.SourceEstimate(np.einsum("rk,rkt->rt", normals, values), vertices, **kw)
    return mne.VectorSourceEstimate(values, vertices, **kw)
