"""The sensor network: one source's position read off the sensor data, on no grid.

The mesh U-Nets see inverse images on the head model's grid, so each of their
estimates sits on (or, with a centre head, near) a grid vertex. This network
sees the data themselves and regresses a position anywhere in the head:

- **input**: the epoch's dominant spatial pattern in the noise-whitened space,
  ``s1 u1`` of the SVD ``W X = U S V^T`` (the data the window dipole fit uses,
  :mod:`napari_meg_unet.peers.dipole`), its sign fixed by its largest entry
  (a dipole and its opposite share a position), as a unit vector plus
  ``log s1``;
- **network**: a multi-layer perceptron (GELU), output the position in head
  coordinates, centred on the head model's sources and scaled by 5 cm;
- **training**: the mean Euclidean distance to the true position, on events
  drawn on the fly by the torch simulation core
  (:class:`~napari_meg_unet.simulate.torch_core.TorchCore`, never a stored
  set: each block is new), AdamW with a learning rate falling linearly to 5%;
  the kept state is the one of the lowest mean distance on a fixed
  validation draw of its own seed.

Only the whitener and the head model's source centroid are stored with the
network: the position needs no forward model. :func:`predict_dipole` returns
it as an :class:`mne.Dipole`, its moment (orientation, A·m) the least-squares
fit of the pattern on the free-orientation gain of the head model's source
nearest to the position, reported as the dipole fits report theirs (the weak,
nearly radial orientation left out).
"""

from __future__ import annotations

import copy
import math
import time

import numpy as np
import torch

from .._io import atomic_path
from ..configs import SensorNetConfig
from ..progress import Progress

#: Position scale of the regression (m): outputs are ``(position - centre) / SCALE``.
SCALE = 0.05


#: Widths of the hidden layers.
HIDDEN = (1024, 1024, 512)


def epoch_pattern(whitener: torch.Tensor, data: torch.Tensor, n_components: int = 1,
                  ) -> torch.Tensor:  # fmt: skip
    """The network input of events ``data`` ``(n, n_channels, n_times)``.

    The first ``n_components`` whitened patterns ``u_k`` (each sign-fixed by
    its largest entry), then their ``log s_k``: ``(n, n_components * (rank + 1))``.

    ``W X = U S V^T`` is solved through the ``n_times x n_times`` Gram matrix
    ``(W X)^T W X = V S^2 V^T`` in float64, then ``u_k = W X v_k / s_k``: the
    same patterns as a batched SVD of ``W X`` (within 1e-4, tested) at a
    fraction of its cost on a GPU, where small batched SVDs are slow (2.1 s
    against 0.2 s for 2048 events on an H200, ``benchmarks/sensor_net_device.py``).
    """
    y = torch.einsum("rc,nct->nrt", whitener, data.to(whitener.dtype)).double()
    k = n_components
    if min(y.shape[1], y.shape[2]) < k:
        raise ValueError(f"{k} patterns need events of at least {k} samples and whitened "
                         f"channels, got {min(y.shape[1], y.shape[2])}.")  # fmt: skip
    values, vectors = torch.linalg.eigh(y.transpose(1, 2) @ y)  # ascending
    s = values.flip(-1)[:, :k].clamp_min(0.0).sqrt()
    patterns = (y @ vectors.flip(-1)[:, :, :k]) / s.clamp_min(1e-300)[:, None, :]
    largest = patterns.abs().argmax(dim=1, keepdim=True)
    patterns = patterns * torch.sign(patterns.gather(1, largest))
    flat = patterns.transpose(1, 2).reshape(len(y), -1)
    return torch.cat([flat, torch.log(s.clamp_min(1e-12))], dim=1).to(whitener.dtype)


