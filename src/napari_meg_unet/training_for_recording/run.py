""":func:`iter_train_for_recording`: from a recording to a network trained for it."""

from __future__ import annotations

import logging
import shutil
import time

import numpy as np

from .._config import takes_config
from .._docs import fill_doc
from .._io import check_writable_output, write_json
from .._logging import verbose as verbose_decorator
from ..configs import (
    DEFAULT_N_TIMES,
    DatasetConfig,
    InverseConfig,
    RecordingTrainingConfig,
    SensorNetConfig,
    SimulationConfig,
    TrainingConfig,
)
from ..headmodel import describe_rank
from ..progress import Progress, plain
from .anatomy import iter_recording_headmodel
from .noise import choose_noise_cov
from .reading import common_nave, read_recording
from .snr import measure_snr, training_snr_range

logger = logging.getLogger(__name__)

#: Simulation defaults of a network for a recording (the recording sets sfreq, nave, snr).
SIMULATION_DEFAULTS = dict(design="sweep", hemi="both", off_grid=True, timecourse="realistic")
#: Training defaults: the mesh U-Net's CPU recipe.
TRAINING_DEFAULTS = dict(model="mesh", preset="cpu")
#: The report written next to the network.
REPORT_NAME = "recording.json"
#: The sensor network's file under ``OUT/network`` (``sensor_network=True``).
SENSOR_NET_NAME = "sensor-net.pt"


def _simulation_config(rec, hm, simulation: dict, noise_kind: str) -> tuple:
    """The simulation matching the recording, and the notes saying where each value came from."""
    simulation = {k: v for k, v in (simulation or {}).items() if v is not None}
    unknown = sorted(set(simulation) - set(SimulationConfig.option_names()))
    if unknown:
        raise TypeError(f"Unknown simulation option(s) {unknown}.")
    notes = {}
    _check_sfreq(rec, simulation.pop("sfreq", rec.sfreq))
    notes["sfreq"] = f"{rec.sfreq:g} Hz, the recording's"
    n_times = simulation.pop("n_times", DEFAULT_N_TIMES)
    if "nave" in simulation:
        nave, notes["nave"] = simulation.pop("nave"), "given"
    else:
        nave, notes["nave"] = common_nave(rec)
    measured = [measure_snr(ev, hm, n_times=n_times) for ev in rec.evokeds]
    if "snr" in simulation:
        snr, notes["snr"] = simulation.pop("snr"), "given"
    else:
        measurable = noise_kind != "ad hoc" or any(m["baseline"] for m in measured)
        snr, notes["snr"] = training_snr_range(measured, measurable=measurable)
    options = {**SIMULATION_DEFAULTS, **simulation}
    if options["design"] != "sweep" and options.get("n_events") is None:
        options["n_events"] = 1  # set per split by make_splits
    config = SimulationConfig(sfreq=rec.sfreq, n_times=n_times, nave=nave, snr=snr, **options)
    return config, notes, measured


def _check_sfreq(rec, sfreq) -> None:
    if sfreq is not None and not np.isclose(sfreq, rec.sfreq):
        raise ValueError(
            f"sfreq={sfreq:g} Hz but the recording {rec.source!r} is sampled at {rec.sfreq:g} Hz; "
            "a network is trained at its recording's rate (resample the recording first)."
        )


def _training_config(training) -> TrainingConfig:
    if training is None:
        return TrainingConfig(**TRAINING_DEFAULTS)
    given = {k: v for k, v in TRAINING_DEFAULTS.items() if getattr(training, k) is None}
    return training.replace(**given)


def _report(*, rec, noise, hm, anatomy, sim, notes, measured, sets, summary, out, t0) -> dict:
    ckpt = summary.get("best_checkpoint")
    return {
        "recording": rec.summary(),
        "noise_covariance": noise.summary(),
        "noise_rank": describe_rank(hm.noise_rank),
        "noise_rank_warning": hm.noise_rank["message"],
        "headmodel": {**hm.summary(), **anatomy, "path": str(out / "headmodel")},
        "measured_snr": measured,
        "simulation": {**sim.to_dict(), "notes": notes},
        "sets": {name: {"n": len(s), "fingerprint": s.fingerprint} for name, s in sets.items()},
        "network": {k: summary.get(k) for k in ("model", "best_epoch", "best_block",
                                                "best_dle_mm", "epochs_done", "stopped",
                                                "early_stopped")},  # fmt: skip
        "checkpoint": str(ckpt) if ckpt else None,
        "elapsed_s": round(time.perf_counter() - t0, 1),
    }  # fmt: skip


