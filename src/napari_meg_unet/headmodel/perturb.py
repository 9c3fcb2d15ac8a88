"""Perturbed head models: realistic model error between simulation and inversion.

Real recordings are never inverted with the forward model that made them: the
sensors are coregistered to the head with some error, the conductor model is
an approximation and the sources are not exactly on the surface the source
space was built on. :func:`make_perturbed_headmodel` makes a *true* head model
from a nominal one ``hm`` that differs in one of these ways while keeping
``hm``'s channels, source vertices and image rows, so that data simulated on it
(``simulate(hm_true, ...)``) can be inverted and scored with ``hm``:

``"coreg"``
    A rigid transform of the sensors relative to the head (the head-frame
    origin): a rotation of exactly ``rotation_deg`` about a random axis and a
    translation of exactly ``translation_mm`` in a random direction (so those
    are also the RMS values), drawn from ``seed``. MEG: applied to the
    device -> head transform; EEG: to the electrode positions.
``"conductor"``
    A different conductor model with the same sensors and sources: a BEM
    nominal model becomes a single sphere fitted (least squares) to its inner
    skull surface; a sphere model keeps its shells and scales the skull
    conductivity by ``skull_conductivity_factor``.
``"surface"``
    The sources on the pial surface (same vertex numbers, pial positions and
    normals) instead of the surface of ``hm`` (white matter for the template);
    the true source positions of a simulation then lie on the pial surface.

The result records the perturbation and the nominal model in
``provenance["perturbation"]`` and ``provenance["nominal_fingerprint"]``;
:func:`~napari_meg_unet.simulate.simulate` copies them into the simulation's
``meta["headmodel"]``, and :func:`check_simulated_on` (used by the evaluation
and the example-set builder) accepts such a simulation for the nominal model
only because that record says so — never silently.
"""

from __future__ import annotations

import copy

import mne
import numpy as np
from mne.transforms import apply_trans, invert_transform

from .._docs import fill_doc
from .._logging import verbose
from .._validation import check_choice, check_int, check_number, check_type
from . import _docs  # noqa: F401  (registers the package's docdict entries)
from .forward import _describe_conductor, _headmodel_from_forward, compute_forward
from .model import HeadModel, check_modality

#: Kinds of model error of :func:`make_perturbed_headmodel`.
PERTURBATION_KINDS = ("coreg", "conductor", "skull", "surface")
#: ``kind="skull"``: the smallest distance (mm) kept between the reshaped inner skull and
#: every vertex of the source surface.
SKULL_MARGIN_MM = 2.0
#: ``kind="skull"``: degrees of the spherical harmonics of the shape change.
SKULL_DEGREES = (2, 3, 4)
_SKULL_DRAWS = 50
_BUILDER = "make_perturbed_headmodel"


# =========================================================================== coreg
def _random_unit_vector(rng) -> np.ndarray:
    v = rng.standard_normal(3)
    return v / np.linalg.norm(v)


def random_rigid_transform(*, translation_mm, rotation_deg, seed) -> np.ndarray:
    """4 x 4 rigid transform: a rotation by ``rotation_deg`` about a random axis through the
    origin, then a translation of ``translation_mm`` in a random direction (metres)."""
    rng = np.random.default_rng(seed)
    axis = _random_unit_vector(rng)
    direction = _random_unit_vector(rng)
    angle = np.deg2rad(rotation_deg)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rot = np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * (k @ k)  # Rodrigues
    mat = np.eye(4)
    mat[:3, :3] = rot
    mat[:3, 3] = direction * translation_mm / 1e3
    return mat


def _move_sensors(info: mne.Info, mat: np.ndarray) -> mne.Info:
    """Copy of ``info`` with MEG (via dev_head_t) and EEG sensors moved by ``mat`` (head frame)."""
    info = info.copy()
    with info._unlock():
        if info["dev_head_t"] is not None:
            dev_head = np.asarray(info["dev_head_t"]["trans"], float)
            info["dev_head_t"] = mne.transforms.Transform("meg", "head", mat @ dev_head)
        for ch in info["chs"]:
            if ch["kind"] == mne.io.constants.FIFF.FIFFV_EEG_CH:
                loc = ch["loc"]
                for sl in (slice(0, 3), slice(3, 6)):
                    if np.any(loc[sl]):
                        loc[sl] = apply_trans(mat, loc[sl])
        for d in info["dig"] or []:
            if d["coord_frame"] == mne.io.constants.FIFF.FIFFV_COORD_HEAD:
                d["r"] = apply_trans(mat, d["r"])
    return info


