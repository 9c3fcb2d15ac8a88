"""This project's sensor networks as estimators of the protocol (``sensor-net``, its fits).

The networks (:mod:`napari_meg_unet.models.sensor_dipole`,
:mod:`napari_meg_unet.models.sensor_sources`) read the sources' positions off
the epoch's dominant whitened patterns, on no grid. They need no inverse
images, so they run through the peer interface rather than the networks'
engine: :meth:`SensorNet.prepare` trains one on events drawn on the fly by
the torch simulation core with the *training* simulation's settings and seed
(the kind's design, the preset's mixed training SNR; fresh blocks of the same
stream, never a validation or test event), for a fixed budget of
``n_blocks`` blocks of ``block`` events (the recipe,
:class:`~napari_meg_unet.configs.SensorNetConfig`); the network keeps its
state of the lowest distance on its own validation draw. On single-dipole
and extended events that is the one-source network; on 2-5-dipole events the
several-source network (a slot per source of the largest events), whose
sources are its slots of probability at least 0.5 (at least one), most
probable first. A network trained once is reused: by every peer and search
candidate of the same training simulation, budget and seed in the process,
and across runs through ``checkpoint`` (a ``.pt`` path, loaded when it exists
and written after training otherwise).

``sensor-net`` (label "sensor network (this project)")
    The network's positions alone. The strength reported with each (mean
    absolute moment, A·m) is the least-squares moment of the whitened data on
    the nominal free gains of the head model's sources nearest to the
    positions (for one source: of the dominant pattern, scaled like the window
    dipole fit's).
``sensor-net-fit`` (label "sensor network + dipole fit (this project)")
    The network's sources start the multi-dipole nonlinear least-squares fit
    of the U-Net hybrids (:func:`~napari_meg_unet.peers.field.refine_dipoles`,
    free orientations, positions within 20 mm of the start, the BIC choosing
    how many of the proposals to keep); the proposals' probability threshold
    and the BIC's weight are searched on the validation sets only.
``sensor-net-fit-mne`` (label "sensor network + dipole fit (MNE orientations, this project)")
    The same with MNE's orientation rule (a dipole's weak third orientation
    left out), more robust to a conductor-model error; a separate row, as for
    the U-Net hybrids.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from pathlib import Path

import numpy as np

from .base import EventEstimate, Peer, whitener
from .dipole import own_conductor
from .field import DipoleField, refine_dipoles

logger = logging.getLogger(__name__)
#: Seconds between the training's log lines (the peer interface's prepare draws no bar).
LOG_EVERY_S = 30.0
#: Trained networks kept in the process, by what made them (head model, channels,
#: training simulation, budget, seed): the last few.
_TRAINED: OrderedDict = OrderedDict()
_KEEP = 4


class SensorNet(Peer):
    """The sensor network: its sources' positions, regressed from the whitened data."""

    name = "sensor-net"
    label = "sensor network (this project)"
    family = "learned"
    output = "points"
    kinds = ("single", "extended", "multi")
    trainable = True
    learned = True
    # the training simulation only supplies the settings and seed of the stream: one event
    defaults = {"n_blocks": None, "block": None, "seed": 0, "max_train_events": 1,
                "checkpoint": None, "network_file": None, "threshold": 0.5}  # fmt: skip
    doc = __doc__

    def _prepare(self, hm, info, params, training):
        from ..models.sensor_dipole import load_sensor_dipole_net

        if params.get("network_file") is not None:
            net = _given_network(params["network_file"], info, training)
            return self._parts(hm, info, net, history=None)
        checkpoint = params.get("checkpoint")
        if checkpoint is not None and Path(checkpoint).exists():
            net = load_sensor_dipole_net(checkpoint)
            if net.ch_names != list(info.ch_names):
                raise ValueError(f"{checkpoint} was trained on other channels than the data's.")
            return self._parts(hm, info, net, history=None)
        if training is None:
            raise ValueError("The sensor network is trained: pass a training simulation "
                             "(training=...), whose settings and seed it draws from.")  # fmt: skip
        net, history = _trained(hm, info, params, training)
        return self._parts(hm, info, net, history=history)

    @staticmethod
    def _parts(hm, info, net, *, history) -> dict:
        from ..models.sensor_dipole import NearestSourceMoments

        moments = NearestSourceMoments(hm, info.ch_names, net.whitener.numpy().astype(float))
        return {"net": net, "moments": moments, "history": history}

    def estimate(self, state, data, *, n_sources=None):
        return self.estimate_batch(state, np.asarray(data)[np.newaxis])[0]

    def estimate_batch(self, state, data, *, n_sources=None):
        from ..models.sensor_sources import kept_slots

        data = np.asarray(data, np.float64)
        net = state.parts["net"]
        if net.n_sources == 1:
            return self._single(state, data)
        positions, probabilities = net.predict_slots(data)
        w = whitener(state)
        estimates = []
        for pos, prob, d in zip(positions, probabilities, data, strict=True):
            kept = kept_slots(pos, prob, state.params["threshold"])
            moments, _ = state.parts["moments"].joint(kept, w @ d)
            estimates.append(EventEstimate(positions=kept.astype(float), moments=moments,
                                           amplitudes=np.linalg.norm(moments, axis=1).mean(1)))
        return estimates

    def _single(self, state, data):
        from ..models.sensor_dipole import whitened_svd

        positions, _ = state.parts["net"].predict(data)
        u, s, vt = whitened_svd(whitener(state), data)
        moments, _ = state.parts["moments"](positions, s[:, :1] * u[:, :, 0])
        # the epoch's dominant pattern's moment along its time course (rank one)
        courses = moments[:, :, np.newaxis] * vt[:, 0][:, np.newaxis, :]
        # mean |moment| over the epoch, as the window dipole fit reports it
        strengths = np.linalg.norm(moments, axis=1) * np.abs(vt[:, 0]).mean(axis=1)
        return [EventEstimate(positions=pos[np.newaxis].astype(float), amplitudes=np.array([a]),
                              moments=course[np.newaxis])
                for pos, a, course in zip(positions, strengths, courses, strict=True)]  # fmt: skip


