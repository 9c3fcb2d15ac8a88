"""Building an example set from a simulation: inverse images in, active sources out.

The inverse operator and kernels are computed once; the images are then
computed ``chunk`` events at a time and written straight into preallocated
memory-mapped ``.npy`` files in a temporary directory that is renamed onto the
output at the end, so sets larger than memory can be built and nothing
half-written appears at the output. The memory and disk a set needs are
estimated (and checked) before any of this starts.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass

import numpy as np

from .._config import option_spec, takes_config
from .._docs import fill_doc
from .._io import atomic_dir, check_output_path, write_json
from .._logging import verbose
from .._resources import ResourceEstimate, check_resources
from .._validation import check_int
from ..configs import InverseConfig
from ..progress import Progress, plain
from . import _docs  # noqa: F401  (registers the package's docdict entries)
from .reading import ExampleSet
from .writing import _finalise_meta

#: The inverse methods (image channels) of a set unless told otherwise.
DEFAULT_METHODS = option_spec(InverseConfig, "methods")["default"]
#: What an example set uses where :class:`InverseConfig` leaves ``hemi`` / ``nave`` open (None).
DEFAULT_HEMI = "rh"
DEFAULT_NAVE = 1


def resolve_inverse(inverse: InverseConfig, *, hemi=DEFAULT_HEMI, nave=DEFAULT_NAVE):
    """``inverse`` with ``hemi`` and ``nave`` set where it leaves them None."""
    return inverse.replace(
        hemi=hemi if inverse.hemi is None else inverse.hemi,
        nave=nave if inverse.nave is None else inverse.nave,
    )


# --------------------------------------------------------------------------- checks
def _check_simulation(hm, sim) -> None:
    """The simulation must come from ``hm`` (or a recorded perturbation of it) and its channels."""
    from ..headmodel import check_simulated_on

    made_with = sim.meta.get("headmodel", {})
    if made_with.get("fingerprint") is not None:
        check_simulated_on(made_with, hm)
    if list(sim.info["ch_names"]) != hm.ch_names:
        raise ValueError(
            "The simulation's channels differ from the head model's "
            f"({len(sim.info['ch_names'])} vs {len(hm.ch_names)} channels)."
        )


def _check_events(events, n_sim: int) -> np.ndarray:
    """Distinct simulation event indices (all events when None)."""
    if events is None:
        events = np.arange(n_sim)
    else:
        events = np.asarray(events)
        if events.ndim != 1 or events.dtype.kind not in "iu" or len(events) == 0:
            raise ValueError("events must be a non-empty 1-D array of simulation event indices.")
        if events.min() < 0 or events.max() >= n_sim or len(np.unique(events)) != len(events):
            raise ValueError(
                f"events must be distinct indices in [0, {n_sim}), got {events[:10]}..."
            )
    if len(events) == 0:
        raise ValueError("The simulation has no events; an example set needs at least one.")
    return events


# --------------------------------------------------------------------------- plan
def _simulation_identity(sim) -> dict:
    """The parts of a simulation's meta that define it (no creation time)."""
    meta = sim.meta
    return {
        "fingerprint": meta.get("fingerprint"),
        "params": meta.get("params", {}),
        "headmodel": meta.get("headmodel", {}),
        "sfreq": float(sim.sfreq),
        "n_events": len(sim),
    }


def _true_positions(sim, events: np.ndarray, rows: np.ndarray, hemi: str) -> np.ndarray:
    """(n, k_max, 3) true positions of the chosen events, NaN-padded; checks the hemisphere."""
    in_image = np.zeros(sim.n_sources, bool)
    in_image[rows] = True
    per_event = []
    for i in events:
        idx = sim.event_sources(int(i))
        src_rows = np.asarray(sim.sources["row"])[idx]
        members = np.concatenate(
            [
                np.asarray(sim.member_rows)[sim.member_indptr[s] : sim.member_indptr[s + 1]]
                for s in idx
            ]
        )
        if not (in_image[src_rows].all() and in_image[members].all()):
            raise ValueError(
                f"Simulation event {int(i)} has sources outside hemi={hemi!r} (rows "
                f"{src_rows.tolist()}); simulate with the same hemi as the dataset "
                f"(simulation hemi={sim.meta.get('params', {}).get('hemi')!r}) or use "
                "hemi='both'."
            )
        per_event.append(np.asarray(sim.sources["position"])[idx])
    k_max = max(1, max(len(p) for p in per_event))
    out = np.full((len(events), k_max, 3), np.nan)
    for j, pos in enumerate(per_event):
        out[j, : len(pos)] = pos
    return out


