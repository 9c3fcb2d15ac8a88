"""This project's sensor network as an estimator of the protocol (``sensor-net``).

The network (:mod:`napari_meg_unet.models.sensor_dipole`) reads one source's
position off the epoch's dominant whitened pattern, on no grid. It needs no
inverse images, so it runs through the peer interface rather than the
networks' engine: :meth:`SensorNet.prepare` trains it on events drawn on the
fly by the torch simulation core with the *training* simulation's settings
and seed (the kind's design, the preset's mixed training SNR; fresh blocks of
the same stream, never a validation or test event), for a fixed budget of
``n_blocks`` blocks of ``block`` events (the recipe,
:class:`~napari_meg_unet.configs.SensorNetConfig`); nothing
is searched on the protocol's validation sets, the network keeps its state of
the lowest distance on its own validation draw. A network trained once can be
reused: ``checkpoint`` (a ``.pt`` path) is loaded when it exists and written
after training otherwise.

It is a single-source estimator (run on single-dipole and extended events,
like the dipole fits). The position is the network's alone; the strength
reported with it (mean absolute moment, A·m) is the least-squares moment of
the dominant pattern on the nominal gain of the head model's source nearest
to that position, scaled like the window dipole fit's.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .base import EventEstimate, Peer, whitener

logger = logging.getLogger(__name__)
#: Seconds between the training's log lines (the peer interface's prepare draws no bar).
LOG_EVERY_S = 30.0


class SensorNet(Peer):
    """The sensor network: one position per event, regressed from the whitened data."""

    name = "sensor-net"
    label = "sensor network (this project)"
    family = "learned"
    output = "points"
    kinds = ("single", "extended")
    trainable = True
    learned = True
    # the training simulation only supplies the settings and seed of the stream: one event
    defaults = {"n_blocks": None, "block": None, "seed": 0, "max_train_events": 1,
                "checkpoint": None}  # fmt: skip
    doc = __doc__

    def _prepare(self, hm, info, params, training):
        from ..configs import SensorNetConfig
        from ..models.sensor_dipole import (
            iter_make_sensor_dipole_net,
            load_sensor_dipole_net,
            save_sensor_dipole_net,
        )
        from ..progress import every, run

        checkpoint = params.get("checkpoint")
        if checkpoint is not None and Path(checkpoint).exists():
            net = load_sensor_dipole_net(checkpoint)
            if net.ch_names != list(info.ch_names):
                raise ValueError(f"{checkpoint} was trained on other channels than the data's.")
            return self._parts(hm, info, net, history=None)
        if training is None:
            raise ValueError("The sensor network is trained: pass a training simulation "
                             "(training=...), whose settings and seed it draws from.")  # fmt: skip
        # None: the recipe's own budget
        recipe = SensorNetConfig.build(**{k: params[k] for k in ("n_blocks", "block")
                                          if params.get(k) is not None})  # fmt: skip
        seed = int(training.meta["seed"]) + int(params["seed"])
        net, history = run(
            iter_make_sensor_dipole_net(hm, _training_simulation(training), info=info,
                                        recipe=recipe, seed=seed),
            every(LOG_EVERY_S, logger.info),
        )  # fmt: skip
        if checkpoint is not None:
            save_sensor_dipole_net(net, checkpoint)
        return self._parts(hm, info, net.eval(), history=history)

    @staticmethod
    def _parts(hm, info, net, *, history) -> dict:
        from ..models.sensor_dipole import NearestSourceMoments

        moments = NearestSourceMoments(hm, info.ch_names, net.whitener.numpy().astype(float))
        return {"net": net, "moments": moments, "history": history}

    def estimate(self, state, data, *, n_sources=None):
        return self.estimate_batch(state, np.asarray(data)[np.newaxis])[0]

    def estimate_batch(self, state, data, *, n_sources=None):
        from ..models.sensor_dipole import whitened_svd

        data = np.asarray(data, np.float64)
        positions, _ = state.parts["net"].predict(data)
        u, s, vt = whitened_svd(whitener(state), data)
        moments, _ = state.parts["moments"](positions, s[:, :1] * u[:, :, 0])
        # mean |moment| over the epoch, as the window dipole fit reports it
        strengths = np.linalg.norm(moments, axis=1) * np.abs(vt[:, 0]).mean(axis=1)
        return [EventEstimate(positions=pos[np.newaxis].astype(float), amplitudes=np.array([a]))
                for pos, a in zip(positions, strengths, strict=True)]  # fmt: skip


def _training_simulation(training):
    """The :class:`~napari_meg_unet.configs.SimulationConfig` of a training simulation."""
    from ..configs import SimulationConfig

    params = {k: v for k, v in training.meta["params"].items()
              if k in SimulationConfig.__dataclass_fields__}  # fmt: skip
    return SimulationConfig.from_dict(params)
