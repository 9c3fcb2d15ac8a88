"""Using a trained network: rebuild it from a checkpoint, predict, make a SourceEstimate."""

from __future__ import annotations

import os

import numpy as np
import torch

from .. import _validation as V
from .._docs import fill_doc
from ..checkpoint import check_checkpoint_compatible, load_checkpoint
from ..configs import HEMIS
from ..dataset import ExampleSet, IncompatibleDataError, read_dataset
from ..device import resolve_device
from ..progress import Progress, plain
from .events import DeviceMemoryError
from .network import _class1, _mesh_for, _models, _rebuild_model
from .step import _OOM_ERRORS, _free_accelerator_memory


@fill_doc
def load_model(checkpoint, *, mesh=None, device="cpu"):
    """Rebuild a checkpoint's network with its weights, in eval mode.

    Parameters
    ----------
    checkpoint : path-like | dict
        A ``.pt`` file, a training directory (its ``best.pt``) or a loaded checkpoint.
    mesh : HeadModel | MeshHierarchy | None
        For mesh networks: checked against (or, for older checkpoints without a
        stored hierarchy, used to rebuild) the network's mesh.
    %(device)s

    Returns
    -------
    model : torch.nn.Module
    checkpoint : dict
    """
    ckpt = checkpoint if isinstance(checkpoint, dict) else load_checkpoint(checkpoint)
    mesh_h = None
    if ckpt["model_name"] == "mesh" or ckpt.get("mesh") is not None:
        stored = ckpt.get("mesh")
        given = None if mesh is None else _mesh_for("mesh", mesh, ckpt["dataset_meta"])
        if given is not None and given.fingerprint != ckpt.get("mesh_fingerprint"):
            raise IncompatibleDataError(
                f"The mesh given ({given.fingerprint!r}) is not the network's "
                f"({ckpt.get('mesh_fingerprint')!r})."
            )
        mesh_h = given if stored is None else _mesh_for("mesh", stored, ckpt["dataset_meta"])
    dev = resolve_device(device)
    model = _rebuild_model(ckpt, mesh_h)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as err:
        raise IncompatibleDataError(
            f"The weights in {ckpt.get('path')!r} do not fit the network described by its "
            f"config: {str(err).splitlines()[0]}"
        ) from None
    return model.to(dev).eval(), ckpt


def _as_inputs(inputs_or_dataset, ckpt, *, headmodel, hemi):
    """The input array (memory map or ndarray) after compatibility checks."""
    meta = ckpt["dataset_meta"]
    if hemi is not None and hemi != ckpt.get("hemi"):
        raise IncompatibleDataError(
            f"hemi={hemi!r} but the network was trained on hemi={ckpt.get('hemi')!r}."
        )
    if headmodel is not None:
        partial = {
            "headmodel_fingerprint": headmodel.fingerprint,
            "ch_names": headmodel.ch_names,
        }
        check_checkpoint_compatible(ckpt, partial, what="head model")
    if isinstance(inputs_or_dataset, ExampleSet | str | os.PathLike):
        examples = read_dataset(inputs_or_dataset)
        check_checkpoint_compatible(ckpt, examples.meta, what=f"data set {str(examples.path)!r}")
        return examples.inputs
    array = inputs_or_dataset
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().numpy()
    array = np.asarray(array)
    if array.ndim == 3:
        array = array[np.newaxis]
    expected = (len(meta["methods"]), int(meta["n_rows"]))
    if array.ndim != 4 or tuple(array.shape[1:3]) != expected:
        raise IncompatibleDataError(
            f"inputs must have shape (n, {expected[0]}, {expected[1]}, n_times) for this network "
            f"(methods {meta['methods']}, {expected[1]} rows of hemi={meta.get('hemi')!r}), got "
            f"{array.shape}."
        )
    if not np.isfinite(array).all():
        raise ValueError("inputs contain NaN or infinite values.")
    return array


