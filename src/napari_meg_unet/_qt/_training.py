"""Training for the Train widget, in a child process whose events a thread relays (Qt-free)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ._engine import CHILD_NICENESS, spawn_without_main_script

#: Seconds a stopping child may take to finish its batch and write ``last.pt``.
STOP_TIMEOUT = 60.0


def default_threads() -> int:
    """Torch threads for training in the GUI: leave one core to the event loop."""
    return max(1, (os.cpu_count() or 2) - 1)


def _train_child(hm_path, splits_kwargs, fit_kwargs, messages, stop) -> None:
    """Child process of :func:`iter_train`: make the data sets (optional) and fit.

    Every Progress and training event goes into ``messages``, then
    ``("return", summary)`` or ``("error", text)``.
    """
    try:
        if hasattr(os, "nice"):
            os.nice(CHILD_NICENESS)
        from ..dataset import iter_make_splits, read_dataset
        from ..headmodel import load_headmodel
        from ..train import fit

        hm = load_headmodel(hm_path, verbose="error")
        if splits_kwargs is not None:
            gen = iter_make_splits(hm, **splits_kwargs)
            while True:
                try:
                    event = next(gen)
                except StopIteration:
                    break
                messages.put(("event", event))
                if stop.is_set():
                    messages.put(("return", _stopped_early()))
                    return
        data = splits_kwargs["out"] if splits_kwargs is not None else fit_kwargs.pop("data")
        sets = {name: read_dataset(Path(data) / name) for name in ("train", "val")}
        gen = fit(
            train=sets["train"], val=sets["val"], stop=stop.is_set,
            mesh=hm if fit_kwargs.get("model") == "mesh" else None, **fit_kwargs,
        )  # fmt: skip
        while True:
            try:
                event = next(gen)
            except StopIteration as done:
                messages.put(("return", done.value))
                break
            messages.put(("event", event))
    except BaseException as err:  # reported to the parent, which raises it
        messages.put(("error", f"{type(err).__name__}: {err}"))


def _stopped_early() -> dict:
    return {"stopped": True, "stopped_before_training": True, "epochs_done": 0}


@dataclass
class ResumedHistory:
    """The per-epoch history of the run being resumed (first event of a Resume)."""

    history: list


def read_history(run_dir) -> list:
    """The per-epoch history of a training run: ``last.pt``'s, else ``history.json``'s, else []."""
    run_dir = Path(run_dir)
    if (run_dir / "last.pt").is_file():
        try:
            from ..checkpoint import load_checkpoint

            return list(load_checkpoint(run_dir / "last.pt").get("history", []))
        except Exception:
            pass
    try:
        data = json.loads((run_dir / "history.json").read_text())
    except (OSError, ValueError):
        return []
    return data if isinstance(data, list) else data.get("history", [])


def iter_train(hm, inputs, *, resume: bool, stop, overwrite: bool = False):
    """Simulate the training/validation sets (unless resuming) and fit, in a child process.

    SciPy's SVD and eigendecompositions (inside MNE's inverse operator, used
    to make the data sets) hold the GIL for seconds, and training holds it in
    places too; in a thread of the napari process either would freeze the
    event loop. So the work runs in a spawned child process and this
    generator (run by the widget's ``thread_worker``) only relays its events:
    Progress while the data are made, then :func:`..train.fit`'s events (one
    per batch). The child runs at a lower CPU priority.

    Setting ``stop`` (a ``threading.Event``) asks the child to stop: fit
    stops after the current batch and saves ``last.pt`` (this generator waits
    up to :data:`STOP_TIMEOUT` s for it); while the data sets are made, the
    child stops after the current chunk.

    Returns fit's summary, or ``{"stopped": True, "stopped_before_training":
    True, "epochs_done": 0}`` when stopped while the data were being made.
    """
    import multiprocessing
    import queue

    from ..train import EpochStarted

    inputs.validate()
    fit_kwargs = dict(inputs.fit_kwargs(resume=resume), num_threads=default_threads())
    if resume:
        if not (inputs.run_dir / "last.pt").is_file():
            raise FileNotFoundError(
                f"nothing to resume: {str(inputs.run_dir / 'last.pt')!r} does not exist."
            )
        splits = None
        fit_kwargs["data"] = inputs.data_dir
    else:
        if (inputs.run_dir / "last.pt").exists() and not overwrite:
            raise FileExistsError(
                f"{str(inputs.out_dir)!r} already holds a training run; use Resume, tick "
                "'overwrite' or choose another folder."
            )
        splits = dict(inputs.splits_kwargs(), overwrite=True, verbose="error")
    path = hm.provenance.get("loaded_from")
    if not path or not (Path(path) / "headmodel.json").is_file():
        path = hm.save(Path(inputs.out_dir) / "headmodel", overwrite=True)
    ctx = multiprocessing.get_context("spawn")
    messages, child_stop = ctx.Queue(), ctx.Event()
    child = ctx.Process(
        target=_train_child, args=(str(path), splits, fit_kwargs, messages, child_stop),
        daemon=True,
    )  # fmt: skip
    with spawn_without_main_script():
        child.start()
    if resume:
        yield ResumedHistory(read_history(inputs.run_dir))
    training = False
    try:
        while True:
            if stop is not None and stop.is_set():
                child_stop.set()
            try:
                kind, payload = messages.get(timeout=0.05)
            except queue.Empty:
                if not child.is_alive():
                    raise RuntimeError(
                        f"the training process ended unexpectedly (exit code {child.exitcode})"
                    ) from None
                continue
            if kind == "event":
                training = training or isinstance(payload, EpochStarted)
                yield payload
            elif kind == "return":
                return payload
            else:
                raise RuntimeError(payload)
    finally:
        if child.is_alive() and not child_stop.is_set():
            child.terminate()
        child.join(STOP_TIMEOUT)
        if child.is_alive():
            child.kill()
