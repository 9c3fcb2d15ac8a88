"""Simulations, example sets, linear estimates and their scores for the accuracy protocol."""

from __future__ import annotations

import numpy as np

from .. import metrics
from ..evaluation import score_estimates
from ..progress import Progress
from .spec import AccuracyPreset, derive_seed

#: Events per inverse/scoring chunk.
CHUNK = 128


def _simulate_kind(hm, p: AccuracyPreset, *, kind, n, snr, seed, verbose):
    """Generator: a simulation of ``n`` events of ``kind`` (sweep: a random subset of rows)."""
    from ..simulate import iter_simulate

    config = p.simulation_config(hm, kind=kind, n=n, snr=snr, seed=seed)
    return (yield from iter_simulate(hm, **config.as_kwargs(), verbose=verbose))


def _build_set(hm, sim, p, *, n, out, event_offset, lambda2, verbose):
    """Generator: the example set of the first ``n`` events of ``sim`` (network inputs)."""
    from ..dataset import iter_build_dataset

    config = p.inverse_config(lambda2=lambda2)
    return (
        yield from iter_build_dataset(
            hm, sim, **config.as_kwargs(), events=np.arange(n), event_offset=event_offset,
            out=out, verbose=verbose,
        )
    )  # fmt: skip


def linear_kernels(hm, config, *, verbose=None) -> dict:
    """``{method: kernel}`` for ``config.methods``.

    ``config`` is an :class:`~napari_meg_unet.configs.InverseConfig` (its
    ``loose``, ``depth``, ``lambda2`` and ``nave`` are used).
    """
    from ..inverse import compute_kernel, make_inverse

    inv = make_inverse(hm, loose=config.loose, depth=config.depth, verbose=verbose)
    return {m: compute_kernel(inv, method=m, lambda2=config.lambda2, nave=config.nave,
                              verbose=verbose)
            for m in config.methods}  # fmt: skip


def _estimates(kernel, sim, events, rows):
    """Linear estimates (len(events), n_rows, n_times) on ``rows``, computed in chunks."""
    from ..inverse import apply_kernel

    out = np.empty((len(events), len(rows), sim.data.shape[2]))
    for start in range(0, len(events), CHUNK):
        sel = events[start : start + CHUNK]
        out[start : start + len(sel)] = apply_kernel(
            kernel, np.asarray(sim.data[sel], np.float64)
        )[:, rows]
    return out


def _score(estimates, sim, hm, *, protocol, events, seed):
    """:func:`~napari_meg_unet.evaluation.score_estimates` chunk by chunk, as
    :func:`~napari_meg_unet.evaluation.iter_evaluate_linear` calls it (same AUC draws).

    ``estimates``: time courses, maps or :class:`~napari_meg_unet.metrics.PointEstimates`.
    """
    parts = []
    for start in range(0, len(events), CHUNK):
        sl = slice(start, start + CHUNK)
        chunk = (estimates.subset(sl) if isinstance(estimates, metrics.PointEstimates)
                 else estimates[sl])  # fmt: skip
        parts.append(score_estimates(
            chunk, sim, hm, protocol=protocol, events=events[sl], seed=seed,
        ))  # fmt: skip
    return {k: np.concatenate([part[k] for part in parts]) for k in parts[0]}


def _grid_floor(sim, events, *, n_boot, seed, hm=None) -> dict:
    """Mean distance from the true sources of ``events`` to the nearest grid vertex (mm).

    With ``hm`` and a simulation made on a perturbation of it, the distance is
    to the nearest of ``hm``'s rows (the nominal grid), e.g. from pial sources.
    """
    from ..evaluation import grid_distances

    mask = np.isin(sim.sources["event"], events)
    dist = grid_distances(sim, hm)[mask] * metrics.M_TO_MM
    return metrics.aggregate(dist, np.asarray(sim.sources["event"])[mask], n_boot=n_boot,
                             seed=seed)  # fmt: skip