class SensorNetFit(SensorNet):
    """The sensor network's sources refined by the multi-dipole least-squares fit."""

    name = "sensor-net-fit"
    label = "sensor network + dipole fit (this project)"
    family = "hybrid"
    grid = {"threshold": (0.3, 0.5), "bic_weight": (0.5, 1.0)}
    defaults = {**SensorNet.defaults, "max_shift_mm": 20.0, "max_nfev": 30,
                "orientations": "free", "bic_weight": 1.0}  # fmt: skip

    def unavailable(self, hm):
        if hm.bem is None:
            return "the head model has no conductor model (hm.bem)"
        return None

    def _prepare(self, hm, info, params, training):
        parts = super()._prepare(hm, info, params, training)
        return {**parts, "field": DipoleField(info, *own_conductor(hm))}

    def estimate_batch(self, state, data, *, n_sources=None):
        from ..models.sensor_sources import kept_slots

        data = np.asarray(data, np.float64)
        positions, probabilities = state.parts["net"].predict_slots(data)
        p = state.params
        estimates = []
        for pos, prob, d in zip(positions, probabilities, data, strict=True):
            initial = kept_slots(pos, prob, p["threshold"])
            fit = refine_dipoles(
                state.parts["field"], whitener(state), d, initial.astype(float), select=True,
                max_shift_mm=float(p["max_shift_mm"]), max_nfev=int(p["max_nfev"]),
                orientations=p["orientations"], bic_weight=float(p["bic_weight"]),
            )  # fmt: skip
            estimates.append(EventEstimate(positions=fit.positions, amplitudes=fit.amplitudes,
                                           moments=fit.moments))
        return estimates


class SensorNetFitMNE(SensorNetFit):
    """:class:`SensorNetFit` with MNE's orientation rule."""

    name = "sensor-net-fit-mne"
    label = "sensor network + dipole fit (MNE orientations, this project)"
    defaults = {**SensorNetFit.defaults, "orientations": "mne"}


def fixed_params(sensor_blocks=None, sensor_net_file=None) -> dict:
    """The peers' fixed values of :class:`~napari_meg_unet.configs.PeerConfig`'s options.

    ``sensor_blocks``: the sensor networks' budget (``n_blocks``; None: the recipe's);
    ``sensor_net_file``: a trained network they use instead (``network_file``).
    """
    fixed = {} if sensor_blocks is None else {"n_blocks": int(sensor_blocks)}
    if sensor_net_file is not None:
        fixed["network_file"] = str(sensor_net_file)
    return fixed


def _given_network(path, info, training):
    """The trained network in ``path``, checked against the data's channels and ``training``'s
    events (its window, ``nave`` and whether they hold one source or several)."""
    from ..models.sensor_dipole import is_sensor_dipole_file, load_sensor_dipole_net

    if not is_sensor_dipole_file(path):
        raise ValueError(f"sensor_net_file {path}: not a sensor network's file "
                         "(save_sensor_dipole_net).")  # fmt: skip
    net = load_sensor_dipole_net(path)
    if net.ch_names != list(info.ch_names):
        raise ValueError(f"sensor_net_file {path} was trained on other channels than the data's.")
    if training is not None:
        params = training.meta["params"]
        want = {"sfreq": float(training.sfreq), "n_times": int(training.data.shape[2]),
                "nave": int(params.get("nave", 1))}  # fmt: skip
        got = net.trained_on or {}
        differ = {k: (got.get(k), v) for k, v in want.items()
                  if got.get(k) is None or not np.isclose(got[k], v)}  # fmt: skip
        if differ:
            listed = ", ".join(f"{k} {a} (the data: {b})" for k, (a, b) in differ.items())
            raise ValueError(f"sensor_net_file {path} was trained on other events: {listed}.")
        several = params.get("design") == "multi"
        if several != (net.n_sources > 1):
            raise ValueError(f"sensor_net_file {path} places {net.n_sources} source(s) per event "
                             f"but the events are design {params.get('design')!r}: use a "
                             f"{'several' if several else 'one'}-source network.")  # fmt: skip
    return net.eval()


def _trained(hm, info, params, training):
    """The network of ``params`` trained on ``training``'s stream (once per process)."""
    from ..configs import SensorNetConfig
    from ..models.sensor_dipole import iter_make_sensor_dipole_net, save_sensor_dipole_net
    from ..progress import every, run

    # None: the recipe's own budget
    recipe = SensorNetConfig.build(**{k: params[k] for k in ("n_blocks", "block")
                                      if params.get(k) is not None})  # fmt: skip
    seed = int(training.meta["seed"]) + int(params["seed"])
    key = (hm.fingerprint, tuple(info.ch_names), training.fingerprint, recipe.n_blocks,
           recipe.block, seed)  # fmt: skip
    if key not in _TRAINED:
        net, history = run(
            iter_make_sensor_dipole_net(hm, training.config, info=info,
                                        recipe=recipe, seed=seed),
            every(LOG_EVERY_S, logger.info),
        )  # fmt: skip
        _TRAINED[key] = (net.eval(), history)
        while len(_TRAINED) > _KEEP:
            _TRAINED.popitem(last=False)
    _TRAINED.move_to_end(key)
    net, history = _TRAINED[key]
    if params.get("checkpoint") is not None:
        save_sensor_dipole_net(net, params["checkpoint"])
    return net, history
