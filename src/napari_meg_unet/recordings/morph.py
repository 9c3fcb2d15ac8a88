"""Carrying source maps between a subject's sources and the template's, and back.

A network trained on the fsaverage5 template sees images whose rows are the
template's sources. To apply it to another subject, the subject's inverse maps
are mapped onto the template rows, the network runs there, and its
probabilities are mapped back onto the subject's sources. Two mappings:

``"sphere"``
    :func:`mne.compute_source_morph` (FreeSurfer spherical registration),
    when ``subjects_dir`` holds the subject's ``surf/?h.sphere.reg`` and
    ``fsaverage`` (whose vertex numbers below 10242 are fsaverage5's).
``"mni"``
    The fallback for subjects without a spherical registration (e.g. the MNE
    sample subject of the shared data): sources are placed in MNI space
    (the subject through its ``mri/transforms/talairach.xfm`` with
    :func:`mne.head_to_mni`; fsaverage5's surface coordinates are MNI305
    already) and each target source takes the Gaussian-weighted mean
    (sigma = the mean nearest-neighbour spacing of the sources mapped from,
    at most :data:`MNI_NEIGHBOURS` nearest, same hemisphere only) of the
    source values. Rows sum to 1, so probabilities stay in [0, 1].

``"identity"`` is used when the subject's head model already has the
template's cortex (e.g. the template coregistered to a recording).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import mne
import numpy as np
from scipy import sparse
from scipy.spatial import cKDTree

from .._validation import check_choice
from ..configs import HEMIS, MORPHS

#: Neighbours per target source of the MNI mapping.
MNI_NEIGHBOURS = 16
#: Subject whose vertex numbering fsaverage5's ico vertices share (for the "sphere" morph).
SPHERE_TARGET = "fsaverage"


@dataclass(frozen=True)
class TemplateSources:
    """A template network's source rows: subject, vertex numbers and MNI positions (mm)."""

    subject: str
    vertno: tuple  # (lh, rh) arrays
    mni: tuple  # (lh, rh) arrays (n, 3), mm

    @property
    def n_sources(self) -> int:
        return sum(len(v) for v in self.vertno)


def template_sources(spacing: str = "ico3") -> TemplateSources:
    """The fsaverage5 template's source vertices and their MNI305 positions (mm).

    fsaverage5's surface RAS is MNI305 (fsaverage's ``talairach.xfm`` is the
    identity); the sources are white-surface vertices, as in
    :func:`~napari_meg_unet.headmodel.make_template_headmodel`.
    """
    from ..headmodel import TEMPLATE_SUBJECT, cache_root, check_template_spacing
    from ..headmodel.fsaverage import (
        _fsaverage5_gifti,
        _read_gifti,
        _setup_template_src,
        _write_template_subject,
    )

    check_template_spacing(spacing)
    surfaces = [_read_gifti(_fsaverage5_gifti("white", side))[0] for side in ("left", "right")]
    if spacing.startswith("ico"):  # fsaverage5 is ico5: a coarser ico grid is a vertex prefix
        n = 10 * 4 ** int(spacing[3:]) + 2
        vertno = (np.arange(n), np.arange(n))
    else:
        subjects_dir = cache_root() / "subjects"
        _write_template_subject(subjects_dir)
        src = _setup_template_src(spacing, subjects_dir, verbose="error")
        vertno = tuple(np.asarray(s["vertno"]) for s in src)
    mni = tuple(rr[v] for rr, v in zip(surfaces, vertno, strict=True))
    return TemplateSources(TEMPLATE_SUBJECT, vertno, mni)


@dataclass(frozen=True)
class SourceMapping:
    """Linear maps between a subject's rows and a template's rows of one hemisphere selection.

    Attributes
    ----------
    to_template : scipy.sparse matrix, shape (n_template_rows, n_subject_rows)
    from_template : scipy.sparse matrix, shape (n_subject_rows, n_template_rows)
    method : str
        ``"identity"``, ``"sphere"`` or ``"mni"``.
    description : str
        What was used, for the output.
    """

    to_template: sparse.csr_matrix
    from_template: sparse.csr_matrix
    method: str
    description: str