# =========================================================================== conductor
def _fit_sphere(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-squares sphere ``|p - c| = r`` through ``points`` (algebraic fit)."""
    a = np.column_stack([2 * points, np.ones(len(points))])
    b = (points**2).sum(axis=1)
    sol = np.linalg.lstsq(a, b, rcond=None)[0]
    centre = sol[:3]
    return centre, float(np.sqrt(sol[3] + centre @ centre))


def _surface_head_coords(hm, surf) -> np.ndarray:
    rr = surf["rr"]
    if surf["coord_frame"] == mne.io.constants.FIFF.FIFFV_COORD_MRI:
        rr = apply_trans(invert_transform(hm.trans), rr)
    return rr


def inner_skull_sphere(hm: HeadModel) -> mne.bem.ConductorModel:
    """A sphere model (head coordinates) centred on the inner skull of ``hm``'s BEM.

    The centre is the least-squares sphere fit of the inner-skull vertices. With
    EEG, MNE's default 4 shells scaled to the sphere fitted to the outermost BEM
    surface (the scalp); MEG only needs the centre (no shells).
    """
    bem = hm.bem
    if bem is None or bem["is_sphere"]:
        raise ValueError("inner_skull_sphere needs a head model with a BEM (hm.bem).")
    brain = mne.io.constants.FIFF.FIFFV_BEM_SURF_ID_BRAIN
    inner = next(s for s in bem["surfs"] if s["id"] == brain)
    centre, _ = _fit_sphere(_surface_head_coords(hm, inner))
    head_radius = None
    if check_modality(hm.modality)[1]:
        if len(bem["surfs"]) < 3:
            raise ValueError("An EEG head model needs a 3-layer BEM for a conductor change.")
        head_radius = _fit_sphere(_surface_head_coords(hm, bem["surfs"][-1]))[1]
    return mne.make_sphere_model(r0=tuple(centre), head_radius=head_radius, verbose=False)


def _describe(bem) -> str:
    """The conductor's description; a shell-less sphere (MEG) by its centre only."""
    if bem["is_sphere"] and not bem["layers"]:
        r0 = np.asarray(bem["r0"]) * 1e3
        return (f"sphere model (MEG, centre ({r0[0]:.1f}, {r0[1]:.1f}, {r0[2]:.1f}) mm, head "
                "coordinates)")  # fmt: skip
    return _describe_conductor(bem)


def _perturbed_sphere(bem, factor):
    """The sphere ``bem`` with the skull (the least conductive inner shell) scaled by ``factor``."""
    sigmas = [layer["sigma"] for layer in bem["layers"]]
    if len(sigmas) < 3:
        raise ValueError(
            f"The nominal sphere model has {len(sigmas)} shell(s); a skull conductivity change "
            "needs a 3- or 4-shell model."
        )
    skull = int(np.argmin(sigmas[:-1]))
    sigmas[skull] *= factor
    head_radius = bem["layers"][-1]["rad"]
    return mne.make_sphere_model(
        r0=tuple(bem["r0"]), head_radius=head_radius,
        relative_radii=tuple(layer["rad"] / head_radius for layer in bem["layers"]),
        sigmas=tuple(sigmas), verbose=False,
    )  # fmt: skip


# =========================================================================== skull
def _real_harmonics(directions: np.ndarray, degrees) -> np.ndarray:
    """Orthonormal real spherical harmonics of ``degrees`` at unit ``directions`` (n, k)."""
    from scipy.special import sph_harm_y

    theta = np.arccos(np.clip(directions[:, 2], -1.0, 1.0))
    phi = np.arctan2(directions[:, 1], directions[:, 0])
    columns = []
    for n in degrees:
        for m in range(-n, n + 1):
            y = sph_harm_y(n, abs(m), theta, phi)
            columns.append(y.real if m == 0 else np.sqrt(2) * (y.imag if m < 0 else y.real))
    return np.column_stack(columns)


def _solid_angles(rr: np.ndarray, tris: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Total solid angle of the closed surface ``(rr, tris)`` seen from each point
    (4 pi inside, 0 outside; Van Oosterom & Strackee 1983)."""
    a, b, c = (rr[tris[:, k]][None] - points[:, None] for k in range(3))
    la, lb, lc = (np.linalg.norm(v, axis=2) for v in (a, b, c))
    triple = np.einsum("ptk,ptk->pt", a, np.cross(b, c))
    dots = lc * np.einsum("ptk,ptk->pt", a, b) + lb * np.einsum("ptk,ptk->pt", a, c)
    denom = la * lb * lc + dots + la * np.einsum("ptk,ptk->pt", b, c)
    return np.abs(2 * np.arctan2(triple, denom).sum(axis=1))


def _all_inside(rr, tris, points, chunk=512) -> bool:
    """Whether every point is inside the closed surface (checked in order, stopping early)."""
    for start in range(0, len(points), chunk):
        if np.any(_solid_angles(rr, tris, points[start:start + chunk]) < 2 * np.pi):
            return False
    return True


def _moved_along_rays(rr, centre, coef) -> np.ndarray:
    """``rr`` with each point moved along its ray from ``centre`` by the field of ``coef``."""
    offset = rr - centre
    directions = offset / np.linalg.norm(offset, axis=1, keepdims=True)
    return rr + directions * (_real_harmonics(directions, SKULL_DEGREES) @ coef)[:, None]


def _reshaped_surface(surf, centre, coef):
    """The BEM surface ``surf`` (MRI frame) moved along its rays by the field of ``coef``."""
    new = {k: surf[k] for k in ("id", "sigma", "tris", "ntri", "np", "coord_frame")}
    new["rr"] = _moved_along_rays(surf["rr"], centre, coef)
    return mne.surface.complete_surface_info(new, verbose=False)


def _source_surface_mri(hm) -> np.ndarray:
    """Every vertex of ``hm``'s source surfaces (used or not), MRI frame."""
    rr = np.concatenate([s["rr"] for s in hm.src])
    if hm.src[0]["coord_frame"] == mne.io.constants.FIFF.FIFFV_COORD_HEAD:
        rr = apply_trans(hm.trans, rr)
    return rr


def _guarded_sources(hm, inner, centre):
    """The source-surface vertices moved :data:`SKULL_MARGIN_MM` out along their rays, and a
    lower bound of their distance to the nominal inner skull (vertex distance minus the
    largest triangle's circumradius)."""
    from scipy.spatial import cKDTree

    sources = _source_surface_mri(hm)
    outward = sources - centre
    guarded = sources + SKULL_MARGIN_MM * 1e-3 * outward / np.linalg.norm(
        outward, axis=1, keepdims=True
    )
    corners = inner["rr"][inner["tris"]]
    edges = np.linalg.norm(corners - np.roll(corners, 1, axis=1), axis=2)
    clearance = cKDTree(inner["rr"]).query(guarded)[0] - edges.max() / np.sqrt(3)
    order = np.argsort(clearance)  # the nearest first: a bad draw is rejected early
    return guarded[order], clearance[order]


def _skull_shape(hm, inner, centre, shape_mm, seed):
    """``(coefficients (m), draws)``: the first shape of ``seed`` that keeps the margin."""
    offset = inner["rr"] - centre
    basis = _real_harmonics(offset / np.linalg.norm(offset, axis=1, keepdims=True), SKULL_DEGREES)
    guarded, clearance = _guarded_sources(hm, inner, centre)
    rng = np.random.default_rng(seed)
    for draw in range(1, _SKULL_DRAWS + 1):
        coef = rng.standard_normal(basis.shape[1])
        coef *= shape_mm * 1e-3 / np.sqrt(np.mean((basis @ coef) ** 2))
        # a point further from the surface than its vertices move cannot end up outside
        near = clearance <= np.abs(basis @ coef).max()
        if _all_inside(_moved_along_rays(inner["rr"], centre, coef), inner["tris"], guarded[near]):
            return coef, draw
    raise ValueError(
        f"No skull shape change of {shape_mm:g} mm RMS in {_SKULL_DRAWS} draws keeps the "
        f"inner skull {SKULL_MARGIN_MM:g} mm outside the source surface; use a smaller "
        "skull_shape_mm."
    )


def _reshaped_bem(hm, shape_mm, seed):
    """``(bem, record)``: ``hm``'s BEM with reshaped surfaces (see the module docstring)."""
    brain = mne.io.constants.FIFF.FIFFV_BEM_SURF_ID_BRAIN
    inner = next(s for s in hm.bem["surfs"] if s["id"] == brain)
    centre, _ = _fit_sphere(inner["rr"])
    coef, draws = _skull_shape(hm, inner, centre, shape_mm, seed)
    surfs = [_reshaped_surface(s, centre, coef) for s in hm.bem["surfs"]]
    new_inner = next(s for s in surfs if s["id"] == brain)
    moved = np.linalg.norm(new_inner["rr"] - inner["rr"], axis=1)
    record = dict(skull_shape_mm=shape_mm, seed=seed, draws=draws, degrees=list(SKULL_DEGREES),
                  max_displacement_mm=float(1e3 * moved.max()),
                  harmonic_coefficients_mm=(coef * 1e3).tolist())  # fmt: skip
    return mne.make_bem_solution(surfs, verbose=False), record


# =========================================================================== surface
def _pial_src(hm: HeadModel) -> mne.SourceSpaces:
    """``hm``'s source space (same used vertices) on its pial surface, with pial normals."""
    if "pial" not in hm.surfaces:
        raise ValueError("kind='surface' needs the head model's pial surface "
                         "(hm.surfaces['pial']).")  # fmt: skip
    src = hm.src.copy()
    for s, hemi in zip(src, ("lh", "rh"), strict=True):
        rr, tris = hm.surfaces["pial"][hemi]
        if len(rr) != s["np"]:
            raise ValueError(
                f"The {hemi} pial surface has {len(rr)} vertices but the source space "
                f"{s['np']}; they must be the same mesh."
            )
        info = mne.surface.complete_surface_info(
            dict(rr=np.asarray(rr, float), tris=np.asarray(tris), ntri=len(tris), np=len(rr)),
            verbose=False,
        )  # fmt: skip
        s["rr"], s["nn"] = info["rr"], info["nn"]
        s["coord_frame"] = mne.io.constants.FIFF.FIFFV_COORD_HEAD
    return src


# =========================================================================== builder
def _perturbed_parts(hm, kind, *, translation_mm, rotation_deg, seed, skull_factor, shape_mm):
    """``(info, src, bem, record)`` of the true model of ``kind``."""
    info, src, bem = hm.info, hm.src, hm.bem
    record: dict = {"kind": kind}
    if kind == "coreg":
        mat = random_rigid_transform(
            translation_mm=translation_mm, rotation_deg=rotation_deg, seed=seed
        )
        info = _move_sensors(hm.info, mat)
        record.update(translation_mm=translation_mm, rotation_deg=rotation_deg, seed=seed,
                      sensor_transform=mat.tolist(), origin="head-frame origin")  # fmt: skip
    elif kind == "conductor":
        if bem["is_sphere"]:
            bem = _perturbed_sphere(bem, skull_factor)
            record.update(skull_conductivity_factor=skull_factor)
        else:
            bem = inner_skull_sphere(hm)
            record.update(note="the sphere dipole fit's own model: no model error for that peer")
        record.update(true_conductor=_describe(bem), nominal_conductor=hm.conductor)
    elif kind == "skull":
        if bem["is_sphere"]:
            raise ValueError("kind='skull' reshapes a BEM; hm's conductor is a sphere model.")
        bem, shape = _reshaped_bem(hm, shape_mm, seed)
        record.update(shape, true_conductor=f"{hm.conductor}, surfaces reshaped",
                      nominal_conductor=hm.conductor)  # fmt: skip
    else:
        src = _pial_src(hm)
        record.update(true_surface="pial", nominal_surface="the head model's source surface")
    return info, src, bem, record


@verbose
@fill_doc
def make_perturbed_headmodel(
    hm, *, kind, translation_mm=5.0, rotation_deg=3.0, skull_conductivity_factor=3.0,
    skull_shape_mm=3.0, seed=0, verbose=None,
):  # fmt: skip
    """A *true* head model differing from ``hm`` by a realistic model error.

    See :mod:`napari_meg_unet.headmodel.perturb` for the kinds. The result has
    ``hm``'s channels (same order), source vertices (so the same image rows)
    and noise covariance; only its forward solutions (and, for
    ``kind="surface"``, its source positions and normals) differ. Simulate
    with it and invert with ``hm``.

    Parameters
    ----------
    %(hm)s
    kind : "coreg" | "conductor" | "skull" | "surface"
        The model error.
    translation_mm, rotation_deg : float
        ``kind="coreg"``: size of the sensor displacement (exact; random directions).
    skull_conductivity_factor : float
        ``kind="conductor"`` on a sphere-model head (EEG): factor on the skull
        conductivity of the true model.
    skull_shape_mm : float
        ``kind="skull"``: root-mean-square displacement of the inner-skull
        vertices (mm).
    %(seed)s
    %(verbose)s

    Returns
    -------
    hm_true : HeadModel
        With ``provenance["perturbation"]`` (the kind and its parameters, e.g.
        the 4 x 4 sensor transform) and ``provenance["nominal_fingerprint"]``.
    """
    check_type(hm, HeadModel, "hm")
    check_choice(kind, "kind", PERTURBATION_KINDS)
    translation_mm = check_number(translation_mm, "translation_mm", minimum=0, strict=False)
    rotation_deg = check_number(rotation_deg, "rotation_deg", minimum=0, maximum=180,
                                strict=False)  # fmt: skip
    skull_factor = check_number(skull_conductivity_factor, "skull_conductivity_factor", minimum=0)
    shape_mm = check_number(skull_shape_mm, "skull_shape_mm", minimum=0)
    seed = check_int(seed, "seed", minimum=0)
    if hm.provenance.get("perturbation") is not None:
        raise ValueError("hm is already a perturbed head model; perturb its nominal model.")
    if hm.bem is None:
        raise ValueError("hm has no conductor model (hm.bem is None); build it with "
                         "make_template_headmodel or make_headmodel.")  # fmt: skip
    info, src, bem, record = _perturbed_parts(
        hm, kind, translation_mm=translation_mm, rotation_deg=rotation_deg, seed=seed,
        skull_factor=skull_factor, shape_mm=shape_mm,
    )  # fmt: skip
    meg, eeg = check_modality(hm.modality)
    fwd = compute_forward(info, src, bem, hm.trans, meg=meg, eeg=eeg,
                          verbose="warning" if verbose is None else verbose)  # fmt: skip
    _check_same_sources(fwd, hm)
    provenance = {
        "builder": _BUILDER,
        "perturbation": record,
        "nominal_fingerprint": hm.fingerprint,
        "nominal": copy.deepcopy(hm.provenance),
    }
    return _headmodel_from_forward(
        fwd, info=info, noise_cov=hm.noise_cov, surfaces=hm.surfaces, trans=hm.trans,
        subject=hm.subject, spacing=hm.spacing, modality=hm.modality,
        conductor=_describe(bem), provenance=provenance, bem=bem,
    )  # fmt: skip


def _check_same_sources(fwd, hm) -> None:
    vertno = [np.asarray(s["vertno"]) for s in fwd["src"]]
    same = all(np.array_equal(a, b) for a, b in zip(vertno, hm.vertno, strict=True))
    if not same or fwd["sol"]["row_names"] != hm.ch_names:
        raise ValueError(
            "The perturbed forward solution lost sources or channels of hm (a source outside "
            "the true conductor model?); use a smaller perturbation."
        )


# =========================================================================== checks
def perturbation_record(hm: HeadModel) -> dict | None:
    """``hm``'s perturbation and nominal fingerprint (None for a nominal head model)."""
    record = hm.provenance.get("perturbation")
    if record is None:
        return None
    return {"perturbation": record, "nominal_fingerprint": hm.provenance["nominal_fingerprint"]}


@fill_doc
def check_simulated_on(made_with: dict, hm: HeadModel, *, what="The simulation") -> dict | None:
    """Check that data were simulated on ``hm`` or on a *recorded* perturbation of ``hm``.

    Parameters
    ----------
    made_with : dict
        The simulation's ``meta["headmodel"]`` (``fingerprint`` and, for a
        perturbed model, ``nominal_fingerprint`` and ``perturbation``).
    %(hm)s
    what : str
        How the error names the data.

    Returns
    -------
    perturbation : dict | None
        The recorded perturbation when the data come from a perturbed model of
        ``hm`` (model error), None when they come from ``hm`` itself.

    Raises
    ------
    ValueError
        Any other head model.
    """
    fingerprint = made_with.get("fingerprint")
    if fingerprint == hm.fingerprint:
        return None
    nominal = made_with.get("nominal_fingerprint")
    if nominal is not None and nominal == hm.fingerprint and made_with.get("perturbation"):
        return made_with["perturbation"]
    raise ValueError(
        f"{what} was made with head model {fingerprint} but hm is {hm.fingerprint}"
        + (f" (it is a perturbation of {nominal})" if nominal else "")
        + "; for off-grid simulations pass the coarse head model they were simulated for, "
        "and for model error the nominal model the perturbed one was made from."
    )

