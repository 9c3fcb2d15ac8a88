"""The accuracy protocol from start to end: networks, test conditions, targets, summary."""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._docs import fill_doc
from .._logging import verbose as verbose_decorator
from .._machine import machine_description
from .._validation import check_int, check_number
from ..progress import Progress, plain
from . import _docs  # noqa: F401  (registers %(accuracy_run)s)
from .conditions import iter_condition
from .data import linear_kernels
from .networks import iter_kind_networks, network_label
from .result import AccuracyResult
from .spec import LINEAR_METHODS, check_preset
from .stability import iter_stability
from .targets import compute_targets


@dataclass
class _Run:
    """What the steps of one run share: the protocol, head model, kernels and options."""

    p: object
    hm: object
    work: Path
    checkpoint_dir: Path | None
    device: str
    seed: int
    epochs: int | None
    max_train_s: float | None
    n_boot: int
    num_threads: int | None
    verbose: object
    kernels: dict | None = None
    peer_setups: dict = field(default_factory=dict)
    peers_skipped: dict = field(default_factory=dict)

    def training_options(self) -> dict:
        """The keyword arguments of :func:`.networks.iter_kind_networks` beyond the sets'."""
        return dict(
            work=self.work, checkpoint_dir=self.checkpoint_dir, device=self.device,
            seed=self.seed, epochs=self.epochs, max_train_s=self.max_train_s,
            num_threads=self.num_threads, verbose=self.verbose,
        )  # fmt: skip


def _check_options(*, checkpoint_dir, work_dir, seed, max_train_s, n_boot):
    """Validate the run's options up front; returns ``checkpoint_dir`` as a Path (or None)."""
    if max_train_s is not None:
        check_number(max_train_s, "max_train_s", minimum=0)
    check_int(n_boot, "n_boot", minimum=1)
    check_int(seed, "seed", minimum=0)
    checkpoint_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
    if checkpoint_dir is not None and checkpoint_dir.exists() and not checkpoint_dir.is_dir():
        raise ValueError(f"checkpoint_dir {str(checkpoint_dir)!r} is not a directory.")
    if work_dir is not None and not Path(work_dir).is_dir():
        raise FileNotFoundError(f"work_dir {str(work_dir)!r} is not an existing directory.")
    return checkpoint_dir


def _iter_networks(run: _Run, timings: dict):
    """Train (or load) the networks of every kind; returns ``(networks, train_sets)``."""
    networks, train_sets = {}, {}
    if not run.p.networks:  # linear inverses (and peers) only
        return networks, train_sets
    for kind in run.p.kinds:
        t0 = time.perf_counter()
        nets, sets = yield from iter_kind_networks(
            run.hm, run.p, kind=kind, kernels=run.kernels, **run.training_options()
        )
        networks.update(nets)
        train_sets[kind] = sets
        timings[f"networks_{kind}_s"] = time.perf_counter() - t0
    return networks, train_sets


def _iter_conditions(run: _Run, networks, train_sets, timings: dict):
    """Score every estimator on every test condition; returns four dicts by condition."""
    p = run.p
    conditions, per_vertex, per_event, examples = {}, {}, {}, {}
    offset = p.n_train + p.n_val
    t0 = time.perf_counter()
    for cond in p.conditions:
        nets = {k: v for k, v in networks.items() if v["kind"] == cond.kind}
        res, pv, pe, ex = yield from iter_condition(
            run.hm, p, cond, kernels=run.kernels, networks=nets, work=run.work, seed=run.seed,
            n_boot=run.n_boot, device=run.device, verbose=run.verbose, event_offset=offset,
            train_sets=train_sets, peer_setups=run.peer_setups.get(cond.kind),
        )  # fmt: skip
        offset += p.n_test
        conditions[cond.name], per_vertex[cond.name] = res, pv
        per_event[cond.name], examples[cond.name] = pe, ex
    timings["evaluation_s"] = time.perf_counter() - t0
    return conditions, per_vertex, per_event, examples


def _iter_peers(run: _Run, timings: dict, networks: dict):
    """Search and prepare the preset's peers (and the hybrids of the trained ``networks``)
    for every kind of test set (validation only)."""
    from .peers import iter_peer_setups

    if not run.p.peers and not (run.p.hybrids and networks):
        return
    t0 = time.perf_counter()
    for kind in run.p.kinds:
        run.peer_setups[kind] = yield from iter_peer_setups(
            run.hm, run.p, kind=kind, seed=run.seed, verbose=run.verbose,
            skipped=run.peers_skipped, device=run.device,
            networks={k: v for k, v in networks.items() if v["kind"] == kind},
        )  # fmt: skip
    timings["peer_search_s"] = time.perf_counter() - t0


def _peers_summary(run: _Run) -> dict:
    """The peers' searches (per kind) and the peers skipped, with why."""
    return {
        "search": {kind: {name: setup.search.to_dict() for name, setup in setups.items()}
                   for kind, setups in run.peer_setups.items()},
        "skipped": dict(run.peers_skipped),
        "blas_threads": 1,
        # the validation curves of the peers trained here (the sensor network)
        "training": {kind: {name: setup.state.parts["history"] for name, setup in setups.items()
                            if setup.state.parts.get("history") is not None}
                     for kind, setups in run.peer_setups.items()},
    }  # fmt: skip