@fill_doc
def iter_predict(
    checkpoint, inputs_or_dataset, *, headmodel=None, hemi=None, batch_size=64, device="auto"
):
    """Probability maps of a trained network, yielding progress.

    Parameters
    ----------
    checkpoint : path-like | dict
        A checkpoint (``best.pt``), a training directory or a loaded checkpoint.
    inputs_or_dataset : path-like | ExampleSet | array, shape (n, C, n_rows, n_times)
        An example set (checked with
        :func:`~napari_meg_unet.checkpoint.check_checkpoint_compatible`: head
        model, channels, methods, inverse parameters, normalisation, hemi,
        size) or input images made the same way as the training set.
    headmodel : HeadModel | None
        If given, must be the head model the network was trained for (also
        rebuilds the mesh of mesh networks when needed).
    hemi : str | None
        If given, must be the network's hemisphere.
    batch_size : int
        Examples per forward pass.
    %(device)s

    Yields
    ------
    %(progress_yields)s

    Returns
    -------
    probs : ndarray, shape (n, n_rows, n_times), float32
        Probability of an active source at every row and time sample.
    """
    batch_size = V.check_int(batch_size, "batch_size", minimum=1)
    model, ckpt = load_model(checkpoint, mesh=headmodel, device=device)
    inputs = _as_inputs(inputs_or_dataset, ckpt, headmodel=headmodel, hemi=hemi)
    return (yield from iter_probabilities(model, inputs, batch_size=batch_size))


def iter_probabilities(model, inputs, *, batch_size=64, stage="predict", label="examples"):
    """The class-1 probabilities of ``model`` on ``inputs`` (n, C, n_rows, n_times), batched.

    Yields :class:`~napari_meg_unet.progress.Progress` per batch and returns a
    float32 array (n, n_rows, n_times); running out of device memory is a
    :class:`DeviceMemoryError` suggesting a smaller batch.
    """
    dev = next(model.parameters()).device
    models = _models()
    n = inputs.shape[0]
    out = np.empty((n, inputs.shape[2], inputs.shape[3]), np.float32)
    yield Progress(stage, 0, n, f"{n} {label}")
    with torch.inference_mode():
        for start in range(0, n, batch_size):
            x = torch.from_numpy(np.array(inputs[start : start + batch_size], np.float32))
            try:
                logits = model(x.to(dev))
            except _OOM_ERRORS:
                _free_accelerator_memory(dev)
                raise DeviceMemoryError(
                    f"Out of memory on {dev} predicting with batch_size={batch_size}; use a "
                    f"smaller batch size (e.g. {max(1, batch_size // 2)})."
                ) from None
            out[start : start + len(x)] = _class1(models.probabilities(logits)).float().cpu()
            yield Progress(stage, min(n, start + batch_size), n, f"{n} {label}")
    return out


predict = plain(iter_predict)


@fill_doc
def to_source_estimate(probs_i, hm, hemi, tmin, sfreq, *, subject=None):
    """One example's probability map as an :class:`mne.SourceEstimate`.

    Parameters
    ----------
    probs_i : array, shape (n_rows, n_times)
        Rows ``hm.rows(hemi)`` (as returned by :func:`predict` for one example).
    %(hm)s
        Its vertices become the estimate's.
    %(hemi)s
        Rows of the other hemisphere are zero.
    tmin : float
        Time of the first sample (s).
    sfreq : float
        Sampling rate (Hz).
    subject : str | None
        Subject name (default ``hm.subject``).

    Returns
    -------
    stc : mne.SourceEstimate
    """
    import mne

    V.check_choice(hemi, "hemi", HEMIS)
    probs_i = np.asarray(probs_i, dtype=np.float64)
    rows = hm.rows(hemi)
    if probs_i.ndim != 2 or probs_i.shape[0] != len(rows):
        raise ValueError(
            f"probs_i must have shape ({len(rows)}, n_times) for hemi={hemi!r}, got "
            f"{probs_i.shape}."
        )
    sfreq = V.check_number(sfreq, "sfreq", minimum=0.0)
    data = np.zeros((hm.n_sources, probs_i.shape[1]))
    data[rows] = probs_i
    return mne.SourceEstimate(
        data,
        vertices=[np.asarray(v).copy() for v in hm.vertno],
        tmin=float(tmin),
        tstep=1.0 / float(sfreq),
        subject=hm.subject if subject is None else subject,
    )