@dataclass
class _SetPlan:
    """What one example set will hold, worked out before anything is computed or written."""

    events: np.ndarray  # simulation events, in example order
    rows: np.ndarray  # head-model rows of the images
    true_positions: np.ndarray
    meta: dict  # finalised meta.json

    @property
    def shape(self) -> tuple[int, int, int, int]:
        m = self.meta
        return m["n_examples"], m["in_channels"], m["n_rows"], m["n_times"]


def _plan_set(hm, sim, inverse, *, events, event_offset, amplitudes) -> _SetPlan:
    """Rows, true positions and meta of a set (``inverse`` resolved, ``events`` checked)."""
    rows = hm.rows(inverse.hemi)
    n, n_rows, n_times = len(events), len(rows), sim.data.shape[2]
    true_positions = _true_positions(sim, events, rows, inverse.hemi)
    meta = dict(
        headmodel_fingerprint=hm.fingerprint,
        headmodel=hm.summary(),
        ch_names=hm.ch_names,
        hemi=inverse.hemi,
        methods=list(inverse.methods),
        lambda2=inverse.lambda2,
        nave=inverse.nave,
        loose=inverse.loose,
        depth=inverse.depth,
        normalisation=inverse.normalisation,
        precision=inverse.precision,
        simulation=_simulation_identity(sim),
        simulation_events=[int(events[0]), int(events[-1])]
        if np.array_equal(events, np.arange(events[0], events[0] + n))
        else events.tolist(),
        event_offset=event_offset,
        sfreq=float(sim.sfreq),
        tmin=0.0,
    )
    meta = _finalise_meta(
        meta, shape=(n, len(inverse.methods), n_rows, n_times), k_max=true_positions.shape[1],
        has_amplitudes=amplitudes,
    )  # fmt: skip
    return _SetPlan(events=events, rows=rows, true_positions=true_positions, meta=meta)


# --------------------------------------------------------------------------- size estimates
def set_bytes(n, n_methods, n_rows, n_times, *, k_max=1, amplitudes=False) -> int:
    """Bytes an example set of ``n`` examples takes on disk."""
    image = n * n_rows * n_times
    total = image * (4 * n_methods + 1 + (4 if amplitudes else 0))  # inputs, targets, amplitudes
    return int(total + n * 8 + n * k_max * 3 * 8 + n_rows * 3 * 8)


def kernel_bytes(hm, n_methods: int) -> int:
    """Memory of an inverse operator and its ``n_methods`` imaging kernels (float64)."""
    return int((n_methods + 4) * hm.n_sources * len(hm.ch_names) * 8)


def chunk_bytes(hm, *, chunk, n_methods, n_rows, n_times) -> int:
    """Working memory of one chunk of images (estimates of every source, then the stack)."""
    per_event = len(hm.ch_names) * n_times * 8 + 2 * hm.n_sources * n_times * 8
    return int(chunk * (per_event + n_methods * n_rows * n_times * 4 + n_rows * n_times * 16))


def _build_estimate(hm, plan: _SetPlan, *, chunk, with_kernels: bool) -> ResourceEstimate:
    n, c, n_rows, n_times = plan.shape
    memory = chunk_bytes(hm, chunk=min(chunk, n), n_methods=c, n_rows=n_rows, n_times=n_times)
    memory += plan.true_positions.nbytes + (kernel_bytes(hm, c) if with_kernels else 0)
    disk = set_bytes(
        n, c, n_rows, n_times, k_max=plan.true_positions.shape[1],
        amplitudes=plan.meta["has_amplitudes"],
    )  # fmt: skip
    return ResourceEstimate(f"example set of {n} examples", memory=memory, disk=disk)


