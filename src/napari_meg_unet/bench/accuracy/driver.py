"""``bench accuracy``'s entry point: a preset (by name, with overrides) run by the core."""

from __future__ import annotations

import dataclasses
import inspect

from ...accuracy import AccuracyPreset, iter_run_accuracy, with_overrides
from ...progress import plain
from .presets import get_preset

_PRESET_FIELDS = frozenset(f.name for f in dataclasses.fields(AccuracyPreset))


def iter_bench_accuracy(preset="small", **options):
    """Run the accuracy benchmark (generator of Progress; returns an :class:`AccuracyResult`).

    Parameters
    ----------
    preset : str | AccuracyPreset
        A name of :data:`PRESETS` or a preset object.
    **options
        :class:`~napari_meg_unet.accuracy.AccuracyPreset` fields replacing the
        preset's (e.g. ``n_train=64``, ``networks=(("mesh", "small"),)``); every
        other keyword is an option of
        :func:`~napari_meg_unet.accuracy.iter_run_accuracy` (``checkpoint_dir``,
        ``device``, ``seed``, ``epochs``, ``max_train_s``, ...).

    Returns
    -------
    result : AccuracyResult
        See :func:`~napari_meg_unet.accuracy.iter_run_accuracy`.
    """
    overrides = {k: options.pop(k) for k in list(options) if k in _PRESET_FIELDS}
    if isinstance(preset, AccuracyPreset):
        p = with_overrides(preset, **overrides)
    else:
        p = get_preset(preset, **overrides)
    return iter_run_accuracy(p, **options)


_run_params = list(inspect.signature(iter_run_accuracy).parameters.values())[1:]
iter_bench_accuracy.__signature__ = inspect.Signature(
    [inspect.Parameter("preset", inspect.Parameter.POSITIONAL_OR_KEYWORD, default="small")]
    + _run_params
    + [inspect.Parameter("overrides", inspect.Parameter.VAR_KEYWORD)]
)

bench_accuracy = plain(iter_bench_accuracy)
