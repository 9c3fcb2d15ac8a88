"""``bench accuracy``: the linear inverses versus the U-Nets on held-out simulations.

The protocol itself (training, scoring, targets, report folder) is core code,
:mod:`napari_meg_unet.accuracy`; this package holds the benchmark's presets
(:data:`PRESETS`) and its entry point :func:`iter_bench_accuracy`.

Presets:

``thesis``
    The thesis conditions: MEG template ico3, right hemisphere sweep, 10 Hz
    bursts, the same grid for simulation and inversion (on-grid), lambda2 = 1/9,
    MNE/dSPM/sLORETA inputs with per-column max normalisation, SNR 1.
``benchmark``
    Off-grid dipoles, realistic time courses, whitened SNR 0.5, 1 and 3,
    single-dipole and 2-5-dipole test sets (networks trained on an SNR range),
    with every peer (:mod:`napari_meg_unet.peers`).
``benchmark-model-error``
    The benchmark's extended patches (20 mm) and every kind (single, 2-5
    dipoles, extended) at every SNR with each model error of
    :data:`~napari_meg_unet.accuracy.MODEL_ERRORS` (coregistration, conductor, skull shape,
    pial sources): simulated on the perturbed head model, inverted with the
    nominal one; the mesh U-Net and every peer.
``small``
    A CPU-sized ``benchmark``: SNR 1 single dipoles only.

The targets of the benchmark are computed (never asserted) and reported as
booleans, see :func:`~napari_meg_unet.accuracy.compute_targets`.
"""

from ...accuracy import (
    FIGURE_NAMES,
    INPUT_METHODS,
    KINDS,
    LINEAR_METHODS,
    AccuracyPreset,
    AccuracyResult,
    Condition,
    compute_targets,
    derive_seed,
    find_row,
    format_table,
    iter_stability,
    network_label,
)
from .driver import bench_accuracy, iter_bench_accuracy
from .presets import PRESETS, get_preset

__all__ = [
    "FIGURE_NAMES",
    "INPUT_METHODS",
    "KINDS",
    "LINEAR_METHODS",
    "PRESETS",
    "AccuracyPreset",
    "AccuracyResult",
    "Condition",
    "bench_accuracy",
    "compute_targets",
    "derive_seed",
    "find_row",
    "format_table",
    "get_preset",
    "iter_bench_accuracy",
    "iter_stability",
    "network_label",
]
