"""The work behind the dock widgets: generators run in a worker process (:mod:`._engine`).

Each ``iter_*_step`` takes core objects (head model, simulation, sensor data)
and an input container from :mod:`._inputs`, yields
:class:`~..progress.Progress` and returns a :class:`Step`: the core result
plus the layer data tuples made ready for the main thread (stack images,
cortex values, markers, maps). None of them touches a layer or a widget.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

import numpy as np

from .. import layers
from ..progress import Progress
from ._prepare import CORTEX, cortex_tuple, per_source_dle, stack_tuple, titles_tuple


@dataclass
class Step:
    """What a step returns: its core result, layer data tuples and notes for the status line."""

    value: object
    layers: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    context: dict = field(default_factory=dict)


# =========================================================================== head model
#: An empty-room recording more than this many days from the recording is not
#: used by ``noise covariance = auto`` (another session, or another site).
EMPTYROOM_MAX_DAYS = 30


def emptyroom_problem(recording) -> str | None:
    """Why the recording's empty-room match should not give its noise covariance, or None.

    Refused: a recording more than :data:`EMPTYROOM_MAX_DAYS` days away, or
    one lacking the recording's MEG channels (another system).
    """
    import mne

    emptyroom = recording.emptyroom
    if emptyroom is None:
        return "no empty-room recording"
    try:
        info = mne.io.read_info(str(emptyroom.fpath), verbose="error")
    except Exception as err:
        return f"its empty-room recording {emptyroom.basename} cannot be read ({err})"
    meg = set(np.asarray(recording.info["ch_names"])[mne.pick_types(recording.info, meg=True)])
    missing = sorted(meg - set(info["ch_names"]))
    if missing:
        return (
            f"the empty-room recording {emptyroom.basename} lacks {len(missing)} of the MEG "
            f"channels (e.g. {missing[:3]}; another system?)"
        )
    a, b = recording.info["meas_date"], info["meas_date"]
    if a is not None and b is not None:
        days = abs((a - b) / datetime.timedelta(days=1))
        if days > EMPTYROOM_MAX_DAYS:
            return (
                f"the empty-room recording {emptyroom.basename} was made {days:.0f} days from "
                f"the recording (more than {EMPTYROOM_MAX_DAYS}; another site or session?)"
            )
    return None


def _noise_cov(inputs, recording) -> tuple[str, str]:
    """The noise covariance argument of the head model and a sentence saying which."""
    if inputs.noise_cov == "adhoc":
        return "adhoc", "ad hoc noise covariance"
    problem = emptyroom_problem(recording)
    if problem is None:
        return str(recording.emptyroom.fpath), "noise covariance from the empty-room recording"
    if inputs.noise_cov == "emptyroom":
        raise ValueError(f"noise covariance 'emptyroom' cannot be used: {problem}.")
    return "adhoc", f"ad hoc noise covariance ({problem})"


def _recording_headmodel(inputs, recording):
    from .. import bids
    from ..coreg import iter_make_template_anatomy_headmodel
    from ..headmodel import iter_make_headmodel

    noise_cov, cov_text = _noise_cov(inputs, recording)
    if recording.bids_path is not None:
        anatomy, reason = bids.subject_anatomy(recording.bids_path)
    else:
        anatomy, reason = None, "a plain FIF file has no BIDS anatomy"
    if anatomy is not None:
        hm = yield from iter_make_headmodel(
            info=recording.info, spacing=inputs.spacing, modality=inputs.modality,
            noise_cov=noise_cov, subjects_dir=anatomy.subjects_dir, subject=anatomy.subject,
            trans=anatomy.trans, bem=anatomy.bem,
        )  # fmt: skip
        return hm, f"{recording.label} on {reason}, {cov_text}"
    hm, coreg = yield from iter_make_template_anatomy_headmodel(
        recording.info, spacing=inputs.spacing, modality=inputs.modality, noise_cov=noise_cov,
    )  # fmt: skip
    placement = (
        coreg.describe() if coreg is not None
        else "no digitised fiducials: standard fsaverage transform"
    )  # fmt: skip
    return hm, f"{recording.label} on the fsaverage5 template ({reason}; {placement}), {cov_text}"


def iter_headmodel_step(inputs, *, recording=None):
    """Build the head model of the Head model widget, its SVD spectrum and the anatomy layer.

    Returns a :class:`Step` with ``value = (hm, inv, spectrum, description)``.
    """
    from ..headmodel import iter_make_template_headmodel
    from ..inverse import make_inverse, svd_spectrum

    inputs.validate()
    if inputs.source == "template":
        hm = yield from iter_make_template_headmodel(**inputs.template_kwargs())
        description = "fsaverage5 template, ad hoc noise covariance"
    else:
        if recording is None:
            raise ValueError("source 'recording' needs an opened recording layer.")
        hm, description = yield from _recording_headmodel(inputs, recording)
    yield Progress("spectrum", 0, 2, "whitened lead field SVD")
    inv = make_inverse(hm, loose=0.0, depth=0.8, verbose="error")
    spectrum = svd_spectrum(inv, lambda2=inputs.lambda2_value())
    yield Progress("spectrum", 1, 2, "cortex")
    cortex = cortex_tuple(hm, hemi="both", source="anatomy", extra={"description": description})
    yield Progress("spectrum", 2, 2, "done")
    return Step((hm, inv, spectrum, description), [cortex, titles_tuple()])


# =========================================================================== simulation
def iter_simulate_step(hm, kwargs):
    """Simulate, then the sensor, truth, markers and cortex layers of the simulation."""
    from .._sample_data import simulation_layers
    from ..simulate import iter_simulate

    sim = yield from iter_simulate(hm, verbose="error", **kwargs)
    yield Progress("layers", 0, 1, "sensor data, truth, cortex")
    tuples = simulation_layers(hm, sim, markers=True, titles=True, layout=False)
    yield Progress("layers", 1, 1, "done")
    return Step(sim, tuples, [repr(sim)])


def iter_sample_step(key: str):
    """The plugin's sample ``key`` (template head model, simulation, layers)."""
    from .._sample_data import SAMPLES, simulation_layers
    from ..headmodel import iter_make_template_headmodel
    from ..simulate import iter_simulate

    hm = yield from iter_make_template_headmodel(spacing="ico3", modality="meg")
    sim = yield from iter_simulate(hm, verbose="error", **SAMPLES[key])
    return Step(sim, simulation_layers(hm, sim, layout=False))