@fill_doc
@takes_config(RecordingTrainingConfig)
@verbose_decorator
def iter_train_for_recording(
    recording, *, out, config, headmodel=None, subjects_dir=None, subject=None, trans=None,
    src=None, bem=None, noise_cov=None, emptyroom=None, simulation=None, dataset=None,
    inverse=None, training=None, sensor=None, overwrite=False, stop=None, cache_dir=None,
    verbose=None,
):  # fmt: skip
    """Train a network for one recording, yielding progress and training events.

    The recording's head model (``headmodel``; else its FreeSurfer anatomy;
    else the fsaverage5 template coregistered to its digitisation), noise
    covariance (``noise_cov``; else a matching empty-room recording; else the
    epochs' pre-stimulus baseline; else ad hoc), sampling rate, good channels
    and nave define the simulations, whose whitened SNR spans the recording's
    measured one; then the network is trained on them: a U-Net on example sets,
    or (``sensor_network=True``) the sensor network on events drawn on the fly
    (:mod:`napari_meg_unet.models.sensor_dipole`; ``OUT/network/sensor-net.pt``,
    applied by ``predict`` as dipoles).

    Parameters
    ----------
    recording : path-like | mne_bids.BIDSPath
        Raw, epochs or evoked FIF file, or a BIDS MEG recording.
    out : path-like
        New directory: ``headmodel/``, ``data/`` (removed after training
        unless ``keep_data``), ``network/`` (``best.pt``, ``last.pt``,
        ``history.json``) and ``recording.json`` (everything chosen, and why).
    %(options)s
    headmodel : path-like | None
        A saved head model to reuse (it must hold good channels of the recording).
    subjects_dir, subject : path-like, str | None
        The recording's FreeSurfer anatomy.
    trans, src, bem : path-like | None
        Its head <-> MRI transform (None: coregistered to the digitisation),
        source space (None: set up from its surfaces, or its only
        ``bem/*-src.fif``) and BEM (None: its own solution, or one built from
        its surfaces).
    noise_cov : mne.Covariance | path-like | "adhoc" | None
        The noise covariance (None: chosen, see above).
    emptyroom : path-like | mne_bids.BIDSPath | None
        An empty-room recording to try first.
    simulation : dict | None
        Options of :class:`~napari_meg_unet.configs.SimulationConfig`
        replacing the recording's (``sfreq`` must equal its rate) and the
        defaults (sweep, both hemispheres, off-grid, realistic time courses).
    dataset, inverse, training : DatasetConfig, InverseConfig, TrainingConfig | None
        Split sizes; inverse images; training (default: the mesh U-Net's
        ``cpu`` recipe).
    sensor : SensorNetConfig | None
        The sensor network's recipe (``sensor_network=True``; its seed is
        ``dataset.seed``).
    %(overwrite)s
    %(stop)s
    cache_dir : path-like | None
        Head-model cache.
    %(verbose)s

    Yields
    ------
    event : Progress | training events
        Progress of each step, then :func:`~napari_meg_unet.train.fit`'s events.

    Returns
    -------
    report : dict
        What ``recording.json`` holds.
    """
    t0 = time.perf_counter()
    out = check_writable_output(out, overwrite=overwrite, what="output directory")
    yield Progress("recording", 0, 1, "reading")
    rec = read_recording(recording, condition=config.condition, verbose=verbose)
    _check_sfreq(rec, (simulation or {}).get("sfreq"))
    noise = choose_noise_cov(rec, noise_cov=noise_cov, emptyroom=emptyroom,
                             max_days=config.emptyroom_max_days)  # fmt: skip
    yield Progress("recording", 1, 1, f"noise covariance: {noise.kind}")
    hm, anatomy = yield from iter_recording_headmodel(
        rec, noise_cov=noise.cov, headmodel=headmodel, subjects_dir=subjects_dir,
        subject=subject, trans=trans, src=src, bem=bem, spacing=config.spacing,
        cache_dir=cache_dir, verbose=verbose,
    )  # fmt: skip
    if out.exists() and overwrite:
        shutil.rmtree(out)
    out.mkdir(parents=True)
    hm.save(out / "headmodel")
    sim, notes, measured = _simulation_config(rec, hm, simulation, noise.kind)
    if config.sensor_network:
        sets, summary = {}, (yield from _iter_sensor_network(
            hm, sim, out, sensor=sensor, seed=(dataset or DatasetConfig()).seed))  # fmt: skip
    else:
        sets, summary = yield from _iter_data_and_network(
            hm, sim, out, dataset=dataset, inverse=inverse, training=training, stop=stop,
            keep_data=config.keep_data, verbose=verbose,
        )  # fmt: skip
    report = _report(rec=rec, noise=noise, hm=hm, anatomy=anatomy, sim=sim, notes=notes,
                     measured=measured, sets=sets, summary=summary, out=out, t0=t0)  # fmt: skip
    write_json(out / REPORT_NAME, report)
    return report


train_for_recording = plain(iter_train_for_recording)


def _iter_sensor_network(hm, sim, out, *, sensor, seed):
    """Train the sensor network on ``sim``'s events, write ``out/network/sensor-net.pt``."""
    from ..models.sensor_dipole import iter_make_sensor_dipole_net, save_sensor_dipole_net

    net, history = yield from iter_make_sensor_dipole_net(
        hm, sim, recipe=sensor or SensorNetConfig(), seed=seed
    )
    (out / "network").mkdir()
    save_sensor_dipole_net(net, out / "network" / SENSOR_NET_NAME)
    best = min(history, key=lambda h: h["val_mm"])
    return {"model": "sensor", "best_block": best["block"], "best_dle_mm": best["val_mm"],
            "history": history, "stopped": False,
            "best_checkpoint": out / "network" / SENSOR_NET_NAME}  # fmt: skip


def _iter_data_and_network(hm, sim, out, *, dataset, inverse, training, stop, keep_data,
                           verbose):  # fmt: skip
    """Simulate the example sets under ``out/data``, train into ``out/network``."""
    from ..dataset import iter_make_splits
    from ..train import fit

    sets = yield from iter_make_splits(
        hm, dataset=dataset or DatasetConfig(), simulation=sim,
        inverse=(inverse or InverseConfig()).replace(hemi=None, nave=None), out=out / "data",
        verbose=verbose,
    )  # fmt: skip
    training = _training_config(training)
    summary = yield from fit(
        train=out / "data" / "train", val=out / "data" / "val", out_dir=out / "network",
        config=training, stop=stop, mesh=hm if training.model == "mesh" else None,
    )  # fmt: skip
    summary = {**summary, "model": training.model}
    if not keep_data and not summary["stopped"]:  # a stopped run resumes from these sets
        shutil.rmtree(out / "data", ignore_errors=True)
    return sets, summary

