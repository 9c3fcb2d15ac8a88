"""The peers in the accuracy protocol: a validation search per kind, then every test condition.

For each kind of test set (single, multi, extended) the protocol simulates the
validation set of that kind (the networks' validation seed, same size) and,
for trainable peers (CMNE), a training set (the training seed, at most the
peer's ``max_train_events`` events); each peer meant for that kind
(:attr:`~napari_meg_unet.peers.Peer.kinds`) chooses its hyper-parameters on
the validation set (:func:`~napari_meg_unet.peers.iter_search`) and is then
run on the first ``peer_events`` (slow peers: ``peer_events_slow``) events of
every test condition of that kind (never more than the ``n_test`` events the
other estimators are scored on: a sweep holds more), scored with the window protocol like the
networks, and timed per event. The search's simulations are checked to be
disjoint from each test set (by fingerprint).

The hybrids (:mod:`.hybrids`: estimators built on a
trained network) are searched and scored the same way, once per network of
the kind and hybrid of the preset (``hybrids``), after the networks are
trained; their validation set is the networks' own (same seed and size).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..evaluation import add_source_time_course_errors
from ..progress import Progress
from .data import _score, _simulate_kind
from .spec import derive_seed


@dataclass
class PeerSetup:
    """A peer ready for the test sets of one kind: its state and its search."""

    peer: object
    state: object
    search: object


def _unavailable(p, hm) -> dict:
    """``{peer: reason}`` of the preset's peers that cannot run with ``hm``."""
    from ..peers import get_peer

    reasons = {name: get_peer(name).unavailable(hm) for name in p.peers}
    return {name: why for name, why in reasons.items() if why is not None}


def _iter_training(hm, p, kind, *, seed, n, verbose):
    return _simulate_kind(
        hm, p, kind=kind, n=n, snr=p.train_snr,
        seed=derive_seed(seed, "train", kind, p.modality), verbose=verbose,
    )  # fmt: skip


def _kind_estimators(p, hm, kind, networks, *, device, skipped) -> list:
    """The preset's available peers meant for ``kind`` and the hybrids of its networks."""
    from ..peers import get_peer
    from .hybrids import make_hybrid
    from .networks import network_label

    skipped.update(_unavailable(p, hm))
    out = [get_peer(n) for n in p.peers if n not in skipped and kind in get_peer(n).kinds]
    for net in (networks or {}).values():
        for name in p.hybrids:
            hybrid = make_hybrid(name, net["checkpoint"], network_label(net["model"]),
                                 device=device)  # fmt: skip
            why = hybrid.unavailable(hm)
            if why is None:
                out.append(hybrid)
            else:
                skipped[hybrid.name] = why
    return out


def iter_peer_setups(hm, p, *, kind, seed, verbose, skipped, networks=None, device="cpu"):
    """Search and prepare every available peer of ``p`` meant for ``kind`` (generator).

    ``networks`` (``{key: info}``, the trained networks of ``kind``) adds the
    preset's hybrids (``p.hybrids``) of each network, run on ``device``.
    Returns ``{name: PeerSetup}``; unavailable peers are added to ``skipped``
    (``{name: reason}``) instead.
    """
    from ..peers import fixed_params, iter_search

    estimators = _kind_estimators(p, hm, kind, networks, device=device, skipped=skipped)
    if not estimators:
        return {}
    stage = f"peers {kind}"
    yield Progress(stage, 0, len(estimators), "validation set")
    val = yield from _simulate_kind(
        hm, p, kind=kind, n=p.n_val, snr=p.train_snr,
        seed=derive_seed(seed, "val", kind, p.modality), verbose=verbose,
    )  # fmt: skip
    training, setups = None, {}
    for k, peer in enumerate(estimators):
        name = peer.name
        if peer.trainable and training is None:
            n = min(p.n_train, int(peer.defaults.get("max_train_events", p.n_train)))
            training = yield from _iter_training(hm, p, kind, seed=seed, n=n, verbose=verbose)
        n_search = p.search_events_slow if peer.slow else p.search_events
        search = yield from iter_search(
            peer, hm, val, max_events=n_search, training=training if peer.trainable else None,
            stage=f"search {name} ({kind})", fixed=fixed_params(p.sensor_blocks, p.sensor_net_file),
        )  # fmt: skip
        state = search.state
        if state is None:  # nothing was searched: prepare the defaults
            state = peer.prepare(hm, val.info, params=search.params, training=training)
        setups[name] = PeerSetup(peer, state, search)
        yield Progress(stage, k + 1, len(estimators), name)
    return setups


def iter_score_peers(scores, sim, hm, setups, *, p, n_boot, seed, stage):
    """Run and score each prepared peer on its first events of ``sim`` (generator).

    Adds one result row per peer to ``scores`` (a :class:`.conditions._Scores`)
    and returns ``{peer: disjointness check}``.
    """
    from ..peers import check_disjoint_from, iter_run_peer

    rows = np.asarray(sim.rows)
    checks = {}
    for name, setup in setups.items():
        peer = setup.peer
        n = min(len(sim), p.n_test, p.peer_events_slow if peer.slow else p.peer_events)
        checks[name] = check_disjoint_from(setup.search, [sim.fingerprint])
        run = yield from iter_run_peer(peer, setup.state, sim, np.arange(n),
                                       stage=f"{stage}: {peer.label}")  # fmt: skip
        s = _score(run.estimates, sim, hm, protocol="window", events=run.events, seed=seed)
        add_source_time_course_errors(s, run, sim, hm)
        scores.add(peer.label, "window", s, label=f"{peer.label} (window)", n_rows=len(rows),
                   n_boot=n_boot, seed=seed, extra=peer_row_extra(peer, run))  # fmt: skip
    return checks


def peer_row_extra(peer, run) -> dict:
    """The fields a peer adds to its result row."""
    return {
        "peer": peer.name, "output": peer.output, "n_events": int(len(run.events)),
        "n_empty": run.n_empty, "seconds_per_event": float(np.mean(run.seconds)),
        "params": run.params, "learned": bool(peer.learned), "family": peer.family,
    }  # fmt: skip
