"""Forward solutions and conductor models shared by the builders."""

from __future__ import annotations

import mne
import numpy as np
from mne._fiff.constants import FIFF
from mne.transforms import apply_trans, invert_transform

from .model import HeadModel


def _apply_trans_to_src(src: mne.SourceSpaces, trans) -> mne.SourceSpaces:
    """Copy of a surface source space moved into the destination frame of ``trans``."""
    out = src.copy()
    for s in out:
        s["rr"] = apply_trans(trans, s["rr"])
        s["nn"] = apply_trans(trans, s["nn"], move=False)
        s["coord_frame"] = trans["to"]
    return out


def compute_forward(info, src, bem, trans, *, meg=True, eeg=False, verbose=None) -> mne.Forward:
    """Free-orientation forward solution with sources returned in head coordinates.

    Works around MNE's sphere-model source filter, which compares MRI-frame
    source positions with the head-frame sphere when ``trans`` is not the
    identity (and so wrongly drops sources): for sphere models the source
    space is first moved to head coordinates and ``trans=None`` is passed.
    """
    if bem["is_sphere"]:
        if src[0]["coord_frame"] != FIFF.FIFFV_COORD_HEAD:
            src = _apply_trans_to_src(src, invert_transform(trans))
        trans = None
    return mne.make_forward_solution(
        info, trans=trans, src=src, bem=bem, meg=meg, eeg=eeg, mindist=0.0, verbose=verbose
    )


def _finish_forwards(fwd: mne.Forward) -> tuple[mne.Forward, mne.Forward]:
    """Free surface-oriented and fixed forwards from one free forward solution."""
    fwd_free = mne.convert_forward_solution(fwd, surf_ori=True, copy=True, verbose=False)
    fwd_fixed = mne.convert_forward_solution(
        fwd, surf_ori=True, force_fixed=True, use_cps=True, copy=True, verbose=False
    )
    return fwd_free, fwd_fixed


def _headmodel_from_forward(fwd: mne.Forward, **fields) -> HeadModel:
    """A :class:`HeadModel` of the free forward ``fwd`` and the remaining ``fields``."""
    fwd_free, fwd_fixed = _finish_forwards(fwd)
    return HeadModel(src=fwd_free["src"], fwd=fwd_free, fwd_fixed=fwd_fixed, **fields)


def _describe_conductor(bem) -> str:
    if bem["is_sphere"]:
        r0 = np.asarray(bem["r0"]) * 1e3
        radius = bem["layers"][-1]["rad"] * 1e3 if bem["layers"] else float("nan")
        return (
            f"sphere model ({len(bem['layers'])} shells, r0=({r0[0]:.1f}, {r0[1]:.1f}, "
            f"{r0[2]:.1f}) mm, head radius {radius:.1f} mm, head coordinates)"
        )
    ntri = "-".join(str(s["ntri"]) for s in bem["surfs"])
    sigmas = ", ".join(f"{s['sigma']:g}" for s in bem["surfs"])
    return f"{len(bem['surfs'])}-layer BEM ({ntri} triangles, conductivities {sigmas} S/m)"


def _sphere_to_dict(sphere) -> dict:
    return dict(
        r0=[float(x) for x in sphere["r0"]],
        radii=[float(layer["rad"]) for layer in sphere["layers"]],
        sigmas=[float(layer["sigma"]) for layer in sphere["layers"]],
    )


def _sphere_from_dict(params: dict):
    head_radius = params["radii"][-1]
    return mne.make_sphere_model(
        r0=tuple(params["r0"]),
        head_radius=head_radius,
        relative_radii=tuple(r / head_radius for r in params["radii"]),
        sigmas=tuple(params["sigmas"]),
        verbose=False,
    )
