"""Training engine: fit a U-Net on example sets, checkpoint, resume, predict.

:func:`fit` is a generator yielding small typed events (:class:`EpochStarted`,
:class:`BatchDone`, :class:`Validated`, :class:`CheckpointWritten`,
:class:`Stopped`, :class:`Finished`) and returning a summary dict; the CLI
draws a progress bar from them and the napari widget forwards them as worker
signals. Nothing here imports Qt.

The package's rooms: :mod:`.events` (what fit yields and raises),
:mod:`.settings` (AMP, threads, determinism, seeding), :mod:`.recipe`
(hyper-parameters, optimiser, schedule, class weights), :mod:`.network`
(building and rebuilding networks), :mod:`.distributed` (process group,
synchronised batch norm), :mod:`.step` (one optimisation step),
:mod:`.validation` (validation loss and DLE), :mod:`.checkpointing` (what a
checkpoint holds, resume checks), :mod:`.loop` (:func:`fit` and its steps) and
:mod:`.inference` (using a trained network: load, predict, SourceEstimate).

Reproducibility
---------------
Everything random is seeded from ``seed``: weights (``torch.manual_seed``
before the model is built), the sample order (a
:class:`~torch.utils.data.DistributedSampler` seeded with ``seed`` and the
epoch, also in a single process), dropout (the global torch RNG). Checkpoints
store the model, optimiser, scheduler and every RNG state, and ``last.pt`` is
written after every epoch (and on a cooperative stop, mid-epoch, with the
position in the epoch), so a resumed run continues exactly where the
interrupted one was: with ``deterministic=True`` on a CPU the weights equal
those of an uninterrupted run.

Distributed training
--------------------
Under ``torchrun`` (``WORLD_SIZE > 1`` in the environment) the same
:func:`fit` initialises the process group (NCCL on CUDA, gloo otherwise),
wraps the model in :class:`~torch.nn.parallel.DistributedDataParallel` and
shards every global batch over the ranks: ``batch_size`` is the *global*
batch size and must be divisible by the world size, so one optimisation step
sees the same examples as a single-process step (the sampler's permutation
does not depend on the number of ranks). Only rank 0 yields events and writes
checkpoints. Batch normalisation is synchronised over the ranks
(:class:`~torch.nn.SyncBatchNorm` on CUDA, an all-reduce batch norm on gloo),
and the class-weighted loss of each rank is rescaled by the ratio of its
shard's weight sum to the mean over the ranks, so that the averaged gradient
is that of the weighted mean over the global batch: DDP equals
single-process training.
"""

from ..configs import AMP_MODES
from ..device import resolve_device
from .events import (
    BatchDone,
    CheckpointWritten,
    DeviceMemoryError,
    EpochStarted,
    Finished,
    NonFiniteLossError,
    Stopped,
    TrainingError,
    Validated,
)
from .inference import iter_predict, iter_probabilities, load_model, predict, to_source_estimate
from .loop import fit, iter_fit, train
from .pretrained import PRETRAINED_FILE, pretrained_checkpoint
from .recording import (
    PROBABILITY_UNIT,
    RecordingPrediction,
    check_recording,
    iter_predict_recording,
    predict_recording,
)

__all__ = [
    "AMP_MODES",
    "PRETRAINED_FILE",
    "PROBABILITY_UNIT",
    "BatchDone",
    "CheckpointWritten",
    "DeviceMemoryError",
    "EpochStarted",
    "Finished",
    "NonFiniteLossError",
    "RecordingPrediction",
    "Stopped",
    "TrainingError",
    "Validated",
    "fit",
    "iter_fit",
    "iter_predict",
    "check_recording",
    "iter_predict_recording",
    "iter_probabilities",
    "load_model",
    "predict",
    "predict_recording",
    "pretrained_checkpoint",
    "resolve_device",
    "to_source_estimate",
    "train",
]
