"""``bench accuracy``: the linear inverses versus the U-Nets on held-out simulations.

Each network is trained on its own simulations (train and validation sets) and
scored on test simulations drawn from other seeds;
:func:`~napari_meg_unet.dataset.check_disjoint` verifies that no test example
occurs in the training or validation set. Linear inverses and networks are
scored by the same code, :func:`~napari_meg_unet.evaluation.score_estimates`,
with per-event aggregation and per-event bootstrap 95% confidence intervals:

``window``
    One map per event: the mean ``|estimate|`` of a linear inverse, or the mean
    probability of a network, over the whole epoch. Both see the same samples
    and neither is told when the source is active.
``samples``
    The thesis protocol, for the linear inverses: every sample of the event's
    active window is a map of its own.

Presets (:data:`PRESETS`):

``thesis``
    The thesis conditions: MEG template ico3, right hemisphere sweep, 10 Hz
    bursts, the same grid for simulation and inversion (on-grid), lambda2 = 1/9,
    MNE/dSPM/sLORETA inputs with per-column max normalisation, SNR 1.
``benchmark``
    Off-grid dipoles, realistic time courses, whitened SNR 0.5, 1 and 3,
    single-dipole and 2-5-dipole test sets (networks trained on an SNR range).
``small``
    A CPU-sized ``benchmark``: SNR 1 single dipoles only.

The targets of the benchmark are computed (never asserted) and reported as
booleans, see :func:`compute_targets`.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import tempfile
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import metrics
from .._io import atomic_dir, atomic_path, save_npy, to_json, write_json
from ..evaluation import score_estimates, summarise
from ..progress import Progress
from . import machine_description

#: Linear inverse methods scored by the benchmark.
LINEAR_METHODS = ("MNE", "dSPM", "sLORETA", "eLORETA")
#: Network image channels (the thesis's inputs).
INPUT_METHODS = ("MNE", "dSPM", "sLORETA")
#: Kinds of training/test sets.
KINDS = ("single", "multi")
#: Events per inverse/scoring chunk.
_CHUNK = 128
#: Points of the per-batch training-loss curve kept in the results.
_MAX_CURVE_POINTS = 400


# =========================================================================== configuration
@dataclass(frozen=True)
class Condition:
    """One test set: ``kind`` (``"single"`` sweep or ``"multi"``-dipole) at whitened ``snr``."""

    name: str
    kind: str
    snr: float


@dataclass(frozen=True)
class AccuracyPreset:
    """Everything that defines an accuracy benchmark run.

    Attributes
    ----------
    name : str
        Preset name.
    spacing, modality, hemi : str
        Template head model and image hemisphere.
    off_grid : bool
        Simulate at dense off-grid vertices (invert on the coarse grid).
    timecourse : ``"thesis"`` | ``"realistic"``
        Waveform preset of :func:`~napari_meg_unet.simulate.simulate`.
    lambda2 : float
        Regularisation of every inverse (inputs and linear baselines).
    normalisation : str
        Network input normalisation (:func:`~napari_meg_unet.inverse.make_input_stack`).
    conditions : tuple of Condition
        Test sets.
    train_snr : float | (float, float)
        SNR of the training and validation simulations (a range is drawn
        log-uniformly per event).
    n_train, n_val, n_test : int
        Examples per training / validation set (per kind) and per test set.
    multi_dipoles : (int, int)
        Dipoles per event of the ``"multi"`` sets.
    networks : tuple of (str, str)
        ``(model, model preset)`` pairs to train, e.g. ``("mesh", "small")``.
    epochs : int | None
        Epochs per network (None: the model recipe's).
    patience : int | None
        Early-stopping patience (None: the recipe's).
    stability_network : (str, str)
        The network of the ``--stability`` experiments.
    """

    name: str
    off_grid: bool
    timecourse: str
    conditions: tuple
    train_snr: object
    n_train: int
    n_val: int
    n_test: int
    networks: tuple
    stability_network: tuple
    epochs: int | None = None
    patience: int | None = None
    spacing: str = "ico3"
    modality: str = "meg"
    hemi: str = "rh"
    lambda2: float = 1.0 / 9.0
    normalisation: str = "column-max"
    multi_dipoles: tuple = (2, 5)

    @property
    def kinds(self) -> tuple:
        """The kinds of training sets the conditions need, in :data:`KINDS` order."""
        return tuple(k for k in KINDS if any(c.kind == k for c in self.conditions))

    def describe(self) -> str:
        grid = "off-grid" if self.off_grid else "on-grid"
        snrs = ", ".join(f"{c.snr:g}" for c in self.conditions if c.kind == self.conditions[0].kind)
        kinds = " and ".join(
            "single dipoles" if k == "single" else f"{self.multi_dipoles[0]}-"
            f"{self.multi_dipoles[1]} dipoles"
            for k in self.kinds
        )
        return (
            f"{grid} {kinds}, {self.timecourse} time courses, whitened SNR {snrs}, "
            f"template {self.spacing} {self.hemi} {self.modality.upper()}, "
            f"lambda2 = {self.lambda2:.4g}"
        )


PRESETS = {
    "thesis": AccuracyPreset(
        name="thesis",
        off_grid=False,
        timecourse="thesis",
        conditions=(Condition("single-snr1", "single", 1.0),),
        train_snr=1.0,
        n_train=6420,
        n_val=642,
        n_test=642,
        networks=(("thesis", "thesis"), ("mesh", "benchmark")),
        stability_network=("thesis", "thesis"),
    ),
    "benchmark": AccuracyPreset(
        name="benchmark",
        off_grid=True,
        timecourse="realistic",
        conditions=tuple(
            Condition(f"{kind}-snr{snr:g}", kind, snr)
            for kind in KINDS
            for snr in (0.5, 1.0, 3.0)
        ),
        train_snr=(0.5, 3.0),
        n_train=12840,
        n_val=1284,
        n_test=642,
        networks=(("thesis", "benchmark"), ("mesh", "benchmark")),
        stability_network=("thesis", "benchmark"),
    ),
    "small": AccuracyPreset(
        name="small",
        off_grid=True,
        timecourse="realistic",
        conditions=(Condition("single-snr1", "single", 1.0),),
        train_snr=1.0,
        n_train=1284,
        n_val=321,
        n_test=642,
        networks=(("mesh", "small"), ("thesis", "small")),
        stability_network=("mesh", "small"),
        epochs=1,
    ),
}


def get_preset(name: str, **overrides) -> AccuracyPreset:
    """A preset of :data:`PRESETS`, with fields replaced by ``overrides``.

    Parameters
    ----------
    name : str
        ``"thesis"``, ``"benchmark"`` or ``"small"``.
    **overrides
        :class:`AccuracyPreset` fields (e.g. ``n_train=64``, ``epochs=1``,
        ``networks=(("mesh", "small"),)``); None values are ignored.

    Returns
    -------
    preset : AccuracyPreset
    """
    if name not in PRESETS:
        raise ValueError(f"preset must be one of {tuple(PRESETS)}, got {name!r}.")
    fields = {f.name for f in dataclasses.fields(AccuracyPreset)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"Unknown preset field(s) {unknown}; expected some of {sorted(fields)}.")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if "networks" in overrides:
        overrides["networks"] = tuple(tuple(n) for n in overrides["networks"])
    preset = dataclasses.replace(PRESETS[name], **overrides)
    _check_preset(preset)
    return preset


def _check_preset(p: AccuracyPreset) -> None:
    from ..models import PRESETS as MODEL_PRESETS

    for key in ("n_train", "n_val", "n_test"):
        value = getattr(p, key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{key} must be a positive integer, got {value!r}.")
    for key in ("epochs", "patience"):
        value = getattr(p, key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 1):  # fmt: skip
            raise ValueError(f"{key} must be None or a positive integer, got {value!r}.")
    if not p.networks:
        raise ValueError("networks must name at least one (model, preset) pair.")
    for model, preset in (*p.networks, p.stability_network):
        if model not in MODEL_PRESETS or preset not in MODEL_PRESETS[model]:
            raise ValueError(
                f"network ({model!r}, {preset!r}) is unknown; models and presets: "
                f"{ {m: tuple(v) for m, v in MODEL_PRESETS.items()} }."
            )
    if len({m for m, _ in p.networks}) != len(p.networks):
        raise ValueError(f"networks must name each model once, got {p.networks}.")
    if not p.conditions:
        raise ValueError("conditions must hold at least one test set.")
    for c in p.conditions:
        if c.kind not in KINDS:
            raise ValueError(f"condition {c.name!r}: kind must be one of {KINDS}, got {c.kind!r}.")
        if not (isinstance(c.snr, int | float) and c.snr > 0):
            raise ValueError(f"condition {c.name!r}: snr must be a positive number.")


def derive_seed(seed: int, *keys) -> int:
    """A 32-bit seed for the stream named by ``keys``, derived from ``seed``.

    Different keys (``("train", "single")``, ``("test", "single-snr1")``, ...)
    give independent simulation streams, so training, validation and test
    data never share a seed.
    """
    entropy = [int(seed)] + [zlib.crc32(str(k).encode()) for k in keys]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


# =========================================================================== result
@dataclass
class AccuracyResult:
    """Outcome of :func:`iter_bench_accuracy`.

    Attributes
    ----------
    summary : dict
        JSON-friendly results: preset, machine, networks (training time,
        throughput, time to target, history), per-condition result rows,
        grid floors, targets, stability experiments, runtime.
    per_vertex : dict
        ``{condition: {label: (n_rows,) mean DLE (mm) per true source row}}``.
    per_event_dle : dict
        ``{condition: {label: (n_events,) DLE (mm) per event}}``.
    examples : dict
        ``{condition: {"event", "times", "true_rows", "panels": {title: image}}}``,
        one test event's truth, dSPM and network maps.
    """

    summary: dict
    per_vertex: dict = field(default_factory=dict)
    per_event_dle: dict = field(default_factory=dict)
    examples: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """The JSON-friendly summary (a copy)."""
        import json

        return json.loads(to_json(self.summary))

    def table(self) -> str:
        """Human-readable markdown report of the results."""
        return format_table(self.summary)

    def save(self, out, *, overwrite=False, figure_names=None, markdown=True) -> dict:
        """Write the report folder ``out`` atomically (see :meth:`write` for its files).

        Everything is written into a temporary sibling directory that replaces
        ``out`` at the end, so a failure leaves ``out`` untouched.

        Parameters
        ----------
        out : path-like
            Output directory; an existing one is refused unless ``overwrite``
            (then it is replaced as a whole).
        overwrite : bool
            Replace an existing ``out``.
        figure_names, markdown
            See :meth:`write`.

        Returns
        -------
        files : dict
            See :meth:`write`.
        """
        with atomic_dir(out, overwrite=overwrite, what="report folder") as tmp:
            files = self.write(tmp, figure_names=figure_names, markdown=markdown)
        return files

    def write(self, directory, *, figure_names=None, markdown=True) -> dict:
        """Write ``results.json``, ``results.md``, PNG plots and per-vertex ``.npy`` arrays.

        Parameters
        ----------
        directory : path-like
            An existing directory (files in it with the same names are replaced).
        figure_names : dict | None
            File names of the figures, replacing :data:`FIGURE_NAMES` entries
            (``"dle_kde"`` and ``"example"`` may use ``{condition}``).
        markdown : bool
            Also write ``results.md`` (:meth:`table`).

        Returns
        -------
        files : dict
            Paths relative to ``directory``: ``"plots"``, ``"per_vertex"`` (lists),
            ``"json"`` and (with ``markdown``) ``"markdown"``.
        """
        from .. import report

        out = Path(directory)
        if not out.is_dir():
            raise FileNotFoundError(f"directory {str(out)!r} does not exist.")
        names = {**FIGURE_NAMES, **(figure_names or {})}
        files = {"plots": [], "per_vertex": []}
        for cond, arrays in self.per_vertex.items():
            for label, values in arrays.items():
                path = out / "per_vertex" / f"{cond}__{_slug(label)}.npy"
                files["per_vertex"].append(save_npy(path, values))
        for cond, dle in self.per_event_dle.items():
            floor = self.summary["conditions"][cond]["grid_floor_mm"]
            files["plots"].append(report.plot_dle_kde(
                dle, out / names["dle_kde"].format(condition=cond), overwrite=True,
                grid_floor_mm=floor["mean"] if floor else None,
                title=f"{self.summary['preset']} / {cond}: DLE per test event",
            ))  # fmt: skip
        trained = [net for net in self.summary["networks"].values() if net.get("history")]
        histories = {f"{net['estimator']} ({net['kind']})": net["history"] for net in trained}
        batch_losses = {
            f"{net['estimator']} ({net['kind']})": net["batch_loss"]
            for net in trained
            if net.get("batch_loss", {}).get("epoch")
        }
        if histories:
            refs = {
                f"dSPM ({net['kind']} validation)": net.get("val_reference_dle_mm")
                for net in self.summary["networks"].values()
            }
            files["plots"].append(report.plot_training_curves(
                histories, out / names["training"], references=refs, overwrite=True,
                batch_losses=batch_losses,
                title=f"bench accuracy {self.summary['preset']}: training",
            ))  # fmt: skip
        for cond, ex in self.examples.items():
            files["plots"].append(report.plot_example(
                ex["panels"], out / names["example"].format(condition=cond), times=ex["times"],
                true_rows=ex["true_rows"], overwrite=True,
                title=f"{cond}: test event {ex['event']} (arrows: true source row)",
            ))  # fmt: skip
        files = {k: [str(Path(p).relative_to(out)) for p in v] for k, v in files.items()}
        if markdown:
            with atomic_path(out / "results.md") as tmp:
                tmp.write_text(self.table() + "\n")
            files["markdown"] = "results.md"
        summary = self.to_dict()
        summary["files"] = files
        write_json(out / "results.json", summary)
        files["json"] = "results.json"
        return files


#: Default file names of the figures written by :meth:`AccuracyResult.save`.
FIGURE_NAMES = {
    "dle_kde": "dle_kde_{condition}.png",
    "example": "example_{condition}.png",
    "training": "training_curves.png",
}


def _slug(label: str) -> str:
    keep = [c if c.isalnum() or c in "-_" else "-" for c in label]
    return "".join(keep).strip("-").replace("--", "-")


# =========================================================================== data
def _simulate_kind(hm, p: AccuracyPreset, *, kind, n, snr, seed, verbose):
    """Generator: a simulation of ``n`` events of ``kind`` (sweep: a random subset of rows)."""
    from ..simulate import iter_simulate

    kwargs = dict(
        hemi=p.hemi, off_grid=p.off_grid, timecourse=p.timecourse, snr=snr, seed=seed,
        verbose=verbose,
    )  # fmt: skip
    if kind == "single":
        n_rows = len(hm.rows(p.hemi))
        sim = yield from iter_simulate(hm, design="sweep", n_repeats=-(-n // n_rows), **kwargs)
    else:
        sim = yield from iter_simulate(
            hm, design="multi", n_events=n, n_dipoles=tuple(p.multi_dipoles), **kwargs
        )
    return sim


def _build_set(hm, sim, p, *, n, out, event_offset, lambda2, verbose):
    from ..dataset import iter_build_dataset

    return (
        yield from iter_build_dataset(
            hm, sim, methods=INPUT_METHODS, lambda2=lambda2, hemi=p.hemi,
            normalisation=p.normalisation, events=np.arange(n), event_offset=event_offset,
            out=out, verbose=verbose,
        )
    )  # fmt: skip


def _linear_kernels(hm, *, lambda2, methods=LINEAR_METHODS, verbose=None) -> dict:
    from ..inverse import compute_kernel, make_inverse

    inv = make_inverse(hm, loose=0.0, depth=0.8, verbose=verbose)
    return {m: compute_kernel(inv, method=m, lambda2=lambda2, nave=1, verbose=verbose)
            for m in methods}  # fmt: skip


def _estimates(kernel, sim, events, rows):
    """Linear estimates (len(events), n_rows, n_times) on ``rows``, computed in chunks."""
    from ..inverse import apply_kernel

    out = np.empty((len(events), len(rows), sim.data.shape[2]))
    for start in range(0, len(events), _CHUNK):
        sel = events[start : start + _CHUNK]
        out[start : start + len(sel)] = apply_kernel(
            kernel, np.asarray(sim.data[sel], np.float64)
        )[:, rows]
    return out


def _score(estimates, sim, hm, *, protocol, events, seed):
    """:func:`~napari_meg_unet.evaluation.score_estimates` chunk by chunk, as
    :func:`~napari_meg_unet.evaluation.iter_evaluate_linear` calls it (same AUC draws)."""
    parts = []
    for start in range(0, len(events), _CHUNK):
        parts.append(score_estimates(
            estimates[start : start + _CHUNK], sim, hm, protocol=protocol,
            events=events[start : start + _CHUNK], seed=seed,
        ))  # fmt: skip
    return {k: np.concatenate([part[k] for part in parts]) for k in parts[0]}


def _per_event(values, event_ids) -> np.ndarray:
    """Per-event mean of a per-map metric (NaNs dropped), in event order."""
    values = np.asarray(values, float)
    keep = np.isfinite(values)
    events, inverse = np.unique(np.asarray(event_ids)[keep], return_inverse=True)
    return np.bincount(inverse, weights=values[keep]) / np.bincount(inverse)


def _grid_floor(sim, events, *, n_boot, seed) -> dict:
    mask = np.isin(sim.sources["event"], events)
    dist = np.asarray(sim.sources["grid_distance"], float)[mask] * metrics.M_TO_MM
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


# =========================================================================== networks
def network_label(model: str) -> str:
    """Estimator name of a network in the tables (``"thesis U-Net"``, ``"mesh U-Net"``)."""
    return f"{model} U-Net"


def _network_key(kind, model, preset, tag="") -> str:
    return f"{kind}-{model}-{preset}" + (f"-{tag}" if tag else "")


def _iter_network(
    *, model, model_preset, train_set, val_set, run_dir, mesh, p, device, seed, epochs,
    max_train_s, reference_dle, num_threads, overrides=None,
):  # fmt: skip
    """Train one network (generator of Progress); returns its info dict.

    ``overrides``: recipe or model hyper-parameters passed on to :func:`fit`.
    """
    from ..train import BatchDone, Validated, fit

    n_epochs = epochs if epochs is not None else p.epochs
    overrides = {**({} if p.patience is None else {"patience": p.patience}), **(overrides or {})}
    started = time.perf_counter()
    validated = []

    def stop():
        # never before the first validated epoch: a run needs a best checkpoint
        return (
            max_train_s is not None
            and bool(validated)
            and time.perf_counter() - started > max_train_s
        )

    gen = fit(
        model=model, preset=model_preset, train=train_set, val=val_set, out_dir=run_dir,
        epochs=n_epochs, device=device, seed=seed, mesh=mesh if model == "mesh" else None,
        stop=stop, overwrite=True, num_threads=num_threads, **overrides,
    )  # fmt: skip
    rates, batch_curve, stage = [], [], f"train {network_label(model)}"
    while True:
        try:
            event = next(gen)
        except StopIteration as done:
            summary = done.value
            break
        if isinstance(event, BatchDone):
            rates.append(event.samples_per_s)
            batch_curve.append((event.epoch - 1 + event.batch / event.n_batches, event.loss))
            yield Progress(
                stage, event.batch, event.n_batches,
                f"epoch {event.epoch}, loss {event.loss:.3g}, {event.samples_per_s:.0f}/s",
            )  # fmt: skip
        elif isinstance(event, Validated):
            validated.append(event.epoch)
            yield Progress(stage, 1, 1, f"epoch {event.epoch}: val DLE {event.dle_mm:.1f} mm")
    if summary["best_checkpoint"] is None:
        raise RuntimeError(
            f"Training the {model} network produced no checkpoint (no epoch improved the "
            "validation DLE); train longer or check the data."
        )
    info = _history_info(summary["history"], reference_dle)
    info.update(
        model=model,
        preset=model_preset,
        checkpoint=summary["best_checkpoint"],
        loaded=False,
        best_epoch=summary["best_epoch"],
        best_val_dle_mm=summary["best_dle_mm"],
        epochs_done=summary["epochs_done"],
        stopped_by_time_limit=bool(summary["stopped"]),
        early_stopped=bool(summary["early_stopped"]),
        training=summary["training"],
        train_samples_per_s=float(np.median(rates)) if rates else None,
        wall_time_s=time.perf_counter() - started,
        batch_loss=_binned_curve(batch_curve),
    )
    return info


def _binned_curve(points, max_points=_MAX_CURVE_POINTS) -> dict:
    """``(x, y)`` points averaged in at most ``max_points`` consecutive bins."""
    if not points:
        return {"epoch": [], "loss": []}
    x, y = np.asarray(points, float).T
    bins = np.array_split(np.arange(len(x)), min(len(x), max_points))
    return {"epoch": [float(x[b[-1]]) for b in bins], "loss": [float(y[b].mean()) for b in bins]}


def _history_info(history, reference_dle) -> dict:
    """Training time and time-to-target (first epoch whose val DLE beats the reference)."""
    elapsed = np.cumsum([float(r.get("time_s", math.nan)) for r in history])
    time_to_target = None
    epochs_to_target = None
    if reference_dle is not None:
        for record, t in zip(history, elapsed, strict=True):
            if record["dle_mm"] < reference_dle:
                time_to_target, epochs_to_target = float(t), int(record["epoch"])
                break
    return {
        "history": [
            {k: r[k] for k in ("epoch", "train_loss", "val_loss", "dle_mm", "time_s", "lr")
             if k in r}
            for r in history
        ],  # fmt: skip
        "train_time_s": float(elapsed[-1]) if len(elapsed) else 0.0,
        "val_reference_dle_mm": reference_dle,
        "time_to_target_s": time_to_target,
        "epochs_to_target": epochs_to_target,
    }


def _load_network(path: Path, reference_dle) -> dict:
    from ..checkpoint import load_checkpoint

    ckpt = load_checkpoint(path)
    info = _history_info(ckpt.get("history", []), reference_dle)
    info.update(
        model=ckpt["model_name"],
        preset=ckpt.get("preset"),
        checkpoint=str(path),
        loaded=True,
        best_epoch=(ckpt.get("best") or {}).get("epoch"),
        best_val_dle_mm=(ckpt.get("best") or {}).get("dle_mm"),
        epochs_done=ckpt.get("epoch"),
        training=ckpt.get("training"),
        train_samples_per_s=None,
    )
    return info


def _iter_predict(checkpoint, inputs, *, hm, device):
    """Probability maps of a network; returns (probs, samples per second)."""
    from ..train import iter_predict, resolve_device

    # small batches are faster per example on a CPU (cache-resident activations)
    batch_size = 16 if resolve_device(device).type == "cpu" else 64
    t0 = time.perf_counter()
    probs = yield from iter_predict(
        checkpoint, inputs, headmodel=hm, device=device, batch_size=batch_size
    )
    return probs, len(probs) / max(time.perf_counter() - t0, 1e-9)


# =========================================================================== scoring
def _result_row(estimator, protocol, summary) -> dict:
    return {"estimator": estimator, "protocol": protocol, **summary}


def _iter_condition(
    hm, p, cond, *, kernels, networks, work, seed, n_boot, device, verbose, event_offset,
    train_sets,
):  # fmt: skip
    """Simulate one test set and score every estimator on it (generator)."""
    from ..dataset import check_disjoint

    stage = f"test {cond.name}"
    yield Progress(stage, 0, 1, "simulating")
    sim = yield from _simulate_kind(
        hm, p, kind=cond.kind, n=p.n_test, snr=cond.snr,
        seed=derive_seed(seed, "test", cond.name, p.modality), verbose=verbose,
    )  # fmt: skip
    events = np.arange(p.n_test)
    rows = np.asarray(sim.rows)
    rows_out, per_vertex, per_event = [], {}, {}
    example_event = 0
    dspm_estimates = None
    n_steps = len(kernels) + len(networks)
    for k, (method, kernel) in enumerate(kernels.items()):
        yield Progress(stage, k, n_steps, method)
        est = _estimates(kernel, sim, events, rows)
        if method == "dSPM":
            dspm_estimates = est[example_event]
        for protocol in ("window", "samples"):
            scores = _score(est, sim, hm, protocol=protocol, events=events, seed=seed)
            summary, vertex = summarise(scores, n_rows=len(rows), n_boot=n_boot, seed=seed)
            rows_out.append(_result_row(method, protocol, summary))
            label = f"{method} ({'window' if protocol == 'window' else 'per sample'})"
            per_vertex[label] = vertex
            per_event[label] = _per_event(scores["dle_mm"], scores["event"])
        del est
    panels = {"truth": sim.truth(example_event, rows=rows)}
    if dspm_estimates is not None:
        panels["dSPM |estimate|"] = dspm_estimates
    if networks:
        test_set = yield from _build_set(
            hm, sim, p, n=p.n_test, out=work / f"test-{cond.name}-{p.modality}",
            event_offset=event_offset,
            lambda2=p.lambda2, verbose=verbose,
        )  # fmt: skip
        train_set, val_set = train_sets[cond.kind]
        disjoint = check_disjoint({"train": train_set, "val": val_set, "test": test_set})
    else:
        disjoint = None
    inference = {}
    for k, (name, net) in enumerate(networks.items()):
        yield Progress(stage, len(kernels) + k, n_steps, name)
        probs, rate = yield from _iter_predict(net["checkpoint"], test_set, hm=hm, device=device)
        inference[name] = rate
        scores = _score(probs, sim, hm, protocol="window", events=events, seed=seed)
        summary, vertex = summarise(scores, n_rows=len(rows), n_boot=n_boot, seed=seed)
        label = network_label(net["model"])
        rows_out.append(_result_row(label, "window", summary))
        per_vertex[f"{label} (window)"] = vertex
        per_event[f"{label} (window)"] = _per_event(scores["dle_mm"], scores["event"])
        panels[f"{label} probability"] = probs[example_event]
    yield Progress(stage, n_steps, n_steps, "done")
    true_rows = np.flatnonzero(np.isin(rows, sim.sources["row"][sim.event_sources(example_event)]))
    result = {
        "kind": cond.kind,
        "snr": cond.snr,
        "n_events": int(len(events)),
        "simulation": sim.fingerprint,
        "grid_floor_mm": _grid_floor(sim, events, n_boot=n_boot, seed=seed),
        "results": rows_out,
        "disjoint_check": disjoint,
        "inference_samples_per_s": inference,
    }
    example = {"event": example_event, "times": sim.times, "true_rows": true_rows,
               "panels": panels}  # fmt: skip
    return result, per_vertex, per_event, example


def find_row(results, estimator, protocol) -> dict | None:
    """The result row of ``estimator`` and ``protocol`` (None if absent)."""
    for row in results:
        if row["estimator"] == estimator and row["protocol"] == protocol:
            return row
    return None


def _best(results, estimators, protocol):
    best = None
    for name in estimators:
        row = find_row(results, name, protocol)
        if row is None or row["dle_mm"] is None:
            continue
        if best is None or row["dle_mm"]["mean"] < best["dle_mm"]["mean"]:
            best = row
    return best


def compute_targets(conditions: dict, networks: list) -> dict:
    """The benchmark targets as booleans (None where a target does not apply).

    ``per_sample_half``
        On every single-dipole condition, the best network's mean DLE
        (window) is at most half the best linear method's per-sample mean DLE.
    ``window_better_ci``
        On every single-dipole condition, the best network's mean DLE is below
        the best linear method's with the same window protocol, and the 95%
        CIs do not overlap (network ``ci_high`` < linear ``ci_low``).
    ``multi_0.7``
        On every multi-dipole condition, the best network's mean DLE is at most
        0.7 times the best linear method's with the same window protocol.
    ``mesh_0.8_thesis``
        On every condition, the mesh network's mean DLE is at most 0.8 times
        the thesis network's (when both were trained).

    Parameters
    ----------
    conditions : dict
        ``{name: condition result}`` with ``kind`` and ``results`` rows.
    networks : list of str
        Network estimator names (e.g. ``["mesh U-Net"]``).

    Each is evaluated on every condition and, under ``"at_snr1"``, on the
    conditions at whitened SNR 1 only (the issue's "targets at SNR ≈ 1"; None
    when there is none).

    Returns
    -------
    targets : dict
        The four booleans, ``"at_snr1"`` (the same four, or None), and per
        condition the numbers behind them.
    """
    per_condition = {}
    for name, cond in conditions.items():
        res = cond["results"]
        net = _best(res, networks, "window")
        lin_s = _best(res, LINEAR_METHODS, "samples")
        lin_w = _best(res, LINEAR_METHODS, "window")
        entry = {
            "kind": cond["kind"],
            "best_network": None if net is None else net["estimator"],
            "best_network_dle_mm": None if net is None else net["dle_mm"]["mean"],
            "best_linear_samples": None if lin_s is None else lin_s["estimator"],
            "best_linear_samples_dle_mm": None if lin_s is None else lin_s["dle_mm"]["mean"],
            "best_linear_window": None if lin_w is None else lin_w["estimator"],
            "best_linear_window_dle_mm": None if lin_w is None else lin_w["dle_mm"]["mean"],
        }
        if net is not None and lin_s is not None:
            entry["ratio_vs_linear_samples"] = net["dle_mm"]["mean"] / lin_s["dle_mm"]["mean"]
        if net is not None and lin_w is not None:
            entry["ratio_vs_linear_window"] = net["dle_mm"]["mean"] / lin_w["dle_mm"]["mean"]
            entry["window_ci_separated"] = bool(
                net["dle_mm"]["ci_high"] < lin_w["dle_mm"]["ci_low"]
            )
        mesh = find_row(res, network_label("mesh"), "window")
        thesis = find_row(res, network_label("thesis"), "window")
        if mesh is not None and thesis is not None:
            entry["ratio_mesh_vs_thesis"] = mesh["dle_mm"]["mean"] / thesis["dle_mm"]["mean"]
        entry["snr"] = cond.get("snr")
        per_condition[name] = entry
    at_snr1 = {k: e for k, e in per_condition.items()
               if e["snr"] is not None and math.isclose(e["snr"], 1.0)}  # fmt: skip
    return {
        **_target_flags(per_condition),
        "at_snr1": _target_flags(at_snr1) if at_snr1 else None,
        "per_condition": per_condition,
    }


def _target_flags(per_condition: dict) -> dict:
    """The four targets of :func:`compute_targets` over the given conditions."""

    def all_of(kind, test):
        values = [test(e) for e in per_condition.values() if kind is None or e["kind"] == kind]
        values = [v for v in values if v is not None]
        return bool(all(values)) if values else None

    return {
        "per_sample_half": all_of(
            "single", lambda e: None if "ratio_vs_linear_samples" not in e
            else e["ratio_vs_linear_samples"] <= 0.5,
        ),
        "window_better_ci": all_of(
            "single", lambda e: None if "ratio_vs_linear_window" not in e
            else e["ratio_vs_linear_window"] < 1 and e["window_ci_separated"],
        ),
        "multi_0.7": all_of(
            "multi", lambda e: None if "ratio_vs_linear_window" not in e
            else e["ratio_vs_linear_window"] <= 0.7,
        ),
        "mesh_0.8_thesis": all_of(
            None, lambda e: None if "ratio_mesh_vs_thesis" not in e
            else e["ratio_mesh_vs_thesis"] <= 0.8,
        ),
    }  # fmt: skip


# =========================================================================== driver
def iter_bench_accuracy(
    preset="small",
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
    verbose=None,
    **overrides,
):
    """Run the accuracy benchmark (generator of Progress; returns an :class:`AccuracyResult`).

    Parameters
    ----------
    preset : str | AccuracyPreset
        A name of :data:`PRESETS` or a preset object.
    checkpoint_dir : path-like | None
        Directory of trained networks, one sub-directory per network
        (``<kind>-<model>-<preset>/best.pt``): existing ones are loaded instead
        of trained, missing ones are trained there. None trains into the
        temporary work directory (networks are discarded).
    work_dir : path-like | None
        Where the temporary example sets go (default: the system temporary
        directory); removed at the end.
    device : str
        Torch device for training and prediction (``"auto"``: CUDA, MPS, CPU).
    seed : int
        Master seed of every simulation, weight initialisation and bootstrap.
    epochs : int | None
        Epochs per network, replacing the preset's.
    max_train_s : float | None
        Wall-clock limit per network: once it is exceeded (and at least one
        epoch was validated), training stops before the next batch; the best
        epoch so far is used and the result records the stop.
    stability : bool
        Also run the thesis §4.3 experiments (:func:`iter_stability`).
    n_boot : int
        Bootstrap resamples of the confidence intervals.
    num_threads : int | None
        CPU threads for training (see :func:`~napari_meg_unet.train.fit`).
    command : str | None
        The command line, recorded in the result.
    verbose : bool | str | int | None
        MNE log level.
    **overrides
        :class:`AccuracyPreset` fields replacing the preset's (e.g.
        ``n_train=64``, ``networks=(("mesh", "small"),)``).

    Returns
    -------
    result : AccuracyResult
    """
    import mne

    from ..headmodel import iter_make_template_headmodel

    t_start = time.perf_counter()
    p = preset if isinstance(preset, AccuracyPreset) else get_preset(preset, **overrides)
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if isinstance(preset, AccuracyPreset) and overrides:
        p = dataclasses.replace(p, **overrides)
        _check_preset(p)
    if max_train_s is not None and not (isinstance(max_train_s, int | float) and max_train_s > 0):
        raise ValueError(f"max_train_s must be None or a positive number, got {max_train_s!r}.")
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer, got {n_boot!r}.")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}.")
    checkpoint_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
    if checkpoint_dir is not None and checkpoint_dir.exists() and not checkpoint_dir.is_dir():
        raise ValueError(f"checkpoint_dir {str(checkpoint_dir)!r} is not a directory.")
    if work_dir is not None and not Path(work_dir).is_dir():
        raise FileNotFoundError(f"work_dir {str(work_dir)!r} is not an existing directory.")

    hm = yield from iter_make_template_headmodel(
        spacing=p.spacing, modality=p.modality, verbose=verbose
    )
    work = Path(tempfile.mkdtemp(prefix="napari-meg-unet-accuracy-", dir=work_dir))
    try:
        yield Progress("inverse kernels", 0, 1, ", ".join(LINEAR_METHODS))
        kernels = _linear_kernels(hm, lambda2=p.lambda2, verbose=verbose)
        yield Progress("inverse kernels", 1, 1, ", ".join(LINEAR_METHODS))
        networks, train_sets = {}, {}
        timings = {}
        for kind in p.kinds:
            t0 = time.perf_counter()
            nets, sets = yield from _iter_kind_networks(
                hm, p, kind=kind, kernels=kernels, work=work, checkpoint_dir=checkpoint_dir,
                device=device, seed=seed, epochs=epochs, max_train_s=max_train_s,
                num_threads=num_threads, verbose=verbose,
            )  # fmt: skip
            networks.update(nets)
            train_sets[kind] = sets
            timings[f"networks_{kind}_s"] = time.perf_counter() - t0
        conditions, per_vertex, per_event, examples = {}, {}, {}, {}
        offset = p.n_train + p.n_val
        t0 = time.perf_counter()
        for cond in p.conditions:
            nets = {k: v for k, v in networks.items() if v["kind"] == cond.kind}
            res, pv, pe, ex = yield from _iter_condition(
                hm, p, cond, kernels=kernels, networks=nets, work=work, seed=seed,
                n_boot=n_boot, device=device, verbose=verbose, event_offset=offset,
                train_sets=train_sets,
            )  # fmt: skip
            offset += p.n_test
            conditions[cond.name], per_vertex[cond.name] = res, pv
            per_event[cond.name], examples[cond.name] = pe, ex
        timings["evaluation_s"] = time.perf_counter() - t0
        labels = sorted({network_label(n["model"]) for n in networks.values()})
        summary = {
            "benchmark": "accuracy",
            "preset": p.name,
            "description": p.describe(),
            "config": dataclasses.asdict(p),
            "seed": seed,
            "device": device,
            "command": command,
            "machine": machine_description(),
            "versions": _versions(mne),
            "headmodel": hm.summary(),
            "networks": networks,
            "conditions": conditions,
            "targets": compute_targets(conditions, labels),
        }
        if stability:
            t0 = time.perf_counter()
            summary["stability"] = yield from iter_stability(
                hm, p, networks=networks, conditions=conditions, kernels=kernels, work=work,
                checkpoint_dir=checkpoint_dir, device=device, seed=seed, epochs=epochs,
                max_train_s=max_train_s, n_boot=n_boot, num_threads=num_threads,
                verbose=verbose,
            )  # fmt: skip
            timings["stability_s"] = time.perf_counter() - t0
    finally:
        shutil.rmtree(work, ignore_errors=True)
    timings["total_s"] = time.perf_counter() - t_start
    summary["timings"] = timings
    trained = [*summary["networks"].values(), *summary.get("stability", {}).get("networks", {})
               .values()]  # fmt: skip
    for net in trained:  # networks trained in the work directory are gone with it
        if str(net["checkpoint"]).startswith(str(work)):
            net["checkpoint"] = None
    return AccuracyResult(summary, per_vertex=per_vertex, per_event_dle=per_event,
                          examples=examples)  # fmt: skip


def bench_accuracy(preset="small", **kwargs) -> AccuracyResult:
    """Run :func:`iter_bench_accuracy` to completion."""
    from ..progress import run

    return run(iter_bench_accuracy(preset, **kwargs))


def _versions(mne) -> dict:
    import torch

    from .. import __version__

    return {"napari_meg_unet": __version__, "mne": mne.__version__, "torch": torch.__version__,
            "numpy": np.__version__}  # fmt: skip


def _iter_kind_sets(hm, p, *, kind, work, seed, lambda2, tag="", verbose=None):
    """Simulate and build the training and validation sets of ``kind`` under ``work``.

    Returns ``(train_set, val_set, val_simulation)``.
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


def _iter_kind_networks(
    hm, p, *, kind, kernels, work, checkpoint_dir, device, seed, epochs, max_train_s,
    num_threads, verbose, lambda2=None, tag="", networks=None,
):  # fmt: skip
    """Simulate the training/validation sets of ``kind`` and train (or load) its networks.

    Returns ``({key: info}, (train_set, val_set))``.
    """
    lambda2 = p.lambda2 if lambda2 is None else lambda2
    networks = p.networks if networks is None else networks
    train_set, val_set, va = yield from _iter_kind_sets(
        hm, p, kind=kind, work=work, seed=seed, lambda2=lambda2, tag=tag, verbose=verbose
    )
    kernel = kernels["dSPM"] if lambda2 == p.lambda2 else _linear_kernels(
        hm, lambda2=lambda2, methods=("dSPM",), verbose=verbose)["dSPM"]  # fmt: skip
    reference = _reference_val_dle(
        kernel, va, hm, events=np.arange(p.n_val), rows=np.asarray(va.rows)
    )
    del va
    out = {}
    for model, model_preset in networks:
        key = _network_key(kind, model, model_preset, tag)
        run_dir = (checkpoint_dir if checkpoint_dir is not None else work / "networks") / key
        if (run_dir / "best.pt").is_file() and checkpoint_dir is not None:
            info = _load_network(run_dir / "best.pt", reference)
        else:
            info = yield from _iter_network(
                model=model, model_preset=model_preset, train_set=train_set, val_set=val_set,
                run_dir=run_dir, mesh=hm, p=p, device=device,
                seed=derive_seed(seed, "weights", key), epochs=epochs, max_train_s=max_train_s,
                reference_dle=reference, num_threads=num_threads,
            )  # fmt: skip
        info.update(kind=kind, lambda2=lambda2, estimator=network_label(model))
        info["n_parameters"] = _n_parameters(info["checkpoint"])
        out[key] = info
    return out, (train_set, val_set)


def _n_parameters(checkpoint) -> int:
    from ..checkpoint import load_checkpoint

    state = load_checkpoint(checkpoint)["model"]
    return int(sum(v.numel() for k, v in state.items() if not k.endswith(
        ("running_mean", "running_var", "num_batches_tracked"))))  # fmt: skip


# =========================================================================== stability
def _iter_score_network(checkpoint, sim, hm, p, *, kernels, events, device, n_boot, seed):
    """Window-protocol summary of a network on ``sim`` with inputs made by ``kernels``."""
    from ..inverse import make_input_stack

    rows = np.asarray(sim.rows)
    inputs = np.concatenate([
        make_input_stack([kernels[m] for m in INPUT_METHODS], np.asarray(sim.data[sel]),
                         rows=rows, normalisation=p.normalisation)
        for sel in np.array_split(events, max(1, -(-len(events) // _CHUNK)))
    ])  # fmt: skip
    probs, _ = yield from _iter_predict(checkpoint, inputs, hm=hm, device=device)
    scores = _score(probs, sim, hm, protocol="window", events=events, seed=seed)
    return summarise(scores, n_rows=len(rows), n_boot=n_boot, seed=seed)[0]


def _linear_summary(kernel, sim, hm, *, events, protocol, n_boot, seed):
    est = _estimates(kernel, sim, events, np.asarray(sim.rows))
    scores = _score(est, sim, hm, protocol=protocol, events=events, seed=seed)
    return summarise(scores, n_rows=len(sim.rows), n_boot=n_boot, seed=seed)[0]


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
    from ..headmodel import iter_make_template_headmodel

    model, model_preset = p.stability_network
    singles = [c for c in p.conditions if c.kind == "single"]
    if not singles:
        raise ValueError("The stability experiments need a single-dipole condition.")
    cond = singles[0]
    label = network_label(model)
    common = dict(
        work=work, checkpoint_dir=checkpoint_dir, device=device, seed=seed, epochs=epochs,
        max_train_s=max_train_s, num_threads=num_threads, verbose=verbose,
        networks=(p.stability_network,),
    )  # fmt: skip
    out = {"network": label, "preset": model_preset, "condition": cond.name, "networks": {}}
    key = _network_key("single", model, model_preset)
    base = networks.get(key)
    if base is None:
        trained, _ = yield from _iter_kind_networks(hm, p, kind="single", kernels=kernels,
                                                    **common)  # fmt: skip
        base = trained[key]
        out["networks"][key] = base

    # ---- lambda2: trained at one value, tested at the other
    lam_other = 1.0 if not math.isclose(p.lambda2, 1.0) else 1.0 / 9.0
    trained, _ = yield from _iter_kind_networks(
        hm, p, kind="single", kernels=kernels, lambda2=lam_other, tag=f"lambda2-{lam_other:.4g}",
        **common,
    )  # fmt: skip
    (other_key, other), = trained.items()
    out["networks"][other_key] = other
    sim = yield from _simulate_kind(
        hm, p, kind="single", n=p.n_test, snr=cond.snr,
        seed=derive_seed(seed, "test", cond.name, p.modality), verbose=verbose,
    )  # fmt: skip
    events = np.arange(p.n_test)
    kernel_sets = {p.lambda2: kernels,
                   lam_other: _linear_kernels(hm, lambda2=lam_other, verbose=verbose)}
    lam_rows = []
    for train_lam, net in ((p.lambda2, base), (lam_other, other)):
        for test_lam, ks in kernel_sets.items():
            yield Progress(
                "stability lambda2", len(lam_rows), 4, f"{train_lam:.3g} -> {test_lam:.3g}"
            )
            summary = yield from _iter_score_network(
                net["checkpoint"], sim, hm, p, kernels=ks, events=events, device=device,
                n_boot=n_boot, seed=seed,
            )  # fmt: skip
            lam_rows.append({"estimator": label, "train_lambda2": train_lam,
                             "test_lambda2": test_lam, "protocol": "window", **summary})
    for test_lam, ks in kernel_sets.items():
        summary = _linear_summary(ks["dSPM"], sim, hm, events=events, protocol="window",
                                  n_boot=n_boot, seed=seed)  # fmt: skip
        lam_rows.append({"estimator": "dSPM", "train_lambda2": None, "test_lambda2": test_lam,
                         "protocol": "window", **summary})
    out["lambda2"] = lam_rows

    # ---- single-dipole network on multi-dipole data
    yield Progress("stability multi", 0, 1, "simulating")
    multi = Condition(f"multi-snr{cond.snr:g}", "multi", cond.snr)
    msim = yield from _simulate_kind(
        hm, p, kind="multi", n=p.n_test, snr=cond.snr,
        seed=derive_seed(seed, "test", multi.name, p.modality), verbose=verbose,
    )  # fmt: skip
    multi_rows = []
    summary = yield from _iter_score_network(
        base["checkpoint"], msim, hm, p, kernels=kernels, events=events, device=device,
        n_boot=n_boot, seed=seed,
    )  # fmt: skip
    multi_rows.append({"estimator": f"{label} (trained on single dipoles)", "protocol": "window",
                       **summary})  # fmt: skip
    if multi.name in conditions:
        for row in conditions[multi.name]["results"]:
            if row["estimator"] == label:
                multi_rows.append({**row, "estimator": f"{label} (trained on multi dipoles)"})
    for method in LINEAR_METHODS:
        for protocol in ("window", "samples"):
            summary = _linear_summary(kernels[method], msim, hm, events=events,
                                      protocol=protocol, n_boot=n_boot, seed=seed)  # fmt: skip
            multi_rows.append({"estimator": method, "protocol": protocol, **summary})
    out["single_to_multi"] = {"condition": multi.name, "results": multi_rows}
    yield Progress("stability multi", 1, 1, "done")

    # ---- MEG+EEG versus MEG only
    if p.modality == "meg":
        hm2 = yield from iter_make_template_headmodel(spacing=p.spacing, modality="meg+eeg",
                                                      verbose=verbose)  # fmt: skip
        p2 = dataclasses.replace(p, modality="meg+eeg")
        kernels2 = _linear_kernels(hm2, lambda2=p.lambda2, verbose=verbose)
        trained, sets = yield from _iter_kind_networks(
            hm2, p2, kind="single", kernels=kernels2, tag="meg+eeg", **common
        )
        out["networks"].update(trained)
        res, *_ = yield from _iter_condition(
            hm2, p2, cond, kernels={"dSPM": kernels2["dSPM"]}, networks=trained, work=work,
            seed=seed, n_boot=n_boot, device=device, verbose=verbose,
            event_offset=p.n_train + p.n_val, train_sets={"single": sets},
        )  # fmt: skip
        meg_rows = [r for r in conditions.get(cond.name, {}).get("results", [])
                    if r["estimator"] in (label, "dSPM")]  # fmt: skip
        out["modality"] = {
            "meg": [{**r, "modality": "meg"} for r in meg_rows],
            "meg+eeg": [{**r, "modality": "meg+eeg"} for r in res["results"]],
            "headmodel_meg+eeg": hm2.summary(),
        }
    return out


# =========================================================================== table
def _fmt(value, digits=1, unit=""):
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}f}{unit}"


def _yes_no(value) -> str:
    return "n/a" if value is None else ("yes" if value else "no")


def format_table(summary: dict) -> str:
    """Markdown report of an accuracy result summary (:attr:`AccuracyResult.summary`)."""
    from ..report import format_aggregate, results_table

    m = summary["machine"]
    lines = [
        f"bench accuracy — preset `{summary['preset']}`: {summary['description']}",
        "",
        f"Machine: {m['cpu']} ({m['cores']} cores)"
        + (f", GPU {m['gpu']}" if m.get("gpu") else ", no GPU")
        + f"; device {summary['device']}; seed {summary['seed']}; "
        f"total runtime {summary['timings']['total_s']:.0f} s.",
    ]
    if summary.get("command"):
        lines += ["", f"Command: `{summary['command']}`"]
    for name, cond in summary["conditions"].items():
        lines += [
            "",
            f"### {name}: {cond['n_events']} test events, whitened SNR {cond['snr']:g}",
            "",
            results_table(cond["results"]),
            "",
            f"Grid floor (mean distance from the true dipoles to the nearest grid vertex): "
            f"{format_aggregate(cond['grid_floor_mm'])} mm. Means over events with "
            "per-event bootstrap 95% CIs; `window` = mean |estimate| (networks: mean "
            "probability) over the whole epoch, `samples` = every active sample scored.",
        ]
    nets = summary["networks"]
    if nets:
        lines += [
            "",
            "### Networks",
            "",
            "| network | trained on | parameters | epochs (best) | training time (s) "
            "| train samples/s | best val DLE (mm) | dSPM val DLE (mm) | time to target (s) |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for key, net in nets.items():
            loaded = " (loaded)" if net.get("loaded") else ""
            stopped = ", time limit" if net.get("stopped_by_time_limit") else ""
            lines.append(
                f"| {net['estimator']} {net['preset']}{loaded} | {key} | {net['n_parameters']:,} "
                f"| {net['epochs_done']} ({net['best_epoch']}{stopped}) "
                f"| {_fmt(net['train_time_s'], 0)} | {_fmt(net.get('train_samples_per_s'))} "
                f"| {_fmt(net['best_val_dle_mm'])} | {_fmt(net['val_reference_dle_mm'])} "
                f"| {_fmt(net['time_to_target_s'], 0)} |"
            )
        infer = {
            f"{k}: {v:.0f}/s"
            for cond in summary["conditions"].values()
            for k, v in cond["inference_samples_per_s"].items()
        }
        if infer:
            lines += ["", "Inference throughput: " + ", ".join(sorted(infer)) + "."]
    t = summary["targets"]
    lines += [
        "",
        "### Targets",
        "",
        "| target | at SNR 1 | every condition |",
        "|---|---|---|",
    ]
    snr1 = t.get("at_snr1") or {}
    for key, text in (
        ("per_sample_half", "best network DLE <= 0.5 x best linear per-sample DLE (single "
         "dipoles)"),
        ("window_better_ci", "best network better than best linear, same window, "
         "non-overlapping 95% CIs (single dipoles)"),
        ("multi_0.7", "best network DLE <= 0.7 x best linear window DLE (multi-dipole)"),
        ("mesh_0.8_thesis", "mesh U-Net DLE <= 0.8 x thesis U-Net DLE"),
    ):  # fmt: skip
        lines.append(f"| {text} | {_yes_no(snr1.get(key))} | {_yes_no(t[key])} |")
    lines += [
        "",
        "| condition | best network (mm) | best linear per sample (mm) | ratio "
        "| best linear window (mm) | ratio | mesh / thesis |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, e in t["per_condition"].items():
        lines.append(
            f"| {name} | {e['best_network'] or 'n/a'} {_fmt(e['best_network_dle_mm'])} "
            f"| {e['best_linear_samples']} {_fmt(e['best_linear_samples_dle_mm'])} "
            f"| {_fmt(e.get('ratio_vs_linear_samples'), 2)} "
            f"| {e['best_linear_window']} {_fmt(e['best_linear_window_dle_mm'])} "
            f"| {_fmt(e.get('ratio_vs_linear_window'), 2)} "
            f"| {_fmt(e.get('ratio_mesh_vs_thesis'), 2)} |"
        )
    stab = summary.get("stability")
    if stab:
        lines += ["", f"### Stability (thesis §4.3), {stab['network']} on {stab['condition']}",
                  "", "| estimator | trained at lambda2 | tested at lambda2 | DLE (mm) | SD (mm) |",
                  "|---|---|---|---|---|"]  # fmt: skip
        for r in stab["lambda2"]:
            train = "-" if r["train_lambda2"] is None else f"{r['train_lambda2']:.3g}"
            lines.append(f"| {r['estimator']} | {train} | {r['test_lambda2']:.3g} "
                         f"| {format_aggregate(r['dle_mm'])} | {format_aggregate(r['sd_mm'])} |")
        lines += ["", f"Single-dipole network on {stab['single_to_multi']['condition']}:", "",
                  results_table(stab["single_to_multi"]["results"])]  # fmt: skip
        if "modality" in stab:
            rows = stab["modality"]["meg"] + stab["modality"]["meg+eeg"]
            lines += ["", "MEG only versus MEG+EEG:", "",
                      results_table(rows, columns=("modality", "estimator", "protocol"))]
    return "\n".join(lines)