def _hemi_indices(hemi: str) -> list[int]:
    check_choice(hemi, "hemi", HEMIS)
    return [0, 1] if hemi == "both" else [HEMIS.index(hemi)]


def _gaussian_map(to_pos, from_pos) -> sparse.csr_matrix:
    """Row-normalised Gaussian weights of the nearest ``from`` points of each ``to`` point."""
    k = min(MNI_NEIGHBOURS, len(from_pos))
    tree = cKDTree(from_pos)
    spacing, _ = tree.query(from_pos, k=2)
    sigma = float(np.mean(spacing[:, 1]))
    dist, idx = tree.query(to_pos, k=k)
    dist, idx = dist.reshape(len(to_pos), k), idx.reshape(len(to_pos), k)
    w = np.exp(-0.5 * (dist / sigma) ** 2)
    w[:, 0] = np.maximum(w[:, 0], 1e-12)  # a far point still takes its nearest source
    w /= w.sum(axis=1, keepdims=True)
    rows = np.repeat(np.arange(len(to_pos)), k)
    return sparse.csr_matrix((w.ravel(), (rows, idx.ravel())), shape=(len(to_pos), len(from_pos)))


def subject_mni(hm, subjects_dir) -> tuple:
    """MNI305 positions (mm) of a head model's sources, per hemisphere (via talairach.xfm)."""
    if hm.trans is None:
        raise ValueError(
            f"The head model of {hm.subject!r} has no head <-> MRI transform; MNI positions of "
            "its sources cannot be computed."
        )
    xfm = Path(subjects_dir) / hm.subject / "mri" / "transforms" / "talairach.xfm"
    if not xfm.is_file():
        raise FileNotFoundError(
            f"The MNI mapping needs {str(xfm)!r} (FreeSurfer's talairach transform of "
            f"{hm.subject!r}); it does not exist. Pass the subject's subjects_dir."
        )
    mni = mne.head_to_mni(hm.positions, hm.subject, hm.trans, subjects_dir=subjects_dir,
                          verbose="error")  # fmt: skip
    n_lh = len(hm.vertno[0])
    return mni[:n_lh], mni[n_lh:]


def _mni_mapping(hm, template: TemplateSources, hemi, subjects_dir) -> SourceMapping:
    subj = subject_mni(hm, subjects_dir)
    to_blocks, from_blocks = [], []
    for h in _hemi_indices(hemi):
        to_blocks.append(_gaussian_map(template.mni[h], subj[h]))
        from_blocks.append(_gaussian_map(subj[h], template.mni[h]))
    return SourceMapping(
        sparse.block_diag(to_blocks, format="csr"), sparse.block_diag(from_blocks, format="csr"),
        "mni", f"MNI mapping of {hm.subject!r} (talairach.xfm) to the {template.subject} "
        f"sources: Gaussian weights over the {MNI_NEIGHBOURS} nearest sources",
    )  # fmt: skip


def has_sphere_registration(subject: str, subjects_dir) -> bool:
    """Whether ``subjects_dir`` has ``surf/?h.sphere.reg`` for ``subject`` and for fsaverage."""
    if subjects_dir is None:
        return False
    root = Path(subjects_dir)
    return all(
        (root / s / "surf" / f"{h}.sphere.reg").is_file()
        for s in (subject, SPHERE_TARGET) for h in ("lh", "rh")
    )  # fmt: skip


def _hemi_block(morph_mat, n_from, n_to, hemi) -> sparse.csr_matrix:
    """The rows/columns of ``hemi`` of a two-hemisphere morph matrix."""
    hs = _hemi_indices(hemi)
    rows = np.concatenate([np.arange(n_to[0]) if h == 0 else n_to[0] + np.arange(n_to[1])
                           for h in hs])  # fmt: skip
    cols = np.concatenate([np.arange(n_from[0]) if h == 0 else n_from[0] + np.arange(n_from[1])
                           for h in hs])  # fmt: skip
    return sparse.csr_matrix(morph_mat)[rows][:, cols]


