"""Qt-free work behind the dock widgets: generators run in napari thread workers.

Each function takes core objects (head model, simulation, recording) and an
input container from :mod:`._inputs`, yields :class:`~..progress.Progress`
(or training events) and returns plain results; none of them touches a layer
or a widget, so they can run in a worker thread and be tested without Qt.
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass, field

import mne
import numpy as np

from ..progress import Progress


# =========================================================================== sensor data
@dataclass
class SensorData:
    """Sensor data to invert, from a simulation or from a recording's events.

    Attributes
    ----------
    data : ndarray, shape (n_samples, n_channels, n_times)
        SI units.
    ch_names : list of str
        Channels of ``data``.
    naves : list of int
        Number of averaged trials of each sample.
    sfreq, tmin : float
        Sampling rate and time of the first sample.
    labels : list of str
        What each sample is (event index or condition).
    hemi : str
        Image rows to compute (the simulation's hemisphere, ``"both"`` for recordings).
    simulation : Simulation | None
    """

    data: np.ndarray
    ch_names: list
    naves: list
    sfreq: float
    tmin: float
    labels: list
    hemi: str
    simulation: object = None
    extra: dict = field(default_factory=dict)


def sensor_data(metadata: dict, *, hm, tmin=-0.1, tmax=0.3, average=True) -> SensorData:
    """The data behind a sensor layer's metadata (a simulation or a recording).

    For a recording, epochs ``tmin..tmax`` around its events are cut from the
    raw data (baseline up to 0 when ``tmin < 0``) on the head model's
    channels and, with ``average``, averaged per event type (one sample per
    condition, with its ``nave``).
    """
    sim = metadata.get("simulation")
    if sim is not None:
        n = len(sim)
        nave = int(sim.meta["params"].get("nave", 1))
        return SensorData(
            data=np.asarray(sim.data, dtype=np.float64), ch_names=list(sim.info["ch_names"]),
            naves=[nave] * n, sfreq=sim.sfreq, tmin=0.0,
            labels=[f"event {i}" for i in range(n)], hemi=sim.meta["params"]["hemi"],
            simulation=sim,
        )  # fmt: skip
    recording = metadata.get("recording")
    if recording is None:
        raise ValueError("the data layer holds neither a simulation nor a BIDS recording.")
    raw = recording.raw
    missing = [ch for ch in hm.ch_names if ch not in raw.ch_names]
    if missing:
        raise ValueError(
            f"{len(missing)} channels of the head model (e.g. {missing[:3]}) are not in "
            f"{recording.label}; build the head model from the recording (Head model: source "
            "'recording')."
        )
    if not len(recording.events):
        raise ValueError(f"{recording.label} has no events (events.tsv) to cut epochs around.")
    epochs = mne.Epochs(
        raw, recording.events, recording.event_id, tmin=tmin, tmax=tmax,
        baseline=(None, 0) if tmin < 0 else None, picks=hm.ch_names, proj=False,
        preload=True, reject=None, event_repeated="drop", on_missing="ignore", verbose="error",
    )  # fmt: skip
    if len(epochs) == 0:
        raise ValueError(
            f"no epoch of {recording.label} fits in the recording with tmin={tmin}, tmax={tmax}."
        )
    if average:
        evokeds = [epochs[name].average() for name in epochs.event_id if len(epochs[name])]
        data = np.stack([ev.data for ev in evokeds])
        naves = [int(ev.nave) for ev in evokeds]
        labels = [ev.comment for ev in evokeds]
    else:
        data = epochs.get_data(copy=True)
        names = {code: name for name, code in epochs.event_id.items()}
        naves = [1] * len(data)
        labels = [names[code] for code in epochs.events[:, 2]]
    return SensorData(
        data=data, ch_names=list(epochs.ch_names), naves=naves, sfreq=epochs.info["sfreq"],
        tmin=float(epochs.tmin), labels=labels, hemi="both", extra={"recording": recording},
    )  # fmt: skip


# =========================================================================== head model
def iter_headmodel(inputs, *, recording=None):
    """Build the head model of the Head model widget, then its SVD spectrum.

    Returns ``(hm, inv, spectrum, description)``.
    """
    from .. import bids
    from ..coreg import iter_make_template_anatomy_headmodel
    from ..headmodel import iter_make_headmodel, iter_make_template_headmodel
    from ..inverse import make_inverse, svd_spectrum

    inputs.validate()
    if inputs.source == "template":
        hm = yield from iter_make_template_headmodel(**inputs.template_kwargs())
        description = "fsaverage5 template"
    else:
        if recording is None:
            raise ValueError("source 'recording' needs an opened BIDS recording layer.")
        noise_cov = inputs.noise_cov_for(recording.emptyroom)
        anatomy, reason = bids.subject_anatomy(recording.bids_path)
        if anatomy is not None:
            hm = yield from iter_make_headmodel(
                info=recording.info, spacing=inputs.spacing, modality=inputs.modality,
                noise_cov=noise_cov, subjects_dir=anatomy.subjects_dir, subject=anatomy.subject,
                trans=anatomy.trans, bem=anatomy.bem,
            )  # fmt: skip
            description = f"{recording.label} on {reason}"
        else:
            # the template anatomy fitted to the recording's digitised fiducials and head shape
            hm, coreg = yield from iter_make_template_anatomy_headmodel(
                recording.info, spacing=inputs.spacing, modality=inputs.modality,
                noise_cov=noise_cov,
            )  # fmt: skip
            placement = (
                coreg.describe() if coreg is not None
                else "no digitised fiducials: standard fsaverage transform"
            )  # fmt: skip
            description = f"{recording.label} on the fsaverage5 template ({reason}; {placement})"
        description += ", noise covariance " + (
            "ad hoc" if noise_cov == "adhoc" else "from the empty-room recording"
        )
    yield Progress("spectrum", 0, 1, "whitened lead field SVD")
    inv = make_inverse(hm, loose=0.0, depth=0.8, verbose="error")
    spectrum = svd_spectrum(inv, lambda2=inputs.lambda2_value())
    yield Progress("spectrum", 1, 1, "done")
    return hm, inv, spectrum, description


# =========================================================================== inverse
@dataclass
class InverseResult:
    """Per-method stacks ``(n_samples, n_rows, n_times)`` and explained variances."""

    stacks: dict
    explained: dict
    params: dict


def iter_inverse(hm, sdata: SensorData, inputs):
    """Kernels of the chosen methods applied to every sample (its own ``nave``)."""
    from ..inverse import compute_kernel, explained_variance, make_input_stack, make_inverse

    operator = inputs.operator_kwargs()
    lambda2 = inputs.lambda2_value()
    methods = list(inputs.methods)
    naves = [inputs.nave_value(n) for n in sdata.naves]
    groups = {nave: [i for i, n in enumerate(naves) if n == nave] for nave in sorted(set(naves))}
    total = 1 + len(groups) * len(methods)
    yield Progress("inverse", 0, total, "operator")
    inv = make_inverse(hm, verbose="error", **operator)
    rows = hm.rows(sdata.hemi)
    n, _, n_times = sdata.data.shape
    stacks = {m: np.empty((n, len(rows), n_times), np.float32) for m in methods}
    explained = {m: np.empty(n) for m in methods}
    fits = {}
    done = 1
    for nave, idx in groups.items():
        for method in methods:
            kernel = compute_kernel(
                inv, method=method, lambda2=lambda2, nave=nave, fingerprint=hm.fingerprint,
                verbose="error",
            )  # fmt: skip
            block = sdata.data[idx]
            stacks[method][idx] = make_input_stack(
                [kernel], block, rows=rows, normalisation=inputs.normalisation,
                ch_names=sdata.ch_names,
            )[:, 0]  # fmt: skip
            # the data fit depends on the method only for eLORETA (its own SVD)
            fit_key = (nave, method == "eLORETA")
            if fit_key not in fits:
                fits[fit_key] = np.atleast_1d(
                    explained_variance(
                        inv, block, lambda2=lambda2, nave=nave, method=method,
                        ch_names=sdata.ch_names, verbose="error",
                    )  # fmt: skip
                )
            explained[method][idx] = fits[fit_key]
            done += 1
            yield Progress("inverse", done, total, f"{method} (nave={nave})")
    params = dict(lambda2=lambda2, naves=naves, normalisation=inputs.normalisation, **operator)
    return InverseResult(stacks=stacks, explained=explained, params=params)


# =========================================================================== training
#: CPU priority decrease of the training process (POSIX ``nice``): on a busy
#: machine napari's event loop keeps precedence over data simulation and training.
CHILD_NICENESS = 5


def default_threads() -> int:
    """Torch threads for training in the GUI: leave one core to the event loop."""
    return max(1, (os.cpu_count() or 2) - 1)


@contextlib.contextmanager
def _spawn_without_main_script():
    """Keep a spawned child from re-running the ``__main__`` script.

    ``multiprocessing``'s spawn start method re-imports the parent's main
    script in the child, running its top level again: a script that opens a
    viewer without an ``if __name__ == "__main__":`` guard would open one in
    the training process too. The child's target lives in this (importable)
    module, so it does not need ``__main__``; hiding the script's path while
    the child starts makes spawn skip it.
    """
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if main is None or getattr(main, "__spec__", None) is not None or path is None:
        yield
        return
    del main.__file__
    try:
        yield
    finally:
        main.__file__ = path


def _train_child(hm_path, splits_kwargs, fit_kwargs, messages, stop) -> None:
    """Child process of :func:`iter_train`: make the data sets (optional) and fit.

    Every Progress and training event goes into ``messages``, then
    ``("return", summary)`` or ``("error", text)``.
    """
    try:
        if hasattr(os, "nice"):
            os.nice(CHILD_NICENESS)
        from ..dataset import iter_make_splits, read_dataset
        from ..headmodel import load_headmodel
        from ..train import fit

        hm = load_headmodel(hm_path, verbose="error")
        if splits_kwargs is not None:
            gen = iter_make_splits(hm, **splits_kwargs)
            while True:
                try:
                    event = next(gen)
                except StopIteration:
                    break
                messages.put(("event", event))
        data = splits_kwargs["out"] if splits_kwargs is not None else fit_kwargs.pop("data")
        sets = {name: read_dataset(data / name) for name in ("train", "val")}
        gen = fit(
            train=sets["train"], val=sets["val"], stop=stop.is_set,
            mesh=hm if fit_kwargs.get("model") == "mesh" else None, **fit_kwargs,
        )  # fmt: skip
        while True:
            try:
                event = next(gen)
            except StopIteration as done:
                messages.put(("return", done.value))
                break
            messages.put(("event", event))
    except BaseException as err:  # reported to the parent, which raises it
        messages.put(("error", f"{type(err).__name__}: {err}"))


def iter_train(hm, inputs, *, resume: bool, stop, overwrite: bool = False):
    """Simulate the training/validation sets (unless resuming) and fit, in a child process.

    SciPy's SVD and eigendecompositions (inside MNE's inverse operator, used
    to make the data sets) hold the GIL for seconds, and training holds it in
    places too; in a thread of the napari process either would freeze the
    event loop. So the work runs in a spawned child process and this
    generator (run by the widget's ``thread_worker``) only relays its events:
    Progress while the data are made, then :func:`..train.fit`'s events (one
    per batch). The child runs at a lower CPU priority (:data:`CHILD_NICENESS`).
    Setting ``stop`` (a ``threading.Event``) asks fit to stop
    after the current batch and save ``last.pt``; before training has
    started the child is terminated instead.

    Returns fit's summary, or ``{"stopped": True, "stopped_before_training":
    True, "epochs_done": 0}`` when stopped while the data were being made.
    """
    import multiprocessing
    import queue
    from pathlib import Path

    from ..train import EpochStarted

    inputs.validate()
    fit_kwargs = dict(inputs.fit_kwargs(resume=resume), num_threads=default_threads())
    if resume:
        if not (inputs.run_dir / "last.pt").is_file():
            raise FileNotFoundError(
                f"nothing to resume: {str(inputs.run_dir / 'last.pt')!r} does not exist."
            )
        splits = None
        fit_kwargs["data"] = inputs.data_dir
    else:
        if (inputs.run_dir / "last.pt").exists() and not overwrite:
            raise FileExistsError(
                f"{str(inputs.out_dir)!r} already holds a training run; use Resume, tick "
                "'overwrite' or choose another folder."
            )
        splits = dict(inputs.splits_kwargs(), overwrite=True, verbose="error")
    path = hm.provenance.get("loaded_from")
    if not path or not (Path(path) / "headmodel.json").is_file():
        path = hm.save(Path(inputs.out_dir) / "headmodel", overwrite=True)
    ctx = multiprocessing.get_context("spawn")
    messages, child_stop = ctx.Queue(), ctx.Event()
    child = ctx.Process(
        target=_train_child, args=(str(path), splits, fit_kwargs, messages, child_stop),
        daemon=True,
    )  # fmt: skip
    with _spawn_without_main_script():
        child.start()
    training = False
    try:
        while True:
            if stop is not None and stop.is_set():
                if not training:
                    return {"stopped": True, "stopped_before_training": True, "epochs_done": 0}
                child_stop.set()
            try:
                kind, payload = messages.get(timeout=0.05)
            except queue.Empty:
                if not child.is_alive():
                    raise RuntimeError(
                        f"the training process ended unexpectedly (exit code {child.exitcode})"
                    ) from None
                continue
            if kind == "event":
                training = training or isinstance(payload, EpochStarted)
                yield payload
            elif kind == "return":
                return payload
            else:
                raise RuntimeError(payload)
    finally:
        if child.is_alive() and not (training and child_stop.is_set()):
            child.terminate()
        child.join(30)
        if child.is_alive():
            child.kill()


# =========================================================================== prediction
def checkpoint_report(path, hm, sdata: SensorData | None = None) -> tuple[dict, str]:
    """Load a checkpoint and check it against the head model (and data, if given).

    Returns
    -------
    checkpoint : dict
    description : str

    Raises
    ------
    CheckpointError, IncompatibleDataError
        With the reason.
    """
    from ..checkpoint import check_checkpoint_compatible, load_checkpoint
    from ..dataset import IncompatibleDataError

    ckpt = load_checkpoint(path)
    meta = ckpt["dataset_meta"]
    partial = {"headmodel_fingerprint": hm.fingerprint, "ch_names": hm.ch_names}
    check_checkpoint_compatible(ckpt, partial, what="head model")
    problems = []
    if sdata is not None and sdata.data.shape[-1] != int(meta["n_times"]):
        problems.append(
            f"the network was trained on {meta['n_times']} samples per image but the data "
            f"have {sdata.data.shape[-1]}"
        )
    if sdata is not None and meta.get("sfreq") and not np.isclose(sdata.sfreq, meta["sfreq"]):
        problems.append(
            f"sampling rate: {sdata.sfreq:.6g} Hz (data) != {meta['sfreq']:.6g} Hz (network)"
        )
    if sdata is not None and sdata.simulation is not None and sdata.hemi != meta["hemi"]:
        problems.append(f"hemi: {sdata.hemi!r} (data) != {meta['hemi']!r} (network)")
    if problems:
        raise IncompatibleDataError("; ".join(problems) + ".")
    best = ckpt.get("best") or {}
    dle = best.get("dle_mm") if isinstance(best, dict) else None
    description = (
        f"{ckpt['model_name']} network, {ckpt['kind']} checkpoint after epoch {ckpt['epoch']}"
        + (f" (validation DLE {dle:.1f} mm)" if isinstance(dle, float) and np.isfinite(dle) else "")
        + f"; inputs {'/'.join(meta['methods'])}, λ²={meta['lambda2']:.4g}, hemi {meta['hemi']}"
    )
    return ckpt, description


def iter_predict_data(ckpt, hm, sdata: SensorData, *, device="auto", batch_size=32):
    """Input stacks made as for the network's training set, then its probabilities."""
    from ..inverse import iter_inverse_stack
    from ..train import iter_predict

    meta = ckpt["dataset_meta"]
    stack = yield from iter_inverse_stack(
        hm, sdata.data, methods=meta["methods"], lambda2=meta["lambda2"],
        nave=int(meta["nave"]), hemi=meta["hemi"], normalisation=meta["normalisation"],
        loose=meta["loose"], depth=meta["depth"], ch_names=sdata.ch_names, verbose="error",
    )  # fmt: skip
    probs = yield from iter_predict(
        ckpt, stack, headmodel=hm, hemi=meta["hemi"], batch_size=batch_size, device=device
    )
    return probs