# =========================================================================== inverse
@dataclass
class InverseResult:
    """Per-method stacks ``(n_samples, n_rows, n_times)`` and explained variances."""

    stacks: dict
    explained: dict
    params: dict


def iter_inverse(hm, sdata, inputs):
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
    fits, done = {}, 1
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


def _common(hm, sdata, data_layer) -> dict:
    return {
        "headmodel": hm, "simulation": sdata.simulation, "hemi": sdata.hemi,
        "rows": hm.rows(sdata.hemi), "data_layer": data_layer, "labels": sdata.labels,
    }  # fmt: skip


def _group(sdata, data_layer) -> str:
    return sdata.simulation.fingerprint if sdata.simulation is not None else f"data:{data_layer}"


def _order(hm, hemi, row_order):
    """The display row order of kind ``row_order`` (:mod:`..layers.ordering`), or None."""
    from ..layers.ordering import row_order as make_order

    return None if row_order in (None, "source") else make_order(hm, hemi, row_order)


def iter_inverse_step(hm, sdata, inputs, *, data_layer, show, row_order="source"):
    """The inverses, one stack layer per method and the cortex showing ``show``."""
    result = yield from iter_inverse(hm, sdata, inputs)
    order = _order(hm, sdata.hemi, row_order)
    common = dict(_common(hm, sdata, data_layer), **result.params)
    group = _group(sdata, data_layer)
    tuples = []
    for method, stack in result.stacks.items():
        meta = dict(common, method=method, explained_variance=result.explained[method])
        tuples.append(
            stack_tuple(stack, name=method, sfreq=sdata.sfreq, tmin=sdata.tmin, metadata=meta,
                        group=group, row_order=order)  # fmt: skip
        )
    show = show if show in result.stacks else next(iter(result.stacks))
    limits = next(t for t in tuples if t[1]["name"] == show)[1]["contrast_limits"]
    tuples.append(
        cortex_tuple(hm, hemi=sdata.hemi, source=show, stack=result.stacks[show],
                     sfreq=sdata.sfreq, tmin=sdata.tmin, limits=limits,
                     extra={"simulation": sdata.simulation, "labels": sdata.labels,
                            "source_layer": show})  # fmt: skip
    )
    if sdata.simulation is None:
        tuples.append(titles_tuple())
    return Step(result, tuples)