def _summary(run: _Run, *, networks, conditions, command) -> dict:
    """The JSON-friendly summary of a run (without its timings)."""
    labels = sorted({network_label(n["model"]) for n in networks.values()})
    return {
        "benchmark": "accuracy",
        "preset": run.p.name,
        "description": run.p.describe(run.hm),
        "config": dataclasses.asdict(run.p),
        "seed": run.seed,
        "device": run.device,
        "command": command,
        "machine": machine_description(),
        "versions": _versions(),
        "headmodel": run.hm.summary(),
        "networks": networks,
        "peers": _peers_summary(run),
        "conditions": conditions,
        "targets": compute_targets(conditions, labels),
    }


def _iter_stability(run: _Run, summary: dict, timings: dict):
    t0 = time.perf_counter()
    result = yield from iter_stability(
        run.hm, run.p, networks=summary["networks"], conditions=summary["conditions"],
        kernels=run.kernels, n_boot=run.n_boot, **run.training_options(),
    )  # fmt: skip
    timings["stability_s"] = time.perf_counter() - t0
    return result


def _forget_temporary_checkpoints(summary: dict, work: Path) -> None:
    """Networks trained in the work directory are gone with it: their checkpoint is None."""
    trained = [*summary["networks"].values(), *summary.get("stability", {}).get("networks", {})
               .values()]  # fmt: skip
    for net in trained:
        if str(net["checkpoint"]).startswith(str(work)):
            net["checkpoint"] = None


@verbose_decorator
@fill_doc
def iter_run_accuracy(
    p,
    *,
    checkpoint_dir=None,
    work_dir=None,
    device="auto",
    seed=0,
    epochs=None,
    max_train_s=None,
    stability=False,
    n_boot=2000,
    num_threads=None,
    command=None,
    headmodel=None,
    verbose=None,
):
    """Run the accuracy protocol ``p`` (generator of Progress; returns an :class:`AccuracyResult`).

    Each network is trained on its own simulations and scored, next to the
    linear inverses, on test simulations drawn from other seeds (see
    :mod:`napari_meg_unet.accuracy`).

    Parameters
    ----------
    p : AccuracyPreset
        What to run (conditions, sizes, networks).
    %(accuracy_run)s
    headmodel : HeadModel | path-like | None
        Run the protocol on this head model (or saved head-model directory)
        instead of the template of ``p.spacing``/``p.modality``; its spacing
        and modality replace the preset's.
    %(verbose)s

    Returns
    -------
    result : AccuracyResult
    """
    t_start = time.perf_counter()
    check_preset(p)
    checkpoint_dir = _check_options(
        checkpoint_dir=checkpoint_dir, work_dir=work_dir, seed=seed, max_train_s=max_train_s,
        n_boot=n_boot,
    )  # fmt: skip
    p, hm = yield from _iter_headmodel(p, headmodel, verbose)
    work = Path(tempfile.mkdtemp(prefix="napari-meg-unet-accuracy-", dir=work_dir))
    run = _Run(p, hm, work, checkpoint_dir, device, seed, epochs, max_train_s, n_boot,
               num_threads, verbose)  # fmt: skip
    try:
        result = yield from _iter_steps(run, stability=stability, command=command)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result.summary["timings"]["total_s"] = time.perf_counter() - t_start
    _forget_temporary_checkpoints(result.summary, work)
    return result


run_accuracy = plain(iter_run_accuracy)


def _iter_headmodel(p, headmodel, verbose):
    """The protocol's head model (given, loaded, or the template) and ``p`` matched to it."""
    from ..headmodel import HeadModel, iter_make_template_headmodel, load_headmodel

    if headmodel is None:
        hm = yield from iter_make_template_headmodel(
            spacing=p.spacing, modality=p.modality, verbose=verbose
        )
        return p, hm
    hm = headmodel if isinstance(headmodel, HeadModel) else load_headmodel(headmodel)
    return dataclasses.replace(p, spacing=hm.spacing, modality=hm.modality), hm


def _iter_steps(run: _Run, *, stability, command):
    """Kernels, networks, test conditions, summary and (optionally) stability experiments."""
    p, timings = run.p, {}
    yield Progress("inverse kernels", 0, 1, ", ".join(LINEAR_METHODS))
    config = p.inverse_config(methods=LINEAR_METHODS)
    run.kernels = linear_kernels(run.hm, config, verbose=run.verbose)
    yield Progress("inverse kernels", 1, 1, ", ".join(LINEAR_METHODS))
    networks, train_sets = yield from _iter_networks(run, timings)
    yield from _iter_peers(run, timings, networks)
    conditions, per_vertex, per_event, examples = yield from _iter_conditions(
        run, networks, train_sets, timings
    )
    summary = _summary(run, networks=networks, conditions=conditions, command=command)
    if stability:
        summary["stability"] = yield from _iter_stability(run, summary, timings)
    summary["timings"] = timings
    return AccuracyResult(summary, per_vertex=per_vertex, per_event_dle=per_event,
                          examples=examples)  # fmt: skip


def _versions() -> dict:
    import mne
    import torch

    from .. import __version__

    return {"napari_meg_unet": __version__, "mne": mne.__version__, "torch": torch.__version__,
            "numpy": np.__version__}  # fmt: skip

