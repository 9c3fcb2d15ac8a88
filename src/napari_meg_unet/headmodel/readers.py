"""Readers of the real inputs of :func:`make_headmodel`: sensors, transform, conductor, sources.

Each accepts the MNE object or a file (the info also a BIDS recording) and
raises an error naming the file and what it should have been.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import mne
import numpy as np
from mne._fiff.constants import FIFF
from mne.transforms import invert_transform

from .._validation import check_file, check_type

logger = logging.getLogger(__name__)


def _read_or_raise(path: Path, what: str, reader):
    try:
        return reader(path)
    except Exception as err:  # MNE raises many types on corrupt/wrong FIF files
        raise ValueError(
            f"Could not read the {what} file {str(path)!r} (corrupt or not a {what} file): "
            f"{type(err).__name__}: {err}"
        ) from err


def _read_info_input(info, *, verbose=None) -> tuple[mne.Info, str]:
    """An Info from an Info, a FIF path (raw/epochs/evoked) or a BIDSPath."""
    if isinstance(info, mne.Info):
        return info.copy(), "mne.Info"
    if type(info).__name__ == "BIDSPath":
        import mne_bids

        fname = info.fpath
        if not Path(fname).exists():
            raise FileNotFoundError(f"The BIDS recording {str(fname)!r} does not exist.")
        raw = _read_or_raise(
            Path(fname), "BIDS recording",
            lambda _: mne_bids.read_raw_bids(info, verbose=verbose or False),
        )  # fmt: skip
        return raw.info.copy(), str(fname)
    if isinstance(info, str | os.PathLike):
        path = check_file(info, "the info file (raw/epochs/evoked FIF)")
        return _read_or_raise(
            path, "measurement info", lambda p: mne.io.read_info(p, verbose=verbose or False)
        ), str(path)  # fmt: skip
    raise TypeError(
        f"info must be an mne.Info, a FIF path or a mne_bids.BIDSPath, got {type(info).__name__}."
    )


def _read_trans_input(trans) -> mne.transforms.Transform | None:
    """A head -> MRI transform from a Transform (either direction) or a file; None stays None."""
    if trans is None:
        return None
    check_type(trans, (mne.transforms.Transform, "path-like"), "trans")
    if isinstance(trans, mne.transforms.Transform):
        out = trans
    else:
        path = check_file(trans, "the trans file (head <-> MRI transform)")
        out = _read_or_raise(path, "trans", lambda p: mne.read_trans(p, verbose=False))
    frames = {out["from"], out["to"]}
    if frames != {FIFF.FIFFV_COORD_HEAD, FIFF.FIFFV_COORD_MRI}:
        raise ValueError(f"trans must be a head <-> MRI transform, got {out}.")
    if out["from"] == FIFF.FIFFV_COORD_MRI:
        out = invert_transform(out)
    return out


def _read_bem_file(path: Path, *, verbose=None):
    """A BEM solution file, or a BEM surfaces file solved on the fly."""

    def reader(p):
        try:
            return mne.read_bem_solution(p, verbose=False)
        except Exception:  # maybe BEM surfaces without a solution
            surfs = mne.read_bem_surfaces(p, verbose=False)
            return mne.make_bem_solution(surfs, verbose=verbose)

    return _read_or_raise(path, "BEM", reader)


def _read_bem_input(bem, *, info, eeg, verbose=None):
    """The conductor model: a BEM (file or ConductorModel) or a sphere fitted to ``info``."""
    if bem is None:
        raise ValueError(
            "bem is required for real inputs: a BEM solution file, an mne ConductorModel or "
            "'sphere' (or give subjects_dir and subject to use the subject's BEM)."
        )
    if isinstance(bem, str) and bem == "sphere":
        if not info["dig"]:
            raise ValueError(
                "bem='sphere' fits a sphere to the head-shape points, but the info has no "
                "digitisation points; pass a BEM or a ConductorModel."
            )
        return mne.make_sphere_model(r0="auto", head_radius="auto", info=info, verbose=verbose)
    if isinstance(bem, mne.bem.ConductorModel):
        out = bem
    elif isinstance(bem, str | os.PathLike):
        out = _read_bem_file(check_file(bem, "the BEM file"), verbose=verbose)
    else:
        raise TypeError(
            f"bem must be a path, a ConductorModel or 'sphere', got {type(bem).__name__}."
        )
    if not out["is_sphere"] and eeg and len(out["surfs"]) == 1:
        raise ValueError(
            "A 1-layer BEM (inner skull only) can only model MEG; EEG needs a 3-layer BEM "
            "(e.g. sample-320-320-320-bem-sol.fif) or bem='sphere'. Use modality='meg' or "
            "another bem."
        )
    return out


def _setup_subject_src(*, subjects_dir, subject, spacing, verbose=None) -> mne.SourceSpaces:
    """The ``spacing`` source space of a FreeSurfer subject."""
    if subjects_dir is None or subject is None:
        raise ValueError(
            "src is None, so subjects_dir and subject are needed to build the source "
            f"space (spacing={spacing!r})."
        )
    try:
        return mne.setup_source_space(
            subject, spacing=spacing, subjects_dir=subjects_dir, add_dist=False,
            verbose=verbose,
        )  # fmt: skip
    except (OSError, ValueError, RuntimeError) as err:
        raise ValueError(
            f"Could not set up the {spacing} source space of subject {subject!r} in "
            f"subjects_dir {str(subjects_dir)!r}: {err}"
        ) from err


def _read_src_input(src, *, subjects_dir, subject, spacing, verbose=None):
    """The surface source space and its spacing label (``"custom"`` when given)."""
    if src is None:
        out = _setup_subject_src(
            subjects_dir=subjects_dir, subject=subject, spacing=spacing, verbose=verbose
        )
        return out, spacing
    check_type(src, (mne.SourceSpaces, "path-like"), "src")
    if isinstance(src, mne.SourceSpaces):
        out = src.copy()
    else:
        path = check_file(src, "the source-space file")
        out = _read_or_raise(
            path, "source space", lambda p: mne.read_source_spaces(p, verbose=False)
        )
    if len(out) != 2 or any(s["type"] != "surf" for s in out):
        raise ValueError(
            "src must be a two-hemisphere (lh, rh) surface source space, got "
            f"{len(out)} source space(s) of type(s) {[s['type'] for s in out]}."
        )
    return out, "custom"


def _fix_src_units(src, src_scale) -> tuple[mne.SourceSpaces, float]:
    """Scale positions stored in the wrong unit (e.g. small-src.fif.gz, 1000x too small)."""
    max_r = max(float(np.linalg.norm(s["rr"], axis=1).max()) for s in src)
    if src_scale == "auto":
        # a cortex spans ~7 cm from any reasonable origin; < 5 mm means mm stored as m
        scale = 1000.0 if max_r < 0.005 else 1.0
        if scale != 1.0:
            logger.warning(
                f"The source-space positions all lie within {max_r * 1e3:.3f} mm of the "
                "origin: they are stored 1000x too small (as in MNE's small-src.fif.gz); "
                "multiplying them by 1000. Pass src_scale=1.0 to keep them."
            )
    else:
        scale = float(src_scale)
        if not np.isfinite(scale) or scale <= 0:
            raise ValueError(f"src_scale must be 'auto' or a positive number, got {src_scale!r}.")
    if scale != 1.0:
        for s in src:
            s["rr"] = s["rr"] * scale
            if s.get("dist") is not None:
                s["dist"] = s["dist"] * scale
            if s.get("nearest_dist") is not None:
                s["nearest_dist"] = s["nearest_dist"] * scale
    return src, scale


def _use_all_vertices(src) -> None:
    """Put every vertex of each source-space surface in use (in place)."""
    for s in src:
        s["inuse"] = np.ones(s["np"], int)
        s["vertno"] = np.arange(s["np"])
        s["nuse"] = s["np"]
        s["use_tris"] = s["tris"].copy()
        s["nuse_tri"] = len(s["tris"])
        s.update(patch_inds=None, pinfo=None, nearest=None, nearest_dist=None)