# --------------------------------------------------------------------------- computing and writing
def _inverse_kernels(hm, inverse, *, verbose=None) -> dict:
    """The imaging kernels of ``inverse.methods`` (one operator, computed once).

    For ``precision="float32"`` the torch core's kernels (an MNE kernel added
    as the base of dSPM/sLORETA), so that the stacks equal the stream's.
    """
    from ..inverse import compute_kernel, make_inverse

    if inverse.precision == "float32":
        from ..simulate.torch_core import compute_kernels

        return compute_kernels(hm, inverse, verbose=verbose)

    inv = make_inverse(hm, loose=inverse.loose, depth=inverse.depth, verbose=verbose)
    return {
        method: compute_kernel(
            inv, method=method, lambda2=inverse.lambda2, nave=inverse.nave,
            fingerprint=hm.fingerprint, verbose=verbose,
        )
        for method in inverse.methods
    }  # fmt: skip


def _open_outputs(tmp, plan: _SetPlan) -> dict:
    """The set's big arrays as writable memory maps in ``tmp``."""
    n, c, n_rows, n_times = plan.shape
    shapes = {
        "inputs": (np.float32, (n, c, n_rows, n_times)),
        "targets": (np.uint8, (n, n_rows, n_times)),
    }
    if plan.meta["has_amplitudes"]:
        shapes["amplitudes"] = (np.float32, (n, n_rows, n_times))
    return {
        name: np.lib.format.open_memmap(tmp / f"{name}.npy", mode="w+", dtype=dtype, shape=shape)
        for name, (dtype, shape) in shapes.items()
    }


def _stacker(sim, plan: _SetPlan, inverse, kernels):
    """``data -> input stack`` of one chunk, on the inverse's precision path."""
    from ..inverse import make_input_stack

    if inverse.precision == "float32":
        from ..inverse.torch_stack import KernelStack

        stacker = KernelStack(kernels, inverse.methods, plan.rows, list(sim.info["ch_names"]),
                              normalisation=inverse.normalisation)  # fmt: skip
        return lambda data: stacker.stack_numpy(data, chunk=len(data))
    kernels = [kernels[m] for m in inverse.methods]
    return lambda data: make_input_stack(
        kernels, data, rows=plan.rows, normalisation=inverse.normalisation
    )


def _iter_fill(outputs: dict, sim, plan: _SetPlan, *, kernels, inverse, chunk):
    """Compute the images and targets ``chunk`` events at a time into the memory maps."""
    n = len(plan.events)
    amps = outputs.get("amplitudes")
    stack = _stacker(sim, plan, inverse, kernels)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        block_events = plan.events[start:stop]
        data = np.asarray(sim.data[block_events])
        outputs["inputs"][start:stop] = stack(data)
        for j, i in enumerate(block_events):
            truth = sim.truth(int(i), rows=plan.rows)
            outputs["targets"][start + j] = truth != 0
            if amps is not None:
                amps[start + j] = truth
        yield Progress("dataset", stop + 1, n + 1, f"{stop}/{n} examples")


def _iter_write(tmp, hm, sim, inverse, plan: _SetPlan, *, kernels, event_offset, chunk):
    """Write every file of the set into the (temporary) directory ``tmp``."""
    outputs = _open_outputs(tmp, plan)
    try:
        yield from _iter_fill(outputs, sim, plan, kernels=kernels, inverse=inverse, chunk=chunk)
        for array in outputs.values():
            array.flush()
    finally:
        outputs.clear()  # release the memory maps before the directory is renamed
    n = len(plan.events)
    np.save(tmp / "events.npy", event_offset + np.arange(n, dtype=np.int64))
    np.save(tmp / "true_positions.npy", plan.true_positions)
    np.save(tmp / "positions.npy", np.asarray(hm.positions[plan.rows], dtype=np.float64))
    write_json(tmp / "meta.json", plan.meta)


