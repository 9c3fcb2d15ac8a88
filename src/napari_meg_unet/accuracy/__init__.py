"""The accuracy protocol: the linear inverses versus the U-Nets on held-out simulations.

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

An :class:`AccuracyPreset` says what one run is (test conditions, sizes,
networks); :func:`iter_run_accuracy` runs it and returns an
:class:`AccuracyResult` (summary, per-vertex and per-event DLE, example maps)
that writes its report folder. The targets are computed (never asserted) and
reported as booleans, see :func:`compute_targets`.

Peers (:mod:`napari_meg_unet.peers`: dipole fits, RAP-MUSIC, gamma-MAP,
MxNE, LCMV, CMNE) choose their hyper-parameters on the validation sets only
and are scored on the first test events of each condition like the networks
(:mod:`.peers`). A condition may carry a model error: its test data are
simulated on a perturbed head model
(:func:`~napari_meg_unet.headmodel.make_perturbed_headmodel`) and inverted
with the nominal one.

Modules: :mod:`.spec` (presets, seeds), :mod:`.data` (simulations, example
sets, linear estimates), :mod:`.networks` (training, loading, prediction),
:mod:`.peers` (the peers' searches and scores), :mod:`.hybrids` (estimators
built on a trained network: the centre of mass of its peaks, their positions from
the network's centre head, a network-initialised dipole fit),
:mod:`.conditions` (scoring one test set), :mod:`.targets`, :mod:`.stability`
(the thesis §4.3 experiments), :mod:`.table` (markdown), :mod:`.result` (the
report folder) and :mod:`.run` (the whole run). This is core code: the
``bench accuracy`` command (:mod:`napari_meg_unet.bench.accuracy`) and the demo
(:mod:`napari_meg_unet.demo`) are built on it.
"""

from .conditions import iter_condition
from .data import iter_kind_sets, linear_kernels
from .networks import iter_kind_networks, iter_network, network_key, network_label
from .result import FIGURE_NAMES, AccuracyResult
from .run import iter_run_accuracy, run_accuracy
from .spec import (
    INPUT_METHODS,
    KINDS,
    LINEAR_METHODS,
    MODEL_ERRORS,
    AccuracyPreset,
    Condition,
    check_preset,
    derive_seed,
    model_error_seed,
    with_overrides,
)
from .stability import iter_stability
from .table import format_table
from .targets import compute_targets, find_row

__all__ = [
    "FIGURE_NAMES",
    "INPUT_METHODS",
    "KINDS",
    "LINEAR_METHODS",
    "MODEL_ERRORS",
    "AccuracyPreset",
    "AccuracyResult",
    "Condition",
    "check_preset",
    "compute_targets",
    "derive_seed",
    "find_row",
    "format_table",
    "iter_condition",
    "iter_kind_networks",
    "iter_kind_sets",
    "iter_network",
    "iter_run_accuracy",
    "iter_stability",
    "model_error_seed",
    "linear_kernels",
    "network_key",
    "network_label",
    "run_accuracy",
    "with_overrides",
]
