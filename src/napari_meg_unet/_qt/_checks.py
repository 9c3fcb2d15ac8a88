"""Safety checks of the Predict and Evaluate widgets (Qt-free).

A network is refused, with every reason, on a simulation it was not trained
for: another head model or channel set, another sampling rate, another image
length, or sources in a hemisphere the network does not see (a
left-hemisphere network scored on right-hemisphere sources looks plausible
and is meaningless). A recording is checked as the core applies a network to
it (:func:`recording_report`): another sampling rate or length is adapted
and said, what the core cannot adapt is refused. Evaluate refuses a
prediction made for other rows or another simulation than the one it scores.
"""

from __future__ import annotations

import numpy as np

from ..layers import META_KEY


def _hemi_problem(ckpt_hemi, data_hemi) -> str | None:
    if data_hemi in (None, ckpt_hemi):
        return None
    return (
        f"the network was trained on {ckpt_hemi} sources but the simulation's sources lie in "
        f"{data_hemi}: it would look for them in the wrong rows (simulate in {ckpt_hemi}, or "
        f"train a network for {data_hemi})"
    )


def hemisphere_problem(chosen, ckpt_hemi) -> str | None:
    """Why a network trained on ``ckpt_hemi`` sources cannot predict ``chosen`` (None: it can).

    A network's output rows are the sources of the hemisphere(s) it was trained
    on: it cannot be asked for another hemisphere (the Predict widget's choice).
    """
    if chosen in (None, ckpt_hemi) or ckpt_hemi is None:
        return None
    return (
        f"the network was trained on {ckpt_hemi} sources and predicts only those: it cannot "
        f"predict {chosen} (choose hemisphere {ckpt_hemi}, or a network trained for {chosen})"
    )


def compatibility_problems(ckpt, hm, sdata=None) -> list[str]:
    """Every reason why ``ckpt`` should not run on ``hm`` (and ``sdata``); [] if none."""
    from ..checkpoint import check_checkpoint_compatible
    from ..dataset import IncompatibleDataError

    meta = ckpt["dataset_meta"]
    problems = []
    try:
        check_checkpoint_compatible(
            ckpt, {"headmodel_fingerprint": hm.fingerprint, "ch_names": hm.ch_names},
            keys=("headmodel_fingerprint", "ch_names"), what="head model",
        )  # fmt: skip
    except IncompatibleDataError as err:
        problems.append(str(err))
    if sdata is None:
        return problems
    if sdata.simulation is not None:
        problem = _hemi_problem(meta.get("hemi"), sdata.hemi)
        if problem:
            problems.append(problem)
    sfreq = meta.get("sfreq")
    if sfreq is not None and not np.isclose(float(sfreq), float(sdata.sfreq), rtol=1e-6):
        problems.append(
            f"the network was trained at {float(sfreq):.6g} Hz but the data are sampled at "
            f"{float(sdata.sfreq):.6g} Hz"
        )
    if sdata.data.shape[-1] != int(meta["n_times"]):
        problems.append(
            f"the network was trained on {meta['n_times']} samples per image but the data have "
            f"{sdata.data.shape[-1]} (choose epoch tmin/tmax accordingly)"
        )
    missing = [ch for ch in meta.get("ch_names", []) if ch not in sdata.ch_names]
    if missing:
        problems.append(
            f"{len(missing)} of the network's channels are missing from the data "
            f"(e.g. {missing[:3]})"
        )
    return problems


def checkpoint_report(path, hm, sdata=None) -> tuple[dict, str]:
    """Load a checkpoint and check it against the head model (and data, if given).

    Returns
    -------
    checkpoint : dict
    description : str

    Raises
    ------
    CheckpointError
        Not a readable checkpoint.
    IncompatibleDataError
        With every reason (:func:`compatibility_problems`).
    """
    from ..checkpoint import load_checkpoint
    from ..dataset import IncompatibleDataError

    ckpt = load_checkpoint(path)
    problems = compatibility_problems(ckpt, hm, sdata)
    if problems:
        raise IncompatibleDataError("; ".join(problems) + ".")
    return ckpt, describe_checkpoint(ckpt)


def describe_checkpoint(ckpt) -> str:
    """One line on a checkpoint: model, epoch, validation DLE, inputs, sampling rate, size."""
    meta = ckpt["dataset_meta"]
    best = ckpt.get("best") or {}
    dle = best.get("dle_mm") if isinstance(best, dict) else None
    sfreq = meta.get("sfreq")
    description = (
        f"{ckpt['model_name']} network, {ckpt['kind']} checkpoint after epoch {ckpt['epoch']}"
        + (f" (validation DLE {dle:.1f} mm)" if isinstance(dle, float) and np.isfinite(dle) else "")
        + f"; inputs {'/'.join(meta['methods'])}, λ²={meta['lambda2']:.4g}, hemi {meta['hemi']}"
        + (f", {float(sfreq):.6g} Hz" if sfreq is not None else "")
        + f", {meta['n_times']} samples"
    )
    return description


def recording_report(path, hm, metadata, *, source="the recording", config=None):
    """Load a checkpoint and check it against a recording, as the core applies networks.

    The recording (``metadata["recording"]`` of a sensor layer) is read as
    :func:`._sensors.sensor_data` does and checked with
    :func:`..train.recording.check_recording`: a different sampling rate or
    a longer recording is adapted (resampled, windows), missing or bad
    channels, another hemisphere or data shorter than one window are refused
    with the core's message.

    Returns
    -------
    sdata : SensorData
    checkpoint : dict
    description : str
        The checkpoint and everything adapted.
    """
    from ..checkpoint import check_recording_compatible, load_checkpoint
    from ..train.recording import check_recording
    from ._sensors import recording_segments, sensor_data

    ckpt = load_checkpoint(path)
    recording = metadata["recording"]
    info = recording.info
    # the channels first, with the core's message (reading the data needs them)
    check_recording_compatible(
        ckpt, sfreq=float(info["sfreq"]), n_times=10**12, ch_names=info["ch_names"],
        bads=info["bads"], needed_channels=hm.ch_names, source=source,
    )  # fmt: skip
    sdata = sensor_data(metadata, hm=hm)
    segments = recording_segments(sdata, hm, source=source)
    notes = check_recording(ckpt, segments, headmodel=hm, config=config)
    description = describe_checkpoint(ckpt) + f". On {source}: " + "; ".join(notes)
    return sdata, ckpt, description


def prediction_problem(layer_metadata: dict, sim) -> str | None:
    """Why a prediction layer cannot be scored on ``sim`` (None when it can)."""
    name = layer_metadata.get(META_KEY, {}).get("name", "the prediction")
    made_on = layer_metadata.get("simulation")
    if made_on is None or made_on.fingerprint != sim.fingerprint:
        return f"{name!r} was not predicted on this simulation"
    rows = layer_metadata.get("rows")
    if rows is None or not np.array_equal(np.asarray(rows), np.asarray(sim.rows)):
        hemi = layer_metadata.get("hemi")
        return (
            f"{name!r} was made for the rows of {hemi} but the simulation's sources lie in "
            f"{sim.meta['params']['hemi']}"
        )
    return None
