"""Disjoint train / validation / test example sets from one seed and three configs.

:func:`make_splits` takes a :class:`~napari_meg_unet.configs.DatasetConfig`
(split sizes, master seed, amplitudes), a
:class:`~napari_meg_unet.configs.SimulationConfig` and an
:class:`~napari_meg_unet.configs.InverseConfig`, or any of their options as
keyword arguments (routed to the config that declares them). Each split is
simulated with its own seed (:func:`split_seeds`), all splits share one
inverse operator, and the sets are checked to be disjoint before anything
appears at the output.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Generator

import numpy as np

from .._config import option_spec
from .._docs import fill_doc
from .._io import atomic_dir, check_output_path, write_json
from .._logging import verbose as _verbose
from .._resources import ResourceEstimate, check_resources
from .._validation import check_int
from ..configs import DatasetConfig, InverseConfig, SimulationConfig
from ..progress import Progress, plain
from ..simulate import estimate_simulation
from . import _docs  # noqa: F401  (registers the package's docdict entries)
from .building import (
    _inverse_kernels,
    _iter_build,
    chunk_bytes,
    kernel_bytes,
    set_bytes,
)
from .hashing import check_disjoint
from .reading import ExampleSet

SPLITS = ("train", "val", "test")
#: Simulation options make_splits sets for each split (from the split sizes and seeds).
PER_SPLIT = ("seed", "n_events", "n_repeats")
#: Options declared by both the simulation and the inverse: one value sets both.
SHARED = ("hemi", "nave", "precision")


def split_seeds(seed) -> dict:
    """Independent simulation seeds of the train/val/test splits from one seed.

    Uses ``np.random.SeedSequence(seed).spawn(3)``, so the three streams are
    statistically independent and never overlap.
    """
    children = np.random.SeedSequence(seed).spawn(len(SPLITS))
    return {
        name: int(child.generate_state(1, dtype=np.uint32)[0])
        for name, child in zip(SPLITS, children, strict=True)
    }


# --------------------------------------------------------------------------- options
def _option_names() -> tuple[str, ...]:
    """Every keyword option of make_splits, each once (dataset, simulation, inverse order)."""
    names = list(DatasetConfig.option_names())
    names += [n for n in SimulationConfig.option_names() if n not in (*names, *PER_SPLIT)]
    names += [n for n in InverseConfig.option_names() if n not in names]
    return tuple(names)


def _check_known(options: dict) -> None:
    for key in ("n_events", "n_repeats"):
        if key in options:
            raise ValueError(
                f"{key} is set by make_splits itself (from design/n_train/n_val/n_test/seed/"
                "hemi); do not pass it."
            )
    known = _option_names()
    unknown = [name for name in options if name not in known]
    if unknown:
        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name, known, n=1)
            hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise TypeError(
            f"make_splits got unknown option(s) {', '.join(hints)}; the options are those of "
            "DatasetConfig, SimulationConfig and InverseConfig."
        )


def split_configs(*, dataset=None, simulation=None, inverse=None, **options) -> tuple:
    """Route :func:`make_splits`' options to its three configs.

    Each keyword goes to the config that declares it: ``seed`` is the
    dataset's master seed; ``hemi``, ``nave`` and ``precision`` set both the
    simulation's and the inverse's (``precision`` not given as a keyword is
    float32 when either config asks for it). Where the inverse leaves ``hemi``/``nave`` None, the
    simulation's are used, and the simulation always uses the inverse's (its
    sources lie in the image rows, its noise matches the inverse's ``nave``).
    The simulation's ``seed``, ``n_events`` and ``n_repeats`` are set per
    split by :func:`make_splits` (:func:`split_seeds` and the split sizes);
    here they only make the config valid (``n_events = n_train`` for the
    designs that need one).

    Returns
    -------
    dataset : DatasetConfig
    simulation : SimulationConfig
    inverse : InverseConfig
        With ``hemi`` and ``nave`` set.
    """
    _check_known(options)
    ds_names = DatasetConfig.option_names()
    dataset = DatasetConfig.build(dataset, **{k: v for k, v in options.items() if k in ds_names})
    inverse = InverseConfig.build(
        inverse, **{k: v for k, v in options.items() if k in InverseConfig.option_names()}
    )
    sim_options = {
        k: v for k, v in options.items()
        if k in SimulationConfig.option_names() and k not in ds_names
    }  # fmt: skip
    design = sim_options.get("design", simulation.design if simulation is not None else "sweep")
    sim_options.update(n_events=None if design == "sweep" else dataset.n_train, n_repeats=1)
    simulation = SimulationConfig.build(simulation, **sim_options)
    hemi = simulation.hemi if inverse.hemi is None else inverse.hemi
    nave = simulation.nave if inverse.nave is None else inverse.nave
    precision = options.get("precision") or (
        "float32" if "float32" in (simulation.precision, inverse.precision) else "float64"
    )
    simulation = simulation.replace(hemi=hemi, nave=nave, precision=precision)
    inverse = inverse.replace(hemi=hemi, nave=nave, precision=precision)
    return dataset, simulation, inverse


def _split_simulation(simulation, *, n: int, n_hemi_rows: int, seed: int):
    """The simulation of one split of ``n`` examples."""
    if simulation.design == "sweep":
        # A sweep's size is set by n_repeats; its order is shuffled, so its
        # first n events are a random subset of rows.
        return simulation.replace(seed=seed, n_repeats=-(-n // n_hemi_rows))
    return simulation.replace(seed=seed, n_events=n, n_repeats=1)


# --------------------------------------------------------------------------- size estimate
def _sources_per_event(simulation) -> int:
    return simulation.n_dipoles[1] if simulation.design == "multi" else 1


def _splits_estimate(hm, sims: dict, sizes: dict, inverse, *, amplitudes, chunk):
    """Peak memory (one split simulated and built at a time) and the disk of all sets."""
    n_rows, n_methods = len(hm.rows(inverse.hemi)), len(inverse.methods)
    peak = disk = 0
    for name in SPLITS:
        sim, n = sims[name], sizes[name]
        n_times, k_max = sim.resolved_n_times, _sources_per_event(sim)
        memory = estimate_simulation(hm, sim).memory
        memory += chunk_bytes(
            hm, chunk=min(chunk, n), n_methods=n_methods, n_rows=n_rows, n_times=n_times
        )
        peak = max(peak, memory + n * k_max * 3 * 8)
        disk += set_bytes(n, n_methods, n_rows, n_times, k_max=k_max, amplitudes=amplitudes)
    return ResourceEstimate(
        f"train/val/test sets of {sum(sizes.values())} examples",
        memory=peak + kernel_bytes(hm, n_methods),
        disk=disk,
    )


# --------------------------------------------------------------------------- making the splits
def _iter_build_splits(hm, sims, inverse, *, sizes, offsets, kernels, tmp, amplitudes, chunk,
                       verbose):  # fmt: skip
    """Simulate and build each split into ``tmp/<split>``, one at a time."""
    from ..simulate import iter_simulate

    sets = {}
    for name in SPLITS:
        blocks = {"chunk": chunk} if sims[name].precision == "float32" else {}
        sim = yield from iter_simulate(hm, verbose=verbose, **sims[name].as_kwargs(), **blocks)
        sets[name] = yield from _iter_build(
            hm, sim, inverse, events=np.arange(sizes[name]), event_offset=offsets[name],
            amplitudes=amplitudes, out=tmp / name, overwrite=False, chunk=chunk, force=True,
            guard=False, kernels=kernels, verbose=verbose,
        )  # fmt: skip
        del sim  # only one simulation in memory at a time
    return sets


def _splits_record(dataset, simulation, inverse, *, seeds, sizes, offsets, report, sets):
    """The content of ``splits.json``."""
    defaults = SimulationConfig().to_dict()
    set_here = (*PER_SPLIT, "design", *SHARED)
    return {
        "seed": dataset.seed,
        "split_seeds": seeds,
        "sizes": sizes,
        "event_offsets": offsets,
        "design": simulation.design,
        "sim_kwargs": {
            k: v for k, v in simulation.to_dict().items() if k not in set_here and v != defaults[k]
        },  # fmt: skip
        "inverse": inverse.to_dict(),
        "disjoint": report,
        "fingerprints": {name: s.fingerprint for name, s in sets.items()},
    }


@_verbose
def _iter_make_splits(hm, dataset, simulation, inverse, *, out, overwrite, chunk, force,
                      verbose=None):  # fmt: skip
    out = check_output_path(out, overwrite=overwrite, what="splits output")
    sizes = {"train": dataset.n_train, "val": dataset.n_val, "test": dataset.n_test}
    seeds = split_seeds(dataset.seed)
    n_hemi_rows = len(hm.rows(inverse.hemi))
    sims = {
        name: _split_simulation(simulation, n=sizes[name], n_hemi_rows=n_hemi_rows,
                                seed=seeds[name])
        for name in SPLITS
    }  # fmt: skip
    estimate = _splits_estimate(
        hm, sims, sizes, inverse, amplitudes=dataset.amplitudes, chunk=chunk
    )
    check_resources(estimate, out=out, force=force)
    yield Progress("splits", 0, 1, "inverse operator")
    kernels = _inverse_kernels(hm, inverse, verbose=verbose)
    offsets = {"train": 0, "val": sizes["train"], "test": sizes["train"] + sizes["val"]}
    # Everything is built in a temporary directory renamed onto ``out`` only once the
    # splits are known to be disjoint, so leaking splits are never left behind.
    with atomic_dir(out, overwrite=overwrite, what="dataset output") as tmp:
        sets = yield from _iter_build_splits(
            hm, sims, inverse, sizes=sizes, offsets=offsets, kernels=kernels, tmp=tmp,
            amplitudes=dataset.amplitudes, chunk=chunk, verbose=verbose,
        )  # fmt: skip
        yield Progress("splits", 0, 1, "checking the splits are disjoint")
        report = check_disjoint(sets, unique=("test",))
        record = _splits_record(
            dataset, simulation, inverse, seeds=seeds, sizes=sizes, offsets=offsets,
            report=report, sets=sets,
        )  # fmt: skip
        write_json(tmp / "splits.json", record)
        del sets
    yield Progress("splits", 1, 1, "done")
    return {name: ExampleSet(out / name) for name in SPLITS}


@fill_doc
def iter_make_splits(
    hm,
    *,
    dataset: DatasetConfig | None = None,
    simulation: SimulationConfig | None = None,
    inverse: InverseConfig | None = None,
    out,
    overwrite=False,
    chunk=256,
    force=False,
    verbose=None,
    **options,
) -> Generator[Progress, None, dict]:
    """Simulate and build disjoint train / validation / test example sets, yielding progress.

    Each split is simulated with its own seed from
    ``np.random.SeedSequence(seed).spawn(3)`` (see :func:`split_seeds`), its
    events get distinct ids (``events.npy``: train ``0..n_train-1``, then val,
    then test), and after building, :func:`check_disjoint` verifies that no
    test example occurs twice and that no example is shared by two splits
    (identical inputs); a ``ValueError`` is raised otherwise (e.g. a noise-free
    sweep of a small source space, whose splits necessarily repeat each
    other). For ``design="sweep"``, each split sweeps the hemisphere as many
    times as needed (``n_repeats``) and keeps its first ``n_*`` (shuffled)
    events. The memory and disk all splits need are estimated and checked
    before anything is simulated. The options are checked when this function
    is called; the work starts with the first step of the generator.

    Parameters
    ----------
    %(hm)s
    dataset : DatasetConfig | None
        Split sizes, master seed and whether amplitudes are stored.
    simulation : SimulationConfig | None
        How every split is simulated (:func:`~napari_meg_unet.simulate.simulate`);
        its ``seed``, ``n_events`` and ``n_repeats`` are set per split.
    inverse : InverseConfig | None
        The inverse images (methods, ``lambda2``, priors, normalisation); its
        ``hemi`` and ``nave`` (the simulation's when None) apply to the
        simulation too.
    %(DatasetConfig)s
    out : path-like
        Output directory; gets ``train/``, ``val/``, ``test/`` and ``splits.json``.
    %(overwrite)s
    %(dataset_chunk)s
    %(dataset_force)s
    %(verbose)s
    **options
        Any option of the three configs (the dataset's are listed above),
        replacing the config's value; see :func:`split_configs`. ``seed`` is
        the master seed; ``hemi`` and ``nave`` set both the simulation's and
        the inverse's. E.g. ``design``, ``n_dipoles``, ``off_grid``,
        ``timecourse``, ``snr``, ``noise``, ``n_times`` (simulation) and
        ``methods``, ``lambda2``, ``loose``, ``depth``, ``normalisation``
        (inverse).

    Yields
    ------
    %(progress_yields)s

    Returns
    -------
    sets : dict
        ``{"train": ExampleSet, "val": ExampleSet, "test": ExampleSet}``.

    Raises
    ------
    TypeError
        For an unknown option (naming the closest known one).
    InsufficientResourcesError
        When memory or disk would not suffice (unless ``force``).
    """
    dataset, simulation, inverse = split_configs(
        dataset=dataset, simulation=simulation, inverse=inverse, **options
    )
    chunk = check_int(chunk, "chunk", minimum=1)
    return _iter_make_splits(
        hm, dataset, simulation, inverse, out=out, overwrite=overwrite, chunk=chunk,
        force=force, verbose=verbose,
    )  # fmt: skip


def _signature_with_options(func):
    """``func``'s signature with ``**options`` spelled out as keyword-only options."""
    sig = inspect.signature(func)
    defaults = {}
    for cls in (DatasetConfig, SimulationConfig, InverseConfig):
        for name in cls.option_names():
            defaults.setdefault(name, option_spec(cls, name)["default"])
    params = [p for p in sig.parameters.values() if p.kind != p.VAR_KEYWORD]
    head = [p for p in params if p.name != "verbose"]
    options = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=defaults[name])
        for name in _option_names()
    ]
    return sig.replace(parameters=[*head, *options, sig.parameters["verbose"]])


iter_make_splits.__signature__ = _signature_with_options(iter_make_splits)
make_splits = plain(iter_make_splits)
