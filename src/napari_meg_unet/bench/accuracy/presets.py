"""The presets of ``bench accuracy``: the thesis conditions, the benchmark and its CPU size."""

from __future__ import annotations

from ..._validation import check_choice
from ...accuracy import KINDS, AccuracyPreset, Condition, with_overrides

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
        :class:`~napari_meg_unet.accuracy.AccuracyPreset` fields (e.g.
        ``n_train=64``, ``epochs=1``, ``networks=(("mesh", "small"),)``); None
        values are ignored.

    Returns
    -------
    preset : AccuracyPreset
    """
    check_choice(name, "preset", tuple(PRESETS))
    return with_overrides(PRESETS[name], **overrides)
