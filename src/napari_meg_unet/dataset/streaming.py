"""Training data simulated on the fly: :class:`StreamSpec` and :class:`SimulationStream`.

A stream is an endless sequence of *global batches* ``g = 0, 1, 2, ...``; each
is made by the float32 torch core
(:class:`~napari_meg_unet.simulate.torch_core.TorchCore`) on the training
device: sources, gain, coloured noise at the exact whitened SNR, imaging
kernels and normalisation, giving ``(inputs, targets)`` of the same layout as
an example set on disk. Under DDP the global batch is split into one local
batch per rank; the local batch of rank ``r`` in global batch ``g`` is a
function of ``(seed, g, r)`` only (counter-based seeding), so

- ranks never share examples, whatever the number of DataLoader workers
  (workers take every ``n_workers``-th batch and the loader returns them in
  order, so the sequence a rank sees does not depend on the workers);
- the stream position is one integer, the number of global batches consumed,
  which the checkpoint stores: a resumed run sees exactly the batches an
  uninterrupted run would have seen;
- a float32 example set simulated with the same seed in blocks of the batch
  size (``make_splits(precision="float32", chunk=B)``, or
  :meth:`StreamSpec.example_set`) holds exactly the stream's first examples.

Validation stays a fixed disk set: :meth:`StreamSpec.make_val_set` simulates it
from the same configs with a disjoint seed (``split_seeds(seed)["val"]``; the
stream uses ``split_seeds(seed)["train"]``).

Model-error augmentation: ``model_error`` lists alternative "true" forward
models (:class:`~napari_meg_unet.simulate.torch_core.TrueModel`, or head
models sharing the nominal one's channels and sources, e.g. from
``napari_meg_unet.headmodel.perturb``); each event's signal is made with one of
them, drawn uniformly, while the inverse kernels stay the nominal head model's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from ..configs import InverseConfig, SimulationConfig, StreamConfig
from ..fingerprint import array_fingerprint
from .identity import DATASET_FORMAT, DATASET_FORMAT_VERSION
from .splits import split_seeds

#: Examples drawn (from their own seed) to estimate inverse-frequency class weights.
CLASS_WEIGHT_EXAMPLES = 1024
#: Tag of the class-weight sample's counters (never a training batch).
_CLASS_WEIGHT_RANK = 2**31 - 1


@dataclass(eq=False)
class StreamSpec:
    """What a training stream draws: a head model, its configs and the epoch size.

    Parameters
    ----------
    headmodel : HeadModel
        The nominal head model (gain, noise covariance, kernels, image rows).
    simulation : SimulationConfig
        How events are drawn (its ``seed``, ``n_events`` and ``n_repeats`` are
        not used: the stream has its own seed and no end).
    inverse : InverseConfig
        The images; ``hemi``/``nave`` None take the simulation's (and the
        simulation always uses the inverse's, as :func:`make_splits`).
    stream : StreamConfig
        ``examples_per_epoch``, ``n_val`` and the master ``data_seed``.
    model_error : sequence of HeadModel | TrueModel
        Alternative forward models of the signal (see the module docstring).
    """

    headmodel: object
    simulation: SimulationConfig = field(default_factory=SimulationConfig)
    inverse: InverseConfig = field(default_factory=InverseConfig)
    stream: StreamConfig = field(default_factory=StreamConfig)
    model_error: tuple = ()

    def __post_init__(self):
        from ..headmodel import HeadModel

        if not isinstance(self.headmodel, HeadModel):
            raise TypeError(f"headmodel must be a HeadModel, got {type(self.headmodel).__name__}.")
        sim, inv = SimulationConfig.build(self.simulation), InverseConfig.build(self.inverse)
        hemi = sim.hemi if inv.hemi is None else inv.hemi
        nave = sim.nave if inv.nave is None else inv.nave
        # the stream is the float32 torch path; n_events only says "drawn" (multi, extended
        # seeds drawn uniformly) or "swept" (None: sweep, extended seeds sweeping the rows)
        n_events = None if sim.n_events is None else 1
        self.simulation = sim.replace(hemi=hemi, nave=nave, precision="float32",
                                      n_events=n_events, n_repeats=1, seed=0)  # fmt: skip
        self.inverse = inv.replace(hemi=hemi, nave=nave, precision="float32")
        self.stream = StreamConfig.build(self.stream)
        self.model_error = tuple(self.model_error)
        self._cores = {}

    @classmethod
    def from_meta(cls, meta: dict, headmodel, *, model_error=()) -> StreamSpec:
        """The stream described by ``meta`` (a stream's :attr:`meta`, e.g. a checkpoint's
        ``dataset_meta``) on ``headmodel``; its fingerprint is checked against the meta's."""
        if meta.get("kind") != "stream":
            raise ValueError("meta does not describe a stream (it is an example set's).")
        inverse = {key: meta[key] for key in InverseConfig.option_names() if key in meta}
        spec = cls(headmodel, SimulationConfig.from_dict(meta["simulation"]["params"]),
                   InverseConfig.from_dict(inverse), StreamConfig.from_dict(meta["stream"]),
                   model_error=model_error)  # fmt: skip
        if spec.fingerprint != meta.get("fingerprint"):
            raise ValueError(
                f"The stream rebuilt from its description has fingerprint {spec.fingerprint!r}, "
                f"not {meta.get('fingerprint')!r}: another head model (or model_error) than "
                "the one it was made with."
            )
        return spec

    def __getstate__(self):  # DataLoader workers get the CPU core (no kernels to recompute)
        state = dict(self.__dict__)
        state["_cores"] = {k: v for k, v in self._cores.items() if k == "cpu"}
        return state

    # ------------------------------------------------------------------ seeds and sizes
    @property
    def train_seed(self) -> int:
        return split_seeds(self.stream.data_seed)["train"]

    @property
    def val_seed(self) -> int:
        return split_seeds(self.stream.data_seed)["val"]

    @property
    def examples_per_epoch(self) -> int:
        return self.stream.examples_per_epoch

    def __len__(self) -> int:
        return self.examples_per_epoch

    # ------------------------------------------------------------------ identity
    def core(self, device="cpu"):
        """The :class:`~napari_meg_unet.simulate.torch_core.TorchCore` on ``device`` (cached)."""
        from ..simulate.torch_core import TorchCore

        key = str(torch.device(device))
        if key not in self._cores:
            self._cores[key] = TorchCore(self.headmodel, self.simulation, self.inverse,
                                         device=device, model_error=self.model_error)  # fmt: skip
        return self._cores[key]

    @property
    def fingerprint(self) -> str:
        """Hash of the configs, the head model and the model-error forward models."""
        if "_fingerprint" not in self.__dict__:
            self._fingerprint = array_fingerprint(
                kind="stream", simulation=self.simulation.to_dict(),
                inverse=self.inverse.to_dict(), stream=self.stream.to_dict(),
                headmodel=self.headmodel.fingerprint,
                model_error=[m.fingerprint for m in self.model_error],
            )  # fmt: skip
        return self._fingerprint

    @property
    def meta(self) -> dict:
        """The stream's description in the fields of an example set's ``meta.json``."""
        if "_meta" not in self.__dict__:
            self._meta = self._make_meta()
        return self._meta

    def _make_meta(self) -> dict:
        hm, sim, inv = self.headmodel, self.simulation, self.inverse
        n_rows = len(hm.rows(inv.hemi))
        k_max = sim.n_dipoles[1] if sim.design == "multi" else 1
        return dict(
            format=DATASET_FORMAT, format_version=DATASET_FORMAT_VERSION, kind="stream",
            headmodel_fingerprint=hm.fingerprint, headmodel=hm.summary(),
            ch_names=list(hm.ch_names), hemi=inv.hemi, methods=list(inv.methods),
            lambda2=inv.lambda2, nave=inv.nave, loose=inv.loose, depth=inv.depth,
            normalisation=inv.normalisation, precision="float32",
            simulation={"params": sim.to_dict(), "headmodel": {"fingerprint": hm.fingerprint}},
            stream=self.stream.to_dict(), train_seed=self.train_seed,
            model_error=[m.name if hasattr(m, "name") else str(m) for m in self.model_error],
            in_channels=len(inv.methods), n_rows=n_rows, n_times=sim.resolved_n_times,
            n_examples=self.examples_per_epoch, k_max=k_max, has_amplitudes=False,
            sfreq=sim.resolved_sfreq, tmin=0.0, fingerprint=self.fingerprint,
        )  # fmt: skip

    def describe(self) -> str:
        sim = self.simulation
        grid = "off-grid " if sim.off_grid else ""
        extra = f", model error from {len(self.model_error)} forward models" * bool(
            self.model_error
        )
        return (
            f"stream of {grid}{sim.design} events ({sim.timecourse}, SNR {sim.snr}), "
            f"{self.examples_per_epoch} examples per epoch, data seed "
            f"{self.stream.data_seed}{extra}"
        )

    # ------------------------------------------------------------------ data
    def stream_dataset(self, *, batch_size, rank=0, world=1, start=0, stop=None, device="cpu"):
        """A :class:`SimulationStream` of local batches of ``batch_size`` on ``rank``."""
        return SimulationStream(self, batch_size=batch_size, rank=rank, world=world, start=start,
                                stop=stop, device=device)  # fmt: skip

    def class_weight_targets(self, n=CLASS_WEIGHT_EXAMPLES, *, device="cpu") -> np.ndarray:
        """Targets of ``n`` examples from counters no training batch uses (for class weights)."""
        core = self.core(device)
        size = min(n, 256)
        parts = []
        for index in range(-(-n // size)):
            batch = core.draw(size, seed=self.train_seed, index=index, rank=_CLASS_WEIGHT_RANK,
                              with_inputs=False)  # fmt: skip
            parts.append(batch.targets.cpu().numpy())
        return np.concatenate(parts)[:n]

    def make_val_set(self, out, *, n=None, overwrite=False, chunk=256, verbose=None):
        """Simulate and write the validation set (float32 path, the validation seed)."""
        from ..progress import plain

        return plain(self.iter_example_set)(
            out, n=self.stream.n_val if n is None else n, seed=self.val_seed,
            overwrite=overwrite, chunk=chunk, verbose=verbose,
        )  # fmt: skip

    def iter_example_set(self, out, *, n, seed, overwrite=False, chunk=256, verbose=None):
        """Generator: the float32 example set of ``n`` events simulated with ``seed``.

        With ``seed=self.train_seed`` and ``chunk`` equal to the batch size it
        holds exactly the first ``n`` examples of the stream in one process.
        """
        from ..simulate import iter_simulate
        from .building import _iter_build

        sim = self.simulation
        if sim.n_events is None:  # sweeps of the rows: enough of them to hold n events
            n_rows = len(self.headmodel.rows(sim.hemi))
            sim = sim.replace(seed=seed, n_repeats=-(-n // n_rows))
        else:
            sim = sim.replace(seed=seed, n_events=n)
        simulation = yield from iter_simulate(
            self.headmodel, config=sim, chunk=chunk, model_error=self.model_error,
            verbose=verbose,
        )  # fmt: skip
        return (yield from _iter_build(
            self.headmodel, simulation, self.inverse, events=np.arange(n), event_offset=0,
            amplitudes=False, out=out, overwrite=overwrite, chunk=chunk, force=False,
            kernels=self.core("cpu").kernels, verbose=verbose,
        ))  # fmt: skip


class SimulationStream(IterableDataset):
    """The local batches ``start .. stop - 1`` of a :class:`StreamSpec` on one rank.

    Yields ``(inputs float32 (B, C, n_rows, n_times), targets uint8 (B, n_rows,
    n_times), example ids int64 (B,), true positions float32 (B, k_max, 3) in m,
    NaN-padded)``, made on ``device`` (on the CPU inside
    DataLoader workers). An example's id is its position in the stream
    (``g * world * B + rank * B + j``).
    """

    def __init__(self, spec: StreamSpec, *, batch_size, rank=0, world=1, start=0, stop=None,
                 device="cpu"):  # fmt: skip
        super().__init__()
        self.spec, self.batch_size, self.rank, self.world = spec, int(batch_size), rank, world
        self.start, self.stop, self.device = int(start), stop, torch.device(device)

    def batch(self, g: int):
        """Local batch of global batch ``g``."""
        core = self.spec.core(self.device)
        first = (g * self.world + self.rank) * self.batch_size
        out = core.draw(self.batch_size, seed=self.spec.train_seed, index=g, rank=self.rank,
                        first_event=first)  # fmt: skip
        ids = torch.arange(first, first + self.batch_size)
        return out.inputs.float(), out.targets, ids, out.true_positions

    def __iter__(self):
        info = get_worker_info()
        offset, step = (0, 1) if info is None else (info.id, info.num_workers)
        if info is not None:
            self.device = torch.device("cpu")
        g = self.start + offset
        while self.stop is None or g < self.stop:
            yield self.batch(g)
            g += step
