"""Off-grid dense sources sharing a head model's sensors and conductor.

Simulating with the very sources an inverse reconstructs on commits the
"inverse crime"; :func:`make_dense_sources` gives sources on the same cortex
but never on the head model's grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import mne
import numpy as np
from scipy.spatial import cKDTree

from .._docs import fill_doc
from .._io import atomic_path
from .._logging import verbose
from .._validation import check_type
from ..progress import Progress, plain
from . import _docs  # noqa: F401  (registers the package's docdict entries)
from .forward import compute_forward
from .fsaverage import _setup_template_src, _write_template_subject
from .io import FORMAT_VERSION, _cache_key, _iter_load_cached, cache_root
from .model import HeadModel, check_modality
from .template import _is_template

#: Default dense (off-grid) spacing of the template for each head-model spacing.
DENSE_DEFAULT_SPACING = {"ico3": "ico4", "ico4": "ico5", "oct5": "oct6", "oct6": "ico5"}
#: Dense spacings accepted for the template; "ico5" is the full fsaverage5 mesh.
DENSE_SPACINGS = ("ico4", "ico5", "oct6")
#: Real head models: the most vertices per hemisphere of a source-space surface whose
#: every vertex may be a dense source (``"full"``, the default below it); ico5 has 10242.
FULL_SURFACE_LIMIT = 10242


@dataclass(eq=False)
class DenseSources:
    """Off-grid cortical sources for simulation (avoiding the "inverse crime").

    The dense sources lie on the same cortical surface as the head model's
    sources but never on them: a vertex used by the head model is never a dense
    source. Their gain uses the same channels (same order), conductor model and
    coordinate frame as the head model.

    Attributes
    ----------
    positions : ndarray, shape (n_dense, 3)
        Positions in metres, head coordinates.
    normals : ndarray, shape (n_dense, 3)
        Surface normals (the fixed source orientations).
    gain : ndarray, shape (n_channels, n_dense)
        Fixed-orientation gain (float64), rows in ``hm.ch_names`` order.
    vertno : list of ndarray
        Surface vertex numbers of the dense sources per hemisphere ``[lh, rh]``.
    hemi : ndarray of int, shape (n_dense,)
        0 for left-hemisphere sources, 1 for right.
    nearest_row : ndarray of int, shape (n_dense,)
        Index (into the head model's source order) of the head-model source of
        the same hemisphere this dense source is attributed to: the nearest one,
        except for head models from real inputs, where a head-model source that
        is nearest to no dense source takes the dense source closest to it from
        a head-model source that has several (so that an off-grid sweep covers
        every row; on the sample subject's oct-4 grid within its 1026-vertex
        surface, 17 of the 516 rows, 9 of them right-hemisphere, are nearest to none).
    grid_distance : ndarray, shape (n_dense,)
        Euclidean distance (m) to that head-model source.
    spacing : str
        Dense spacing (``"ico4"``, ``"ico5"``, ``"oct6"``, another MNE spacing
        of a real subject, or ``"full"``).
    headmodel_fingerprint : str
        Fingerprint of the head model these sources belong to.
    """

    positions: np.ndarray
    normals: np.ndarray
    gain: np.ndarray
    vertno: list
    hemi: np.ndarray
    nearest_row: np.ndarray
    grid_distance: np.ndarray
    spacing: str
    headmodel_fingerprint: str

    @property
    def n_dense(self) -> int:
        return int(self.positions.shape[0])

    def describe(self) -> str:
        """One line: how many dense sources, from which set, and how far off the grid."""
        where = {
            "full": "every vertex of the head model's source-space surface not on its grid",
        }.get(self.spacing, f"the {self.spacing} vertices not on the head model's grid")
        mm = np.asarray(self.grid_distance) * 1e3
        return (
            f"{self.n_dense} off-grid dense sources (spacing {self.spacing!r}: {where}); "
            f"distance to the grid source they belong to: median {np.median(mm):.1f} mm, "
            f"max {mm.max():.1f} mm"
        )

    def _arrays(self) -> dict:
        return dict(
            positions=self.positions, normals=self.normals,
            gain=self.gain.astype(np.float32), vertno_lh=self.vertno[0],
            vertno_rh=self.vertno[1], hemi=self.hemi, nearest_row=self.nearest_row,
            grid_distance=self.grid_distance,
        )  # fmt: skip


# =========================================================================== vertices
def _template_dense_full(hm: HeadModel, spacing, cache_dir, verbose) -> tuple[str, list]:
    """Dense spacing of a template head model and all its vertices per hemisphere."""
    if spacing is None:
        spacing = DENSE_DEFAULT_SPACING[hm.spacing]
    if spacing not in DENSE_SPACINGS:
        raise ValueError(
            f"spacing must be None or one of {DENSE_SPACINGS} for the template "
            f"(ico5 is the full fsaverage5 mesh), got {spacing!r}."
        )
    if spacing == "ico5":
        return spacing, [np.arange(s["np"]) for s in hm.src]
    subjects_dir = cache_root(cache_dir) / "subjects"
    _write_template_subject(subjects_dir)
    src = _setup_template_src(spacing, subjects_dir, verbose=verbose)
    return spacing, [s["vertno"] for s in src]


def _subject_of(hm: HeadModel) -> tuple:
    """``(subjects_dir, subject)`` of a real head model whose FreeSurfer subject has surfaces."""
    params = hm.provenance.get("parameters") or {}
    subjects_dir, subject = params.get("subjects_dir"), params.get("subject")
    if subjects_dir is None or subject is None:
        return None, None
    surf = Path(subjects_dir) / subject / "surf"
    ok = all((surf / f"{h}.{k}").is_file() for h in ("lh", "rh") for k in ("white", "sphere"))
    return (subjects_dir, subject) if ok else (None, None)


def _real_dense_full(hm: HeadModel, spacing, verbose) -> tuple[str, list]:
    """Dense spacing of a real head model and all its vertices per hemisphere.

    ``"full"``: every vertex of the surface the source space was decimated from;
    an MNE spacing (``"oct6"``, ``"ico5"``, ...): that source space of the
    head model's FreeSurfer subject (its ``surf/?h.white`` and ``?h.sphere``).
    """
    n_surface = max(s["np"] for s in hm.src)
    subjects_dir, subject = _subject_of(hm)
    if spacing is None:
        finer = DENSE_DEFAULT_SPACING.get(hm.spacing)
        if n_surface <= FULL_SURFACE_LIMIT or subject is None or finer is None:
            spacing = "full"
        else:
            spacing = finer
    if spacing == "full":
        if n_surface > FULL_SURFACE_LIMIT:
            raise ValueError(
                f"The source-space surface has {n_surface} vertices per hemisphere; dense "
                f"sources on all of them (spacing='full') are limited to {FULL_SURFACE_LIMIT}. "
                "Pass a dense spacing such as 'oct6' or 'ico5' (the head model's FreeSurfer "
                "subject is needed)."
            )
        return spacing, [np.arange(s["np"]) for s in hm.src]
    check_type(spacing, str, "spacing")
    if subject is None:
        raise ValueError(
            f"spacing={spacing!r} needs the head model's FreeSurfer subject (surf/lh.white, "
            "lh.sphere, ... under the subjects_dir/subject it was built with), which this "
            "head model does not have; use spacing=None or 'full' (every vertex of its "
            "source-space surface)."
        )
    try:
        src = mne.setup_source_space(subject, spacing=spacing, subjects_dir=subjects_dir,
                                     add_dist=False, verbose=verbose)  # fmt: skip
    except (OSError, ValueError, RuntimeError) as err:
        raise ValueError(
            f"Could not set up the dense {spacing} source space of subject {subject!r}: {err}"
        ) from err
    if [s["np"] for s in src] != [s["np"] for s in hm.src]:
        raise ValueError(
            f"The {spacing} source space of subject {subject!r} is not on the surface of the "
            "head model's source space (different vertex counts)."
        )
    return spacing, [s["vertno"] for s in src]


def _dense_vertices(hm: HeadModel, spacing, cache_dir, verbose) -> tuple[str, list]:
    """Dense spacing name and the dense vertex numbers per hemisphere."""
    if _is_template(hm):
        spacing, full = _template_dense_full(hm, spacing, cache_dir, verbose)
    else:
        spacing, full = _real_dense_full(hm, spacing, verbose)
    dense = [np.setdiff1d(f, v) for f, v in zip(full, hm.vertno, strict=True)]
    if sum(len(d) for d in dense) == 0:
        raise ValueError(
            f"The head model uses every vertex of its {spacing} surface, so there are no "
            "off-grid vertices left for dense sources; build the head model with a "
            "coarser source space."
        )
    return spacing, dense


# =========================================================================== cache
def _dense_cache_path(hm: HeadModel, spacing: str, cache_dir) -> Path:
    key = _cache_key(
        dict(kind="dense", headmodel=hm.fingerprint, spacing=spacing, mne=mne.__version__,
             format_version=FORMAT_VERSION, rows="covered" if not _is_template(hm) else None)
    )  # fmt: skip
    return cache_root(cache_dir) / "dense" / f"{hm.subject}-{hm.spacing}-{spacing}-{key}.npz"


def _load_dense(path: Path, spacing: str, hm: HeadModel) -> DenseSources:
    with np.load(path, allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files}
    return DenseSources(
        positions=arrays["positions"], normals=arrays["normals"],
        gain=arrays["gain"].astype(np.float64), vertno=[arrays["vertno_lh"], arrays["vertno_rh"]],
        hemi=arrays["hemi"], nearest_row=arrays["nearest_row"],
        grid_distance=arrays["grid_distance"], spacing=spacing,
        headmodel_fingerprint=hm.fingerprint,
    )  # fmt: skip


# =========================================================================== compute
def _dense_src(hm: HeadModel, dense_vertno) -> mne.SourceSpaces:
    """The head model's source space with the dense vertices in use instead."""
    src = hm.src.copy()
    for s, vertno in zip(src, dense_vertno, strict=True):
        s["inuse"] = np.zeros(s["np"], int)
        s["inuse"][vertno] = 1
        s["vertno"] = np.asarray(vertno, np.int64)
        s["nuse"] = len(vertno)
        s.update(use_tris=None, nuse_tri=0, patch_inds=None, pinfo=None, dist=None,
                 dist_limit=None, nearest=None, nearest_dist=None)  # fmt: skip
    return src


def _dense_forward(hm: HeadModel, src, spacing, n_vertices, verbose) -> mne.Forward:
    """Fixed-orientation forward of the dense sources with the head model's conductor."""
    meg, eeg = check_modality(hm.modality)
    try:
        fwd = compute_forward(hm.info, src, hm.bem, hm.trans, meg=meg, eeg=eeg, verbose=verbose)
    except RuntimeError as err:
        if "No points left" not in str(err):
            raise
        raise ValueError(
            f"None of the {n_vertices} off-grid {spacing} vertices lies "
            "inside the conductor model, so there are no dense sources."
        ) from err
    if fwd["sol"]["row_names"] != hm.ch_names:
        raise RuntimeError("The dense forward solution's channels differ from the head model's.")
    return mne.convert_forward_solution(
        fwd, surf_ori=True, force_fixed=True, use_cps=True, copy=False, verbose=False
    )


def _cover_every_row(rows, positions, grid_positions, nearest, dist) -> None:
    """Give each of ``rows`` nearest to no dense source one, taken from a row that has several.

    In place on ``nearest`` (indices into ``rows``) and ``dist``: the dense source
    closest to an uncovered row moves to it, unless it is the last one of its
    own row, in which case the next closest is tried. Rows stay uncovered only
    when every dense source within reach is the last of its row.
    """
    counts = np.bincount(nearest, minlength=len(rows))
    tree = cKDTree(positions)
    for r in np.flatnonzero(counts == 0):
        k = min(len(positions), 16)
        d, idx = tree.query(grid_positions[r], k=k)
        for dd, i in zip(np.atleast_1d(d), np.atleast_1d(idx), strict=True):
            if counts[nearest[i]] > 1:
                counts[nearest[i]] -= 1
                nearest[i], dist[i] = r, dd
                counts[r] += 1
                break


def _dense_from_forward(hm: HeadModel, fwd: mne.Forward, spacing: str) -> DenseSources:
    """Dense sources of ``fwd``, each with the head-model source it is attributed to."""
    vertno = [np.asarray(s["vertno"]) for s in fwd["src"]]
    hemi = np.concatenate([np.full(len(v), h) for h, v in enumerate(vertno)])
    positions = np.asarray(fwd["source_rr"], float)
    nearest_row = np.empty(len(positions), np.int64)
    grid_distance = np.empty(len(positions))
    for h, hemi_name in enumerate(("lh", "rh")):
        rows = hm.rows(hemi_name)
        mask = hemi == h
        grid = hm.positions[rows]
        dist, idx = cKDTree(grid).query(positions[mask])
        if not _is_template(hm):
            _cover_every_row(rows, positions[mask], grid, idx, dist)
        nearest_row[mask] = rows[idx]
        grid_distance[mask] = dist
    return DenseSources(
        positions=positions, normals=np.asarray(fwd["source_nn"], float),
        # rounded to float32 like the head model's gain (and the cache)
        gain=np.asarray(fwd["sol"]["data"], np.float32).astype(np.float64),
        vertno=vertno, hemi=hemi, nearest_row=nearest_row, grid_distance=grid_distance,
        spacing=spacing, headmodel_fingerprint=hm.fingerprint,
    )  # fmt: skip


@verbose
@fill_doc
def iter_make_dense_sources(hm: HeadModel, *, spacing=None, cache=True, cache_dir=None,
                            verbose=None):  # fmt: skip
    """Compute off-grid dense sources for ``hm``, yielding progress.

    Parameters
    ----------
    %(hm)s
    spacing : str | None
        Template head models: ``"ico4"``, ``"ico5"`` (the full fsaverage5 mesh)
        or ``"oct6"``; ``None`` picks one level finer than ``hm.spacing``
        (ico3 -> ico4, ico4 -> ico5, oct5 -> oct6, oct6 -> ico5). Head models
        from real inputs: ``"full"``, every vertex of the surface the source
        space was decimated from (e.g. the 1026 vertices/hemisphere of the
        sample's ``small-src``: the dense set is that surface, the grid its
        oct-4 subset), or an MNE spacing (``"oct6"``, ``"ico5"``, ...) of the
        head model's FreeSurfer subject when it has its ``surf/`` files;
        ``None`` is ``"full"`` up to :data:`FULL_SURFACE_LIMIT` vertices per
        hemisphere, else one level finer than ``hm.spacing``. Either way the
        head model's own vertices are left out, so every dense source is off
        the grid (``dense.spacing`` says which set was used).
    cache : bool
        Load from / store into the cache (keyed by ``hm.fingerprint`` and spacing).
    %(cache_dir)s
    %(verbose)s

    Yields
    ------
    %(progress_yields)s

    Returns
    -------
    dense : DenseSources
    """
    check_type(hm, HeadModel, "hm")
    if hm.bem is None:
        raise ValueError(
            "hm has no conductor model (hm.bem is None); dense sources need the head "
            "model's BEM or sphere model. Build it with make_template_headmodel or "
            "make_headmodel."
        )
    verbose = "warning" if verbose is None else verbose
    stage = "dense sources"
    spacing, dense_vertno = _dense_vertices(hm, spacing, cache_dir, verbose)
    path = _dense_cache_path(hm, spacing, cache_dir) if cache else None
    dense = yield from _iter_load_cached(
        stage, path, path, lambda: _load_dense(path, spacing, hm), (OSError, ValueError, KeyError),
        "Recomputing the cached dense sources",
    )  # fmt: skip
    if dense is not None:
        return dense
    total = 3
    n_vertices = sum(map(len, dense_vertno))
    yield Progress(stage, 0, total, f"{n_vertices} {spacing} sources")
    src = _dense_src(hm, dense_vertno)
    yield Progress(stage, 1, total, "forward solution")
    fwd = _dense_forward(hm, src, spacing, n_vertices, verbose)
    yield Progress(stage, 2, total, "nearest grid sources")
    dense = _dense_from_forward(hm, fwd, spacing)
    if path is not None:
        with atomic_path(path, suffix=".npz") as tmp:
            np.savez(tmp, **dense._arrays())
    yield Progress(stage, total, total, "done")
    return dense


make_dense_sources = plain(iter_make_dense_sources)