# =========================================================================== prediction
def iter_predict_step(checkpoint, hm, sdata, *, data_layer, device="auto", batch_size=32,
                      row_order="source"):  # fmt: skip
    """Input stacks made as for the network's training set, its probabilities, their layers."""
    from ..checkpoint import load_checkpoint
    from ..inverse import iter_inverse_stack
    from ..train import iter_predict

    ckpt = load_checkpoint(checkpoint)
    meta = ckpt["dataset_meta"]
    stack = yield from iter_inverse_stack(
        hm, sdata.data, methods=meta["methods"], lambda2=meta["lambda2"],
        nave=int(meta["nave"]), hemi=meta["hemi"], normalisation=meta["normalisation"],
        loose=meta["loose"], depth=meta["depth"], ch_names=sdata.ch_names, verbose="error",
    )  # fmt: skip
    probs = yield from iter_predict(
        ckpt, stack, headmodel=hm, hemi=meta["hemi"], batch_size=batch_size, device=device
    )
    hemi = meta["hemi"]
    name = layers.prediction_name(ckpt["model_name"])
    common = dict(_common(hm, sdata, data_layer), hemi=hemi, rows=hm.rows(hemi),
                  checkpoint=ckpt.get("path"), model=ckpt["model_name"])  # fmt: skip
    stack_t = stack_tuple(probs, name=name, sfreq=sdata.sfreq, tmin=sdata.tmin, metadata=common,
                          group=_group(sdata, data_layer),
                          row_order=_order(hm, hemi, row_order))  # fmt: skip
    cortex = cortex_tuple(
        hm, hemi=hemi, source=name, stack=probs, sfreq=sdata.sfreq, tmin=sdata.tmin,
        limits=stack_t[1]["contrast_limits"],
        extra={"simulation": sdata.simulation, "labels": sdata.labels, "source_layer": name},
    )  # fmt: skip
    return Step(probs, [stack_t, cortex, titles_tuple()], [f"{name}: {len(probs)} samples"])


def iter_predict_recording_step(checkpoint, hm, sdata, *, data_layer, device="auto",
                                batch_size=16, row_order="source"):  # fmt: skip
    """A network on recorded data, as the core applies it (:mod:`..train.recording`).

    Each sample of ``sdata`` (a condition) becomes an :class:`mne.Evoked`; the
    core resamples it to the network's rate, slides the network's windows
    over it and stitches them (mapping a template network onto other sources
    when needed). The probabilities become one stack (one image per
    condition, at the network's rate) and the cortex; the core's notes go to
    the status line and the layers' metadata (``notes``).
    """
    from ..checkpoint import load_checkpoint
    from ..train.recording import iter_predict_recording
    from ._sensors import recording_segments

    ckpt = load_checkpoint(checkpoint)
    segments = recording_segments(sdata, hm, source=data_layer)
    predictions = yield from iter_predict_recording(
        ckpt, segments, headmodel=hm, device=device, batch_size=batch_size, verbose="error"
    )
    yield Progress("layers", 0, 1, "prediction stack, cortex")
    hemi = ckpt["dataset_meta"]["hemi"]
    rows = hm.rows(hemi)
    probs = np.stack([p.stc.data[rows] for p in predictions]).astype(np.float32)
    first = predictions[0].stc
    sfreq, tmin = 1.0 / float(first.tstep), float(first.tmin)
    notes = list(dict.fromkeys(n for p in predictions for n in p.notes))
    name = layers.prediction_name(ckpt["model_name"])
    labels = [p.name for p in predictions]
    common = dict(
        _common(hm, sdata, data_layer), hemi=hemi, rows=rows, labels=labels,
        checkpoint=ckpt.get("path"), model=ckpt["model_name"], notes=notes,
        naves=[p.nave for p in predictions], unit_description=predictions[0].unit,
    )  # fmt: skip
    stack_t = stack_tuple(probs, name=name, sfreq=sfreq, tmin=tmin, metadata=common,
                          group=_group(sdata, data_layer),
                          row_order=_order(hm, hemi, row_order))  # fmt: skip
    cortex = cortex_tuple(
        hm, hemi=hemi, source=name, stack=probs, sfreq=sfreq, tmin=tmin,
        limits=stack_t[1]["contrast_limits"],
        extra={"simulation": None, "labels": labels, "source_layer": name, "notes": notes},
    )  # fmt: skip
    yield Progress("layers", 1, 1, "done")
    summary = (f"{name}: {len(predictions)} condition(s), {probs.shape[-1]} samples at "
               f"{sfreq:.6g} Hz")  # fmt: skip
    return Step(predictions, [stack_t, cortex, titles_tuple()], [summary, *notes])


