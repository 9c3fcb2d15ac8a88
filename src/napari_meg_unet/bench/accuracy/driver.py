"""``bench accuracy``'s entry point: a preset (by name, with overrides) run by the core."""

from __future__ import annotations

from ..._docs import fill_doc
from ..._logging import verbose as verbose_decorator
from ...accuracy import AccuracyPreset, iter_run_accuracy, with_overrides
from ...progress import plain
from .presets import get_preset


@verbose_decorator
@fill_doc
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
    %(accuracy_run)s
    %(verbose)s
    **overrides
        :class:`~napari_meg_unet.accuracy.AccuracyPreset` fields replacing the
        preset's (e.g. ``n_train=64``, ``networks=(("mesh", "small"),)``).

    Returns
    -------
    result : AccuracyResult
        See :func:`~napari_meg_unet.accuracy.iter_run_accuracy`.
    """
    if isinstance(preset, AccuracyPreset):
        p = with_overrides(preset, **overrides)
    else:
        p = get_preset(preset, **overrides)
    return (
        yield from iter_run_accuracy(
            p, checkpoint_dir=checkpoint_dir, work_dir=work_dir, device=device, seed=seed,
            epochs=epochs, max_train_s=max_train_s, stability=stability, n_boot=n_boot,
            num_threads=num_threads, command=command, verbose=verbose,
        )
    )  # fmt: skip


bench_accuracy = plain(iter_bench_accuracy)
