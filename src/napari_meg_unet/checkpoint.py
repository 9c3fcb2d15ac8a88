"""Training checkpoints: atomic writing, safe loading and compatibility checks.

A checkpoint is a :func:`torch.save` dictionary holding only tensors and plain
Python containers (no pickled classes), so it is loaded with
``torch.load(weights_only=True)``: a checkpoint from an untrusted source
cannot run code. Its fields:

``format``, ``format_version``, ``kind``
    ``"napari-meg-unet-checkpoint"``, the layout version and ``"last"`` or
    ``"best"``.
``model_name``, ``model_config``, ``model``
    How to rebuild the network (``build_model(**model_config)`` plus the mesh
    for mesh models) and its ``state_dict``.
``dataset_fingerprint``, ``dataset_meta``, ``val_fingerprint``
    The training set it was fitted on (its whole ``meta.json``) and the
    validation set.
``headmodel_fingerprint``, ``mesh_fingerprint``, ``ch_names``, ``hemi``,
``inverse``, ``normalisation``, ``sfreq``
    Copied from the dataset meta (the mesh fingerprint only for mesh models),
    so that :func:`check_checkpoint_compatible` can refuse other data.
    :func:`data_record` gathers everything the network assumes about its
    data (sampling rate, window length, channels, head model, inverse
    settings, normalisation, nave, hemisphere, simulated SNR) and
    :func:`check_recording_compatible` compares a recording with it.
``training``, ``seed``, ``versions``
    Hyper-parameters, seed, package versions.
``epoch``, ``batch``, ``sampler_epoch``, ``history``, ``best``, ``bad_epochs``
    Progress: ``epoch`` is the number of completed epochs, ``batch`` the
    number of batches of the next epoch already done (non-zero only after a
    cooperative stop mid-epoch), ``sampler_epoch`` the epoch index seeding
    the sample order of that next epoch.
``optimizer``, ``scheduler``, ``rng``, ``class_weights``, ``partial``
    Everything needed to resume bit-for-bit (``rng`` holds one entry per
    rank: Python, NumPy, torch and, when initialised, CUDA generator states).
"""

from __future__ import annotations

import pickle
import random
import zipfile
from pathlib import Path

import numpy as np
import torch

from ._io import atomic_path
from .dataset import COMPATIBILITY_KEYS, IncompatibleDataError, check_compatible

#: Fields compared between a network's training set and other example sets: the set
#: layout's (:data:`~napari_meg_unet.dataset.COMPATIBILITY_KEYS`) and the sampling rate.
NETWORK_KEYS = (*COMPATIBILITY_KEYS, "sfreq")

CHECKPOINT_FORMAT = "napari-meg-unet-checkpoint"
CHECKPOINT_FORMAT_VERSION = 1
CHECKPOINT_KINDS = ("last", "best")

#: Fields every checkpoint must carry.
REQUIRED_FIELDS = (
    "format",
    "format_version",
    "kind",
    "model_name",
    "model_config",
    "model",
    "dataset_meta",
    "epoch",
)


class CheckpointError(ValueError):
    """A file that is not a readable, complete napari-meg-unet checkpoint."""