def _sphere_mapping(hm, template: TemplateSources, hemi, subjects_dir) -> SourceMapping:
    n_sub = [len(v) for v in hm.vertno]
    n_tmp = [len(v) for v in template.vertno]
    kw = dict(subjects_dir=subjects_dir, smooth=None, warn=False, verbose="error")
    fwd = mne.compute_source_morph(
        hm.src, subject_from=hm.subject, subject_to=SPHERE_TARGET,
        spacing=[np.asarray(v) for v in template.vertno], **kw,
    )  # fmt: skip
    dummy = mne.SourceEstimate(np.zeros((sum(n_tmp), 1)), [np.asarray(v) for v in template.vertno],
                               0.0, 1.0, subject=SPHERE_TARGET)  # fmt: skip
    back = mne.compute_source_morph(
        dummy, subject_from=SPHERE_TARGET, subject_to=hm.subject,
        spacing=[np.asarray(v) for v in hm.vertno], **kw,
    )  # fmt: skip
    return SourceMapping(
        _hemi_block(fwd.morph_mat, n_sub, n_tmp, hemi),
        _hemi_block(back.morph_mat, n_tmp, n_sub, hemi),
        "sphere", f"mne.compute_source_morph of {hm.subject!r} <-> {SPHERE_TARGET} "
        "(spherical registration, surf/?h.sphere.reg)",
    )  # fmt: skip


def _is_template_cortex(hm, template: TemplateSources) -> bool:
    return hm.subject == template.subject and all(
        np.array_equal(a, b) for a, b in zip(hm.vertno, template.vertno, strict=True)
    )


def source_mapping(hm, template: TemplateSources, *, hemi="both", subjects_dir=None,
                   method="auto") -> SourceMapping:  # fmt: skip
    """The mapping of ``hm``'s rows of ``hemi`` onto a template's rows and back.

    Parameters
    ----------
    hm : HeadModel
        The subject's head model (its ``trans`` and source positions).
    template : TemplateSources
        From :func:`template_sources`.
    hemi : "lh" | "rh" | "both"
        Rows mapped (``hm.rows(hemi)`` and the template's rows of ``hemi``).
    subjects_dir : path-like | None
        The subject's FreeSurfer folder (default: the one the head model was
        built with, from its provenance).
    method : "auto" | "sphere" | "mni"
        ``"auto"``: the identity for the template's own cortex, else
        ``"sphere"`` when both spherical registrations exist, else ``"mni"``.

    Returns
    -------
    mapping : SourceMapping
    """
    method = check_choice(method, "morph", MORPHS)
    if _is_template_cortex(hm, template):
        n = len(hm.rows(hemi))
        eye = sparse.identity(n, format="csr")
        return SourceMapping(eye, eye, "identity", f"same cortex ({template.subject}): no morph")
    if subjects_dir is None:
        subjects_dir = (hm.provenance.get("parameters") or {}).get("subjects_dir")
    if subjects_dir is None:
        raise ValueError(
            f"Mapping {hm.subject!r} onto the {template.subject} network needs the subject's "
            "FreeSurfer folder: pass subjects_dir."
        )
    sphere = has_sphere_registration(hm.subject, subjects_dir)
    if method == "sphere" and not sphere:
        raise ValueError(
            f"morph='sphere' needs surf/lh|rh.sphere.reg of {hm.subject!r} and of "
            f"{SPHERE_TARGET!r} under {str(subjects_dir)!r}; use morph='mni' (or 'auto')."
        )
    if method == "sphere" or (method == "auto" and sphere):
        return _sphere_mapping(hm, template, hemi, subjects_dir)
    return _mni_mapping(hm, template, hemi, subjects_dir)
