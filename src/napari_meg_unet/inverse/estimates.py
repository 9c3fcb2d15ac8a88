"""Inverses of MNE objects: Evoked, Epochs and Raw in, :class:`mne.SourceEstimate` out.

:func:`source_estimates` is MNE's ``apply_inverse`` / ``apply_inverse_epochs`` /
``apply_inverse_raw`` for several methods at once, through the imaging
kernels of :mod:`.kernels` (one kernel product serves MNE, dSPM and sLORETA):
same channel picking, ``nave``, ``tmin``, ``tstep``, ``subject`` and
vertices as MNE's source estimates, with the rank the whitener used stated.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mne
import numpy as np

from .._io import check_output_path
from .._logging import verbose as _verbose
from .._validation import check_choice, check_int
from ._common import PICK_ORIS, _check_inverse, _check_methods, _inverse_ch_names
from ._docs import fill_doc
from .apply import apply_inverse_batch, apply_kernel

logger = logging.getLogger(__name__)

#: Source-estimate file formats (``h5`` needs the ``h5io`` package; vector estimates need it).
STC_FORMATS = ("stc", "h5")


def _data_of(data):
    """``(array, ch_names, info, tmin, sfreq, nave, is_epochs)`` of an MNE object or segment."""
    from ..recordings import Segment

    if isinstance(data, Segment):
        array = data.get_data()
        return (array, data.ch_names, data.info, data.tmin, data.sfreq, data.nave,
                data.kind == "epochs")  # fmt: skip
    if isinstance(data, mne.Evoked):
        return data.data, data.ch_names, data.info, float(data.times[0]), data.info["sfreq"], \
            int(data.nave), False  # fmt: skip
    if isinstance(data, mne.BaseEpochs):
        return (data.get_data(copy=False), data.ch_names, data.info, float(data.times[0]),
                data.info["sfreq"], 1, True)  # fmt: skip
    if isinstance(data, mne.io.BaseRaw):
        return data.get_data(), data.ch_names, data.info, float(data.times[0]), \
            data.info["sfreq"], 1, False  # fmt: skip
    raise TypeError(
        "data must be an mne.Evoked, mne.Epochs, mne.io.Raw or a recordings.Segment, got "
        f"{type(data).__name__}."
    )


def _check_bads(info, used: list[str], where: str) -> None:
    bad = [ch for ch in used if ch in info["bads"]]
    if bad:
        raise ValueError(
            f"{where}: {len(bad)} channel(s) the inverse uses are marked bad in the data: "
            f"{bad[:10]}. Leave them out of the head model (its info['bads']) or unmark them."
        )


def subject_of(inv) -> str | None:
    """The subject of an operator's source space (as MNE's source estimates name it)."""
    return inv["src"][0].get("subject_his_id")


def make_source_estimate(values, vertno, *, tmin, tstep, subject=None):
    """A :class:`mne.SourceEstimate` (``values`` (n, T)) or vector one (``values`` (n, 3, T))."""
    values = np.asarray(values)
    vertices = [np.asarray(v).copy() for v in vertno]
    kind = mne.VectorSourceEstimate if values.ndim == 3 else mne.SourceEstimate
    return kind(values, vertices=vertices, tmin=float(tmin), tstep=float(tstep), subject=subject)


@dataclass(frozen=True)
class RankReport:
    """The dimensions the whitener keeps, and what the data's processing history implies."""

    whitener_rank: int
    data_rank: dict
    sss: bool
    message: str


def rank_report(inv, info) -> RankReport:
    """The operator's whitener rank and the data's MEG rank by MNE's ``rank='info'`` logic.

    For Maxwell-filtered (SSS) data MNE derives the MEG rank from
    ``info['proc_history']`` (about 70); an operator whose noise covariance
    was not SSS-processed whitens more dimensions than the data have, which
    the message says.
    """
    inv = _check_inverse(inv)
    whitener_rank = int(np.count_nonzero(np.asarray(inv["noise_cov"]["eig"]) > 0))
    sss = bool(info.get("proc_history"))
    cov = mne.Covariance(
        np.eye(len(inv["noise_cov"].ch_names)), list(inv["noise_cov"].ch_names), [], [], 1
    )
    picks = [ch for ch in inv["noise_cov"].ch_names if ch in info["ch_names"]]
    data_info = mne.pick_info(info, [info["ch_names"].index(ch) for ch in picks])
    with data_info._unlock():
        data_info["bads"] = []
    data_rank = dict(mne.compute_rank(cov.copy().pick_channels(picks, verbose="error"),
                                      rank="info", info=data_info, verbose="error"))  # fmt: skip
    meg = sum(v for k, v in data_rank.items() if k in ("meg", "mag", "grad"))
    message = f"whitener rank {whitener_rank} (the operator's noise covariance)"
    if sss:
        message += (
            f"; the data are Maxwell-filtered (SSS): MNE's rank='info' gives MEG rank {meg}"
        )
        inv_sss = bool(inv["info"].get("proc_history"))
        if meg < whitener_rank and not inv_sss:
            message += (
                f", fewer than the {whitener_rank} dimensions whitened: the noise covariance "
                "is not SSS-processed, so the whitened noise is not white (dSPM/sLORETA values "
                "and lambda2's SNR meaning are off). Use an SSS-processed covariance (e.g. "
                "from the SSS-processed empty room or baseline) and rank='info'"
            )
    return RankReport(whitener_rank, data_rank, sss, message)