def _reference_val_dle(kernel, sim, hm, *, events, rows, n_boot=200) -> float:
    """dSPM's validation DLE as :func:`~napari_meg_unet.train.fit` scores the network.

    The map is the mean ``|estimate|`` over the example's active samples and
    its peaks are matched to the true sources without mesh adjacency, as in
    the training loop's validation, so the two numbers are comparable.
    """
    positions = hm.positions[rows]
    dle = np.empty(len(events))
    est = _estimates(kernel, sim, events, rows)
    for j, i in enumerate(events):
        truth = sim.truth(int(i), rows=rows) != 0
        active = truth.any(axis=0)
        window = active if active.any() else slice(None)
        true_pos = np.asarray(sim.sources["position"])[sim.event_sources(int(i))]
        dle[j] = metrics.peak_localisation_error(
            metrics.window_map(est[j], window), positions, true_pos
        )["dle_mm"]
    return metrics.aggregate(dle, np.arange(len(events)), n_boot=n_boot)["mean"]


def iter_kind_sets(hm, p, *, kind, work, seed, lambda2, tag="", verbose=None):
    """Simulate and build the training and validation sets of ``kind`` under ``work``.

    A generator of :class:`~napari_meg_unet.progress.Progress`; returns
    ``(train_set, val_set, val_simulation)``.
    """
    stage = f"data {kind}" + (f" {tag}" if tag else "")
    yield Progress(stage, 0, 2, "training set")
    tr = yield from _simulate_kind(
        hm, p, kind=kind, n=p.n_train, snr=p.train_snr,
        seed=derive_seed(seed, "train", kind, p.modality), verbose=verbose,
    )  # fmt: skip
    va = yield from _simulate_kind(
        hm, p, kind=kind, n=p.n_val, snr=p.train_snr,
        seed=derive_seed(seed, "val", kind, p.modality), verbose=verbose,
    )  # fmt: skip
    suffix = f"-{tag}" if tag else ""
    train_set = yield from _build_set(
        hm, tr, p, n=p.n_train, out=work / f"train-{kind}{suffix}", event_offset=0,
        lambda2=lambda2, verbose=verbose,
    )  # fmt: skip
    val_set = yield from _build_set(
        hm, va, p, n=p.n_val, out=work / f"val-{kind}{suffix}", event_offset=p.n_train,
        lambda2=lambda2, verbose=verbose,
    )  # fmt: skip
    yield Progress(stage, 2, 2, "done")
    return train_set, val_set, va


def iter_kind_sets_and_reference(hm, p, *, kind, work, seed, kernel, verbose=None):
    """:func:`iter_kind_sets` at the preset's lambda2, and ``kernel``'s validation DLE.

    A generator; returns ``(train_set, val_set, reference_dle)``, the reference
    as :func:`~napari_meg_unet.train.fit` scores a network (e.g. dSPM's kernel).
    """
    train_set, val_set, va = yield from iter_kind_sets(
        hm, p, kind=kind, work=work, seed=seed, lambda2=p.lambda2, verbose=verbose
    )
    reference = _reference_val_dle(kernel, va, hm, events=np.arange(p.n_val),
                                   rows=np.asarray(va.rows))  # fmt: skip
    return train_set, val_set, reference


def training_stream(hm, p, *, kind, seed, key="stream", model_error=()):
    """The preset's training data of ``kind`` drawn on the fly (a :class:`~napari_meg_unet.
    dataset.StreamSpec`): ``p.n_train`` new examples per epoch, data seed from ``key``."""
    from ..configs import StreamConfig
    from ..dataset import StreamSpec

    return StreamSpec(
        hm, simulation=p.simulation_config(hm, kind=kind, n=p.n_train, snr=p.train_snr, seed=0),
        inverse=p.inverse_config(),
        stream=StreamConfig(examples_per_epoch=p.n_train, n_val=p.n_val,
                            data_seed=derive_seed(seed, key, kind)),
        model_error=model_error,
    )  # fmt: skip
