"""The presets of ``bench accuracy``: the thesis conditions, the benchmark and its CPU size."""

from __future__ import annotations

from ..._validation import check_choice
from ...accuracy import MODEL_ERRORS, AccuracyPreset, Condition, with_overrides
from ...configs import HYBRIDS, PEERS

#: Whitened SNRs of the benchmark's test conditions.
BENCHMARK_SNRS = (0.5, 1.0, 3.0)


def _model_error_conditions() -> tuple:
    """Extended patches, and every kind with each model error, at every benchmark SNR."""
    nominal = tuple(Condition(f"extended-snr{snr:g}", "extended", snr) for snr in BENCHMARK_SNRS)
    perturbed = tuple(
        Condition(f"{kind}-snr{snr:g}-{error}", kind, snr, model_error=error)
        for error in MODEL_ERRORS
        for kind in ("single", "multi", "extended")
        for snr in BENCHMARK_SNRS
    )
    return nominal + perturbed

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
            for kind in ("single", "multi")
            for snr in BENCHMARK_SNRS
        ),
        train_snr=(0.5, 3.0),
        n_train=12840,
        n_val=1284,
        n_test=642,
        networks=(("thesis", "benchmark"), ("mesh", "benchmark")),
        stability_network=("thesis", "benchmark"),
        peers=PEERS,
        hybrids=HYBRIDS,
    ),
    "benchmark-model-error": AccuracyPreset(
        name="benchmark-model-error",
        off_grid=True,
        timecourse="realistic",
        conditions=_model_error_conditions(),
        train_snr=(0.5, 3.0),
        n_train=12840,
        n_val=1284,
        n_test=642,
        networks=(("mesh", "benchmark"),),
        stability_network=("mesh", "benchmark"),
        peers=PEERS,
        hybrids=HYBRIDS,
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
        ``"thesis"``, ``"benchmark"``, ``"benchmark-model-error"`` or ``"small"``.
    **overrides
        :class:`~napari_meg_unet.accuracy.AccuracyPreset` fields (e.g.
        ``n_train=64``, ``epochs=1``, ``networks=(("mesh", "small"),)``); None
        values are ignored.

    Returns
    -------
    preset : AccuracyPreset
    """
    check_choice(name, "preset", tuple(PRESETS))
    return with_overrides(PRESETS[name], **overrides)