@fill_doc
@_verbose
def source_estimates(
    inv,
    data,
    *,
    methods=("dSPM",),
    lambda2=1.0 / 9.0,
    nave=None,
    pick_ori=None,
    method_params=None,
    kernels=None,
    backend="numpy",
    device=None,
    verbose=None,
) -> dict:
    """Source estimates of MNE objects, as :func:`mne.minimum_norm.apply_inverse` makes them.

    Parameters
    ----------
    %(inv_operator)s
    data : mne.Evoked | mne.Epochs | mne.io.Raw | recordings.Segment
        The data (every sample of a raw object; crop it, or read a segment
        with :func:`~napari_meg_unet.recordings.read_segments`). The
        operator's channels are picked by name; channels it uses must not be
        marked bad in the data.
    %(methods)s
    %(lambda2)s
    nave : int | None
        Averaged trials (None: an evoked's or segment's own ``nave``, 1 for
        epochs and raw data, as MNE).
    pick_ori : None | 'normal' | 'vector'
        As in :func:`mne.minimum_norm.apply_inverse`: None gives signed
        values of a fixed operator and the magnitude of a loose one;
        ``'vector'`` gives a :class:`mne.VectorSourceEstimate`.
    %(method_params)s
    kernels : dict | None
        Precomputed ``{method: InverseKernel}`` of ``inv`` (from
        :func:`compute_kernel`, for the data's nave); they replace ``methods``,
        ``lambda2``, ``nave`` and ``method_params``.
    %(kernel_backend)s
    %(kernel_device)s
    %(verbose)s

    Returns
    -------
    estimates : dict
        ``{method: SourceEstimate}`` (a list of them, one per epoch, for epochs).
    """
    inv = _check_inverse(inv)
    pick_ori = check_choice(pick_ori, "pick_ori", PICK_ORIS)
    array, ch_names, info, tmin, sfreq, own_nave, is_epochs = _data_of(data)
    used = _inverse_ch_names(inv)
    _check_bads(info, used, type(data).__name__)
    apply = dict(pick_ori=pick_ori, ch_names=ch_names, backend=backend, device=device)
    if kernels is not None:
        estimates = {m: apply_kernel(k, array, **apply) for m, k in kernels.items()}
    else:
        nave = own_nave if nave is None else check_int(nave, "nave", minimum=1)
        estimates = apply_inverse_batch(
            inv, array, methods=_check_methods(methods), lambda2=lambda2, nave=nave,
            method_params=method_params, verbose=verbose, **apply,
        )  # fmt: skip
    vertno = [s["vertno"] for s in inv["src"]]
    subject = subject_of(inv)
    kw = dict(tmin=tmin, tstep=1.0 / sfreq, subject=subject)
    out = {}
    for method, values in estimates.items():
        if is_epochs:
            out[method] = [make_source_estimate(v, vertno, **kw) for v in values]
        else:
            out[method] = make_source_estimate(values, vertno, **kw)
    return out


def _stc_files(path: Path, stc, ftype: str) -> tuple[str, list[Path]]:
    """The stem MNE's ``stc.save`` takes and the files it writes."""
    name = path.name
    for ending in ("-lh.stc", "-rh.stc", ".stc", "-stc.h5", ".h5"):
        if name.endswith(ending):
            name = name[: -len(ending)]
            break
    stem = path.with_name(name)
    if ftype == "h5":
        return str(stem), [stem.with_name(name + "-stc.h5")]
    return str(stem), [stem.with_name(name + f"-{h}.stc") for h in ("lh", "rh")]


def write_source_estimate(stc, path, *, ftype="stc", overwrite=False) -> list[Path]:
    """Write a source estimate: into a temporary folder, then renamed into place.

    Nothing is written at ``path`` if saving fails.

    Parameters
    ----------
    stc : mne.SourceEstimate | mne.VectorSourceEstimate
    path : path-like
        Stem (``-lh.stc``/``-rh.stc`` or ``-stc.h5`` are added, as MNE does).
    ftype : 'stc' | 'h5'
        ``h5`` needs the ``h5io`` package; vector estimates can only be ``h5``.
    %(overwrite)s

    Returns
    -------
    paths : list of Path
    """
    check_choice(ftype, "ftype", STC_FORMATS)
    if isinstance(stc, mne.VectorSourceEstimate) and ftype != "h5":
        raise ValueError("A vector source estimate can only be written as h5 (ftype='h5').")
    if ftype == "h5":
        try:
            import h5io  # noqa: F401
        except ImportError:
            raise ImportError(
                "Writing source estimates as .h5 needs the h5io package (pip install h5io); "
                "use the .stc format instead."
            ) from None
    path = Path(path)
    stem, files = _stc_files(path, stc, ftype)
    for f in files:
        check_output_path(f, overwrite=overwrite, what="source estimate")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        stc.save(tmp / Path(stem).name, ftype=ftype, overwrite=True, verbose="error")
        for f in files:
            os.replace(tmp / f.name, f)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return files