# =========================================================================== evaluation
def iter_evaluate(hm, sim, *, methods, inverse_params, networks, inputs):
    """Score linear inverses and network predictions on a simulation.

    Parameters
    ----------
    methods : list of str
        Linear methods (scored by :func:`..evaluation.iter_evaluate_linear`).
    inverse_params : dict
        ``lambda2``, ``loose``, ``depth`` of the linear inverses.
    networks : dict
        ``{name: probabilities (n_events, n_rows, n_times)}`` on ``sim``'s rows.

    Returns
    -------
    evaluation : Evaluation
    """
    from ..evaluation import Evaluation, iter_evaluate_linear, score_estimates, summarise

    inputs.validate()
    protocols = tuple(inputs.protocols)
    if methods:
        result = yield from iter_evaluate_linear(
            hm, sim, methods=methods, protocols=protocols, n_boot=inputs.n_boot,
            seed=inputs.seed, verbose="error", **inverse_params,
        )  # fmt: skip
    else:
        from ..evaluation import grid_floor

        result = Evaluation(meta={"simulation": sim.fingerprint, "headmodel": hm.fingerprint})
        result.grid_floor = grid_floor(sim, n_boot=inputs.n_boot, seed=inputs.seed)
    n_rows = len(sim.rows)
    for k, (name, probs) in enumerate(networks.items()):
        probs = np.asarray(probs)
        if probs.shape[:2] != (len(sim), n_rows):
            raise ValueError(
                f"{name!r} has shape {probs.shape} but the simulation has {len(sim)} events "
                f"x {n_rows} rows (was it predicted on this simulation and hemisphere?)."
            )
        for protocol in protocols:
            scores = score_estimates(probs, sim, hm, protocol=protocol, seed=inputs.seed)
            summary, per_vertex = summarise(
                scores, n_rows=n_rows, n_boot=inputs.n_boot, seed=inputs.seed
            )
            result.scores[(name, protocol)] = scores
            result.summary[(name, protocol)] = summary
            result.per_vertex_dle[(name, protocol)] = per_vertex
        yield Progress("evaluate networks", k + 1, len(networks), name)
    return result


