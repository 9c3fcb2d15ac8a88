"""The thesis §4.3 stability experiments: lambda2, single to multiple dipoles, modality."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from ..evaluation import summarise
from ..progress import Progress
from .conditions import iter_condition
from .data import CHUNK, _estimates, _score, _simulate_kind, linear_kernels
from .networks import _iter_predict, iter_kind_networks, network_key, network_label
from .spec import INPUT_METHODS, LINEAR_METHODS, Condition, derive_seed


def _iter_score_network(checkpoint, sim, hm, p, *, kernels, events, device, n_boot, seed):
    """Window-protocol summary of a network on ``sim`` with inputs made by ``kernels``."""
    from ..inverse import make_input_stack

    rows = np.asarray(sim.rows)
    inputs = np.concatenate([
        make_input_stack([kernels[m] for m in INPUT_METHODS], np.asarray(sim.data[sel]),
                         rows=rows, normalisation=p.normalisation)
        for sel in np.array_split(events, max(1, -(-len(events) // CHUNK)))
    ])  # fmt: skip
    probs, _ = yield from _iter_predict(checkpoint, inputs, hm=hm, device=device)
    scores = _score(probs, sim, hm, protocol="window", events=events, seed=seed)
    return summarise(scores, n_rows=len(rows), n_boot=n_boot, seed=seed)[0]


def _linear_summary(kernel, sim, hm, *, events, protocol, n_boot, seed):
    est = _estimates(kernel, sim, events, np.asarray(sim.rows))
    scores = _score(est, sim, hm, protocol=protocol, events=events, seed=seed)
    return summarise(scores, n_rows=len(sim.rows), n_boot=n_boot, seed=seed)[0]


def _test_simulation(hm, p, cond, *, seed, verbose):
    """Generator: the test set of ``cond`` (the main run's, for a condition of ``p``)."""
    return _simulate_kind(
        hm, p, kind=cond.kind, n=p.n_test, snr=cond.snr,
        seed=derive_seed(seed, "test", cond.name, p.modality), verbose=verbose,
    )  # fmt: skip


def _iter_lambda2(hm, p, cond, base, *, kernels, common, n_boot):
    """A network trained at the other lambda2; both tested at both values, next to dSPM.

    Returns ``({key: network info}, result rows)``.
    """
    device, seed, verbose = common["device"], common["seed"], common["verbose"]
    label = network_label(p.stability_network[0])
    lam_other = 1.0 if not math.isclose(p.lambda2, 1.0) else 1.0 / 9.0
    trained, _ = yield from iter_kind_networks(
        hm, p, kind="single", kernels=kernels, lambda2=lam_other, tag=f"lambda2-{lam_other:.4g}",
        **common,
    )  # fmt: skip
    ((other_key, other),) = trained.items()
    sim = yield from _test_simulation(hm, p, cond, seed=seed, verbose=verbose)
    events = np.arange(p.n_test)
    config = p.inverse_config(lambda2=lam_other, methods=LINEAR_METHODS)
    kernel_sets = {p.lambda2: kernels, lam_other: linear_kernels(hm, config, verbose=verbose)}
    rows = []
    for train_lam, net in ((p.lambda2, base), (lam_other, other)):
        for test_lam, ks in kernel_sets.items():
            yield Progress("stability lambda2", len(rows), 4, f"{train_lam:.3g} -> {test_lam:.3g}")
            summary = yield from _iter_score_network(
                net["checkpoint"], sim, hm, p, kernels=ks, events=events, device=device,
                n_boot=n_boot, seed=seed,
            )  # fmt: skip
            rows.append({"estimator": label, "train_lambda2": train_lam,
                         "test_lambda2": test_lam, "protocol": "window", **summary})
    for test_lam, ks in kernel_sets.items():
        summary = _linear_summary(ks["dSPM"], sim, hm, events=events, protocol="window",
                                  n_boot=n_boot, seed=seed)  # fmt: skip
        rows.append({"estimator": "dSPM", "train_lambda2": None, "test_lambda2": test_lam,
                     "protocol": "window", **summary})
    return {other_key: other}, rows


def _iter_single_to_multi(hm, p, cond, base, *, kernels, conditions, device, seed, n_boot,
                          verbose):  # fmt: skip
    """The single-dipole network on a multi-dipole test set, next to the linear methods."""
    label = network_label(p.stability_network[0])
    yield Progress("stability multi", 0, 1, "simulating")
    multi = Condition(f"multi-snr{cond.snr:g}", "multi", cond.snr)
    msim = yield from _test_simulation(hm, p, multi, seed=seed, verbose=verbose)
    events = np.arange(p.n_test)
    rows = []
    summary = yield from _iter_score_network(
        base["checkpoint"], msim, hm, p, kernels=kernels, events=events, device=device,
        n_boot=n_boot, seed=seed,
    )  # fmt: skip
    rows.append({"estimator": f"{label} (trained on single dipoles)", "protocol": "window",
                 **summary})  # fmt: skip
    if multi.name in conditions:
        for row in conditions[multi.name]["results"]:
            if row["estimator"] == label:
                rows.append({**row, "estimator": f"{label} (trained on multi dipoles)"})
    for method in LINEAR_METHODS:
        for protocol in ("window", "samples"):
            summary = _linear_summary(kernels[method], msim, hm, events=events,
                                      protocol=protocol, n_boot=n_boot, seed=seed)  # fmt: skip
            rows.append({"estimator": method, "protocol": protocol, **summary})
    yield Progress("stability multi", 1, 1, "done")
    return {"condition": multi.name, "results": rows}


def _iter_modality(hm, p, cond, *, conditions, common, n_boot):
    """The network trained and tested on a MEG+EEG template, versus MEG only (with dSPM).

    Returns ``({key: network info}, modality result)``.
    """
    from ..headmodel import iter_make_template_headmodel

    verbose = common["verbose"]
    label = network_label(p.stability_network[0])
    hm2 = yield from iter_make_template_headmodel(spacing=p.spacing, modality="meg+eeg",
                                                  verbose=verbose)  # fmt: skip
    p2 = dataclasses.replace(p, modality="meg+eeg")
    config = p2.inverse_config(methods=LINEAR_METHODS)
    kernels2 = linear_kernels(hm2, config, verbose=verbose)
    trained, sets = yield from iter_kind_networks(
        hm2, p2, kind="single", kernels=kernels2, tag="meg+eeg", **common
    )
    res, *_ = yield from iter_condition(
        hm2, p2, cond, kernels={"dSPM": kernels2["dSPM"]}, networks=trained,
        work=common["work"], seed=common["seed"], n_boot=n_boot, device=common["device"],
        verbose=verbose, event_offset=p.n_train + p.n_val, train_sets={"single": sets},
    )  # fmt: skip
    meg_rows = [r for r in conditions.get(cond.name, {}).get("results", [])
                if r["estimator"] in (label, "dSPM")]  # fmt: skip
    return trained, {
        "meg": [{**r, "modality": "meg"} for r in meg_rows],
        "meg+eeg": [{**r, "modality": "meg+eeg"} for r in res["results"]],
        "headmodel_meg+eeg": hm2.summary(),
    }


def iter_stability(
    hm, p, *, networks, conditions, kernels, work, checkpoint_dir, device, seed, epochs,
    max_train_s, n_boot, num_threads, verbose=None,
):  # fmt: skip
    """The thesis §4.3 stability experiments (generator; returns a JSON-friendly dict).

    With ``p.stability_network`` on the first single-dipole condition of ``p``:

    ``lambda2``
        Networks trained with inputs at lambda2 = 1 and at ``p.lambda2``, each
        tested on inputs made with both values (window DLE), next to dSPM at
        both values.
    ``modality``
        The same network trained and tested on a MEG+EEG template (sphere
        model) versus MEG only, with dSPM on both.
    ``single_to_multi``
        The single-dipole network on a 2-5-dipole test set at the same SNR,
        versus the linear methods and (if trained) the multi-dipole network.
    """
    model, model_preset = p.stability_network
    singles = [c for c in p.conditions if c.kind == "single"]
    if not singles:
        raise ValueError("The stability experiments need a single-dipole condition.")
    cond = singles[0]
    common = dict(
        work=work, checkpoint_dir=checkpoint_dir, device=device, seed=seed, epochs=epochs,
        max_train_s=max_train_s, num_threads=num_threads, verbose=verbose,
        networks=(p.stability_network,),
    )  # fmt: skip
    out = {"network": network_label(model), "preset": model_preset, "condition": cond.name,
           "networks": {}}  # fmt: skip
    key = network_key("single", model, model_preset)
    base = networks.get(key)
    if base is None:
        trained, _ = yield from iter_kind_networks(hm, p, kind="single", kernels=kernels,
                                                   **common)  # fmt: skip
        base = trained[key]
        out["networks"][key] = base
    trained, out["lambda2"] = yield from _iter_lambda2(
        hm, p, cond, base, kernels=kernels, common=common, n_boot=n_boot
    )
    out["networks"].update(trained)
    out["single_to_multi"] = yield from _iter_single_to_multi(
        hm, p, cond, base, kernels=kernels, conditions=conditions, device=device, seed=seed,
        n_boot=n_boot, verbose=verbose,
    )  # fmt: skip
    if p.modality == "meg" and hm.provenance.get("builder") != "make_template_headmodel":
        out["modality"] = {"skipped": "needs a MEG+EEG model of the same anatomy; the "
                           "MEG+EEG comparison runs on the template only"}  # fmt: skip
    elif p.modality == "meg":
        trained, out["modality"] = yield from _iter_modality(
            hm, p, cond, conditions=conditions, common=common, n_boot=n_boot
        )
        out["networks"].update(trained)
    return out