class SensorDipoleNet(torch.nn.Module):
    """Whitened epoch pattern -> one source position (m, head coordinates).

    Parameters
    ----------
    whitener : array, shape (rank, n_channels)
        The noise whitener of the data's channels (``mne.cov.compute_whitener``).
    centre : array, shape (3,)
        Centre of the regression (the head model's source centroid, m).
    ch_names : list of str
        The channels, in the order of the data's rows.
    hidden : tuple of int
        Hidden widths.
    trained_on : dict | None
        What the network was trained on: ``sfreq`` (Hz), ``n_times`` and
        ``nave`` of its simulated events (set by :func:`iter_train_sensor_dipole`;
        :func:`predict_dipole` holds a recording to them).
    """

    #: Sources placed per event (:class:`~.sensor_sources.SensorSourcesNet`: several).
    n_sources = 1

    def __init__(self, whitener, centre, ch_names, hidden=HIDDEN,
                 trained_on=None):  # fmt: skip
        super().__init__()
        self.trained_on = None if trained_on is None else dict(trained_on)
        whitener = torch.as_tensor(np.asarray(whitener), dtype=torch.float32)
        if whitener.ndim != 2 or whitener.shape[1] != len(ch_names):
            raise ValueError(f"whitener must be (rank, {len(ch_names)}) for the {len(ch_names)} "
                             f"channels, got {tuple(whitener.shape)}.")  # fmt: skip
        self.register_buffer("whitener", whitener)
        self.register_buffer("centre", torch.as_tensor(np.asarray(centre), dtype=torch.float32))
        self.ch_names = list(ch_names)
        self.hidden = tuple(int(h) for h in hidden)
        widths = (self.n_sources * (whitener.shape[0] + 1), *self.hidden)
        layers = []
        for a, b in zip(widths[:-1], widths[1:], strict=True):
            layers += [torch.nn.Linear(a, b), torch.nn.GELU()]
        self.mlp = torch.nn.Sequential(*layers, torch.nn.Linear(widths[-1], self._out_width()))

    def _out_width(self) -> int:
        return 3

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Positions (m) of inputs made by :meth:`features`."""
        return self.mlp(features) * SCALE + self.centre

    def features(self, data: torch.Tensor) -> torch.Tensor:
        """The input of events ``(n, n_channels, n_times)`` (:func:`epoch_pattern`)."""
        return epoch_pattern(self.whitener, data, self.n_sources)

    def loss(self, features, true_positions) -> torch.Tensor:
        """Mean distance (in :data:`SCALE`) to the first true source of ``(n, k, 3)`` positions."""
        return (self(features) - true_positions[:, 0]).norm(dim=1).mean() / SCALE

    @torch.no_grad()
    def distance_mm(self, features, true_positions) -> float:
        """Mean distance (mm) of the estimates to the true sources ``(n, k, 3)``."""
        return float((self(features) - true_positions[:, 0]).norm(dim=1).mean()) * 1000.0

    def _checked_events(self, data) -> torch.Tensor:
        x = torch.as_tensor(np.asarray(data), dtype=torch.float32)
        if x.ndim == 2:
            x = x[None]
        if x.ndim != 3 or x.shape[1] != len(self.ch_names):
            raise ValueError(f"data must be (n_events, {len(self.ch_names)} channels, n_times), "
                             f"got {tuple(x.shape)}.")  # fmt: skip
        return x

    @torch.no_grad()
    def predict_slots(self, data) -> tuple[np.ndarray, np.ndarray]:
        """Positions ``(n, n_sources, 3)`` (m) and probabilities ``(n, n_sources)`` of events.

        A one-source network's one source is always there (probability 1).
        """
        positions, _ = self.predict(data)
        return positions[:, np.newaxis], np.ones((len(positions), 1))

    @torch.no_grad()
    def predict(self, data) -> tuple[np.ndarray, np.ndarray]:
        """Positions ``(n, 3)`` (m) and pattern strengths ``s1`` ``(n,)`` of events ``data``.

        ``data`` is ``(n_events, n_channels, n_times)`` (or one event, 2-D) in the
        network's channel order; ``s1`` is the dominant pattern's singular value
        in the whitened space, a strength in noise units (not A·m).
        """
        features = epoch_pattern(self.whitener, self._checked_events(data))
        return self(features).numpy(), np.exp(features[:, -1].numpy())


class NearestSourceMoments:
    """Moments of whitened patterns at given positions, on the nearest source's free gain.

    Parameters
    ----------
    hm : HeadModel
        The head model (its free-orientation forward ``hm.fwd``).
    ch_names : list of str
        The data's channels.
    whitener : array, shape (rank, n_channels)
        Their noise whitener.
    """

    def __init__(self, hm, ch_names, whitener):
        from scipy.spatial import cKDTree

        picks = [hm.ch_names.index(c) for c in ch_names]
        free = np.asarray(hm.fwd["sol"]["data"], float)[picks]
        self._gain = np.asarray(whitener) @ free
        # a surface-oriented forward's columns follow each source's own axes
        self._axes = np.asarray(hm.fwd["source_nn"], float).reshape(-1, 3, 3)
        self._tree = cKDTree(hm.positions)

    def __call__(self, positions, patterns) -> tuple[np.ndarray, np.ndarray]:
        """Moments ``(n, 3)`` (A·m, head coordinates) and goodness of fit ``(n,)`` (%).

        One moment per position and pattern, reported as :meth:`joint` reports
        them (the source's weak, nearly radial orientation left out).
        """
        nearest = self.nearest(positions)
        patterns = np.asarray(patterns, float).reshape(len(nearest), -1)
        fits = [self._fit([i], pattern[:, np.newaxis])
                for i, pattern in zip(nearest, patterns, strict=True)]  # fmt: skip
        return np.array([m[0, :, 0] for m, _ in fits]), np.array([g[0] for _, g in fits])

    def nearest(self, positions) -> np.ndarray:
        """The head model's sources (rows) nearest to ``positions`` ``(m, 3)``."""
        return np.atleast_1d(self._tree.query(np.asarray(positions).reshape(-1, 3))[1])

    def joint(self, positions, whitened) -> tuple[np.ndarray, np.ndarray]:
        """Moments of dipoles at ``positions`` ``(m, 3)`` fitted together to one event.

        ``whitened`` ``(rank, n_times)`` is the event's whitened data, fitted
        by least squares on the free gains of the sources nearest to the
        positions. Returns the moments ``(m, 3, n_times)`` (A·m, head
        coordinates) as the dipole fits report them
        (:func:`~napari_meg_unet.peers.field.reported_moments`: each source's
        weak, nearly radial orientation left out, as :func:`mne.fit_dipole`
        does, and the collinear directions of nearby sources) and the fit's
        goodness ``(n_times,)`` (%), all orientations fitted.
        """
        return self._fit(self.nearest(positions), np.asarray(whitened, float))

    def _fit(self, rows, whitened) -> tuple[np.ndarray, np.ndarray]:
        from ..peers.field import dipole_basis, reported_fit

        parts = [dipole_basis(self._gain[:, 3 * i:3 * i + 3]) for i in rows]
        q, residual = reported_fit(parts, whitened)
        energy = np.sum(whitened**2, axis=0)
        # no data: nothing explained (not 100%)
        explained = 1.0 - residual / np.where(energy > 0, energy, 1.0)
        gof = np.where(energy > 0, 100.0 * explained, 0.0)
        return np.einsum("jkt,jkc->jct", q, self._axes[rows]), gof


def whitened_svd(whitener, data):
    """``U, S, Vt`` of each event's whitened data (``data``: ``(n, n_channels, n_times)``)."""
    return np.linalg.svd(np.einsum("rc,ect->ert", whitener, data), full_matrices=False)


def predict_dipole(net: SensorDipoleNet, evoked, hm, *, moments=None, threshold=0.5):
    """The network's source(s) of ``evoked`` as an :class:`mne.Dipole`.

    One source (:class:`SensorDipoleNet`): the position is the network's; the
    moment is the least-squares fit of the epoch's dominant whitened pattern
    on the free gain of ``hm``'s source nearest to it, its weak orientation
    left out (:class:`NearestSourceMoments`), given at the sample where the pattern's
    time course peaks. Several (:class:`~.sensor_sources.SensorSourcesNet`):
    an entry per slot of probability at least ``threshold`` (at least one),
    most probable first, their moments fitted together over the window
    (:meth:`NearestSourceMoments.joint`), each given at the sample where its
    moment peaks, with the joint fit's goodness there. ``evoked`` must hold the network's
    channels (others are ignored) and, for a trained network, its sampling
    rate and window length (crop it to the component of interest); its noise
    level follows its ``nave`` (the data reach the network scaled to the
    ``nave`` it was trained with). ``moments`` (a :class:`NearestSourceMoments`
    of ``hm`` and the network's channels and whitener) saves rebuilding it.
    """
    import mne

    missing = [c for c in net.ch_names if c not in evoked.ch_names]
    if missing:
        raise ValueError(f"evoked lacks the network's channels {missing[:5]} "
                         f"({len(missing)} missing).")  # fmt: skip
    data = evoked.copy().pick(net.ch_names).data[np.newaxis]
    scale = 1.0
    if net.trained_on is not None:
        _check_window(evoked, net.trained_on)
        scale = np.sqrt(evoked.nave / net.trained_on["nave"])
    w = net.whitener.numpy().astype(float)
    fit = NearestSourceMoments(hm, net.ch_names, w) if moments is None else moments
    if net.n_sources > 1:
        return _sources_dipole(net, data * scale, w @ data[0], evoked.times, fit, threshold)
    positions, _ = net.predict(data * scale)
    u, s, vt = whitened_svd(w, data)
    q, gof = fit(positions, s[:, :1] * u[:, :, 0])
    peak = int(np.argmax(np.abs(vt[0, 0])))
    moment = q[0] * vt[0, 0, peak]
    amplitude = float(np.linalg.norm(moment))
    return mne.Dipole(
        times=evoked.times[[peak]], pos=positions, amplitude=np.array([amplitude]),
        ori=(moment / max(amplitude, np.finfo(float).tiny))[np.newaxis], gof=gof,
        name="sensor network",
    )  # fmt: skip


def _sources_dipole(net, scaled, whitened, times, fit, threshold):
    """The several-source network's sources of one window (see :func:`predict_dipole`)."""
    import mne

    from .sensor_sources import kept_slots

    positions, probabilities = net.predict_slots(scaled)
    kept = kept_slots(positions[0], probabilities[0], threshold)
    moments, gof = fit.joint(kept, whitened)
    norms = np.linalg.norm(moments, axis=1)
    peaks = norms.argmax(axis=1)
    index = np.arange(len(kept))
    amplitude = norms[index, peaks]
    ori = moments[index, :, peaks] / np.maximum(amplitude, np.finfo(float).tiny)[:, np.newaxis]
    return mne.Dipole(times=times[peaks], pos=kept.astype(float), amplitude=amplitude, ori=ori,
                      gof=gof[peaks], name="sensor network")  # fmt: skip


def predict_dipoles(net: SensorDipoleNet, data, hm, *, sfreq, tmin=0.0, nave=1, step=None):
    """The network's sources in every window of a recording, as one :class:`mne.Dipole`.

    ``data`` ``(n_channels, n_times)`` holds the network's channels in its
    order, sampled at its rate (``sfreq``, checked), first sample at ``tmin``
    (s), averaged over ``nave`` trials. Windows of the network's length start
    every ``step`` samples (default: half a window); each gives its dipoles
    (:func:`predict_dipole`: one for a one-source network, at the sample where
    its pattern peaks). The goodness of fit says which windows hold sources
    the network explains.
    """
    import mne

    data, n = recording_data(net, data)
    info = mne.create_info(net.ch_names, sfreq, "misc")
    starts = window_starts(data.shape[1], n, step)
    moments = NearestSourceMoments(hm, net.ch_names, net.whitener.numpy().astype(float))
    dips = [predict_dipole(net, mne.EvokedArray(data[:, i:i + n], info, tmin=tmin + i / sfreq,
                                                nave=nave, verbose=False), hm, moments=moments)
            for i in starts]  # fmt: skip
    return mne.Dipole(
        times=np.concatenate([d.times for d in dips]), pos=np.concatenate([d.pos for d in dips]),
        amplitude=np.concatenate([d.amplitude for d in dips]),
        ori=np.concatenate([d.ori for d in dips]), gof=np.concatenate([d.gof for d in dips]),
        name="sensor network",
    )  # fmt: skip


def recording_data(net: SensorDipoleNet, data) -> tuple[np.ndarray, int]:
    """``data`` ``(n_channels, n_times)`` checked for the trained ``net``, and its window length."""
    if net.trained_on is None:
        raise ValueError("The sensor network is untrained (it records no training window).")
    n = net.trained_on["n_times"]
    data = np.asarray(data, float)
    if data.ndim != 2 or data.shape[0] != len(net.ch_names):
        raise ValueError(f"data must be ({len(net.ch_names)} channels, n_times), got "
                         f"{data.shape}.")  # fmt: skip
    if data.shape[1] < n:
        raise ValueError(f"The recording has {data.shape[1]} samples, fewer than the network's "
                         f"window of {n}.")  # fmt: skip
    return data, n


def window_starts(n_samples: int, n_times: int, step=None) -> range:
    """First samples of the windows of ``n_times`` samples, every ``step`` (default: half)."""
    step = max(1, n_times // 2) if step is None else int(step)
    return range(0, n_samples - n_times + 1, step)


def _check_window(evoked, training) -> None:
    """A clear error where ``evoked``'s rate or length is not the network's."""
    sfreq, n_times = training["sfreq"], training["n_times"]
    if not np.isclose(evoked.info["sfreq"], sfreq):
        raise ValueError(f"evoked is sampled at {evoked.info['sfreq']:g} Hz but the network was "
                         f"trained at {sfreq:g} Hz: resample it (evoked.resample({sfreq:g})).")
    if len(evoked.times) != n_times:
        raise ValueError(f"evoked has {len(evoked.times)} samples but the network reads windows "
                         f"of {n_times} ({n_times / sfreq * 1000:g} ms): crop it to the "
                         "component of interest.")  # fmt: skip


def make_sensor_dipole_net(hm, info, *, hidden=HIDDEN, n_sources=1) -> SensorDipoleNet:
    """An untrained network for head model ``hm`` and data with ``info`` (its channels).

    ``n_sources`` > 1: a :class:`~.sensor_sources.SensorSourcesNet` placing up
    to that many sources.
    """
    import mne

    missing = [c for c in info.ch_names if c not in hm.ch_names]
    if missing:
        raise ValueError(f"info has channels the head model lacks: {missing[:5]}.")
    whitener, _ = mne.cov.compute_whitener(hm.noise_cov, info, pca=True, verbose=False)
    return _network(whitener, hm.positions.mean(axis=0), info.ch_names, hidden=hidden,
                    n_sources=n_sources)  # fmt: skip


def _network(whitener, centre, ch_names, *, n_sources, **kwargs) -> SensorDipoleNet:
    if int(n_sources) == 1:
        return SensorDipoleNet(whitener, centre, ch_names, **kwargs)
    from .sensor_sources import SensorSourcesNet

    return SensorSourcesNet(whitener, centre, ch_names, n_sources=int(n_sources), **kwargs)


def _channel_order(core, ch_names) -> np.ndarray:
    """Indices of ``ch_names`` in the simulation core's channel order."""
    index = {c: i for i, c in enumerate(core.hm.ch_names)}
    return np.array([index[c] for c in ch_names])


def _draw(core, n, *, seed, index, picks):
    """Events ``(n, n_channels, n_times)`` in the network's channel order, true positions.

    The positions are ``(n, k_max, 3)``, NaN-padded (metres).
    """
    batch = core.draw(n, seed=seed, index=index, with_inputs=False)
    data = batch.data.transpose(1, 2)[:, picks]
    return data, batch.true_positions.to(torch.float32)


def iter_train_sensor_dipole(net: SensorDipoleNet, core, *, seed: int,
                             recipe: SensorNetConfig | None = None):  # fmt: skip
    """Generator: train ``net`` on events drawn by ``core`` (see the module docstring).

    ``core`` is a :class:`~napari_meg_unet.simulate.torch_core.TorchCore`
    made with ``inputs=False``; training blocks use the counters
    ``(seed, 1..n_blocks)`` and validation ``(seed + 1, 0)``. Yields
    :class:`~napari_meg_unet.progress.Progress` per validation; closing the
    generator stops after the current block. ``net`` ends with the best
    validated state. Returns the history: ``[{"block", "val_mm", "seconds"}]``
    (``seconds`` since the start, validation draw included).
    """
    t0 = time.perf_counter()
    recipe = SensorNetConfig() if recipe is None else recipe
    torch.manual_seed(seed)
    sim = core.simulation
    net.trained_on = {"sfreq": float(sim.resolved_sfreq), "n_times": int(sim.resolved_n_times),
                    "nave": int(sim.nave)}  # fmt: skip
    picks = _channel_order(core, net.ch_names)
    val_x, val_y = _draw(core, recipe.val_events, seed=seed + 1, index=0, picks=picks)
    val_x = net.features(val_x)
    opt = torch.optim.AdamW(net.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    best, history = (math.inf, None), []
    stage = "train sensor network"
    yield Progress(stage, 0, recipe.n_blocks, "drawing events")
    for block in range(1, recipe.n_blocks + 1):
        for group in opt.param_groups:
            group["lr"] = recipe.lr * max(0.05, 1.0 - (block - 1) / recipe.n_blocks)
        x, y = _draw(core, recipe.block, seed=seed, index=block, picks=picks)
        _fit_block(net, opt, net.features(x), y, recipe)
        if block % recipe.val_every and block != recipe.n_blocks:
            continue
        val_mm = _validate(net, val_x, val_y)
        history.append({"block": block, "val_mm": val_mm,
                        "seconds": round(time.perf_counter() - t0, 2)})  # fmt: skip
        if val_mm < best[0]:
            best = (val_mm, copy.deepcopy(net.state_dict()))
        yield Progress(stage, block, recipe.n_blocks,
                       f"block {block}/{recipe.n_blocks}, validation {val_mm:.2f} mm")
    net.load_state_dict(best[1])
    return history


def iter_make_sensor_dipole_net(hm, simulation, *, info=None, recipe=None, hidden=HIDDEN,
                                seed=0, device="cpu"):  # fmt: skip
    """Generator: a network for ``hm`` trained on events drawn as ``simulation`` says.

    ``simulation`` is a :class:`~napari_meg_unet.configs.SimulationConfig` (its
    design, hemisphere, off-grid sources, time courses, rate, length, nave and
    SNR; ``n_events``/``n_repeats``/``seed`` are ignored: the budget is the
    recipe's and ``seed`` names the stream); ``info`` (default ``hm.info``)
    chooses the channels. A ``multi`` design makes a
    :class:`~.sensor_sources.SensorSourcesNet` with a slot per source of its
    largest events (``n_dipoles``); the others a one-source network. Yields the
    training's :class:`~napari_meg_unet.progress.Progress`; returns ``(net, history)``.
    ``device`` (e.g. ``"cuda"``) draws and trains there; the network is
    returned on the CPU, where it predicts.
    """
    from ..configs import InverseConfig
    from ..simulate.torch_core import TorchCore

    core = TorchCore(hm, simulation, InverseConfig(hemi=simulation.hemi), inputs=False,
                     device=device)  # fmt: skip
    n_sources = max(simulation.n_dipoles) if simulation.design == "multi" else 1
    net = make_sensor_dipole_net(hm, hm.info if info is None else info, hidden=hidden,
                                 n_sources=n_sources).to(core.device)  # fmt: skip
    history = yield from iter_train_sensor_dipole(net, core, seed=seed, recipe=recipe)
    return net.cpu(), history


def _fit_block(net, opt, x, y, recipe) -> None:
    net.train()
    for _ in range(recipe.passes):
        order = torch.randperm(len(x))
        for start in range(0, len(x), recipe.batch_size):
            j = order[start:start + recipe.batch_size]
            loss = net.loss(x[j], y[j])
            opt.zero_grad()
            loss.backward()
            opt.step()


@torch.no_grad()
def _validate(net, x, y) -> float:
    net.eval()
    return net.distance_mm(x, y)


def save_sensor_dipole_net(net: SensorDipoleNet, fname) -> None:
    """Write ``net`` to ``fname`` (``.pt``) atomically, with the umask's permissions."""
    payload = {"state": net.state_dict(), "ch_names": net.ch_names, "hidden": list(net.hidden),
               "trained_on": net.trained_on, "n_sources": net.n_sources}  # fmt: skip
    with atomic_path(fname, suffix=".pt") as tmp:
        torch.save(payload, tmp)


def is_sensor_dipole_file(fname) -> bool:
    """Whether ``fname`` is a file written by :func:`save_sensor_dipole_net`."""
    from pathlib import Path

    if not Path(fname).is_file():
        return False
    try:
        payload = torch.load(fname, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - not a torch file of plain tensors: not ours
        return False
    return isinstance(payload, dict) and {"state", "ch_names", "hidden"} <= set(payload)


def load_sensor_dipole_net(fname) -> SensorDipoleNet:
    """The network written by :func:`save_sensor_dipole_net`."""
    payload = torch.load(fname, map_location="cpu", weights_only=True)
    state = payload["state"]
    net = _network(state["whitener"].numpy(), state["centre"].numpy(), payload["ch_names"],
                   hidden=tuple(payload["hidden"]), trained_on=payload.get("trained_on"),
                   n_sources=payload.get("n_sources", 1))  # fmt: skip
    net.load_state_dict(state)
    return net.eval()
