"""``simulate(..., precision="float32")``: a :class:`Simulation` made by the torch core.

The events are made ``chunk`` at a time by
:meth:`~.torch_core.TorchCore.draw` with the counters ``(seed, block, rank 0)``,
so a float32 simulation of ``chunk``-event blocks holds exactly the events of
the training stream with the same seed and a batch size of ``chunk`` in one
process (:mod:`napari_meg_unet.dataset.streaming`). The source table, the time
courses and the fields are those the core used, in the container's layout.
"""

from __future__ import annotations

import numpy as np

from ..progress import Progress
from .container import Simulation, simulation_fingerprint
from .torch_core import DEFAULT_BLOCK, TorchCore


def n_events_of(hm, config) -> int:
    """Events of a simulation: ``n_events``, or a sweep's rows times ``n_repeats``."""
    if config.n_events is not None:
        return int(config.n_events)
    return len(hm.rows(config.hemi)) * config.n_repeats


def iter_simulate_torch(hm, config, *, chunk=None, device="cpu", model_error=(), verbose=None):
    """Generator: the float32 simulation of ``config`` (see the module docstring)."""
    from ..configs import InverseConfig

    chunk = DEFAULT_BLOCK if chunk is None else int(chunk)
    core = TorchCore(hm, config, InverseConfig(hemi=config.hemi), device=device, inputs=False,
                     model_error=model_error, verbose=verbose)  # fmt: skip
    n = n_events_of(hm, config)
    yield Progress("simulate", 0, n, f"{n} events (float32)")
    parts = []
    for block, start in enumerate(range(0, n, chunk)):
        size = min(chunk, n - start)
        batch = core.draw(size, seed=config.seed, index=block, first_event=start,
                          with_inputs=False)  # fmt: skip
        parts.append(_host_part(batch))
        yield Progress("simulate", start + size, n, f"{n} events (float32)")
    return assemble(core, config, parts)


def _host_part(batch) -> dict:
    """The host arrays of one core batch."""
    lay = batch.layout
    out = {k: lay[k].cpu().numpy() for k in ("row", "key", "valid", "model", "snr", "scale",
                                           "onset", "duration", "frequency", "phase",
                                           "rel_amplitude")}  # fmt: skip
    out["timecourse"] = lay["timecourse"].double().cpu().numpy()
    out["data"] = batch.data.transpose(1, 2).float().cpu().numpy()
    return out


def assemble(core: TorchCore, config, parts) -> Simulation:
    """The :class:`Simulation` of the core's batches ``parts`` (host arrays)."""
    from .core import _meta, _sim_info

    cat = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    valid = cat["valid"]
    n_events = len(valid)
    event = np.repeat(np.arange(n_events), valid.sum(axis=1))
    row, key = cat["row"][valid], cat["key"][valid]
    model = np.repeat(cat["model"], valid.sum(axis=1))
    pair, field = np.unique(np.stack([model, key], axis=1), axis=0, return_inverse=True)
    host, hm = core.host, core.hm
    position = host.key_positions[key]
    amplitude = cat["rel_amplitude"][valid] * cat["scale"][event]
    sources = dict(
        event=event.astype(np.int64), row=row.astype(np.int64),
        vertex=host.key_vertex[key],
        dense_vertex=key.astype(np.int64) if host.pool is not None else np.full(len(key), -1),
        hemi=(row >= len(hm.vertno[0])).astype(np.int8), position=position,
        normal=host.key_normals[key], field=field.ravel().astype(np.int64),
        onset=cat["onset"][valid], duration=cat["duration"][valid],
        frequency=cat["frequency"][valid], phase=cat["phase"][valid], amplitude=amplitude,
        snr=cat["snr"][event], grid_distance=np.linalg.norm(position - hm.positions[row], axis=1),
    )  # fmt: skip
    members = host.members[row]
    counts = (members >= 0).sum(axis=1)
    sim = Simulation(
        data=cat["data"], info=_sim_info(hm, config.resolved_sfreq), sources=sources,
        event_indptr=np.concatenate([[0], np.cumsum(valid.sum(axis=1))]).astype(np.int64),
        timecourses=cat["timecourse"][valid], fields=host.fields[pair[:, 0], pair[:, 1]],
        member_indptr=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        member_rows=members[members >= 0].astype(np.int64),
        member_weights=np.ones(int(counts.sum())), rows=hm.rows(config.hemi),
        meta=_meta(hm, config, n_events=n_events, n_src=len(row), rank=host.rank,
                   dense=core.dense),
    )  # fmt: skip
    if core.true_models:
        sim.meta["model_error"] = [m.name for m in core.true_models]
    sim.meta["fingerprint"] = simulation_fingerprint(sim)
    return sim
