"""The state of a training run (:class:`_Run`) and how a run starts or resumes.

:func:`_plan` decides the run's settings before torch is touched (device,
the recipe or the resumed run's settings, mesh, batch geometry);
:func:`_start_or_resume` then builds the network, optimiser, scheduler, class
weights, RNG states and data, and restores a resumed run's position.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DistributedSampler

from ..checkpoint import load_checkpoint
from ..configs import TrainingConfig
from ..dataset import ExampleSet, IncompatibleDataError
from ..dataset.streaming import StreamSpec
from ..device import resolve_device
from .checkpointing import _check_resume, _restore_rng
from .distributed import _Dist, _sync_batch_norm
from .network import _build_model, _mesh_for, _rebuild_model
from .recipe import _class_weights, _hyperparameters, _make_optimizer, _make_scheduler
from .settings import _amp_dtype, _seed_everything
from .step import _Step


def _new_partial() -> dict:
    """Sums over the batches done so far in the current epoch."""
    return {"loss_sum": 0.0, "grad_norm_sum": 0.0, "n_batches": 0}


@dataclass(eq=False)
class _Run:
    """One training run: its settings, data, network and position.

    Filled in by :func:`_plan` (settings) and :func:`_start_or_resume`
    (network and position); the epoch steps update the position fields, which
    are what a checkpoint stores.
    """

    config: TrainingConfig
    train_set: ExampleSet | StreamSpec
    val_set: ExampleSet
    out_dir: Path
    stop: object
    dist: _Dist
    device: torch.device
    amp_dtype: torch.dtype | None
    # settings (the resumed run's when resuming)
    model_name: str = "thesis"
    preset: str = "small"
    seed: int = 0
    hp: dict = field(default_factory=dict)
    model_overrides: dict = field(default_factory=dict)
    mesh: object = None  # MeshHierarchy | None
    resumed: dict | None = None  # the checkpoint resumed from
    local_batch: int = 1
    n_batches: int = 0
    # network and data
    net: torch.nn.Module | None = None
    step: _Step | None = None
    scheduler: object = None
    class_weights: torch.Tensor | None = None
    train_data: object = None
    val_data: object = None
    sampler: DistributedSampler | None = None
    # position
    epochs_done: int = 0
    batch: int = 0
    history: list = field(default_factory=list)
    best: dict = field(default_factory=lambda: {"epoch": 0, "dle_mm": math.inf})
    bad_epochs: int = 0
    partial: dict = field(default_factory=_new_partial)
    early_stopped: bool = False
    epoch_start: float = 0.0

    @property
    def last_path(self) -> Path:
        return self.out_dir / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.out_dir / "best.pt"

    @property
    def history_path(self) -> Path:
        return self.out_dir / "history.json"

    @property
    def global_batch(self) -> int:
        return self.hp["batch_size"]

    @property
    def main(self) -> bool:
        return self.dist.main

    @property
    def streaming(self) -> bool:
        """Training on a stream simulated on the fly (else on an example set)."""
        return isinstance(self.train_set, StreamSpec)

    @property
    def stream_device(self) -> torch.device:
        """Where the stream's batches are made: the training device, or the CPU in DataLoader
        workers and for MPS (whose lack of float64 the counter-based draws need)."""
        if self.config.num_workers > 0 or self.device.type == "mps":
            return torch.device("cpu")
        return self.device

    @property
    def stream_position(self) -> int:
        """Global batches of the stream consumed so far (what a checkpoint stores)."""
        return self.epochs_done * self.n_batches + self.batch


def _check_out_dir(out_dir: Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse to resume nothing, or to start over on a run without ``overwrite``."""
    last_path, best_path = out_dir / "last.pt", out_dir / "best.pt"
    if resume:
        if not last_path.is_file():
            raise FileNotFoundError(
                f"resume=True but {str(last_path)!r} does not exist; nothing to resume "
                "(train without resume to start a run)."
            )
    elif (last_path.exists() or best_path.exists()) and not overwrite:
        raise FileExistsError(
            f"{str(out_dir)!r} already holds a training run; pass resume=True to continue it "
            "or overwrite=True to start over (CLI: --resume / --overwrite)."
        )