def _iter_build(
    hm, sim, inverse, *, events, event_offset, amplitudes, out, overwrite, chunk, force,
    guard=True, kernels=None, verbose=None,
) -> Generator[Progress, None, ExampleSet]:  # fmt: skip
    """Check, plan, (guard,) compute and write one set; ``inverse`` is resolved."""
    _check_simulation(hm, sim)
    events = _check_events(events, len(sim))
    out = check_output_path(out, overwrite=overwrite, what="dataset output")
    plan = _plan_set(
        hm, sim, inverse, events=events, event_offset=event_offset, amplitudes=amplitudes
    )
    if guard:
        estimate = _build_estimate(hm, plan, chunk=chunk, with_kernels=kernels is None)
        check_resources(estimate, out=out, force=force)
    total = len(events) + 1
    yield Progress("dataset", 0, total, "inverse operator")
    if kernels is None:
        kernels = _inverse_kernels(hm, inverse, verbose=verbose)
    yield Progress("dataset", 1, total, "inverse operator")
    with atomic_dir(out, overwrite=overwrite, what="dataset output") as tmp:
        yield from _iter_write(
            tmp, hm, sim, inverse, plan, kernels=kernels, event_offset=event_offset, chunk=chunk
        )
    return ExampleSet(out)


@fill_doc
@takes_config(InverseConfig, param="inverse")
@verbose
def iter_build_dataset(
    hm,
    sim,
    *,
    inverse,
    events=None,
    event_offset=0,
    amplitudes=False,
    out,
    overwrite=False,
    chunk=256,
    force=False,
    verbose=None,
) -> Generator[Progress, None, ExampleSet]:
    """Build an example set from a simulation, yielding progress: inverse images in, sources out.

    The inverse operator and kernels are computed once; the images are then
    computed ``chunk`` events at a time and written into a preallocated
    memory map in a temporary directory that is renamed onto ``out`` at the
    end, so sets larger than memory can be built and nothing half-written
    appears at ``out``. The memory and disk the set needs are estimated and
    checked first.

    Parameters
    ----------
    %(hm)s
        It must be the head model the simulation was made on.
    sim : Simulation
        From :func:`~napari_meg_unet.simulate.simulate` (or
        :func:`~napari_meg_unet.simulate.load_simulation`); its sources must lie
        in ``hemi``.
    events : array of int | None
        Simulation events to use (all if None), in order.
    event_offset : int
        Added to the example index to form ``events.npy`` (keeps ids distinct
        between splits, see :func:`make_splits`).
    amplitudes : bool
        Also store the true amplitudes (``amplitudes.npy``).
    out : path-like
        Output directory.
    %(overwrite)s
    %(dataset_chunk)s
    %(dataset_force)s
    inverse : InverseConfig | None
        All inverse options at once (the keywords below replace its values).
    %(InverseConfig)s
    %(verbose)s

    Yields
    ------
    %(progress_yields)s

    Returns
    -------
    examples : ExampleSet
        The set, opened memory-mapped.

    Notes
    -----
    Here ``hemi=None`` means ``"rh"`` and ``nave=None`` means 1. The defaults
    follow the thesis: MNE, dSPM and sLORETA images, ``lambda2`` 1/9, fixed
    orientations and depth weighting 0.8.
    """
    chunk = check_int(chunk, "chunk", minimum=1)
    event_offset = check_int(event_offset, "event_offset", minimum=0)
    inverse = resolve_inverse(inverse)
    return (
        yield from _iter_build(
            hm, sim, inverse, events=events, event_offset=event_offset,
            amplitudes=bool(amplitudes), out=out, overwrite=overwrite, chunk=chunk, force=force,
            verbose=verbose,
        )
    )  # fmt: skip


build_dataset = plain(iter_build_dataset)