# --------------------------------------------------------------------------- RNG states
def get_rng_state() -> dict:
    """RNG states of Python, NumPy (legacy global), torch and CUDA as plain containers."""
    py_version, py_state, py_gauss = random.getstate()
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state(legacy=True)  # noqa: NPY002
    state = {
        "python": {"version": py_version, "state": list(py_state), "gauss": py_gauss},
        "numpy": {
            "kind": str(np_kind),
            "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "gauss": float(np_gauss),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore the states saved by :func:`get_rng_state`."""
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    nps = state["numpy"]
    np.random.set_state(  # noqa: NPY002
        (
            nps["kind"],
            np.asarray(nps["keys"], dtype=np.int64).astype(np.uint32),
            nps["pos"],
            nps["has_gauss"],
            nps["gauss"],
        )
    )
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)


# --------------------------------------------------------------------------- I/O
def save_checkpoint(path, checkpoint: dict) -> Path:
    """Write ``checkpoint`` atomically (temp file + rename); an old file survives a failure."""
    missing = [key for key in REQUIRED_FIELDS if key not in checkpoint]
    if missing:
        raise ValueError(f"checkpoint lacks the required field(s) {missing}.")
    if checkpoint["kind"] not in CHECKPOINT_KINDS:
        raise ValueError(f"checkpoint kind must be one of {CHECKPOINT_KINDS}.")
    path = Path(path)
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save(_plain(checkpoint), tmp)
    return path


def _plain(obj):
    """``obj`` with only types ``torch.load(weights_only=True)`` accepts.

    Subclasses of str/int/float (e.g. ``torch.__version__``), NumPy scalars and
    arrays, and paths are converted; anything else is refused.
    """
    if isinstance(obj, torch.Tensor) or obj is None:
        return obj
    if isinstance(obj, dict):
        return {_plain(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, tuple):
        return tuple(_plain(v) for v in obj)
    if isinstance(obj, list):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, np.generic):
        return obj.item()
    for kind in (bool, int, float, str):
        if isinstance(obj, kind):
            return kind(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(
        f"Cannot store a {type(obj).__name__} in a checkpoint (only tensors and plain "
        "Python containers, so that it loads with weights_only=True)."
    )


def _first_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    for line in lines:
        if "WeightsUnpickler error" in line:
            return line[:300]
    return lines[0][:300] if lines else ""


def load_checkpoint(path, *, map_location="cpu") -> dict:
    """Load and validate a checkpoint written by :func:`save_checkpoint`.

    Parameters
    ----------
    path : path-like
        The ``.pt`` file (or a training output directory, meaning its
        ``best.pt``).
    map_location : str | torch.device
        Where tensors are loaded.

    Returns
    -------
    checkpoint : dict

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    CheckpointError
        If it is truncated, corrupt, not a torch file, or not a checkpoint
        of this package (naming the file and what is wrong).
    """
    path = Path(path)
    if path.is_dir():
        path = path / "best.pt"
    if not path.is_file():
        raise FileNotFoundError(f"No checkpoint at {str(path)!r}.")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except (
        RuntimeError,
        EOFError,
        OSError,
        ValueError,
        pickle.UnpicklingError,
        zipfile.BadZipFile,
        KeyError,
        IndexError,
        TypeError,
        AttributeError,
    ) as err:
        raise CheckpointError(
            f"{str(path)!r} is not a readable napari-meg-unet checkpoint: it is truncated, "
            f"corrupt or not a torch file ({type(err).__name__}: {_first_line(err)})."
            " Use another checkpoint (e.g. best.pt instead of last.pt) or retrain."
        ) from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{str(path)!r} is a torch file but not a napari-meg-unet checkpoint "
            f"(format={checkpoint.get('format') if isinstance(checkpoint, dict) else None!r})."
        )
    if checkpoint.get("format_version", 0) > CHECKPOINT_FORMAT_VERSION:
        raise CheckpointError(
            f"{str(path)!r} has checkpoint format version {checkpoint['format_version']}, newer "
            f"than this package understands ({CHECKPOINT_FORMAT_VERSION}); upgrade napari-meg-unet."
        )
    missing = [key for key in REQUIRED_FIELDS if key not in checkpoint]
    if missing:
        raise CheckpointError(f"{str(path)!r} is incomplete: it lacks {missing}.")
    checkpoint["path"] = str(path)
    return checkpoint


def check_checkpoint_compatible(
    checkpoint: dict, meta: dict, *, keys=NETWORK_KEYS, what: str = "data"
) -> None:
    """Refuse data made differently from the network's training set.

    Parameters
    ----------
    checkpoint : dict
        From :func:`load_checkpoint`.
    meta : dict
        The data's meta (``ExampleSet.meta``), or a partial dict with the keys
        that are known (missing keys are not compared).
    keys : sequence of str
        Fields compared (default: head-model fingerprint, channel names,
        hemisphere, image size, methods, inverse parameters, normalisation,
        sampling rate).
    what : str
        How to call the data in the message.

    Raises
    ------
    IncompatibleDataError
    """
    keys = [key for key in keys if key in meta]
    try:
        check_compatible(
            checkpoint["dataset_meta"], meta, keys=keys, names=("the network's training set", what)
        )
    except IncompatibleDataError as err:
        source = checkpoint.get("path", "the checkpoint")
        raise IncompatibleDataError(f"Refusing to use {source!r} on this {what}: {err}") from None


#: Fields :func:`strip_checkpoint` keeps: enough to rebuild, check and apply the network.
DISTRIBUTION_FIELDS = (
    *REQUIRED_FIELDS, "preset", "dataset_fingerprint", "val_fingerprint",
    "headmodel_fingerprint", "mesh_fingerprint", "mesh", "ch_names", "hemi", "inverse",
    "normalisation", "sfreq", "seed", "deterministic", "training", "versions", "history",
    "best", "class_weights",
)  # fmt: skip


def strip_checkpoint(checkpoint: dict) -> dict:
    """A copy for distribution: the network and what it assumes, no optimiser or RNG state.

    The result loads with :func:`load_checkpoint` and predicts, but cannot be
    resumed.
    """
    out = {key: checkpoint[key] for key in DISTRIBUTION_FIELDS if key in checkpoint}
    out["kind"] = "best"
    return out


def summary(checkpoint: dict) -> dict:
    """A JSON-friendly summary of a checkpoint (no tensors)."""
    return {
        "path": checkpoint.get("path"),
        "kind": checkpoint["kind"],
        "model_name": checkpoint["model_name"],
        "model_config": checkpoint["model_config"],
        "epoch": checkpoint["epoch"],
        "batch": checkpoint.get("batch", 0),
        "best": checkpoint.get("best"),
        "dataset_fingerprint": checkpoint.get("dataset_fingerprint"),
        "headmodel_fingerprint": checkpoint.get("headmodel_fingerprint"),
        "mesh_fingerprint": checkpoint.get("mesh_fingerprint"),
        "hemi": checkpoint.get("hemi"),
        "inverse": checkpoint.get("inverse"),
        "normalisation": checkpoint.get("normalisation"),
        "versions": checkpoint.get("versions"),
    }


# --------------------------------------------------------------------------- recordings
#: Inverse settings a network's inputs are made with (data must be inverted the same way).
INVERSE_KEYS = ("methods", "lambda2", "loose", "depth", "normalisation")


def data_record(checkpoint: dict) -> dict:
    """What a network assumes about the data it is applied to (from its training set's meta).

    Returns
    -------
    record : dict
        ``sfreq`` (Hz), ``n_times`` (the window, samples), ``window_s``,
        ``ch_names`` and ``bads`` (channels left out of its head model, when
        known), ``headmodel_fingerprint`` and ``headmodel`` (subject,
        spacing, modality, source counts), ``methods``, ``lambda2``,
        ``loose``, ``depth``, ``normalisation``, ``nave``, ``hemi`` and the
        simulation's ``snr``, ``timecourse``, ``design`` and ``off_grid``.
    """
    meta = checkpoint["dataset_meta"]
    params = (meta.get("simulation") or {}).get("params") or {}
    hm = meta.get("headmodel") or {}
    sfreq = meta.get("sfreq", checkpoint.get("sfreq"))
    n_times = int(meta["n_times"])
    return dict(
        sfreq=None if sfreq is None else float(sfreq), n_times=n_times,
        window_s=None if sfreq is None else n_times / float(sfreq),
        ch_names=list(meta.get("ch_names") or []), bads=hm.get("bads"),
        headmodel_fingerprint=meta.get("headmodel_fingerprint"), headmodel=dict(hm),
        **{key: meta.get(key) for key in INVERSE_KEYS}, nave=meta.get("nave"),
        hemi=meta.get("hemi"), snr=params.get("snr"), timecourse=params.get("timecourse"),
        design=params.get("design"), off_grid=params.get("off_grid"),
    )  # fmt: skip


class RecordingCompatibility:
    """Every difference between a recording and a network: adapted, or refused.

    ``adapted`` lists the differences the prediction handles (said in its
    output: resampling, another nave, a mapped head model); ``refused`` those
    it cannot. :meth:`check` raises :class:`IncompatibleDataError` naming all
    of them when anything is refused.
    """

    def __init__(self, source: str = "the data"):
        self.source = source
        self.adapted: list[str] = []
        self.refused: list[str] = []

    def check(self, network: str = "the network") -> RecordingCompatibility:
        if self.refused:
            also = f" (adapted: {'; '.join(self.adapted)})" if self.adapted else ""
            raise IncompatibleDataError(
                f"Refusing to apply {network} to {self.source}: "
                + "; ".join(self.refused) + also
            )
        return self


def _check_length(report, record, n_times, sfreq, resample) -> None:
    """The data (after resampling, when it is resampled) must fill one window."""
    rate = record["sfreq"] if resample and record["sfreq"] else sfreq
    n = round(n_times * rate / sfreq)
    if n < record["n_times"]:
        report.refused.append(
            f"length: {n} samples ({1e3 * n / rate:.0f} ms) at {rate:.6g} Hz in the data but "
            f"the network's window is {record['n_times']} samples "
            f"({1e3 * (record['window_s'] or 0):.0f} ms); use a longer span (tmin/tmax) or a "
            "network trained with fewer samples (n_times)"
        )


def _check_channels(report, needed, ch_names, bads, whose: str) -> None:
    present = set(ch_names)
    missing = [ch for ch in needed if ch not in present]
    if missing:
        report.refused.append(
            f"channels: {len(missing)} channel(s) of {whose} are not in the data: "
            f"{missing[:8]}{' ...' if len(missing) > 8 else ''}"
        )
    bad = [ch for ch in needed if ch in set(bads)]
    if bad:
        report.refused.append(
            f"bads: {len(bad)} channel(s) of {whose} are marked bad in the data: {bad[:8]}; "
            "use a head model without them (its bads)"
        )


def check_recording_compatible(
    checkpoint: dict, *, sfreq, n_times, ch_names, bads=(), needed_channels=None, nave=None,
    hemi=None, headmodel=None, inverse=None, resample=True, source="the data",
) -> RecordingCompatibility:  # fmt: skip
    """Compare a recording with what a network assumes; name every difference.

    Parameters
    ----------
    checkpoint : dict
        From :func:`load_checkpoint`.
    sfreq : float
        The recording's sampling rate (Hz).
    n_times : int
        Its number of samples (of the shortest segment).
    ch_names, bads : list of str
        Its channels and bad channels.
    needed_channels : list of str | None
        Channels the inverse will use (the head model's; default the network's).
    nave : int | None
        Averaged trials of the data (a difference is adapted: the inputs are
        made with the network's nave, as in training).
    hemi : str | None
        Hemisphere asked for; another than the network's is refused.
    headmodel : dict | None
        ``fingerprint`` of the head model making the inverse maps and, when it
        is not the network's, ``mapping`` (``"identity"``, ``"sphere"`` or
        ``"mni"``: adapted, with ``description``) or None (refused).
    inverse : dict | None
        Inverse settings asked for (:data:`INVERSE_KEYS`); any that differs
        from the network's is refused.
    resample : bool
        Whether a different sampling rate is resampled (adapted) or refused.
    source : str
        How to name the data in messages.

    Returns
    -------
    report : RecordingCompatibility
        Already checked: :class:`IncompatibleDataError` was raised if anything
        was refused.
    """
    record = data_record(checkpoint)
    report = RecordingCompatibility(source)
    if record["sfreq"] is not None and not np.isclose(sfreq, record["sfreq"], rtol=1e-6):
        text = f"sampling rate: {sfreq:.6g} Hz (data) != {record['sfreq']:.6g} Hz (network)"
        if resample:
            report.adapted.append(f"{text}: the data are resampled to {record['sfreq']:.6g} Hz")
        else:
            report.refused.append(f"{text}; resample the data (resample=True)")
    _check_length(report, record, n_times, sfreq, resample)
    hm = headmodel or {}
    same_hm = hm.get("fingerprint") in (None, record["headmodel_fingerprint"])
    if not same_hm:
        text = (f"head model: {hm['fingerprint']} (data) != {record['headmodel_fingerprint']} "
                f"(network, {record['headmodel'].get('subject')})")  # fmt: skip
        if hm.get("mapping") is None:
            report.refused.append(
                f"{text}; the network applies to its own head model only (a template network "
                "also to other subjects, through a morph)"
            )
        else:
            report.adapted.append(f"{text}: {hm.get('description', hm['mapping'])}")
    needed = record["ch_names"] if needed_channels is None else list(needed_channels)
    whose = "the network's head model" if needed_channels is None else "the data's head model"
    _check_channels(report, needed, ch_names, bads, whose)
    for key, value in (inverse or {}).items():
        if value is not None and not check_compatible_value(value, record.get(key)):
            report.refused.append(f"{key}: {value!r} (asked) != {record.get(key)!r} (network)")
    if hemi is not None and hemi != record["hemi"]:
        report.refused.append(
            f"hemi: {hemi!r} (data) != {record['hemi']!r} (network); a network applies only to "
            "the hemisphere(s) it was trained on"
        )
    if nave is not None and record["nave"] is not None and int(nave) != int(record["nave"]):
        report.adapted.append(
            f"nave: {nave} (data) != {record['nave']} (network): the input images are made "
            f"with nave={record['nave']}, as the network's training images"
        )
    return report.check(f"{checkpoint.get('path', 'the network')!r}")


def check_compatible_value(a, b) -> bool:
    """Whether two meta values agree (floats to 1e-9, sequences entry by entry)."""
    try:
        check_compatible({"v": a}, {"v": b}, keys=("v",))
    except IncompatibleDataError:
        return False
    return True