# =========================================================================== evaluation
def iter_evaluate_step(hm, sim, *, methods, inverse_params, networks, inputs):
    """Score linear inverses and network predictions on a simulation; per-source DLE maps.

    ``networks`` maps a prediction name to its probabilities on ``sim``'s rows.
    The peers of ``inputs.peers`` are searched on a validation simulation of
    ``sim``'s settings (trained ones on a training simulation,
    :func:`..evaluation.peer_simulations`) and scored on ``sim``'s first
    ``inputs.peer_events`` events (:func:`..evaluation.iter_evaluate_peers`).
    The returned step's value is ``(evaluation, maps)``: ``maps`` holds, per
    ``(estimator, protocol)``, the mean DLE per row (from every true source when
    the simulation has multi-dipole events, see :func:`._prepare.per_source_dle`;
    a peer's from its dipoles or map, as scored).
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
        for protocol in protocols:
            scores = score_estimates(probs, sim, hm, protocol=protocol, seed=inputs.seed)
            summary, per_vertex = summarise(
                scores, n_rows=n_rows, n_boot=inputs.n_boot, seed=inputs.seed
            )
            result.scores[(name, protocol)] = scores
            result.summary[(name, protocol)] = summary
            result.per_vertex_dle[(name, protocol)] = per_vertex
        yield Progress("evaluate networks", k + 1, len(networks), name)
    peer_keys = []
    if inputs.peers:
        from ..configs import PeerConfig
        from ..evaluation import iter_evaluate_peers, peer_simulations

        yield Progress("peers", 0, 1, "validation simulation")
        validation, training = peer_simulations(hm, sim, inputs.peers, seed=inputs.seed)
        config = PeerConfig(peers=tuple(inputs.peers), peer_events=inputs.peer_events,
                            peer_events_slow=inputs.peer_events)  # fmt: skip
        peers = yield from iter_evaluate_peers(
            hm, sim, validation=validation, training=training, n_boot=inputs.n_boot,
            seed=inputs.seed, config=config, verbose="error",
        )  # fmt: skip
        peer_keys = list(peers.summary)
        result.merge(peers)
    maps = yield from _dle_maps(hm, sim, result, networks, inverse_params, given=peer_keys)
    return Step((result, maps))


def _dle_maps(hm, sim, result, networks, inverse_params, *, given=()):
    """Per-row mean DLE of every estimator: the evaluation's, or per true source (multi).

    ``given``: the keys whose evaluation map is kept as it is (the peers').
    """
    multi = np.diff(sim.event_indptr).max() > 1
    if not multi:
        return dict(result.per_vertex_dle)
    from ..inverse import inverse_stack

    maps = {key: result.per_vertex_dle[key] for key in given}
    keys = [key for key in result.per_vertex_dle if key not in maps]
    linear = sorted({m for m, _ in keys if m not in networks})
    stacks = {}
    if linear:
        made = inverse_stack(hm, sim.data, methods=linear, hemi=sim.meta["params"]["hemi"],
                             normalisation="none", verbose="error", **inverse_params)  # fmt: skip
        stacks = {m: made[:, i] for i, m in enumerate(linear)}
    for k, (estimator, protocol) in enumerate(keys):
        estimates = networks[estimator] if estimator in networks else stacks[estimator]
        maps[(estimator, protocol)] = per_source_dle(estimates, sim, hm, protocol=protocol)
        yield Progress("DLE maps", k + 1, len(keys), f"{estimator} ({protocol})")
    return maps


def iter_row_orders(keys, kind):
    """The display row orders of ``kind`` for ``{key: (hm, hemi)}`` (:mod:`..layers.ordering`)."""
    from ..layers.ordering import row_order

    out = {}
    for k, (key, (hm, hemi)) in enumerate(keys.items()):
        out[key] = row_order(hm, hemi, kind)
        yield Progress("row order", k + 1, len(keys), hemi)
    return Step(out)


def dle_map_tuple(hm, sim, per_row, *, estimator, protocol):
    """The ``mean DLE (<estimator>)`` surface of a per-row map.

    Each source's value is also painted on its mesh neighbours that have none of
    their own (:func:`..layers.spread_to_neighbours`), so that a map of a few
    events shows patches, not dots; ``metadata["per_row_scored"]`` keeps the
    scored values only.
    """
    hemi = sim.meta["params"]["hemi"]
    shown = layers.spread_to_neighbours(per_row, hm.adjacency(hemi))
    return cortex_tuple(
        hm, hemi=hemi, source=f"mean DLE ({estimator})", per_row=shown,
        name=f"mean DLE ({estimator})", unit="mm",
        extra={"simulation": sim, "estimator": estimator, "protocol": protocol,
               "per_row_scored": np.asarray(per_row, float)},
    )  # fmt: skip


__all__ = [
    "CORTEX", "InverseResult", "Step", "iter_evaluate_step", "iter_headmodel_step",
    "iter_inverse", "iter_inverse_step", "iter_predict_recording_step", "iter_predict_step",
    "iter_simulate_step",
]  # fmt: skip
