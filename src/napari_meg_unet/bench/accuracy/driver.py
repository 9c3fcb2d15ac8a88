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
    checkpoint_dir : path-like | None
        Directory of trained networks, one sub-directory per network
        (``<kind>-<model>-<preset>/best.pt``): existing ones are loaded instead
        of trained, missing ones are trained there. None trains into the
        temporary work directory (networks are discarded).
    work_dir : path-like | None
        Where the temporary example sets go (default: the system temporary
        directory); removed at the end.
    %(device)s
        Used for training and prediction.
    seed : int
        Master seed of every simulation, weight initialisation and bootstrap.
    epochs : int | None
        Epochs per network, replacing the preset's.
    max_train_s : float | None
        Wall-clock limit per network: once it is exceeded (and at least one
        epoch was validated), training stops before the next batch; the best
        epoch so far is used and the result records the stop.
    stability : bool
        Also run the thesis §4.3 experiments
        (:func:`~napari_meg_unet.accuracy.iter_stability`).
    n_boot : int
        Bootstrap resamples of the confidence intervals.
    num_threads : int | None
        CPU threads for training (see :func:`~napari_meg_unet.train.fit`).
    command : str | None
        The command line, recorded in the result.
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