# =========================================================================== planning
def _plan(config, train_set, val_set, out_dir, *, stop, resume, mesh, overrides, dist) -> _Run:
    """The run's settings: device, recipe (or the resumed run's), mesh and batch geometry."""
    device = resolve_device(config.device, local_rank=dist.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    run = _Run(
        config=config, train_set=train_set, val_set=val_set, out_dir=out_dir, stop=stop,
        dist=dist, device=device, amp_dtype=_amp_dtype(config.amp, device),
    )  # fmt: skip
    if resume:
        mesh = _resumed_settings(run, mesh, overrides)
    else:
        run.model_name = "thesis" if config.model is None else config.model
        run.preset = "small" if config.preset is None else config.preset
        run.seed = config.seed
        run.hp, run.model_overrides = _hyperparameters(
            run.model_name, run.preset, epochs=config.epochs, lr=config.lr,
            batch_size=config.batch_size, overrides=overrides,
        )  # fmt: skip
    run.mesh = _mesh_for(run.model_name, mesh, train_set.meta)
    ckpt, new_mesh = run.resumed, run.mesh
    if (
        ckpt is not None
        and new_mesh is not None
        and new_mesh.fingerprint != ckpt["mesh_fingerprint"]
    ):
        raise IncompatibleDataError(
            f"Cannot resume {ckpt.get('path')!r}: the mesh given ({new_mesh.fingerprint!r}) is "
            f"not the run's ({ckpt['mesh_fingerprint']!r})."
        )
    _batch_geometry(run)
    return run


def _resumed_settings(run: _Run, mesh, overrides: dict):
    """Load ``last.pt``, check it against the request and take its settings; returns the mesh."""
    config = run.config
    run.dist.barrier()
    ckpt = load_checkpoint(run.last_path)
    _check_resume(
        ckpt, model_name=config.model, preset=config.preset, train_set=run.train_set,
        val_set=run.val_set,
        hp_explicit={"epochs": config.epochs, "lr": config.lr, "batch_size": config.batch_size},
        overrides=overrides,
    )  # fmt: skip
    run.resumed = ckpt
    run.model_name, run.preset = ckpt["model_name"], ckpt["preset"]
    run.seed = int(ckpt["seed"])  # the sample order and RNG streams are the run's
    run.hp = dict(ckpt["training"])
    if config.epochs is not None:
        run.hp["epochs"] = config.epochs
    if mesh is None and ckpt.get("mesh") is not None:
        mesh = ckpt["mesh"]
    return mesh


def _batch_geometry(run: _Run) -> None:
    """Split the global batch over the ranks; refuse a set smaller than one batch."""
    global_batch, world = run.global_batch, run.dist.world
    if global_batch % world:
        raise ValueError(
            f"batch_size={global_batch} is the global batch and must be divisible by the "
            f"{world} processes."
        )
    run.local_batch = global_batch // world
    train_set = run.train_set
    if run.streaming:
        run.n_batches = train_set.examples_per_epoch // global_batch
        if run.n_batches == 0:
            raise ValueError(
                f"examples_per_epoch={train_set.examples_per_epoch} is less than one batch "
                f"(batch_size={global_batch}); draw more examples per epoch."
            )
        return
    if len(train_set) < global_batch:
        raise ValueError(
            f"The training set {str(train_set.path)!r} has {len(train_set)} example(s), fewer "
            f"than one batch (batch_size={global_batch}); use a smaller batch size or more "
            "examples."
        )
    run.n_batches = (len(train_set) // world) // run.local_batch


def _prepare_out_dir(run: _Run, *, overwrite: bool) -> None:
    """Create ``out_dir`` for a new run (emptied of an old run with ``overwrite``)."""
    if run.main and run.resumed is None:
        run.out_dir.mkdir(parents=True, exist_ok=True)
        if overwrite:
            for path in (run.last_path, run.best_path, run.history_path):
                path.unlink(missing_ok=True)
    run.dist.barrier()


# =========================================================================== start
def _start_or_resume(run: _Run) -> None:
    """Network, optimiser, scheduler, class weights, RNG states, data and position."""
    ckpt, dev, dist, hp = run.resumed, run.device, run.dist, run.hp
    net = _network(run)
    optimizer = _make_optimizer(net.parameters(), hp)
    scheduler = _make_scheduler(optimizer, hp)
    if ckpt is not None:
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        class_weights = ckpt.get("class_weights")
    else:
        class_weights = _class_weights(hp.get("class_weighting"), _class_targets(run))
    if class_weights is not None:
        class_weights = class_weights.to(dev)
    forward = net
    if dist.enabled:
        from torch.nn.parallel import DistributedDataParallel

        forward = DistributedDataParallel(
            net, device_ids=[dev.index] if dev.type == "cuda" else None
        )
    if run.config.compile:
        forward = torch.compile(forward)
    if ckpt is not None:
        _restore_rng(ckpt["rng"], dist)
    elif dist.enabled:
        torch.manual_seed(run.seed + dist.rank)  # distinct dropout masks per shard
    run.net, run.scheduler, run.class_weights = net, scheduler, class_weights
    run.step = _Step(
        model=forward, raw=net, optimizer=optimizer, class_weights=class_weights,
        l1=hp["l1"], clip=hp.get("grad_clip_norm"), amp_dtype=run.amp_dtype, device=dev,
        channels_last=_channels_last(run), dist=dist, centre=_centre_target(run, net),
    )  # fmt: skip
    run.val_data = run.val_set.torch_dataset()
    if run.streaming:  # the batches are made per epoch (loop._stream_batches)
        run.train_set.core(run.stream_device)
    else:
        run.train_data = run.train_set.torch_dataset()
        run.sampler = DistributedSampler(
            run.train_data, num_replicas=dist.world, rank=dist.rank, shuffle=True,
            seed=run.seed, drop_last=True,
        )  # fmt: skip
    if ckpt is not None:
        _restore_position(run, ckpt)


def _class_targets(run: _Run):
    """Targets to count for inverse-frequency class weights: the set's, or a stream sample."""
    if not run.streaming:
        return run.train_set.targets
    if run.hp.get("class_weighting") != "inverse-frequency":
        return None
    return run.train_set.class_weight_targets(device=run.stream_device)


def _channels_last(run: _Run) -> bool:
    return run.device.type == "cuda" and run.model_name == "thesis"


def _network(run: _Run) -> torch.nn.Module:
    """The seeded new network, or the resumed one with its weights, on the device."""
    _seed_everything(run.seed)
    if run.resumed is None:
        net = _build_model(
            run.model_name, preset=run.preset, meta=run.train_set.meta, mesh=run.mesh,
            overrides=run.model_overrides,
        )  # fmt: skip
    else:
        net = _rebuild_model(run.resumed, run.mesh)
        net.load_state_dict(run.resumed["model"])
    net = net.to(run.device)
    if _channels_last(run):
        net = net.to(memory_format=torch.channels_last)
    if run.dist.enabled:
        net = _sync_batch_norm(net, run.device)
    return net


def _centre_target(run: _Run, net):
    """The centre loss's rings and row positions, for a network with a centre head."""
    if not getattr(net, "centre_head", False):
        return None
    from ..models.centre import CentreTarget

    train = run.train_set
    if run.streaming:
        hm = train.headmodel
        positions = hm.positions[hm.rows(train.inverse.hemi)]
    else:
        positions = train.positions
    return CentreTarget(run.mesh, positions, device=run.device)


def _restore_position(run: _Run, ckpt: dict) -> None:
    run.epochs_done = int(ckpt["epoch"])
    run.batch = int(ckpt.get("batch", 0))
    if run.streaming and ckpt.get("stream_position") != run.stream_position:
        raise IncompatibleDataError(
            f"Cannot resume {ckpt.get('path')!r}: its stream position "
            f"{ckpt.get('stream_position')} is not epoch {run.epochs_done} x {run.n_batches} "
            f"batches + {run.batch} (the stream's batches per epoch changed?)."
        )
    run.history = list(ckpt.get("history", []))
    run.best = dict(ckpt["best"])
    run.bad_epochs = int(ckpt.get("bad_epochs", 0))
    run.partial = dict(ckpt.get("partial") or _new_partial())