def evaluation_rows(evaluation) -> list[dict]:
    """Flat rows (estimator, protocol, metric, mean, CI, counts) for tables and CSV."""
    from ..evaluation import TABLE_METRICS

    rows = []
    for (estimator, protocol), summary in evaluation.summary.items():
        for metric in TABLE_METRICS:
            agg = summary.get(metric) or {}
            rows.append(
                dict(
                    estimator=estimator, protocol=protocol, metric=metric,
                    mean=agg.get("mean", np.nan), ci_low=agg.get("ci_low", np.nan),
                    ci_high=agg.get("ci_high", np.nan), n_events=agg.get("n_events", 0),
                )  # fmt: skip
            )
    return rows


def write_evaluation(evaluation, path, *, overwrite: bool = False):
    """Write an evaluation as JSON (``.json``) or CSV (``.csv``), atomically."""
    import csv
    import io
    from pathlib import Path

    from .._io import atomic_path, check_output_path, write_json

    path = check_output_path(Path(path), overwrite=overwrite, what="evaluation export")
    if path.suffix.lower() == ".json":
        return write_json(path, evaluation.to_dict())
    if path.suffix.lower() != ".csv":
        raise ValueError(f"export path must end with .json or .csv, got {str(path)!r}.")
    rows = evaluation_rows(evaluation)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else ["estimator"])
    writer.writeheader()
    writer.writerows(rows)
    with atomic_path(path) as tmp:
        tmp.write_text(buffer.getvalue())
    return path
