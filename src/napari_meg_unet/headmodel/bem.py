"""The conductor model of a FreeSurfer subject: its BEM solution, found or built and cached.

A subject processed with FreeSurfer and ``mne watershed_bem`` (or
``mne flash_bem``) has its BEM *surfaces* in ``bem/`` (``inner_skull.surf``,
``outer_skull.surf``, ``outer_skin.surf``), but not always a BEM *solution*
(``bem/<subject>-...-bem-sol.fif``). :func:`subject_conductor` uses the
solution when the subject has one with the right number of layers, else
builds one from the surfaces with :func:`mne.make_bem_model` and
:func:`mne.make_bem_solution` and caches it (keyed by the surfaces' content,
the decimation, the conductivities and the MNE version), like the template's.
"""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path

import mne

from .._io import atomic_path
from .._logging import verbose
from .._validation import check_choice, check_int
from .io import _cache_key, cache_root
from .readers import _read_or_raise

logger = logging.getLogger(__name__)

#: Conductivities (S/m) of MNE's defaults: brain (1 layer); brain, skull, scalp (3 layers).
BEM_CONDUCTIVITY = {1: (0.3,), 3: (0.3, 0.006, 0.3)}
#: Default ico decimation of the BEM surfaces per number of layers: ico4 (5120 triangles)
#: for the 1-layer MEG model (~10 s on 2 cores), ico3 (1280 triangles per surface) for the
#: 3-layer one (an ico4 3-layer solution takes minutes and about 2 GB).
BEM_DEFAULT_ICO = {1: 4, 3: 3}
#: The BEM surface files of a subject, innermost first.
BEM_SURFACES = ("inner_skull", "outer_skull", "outer_skin")
#: Accepted ``bem`` strings besides paths: find or build ("auto"), or build with N layers.
BEM_CHOICES = ("auto", "1-layer", "3-layer")

_SOL = re.compile(r"-(\d+(?:-\d+)*)-bem-sol\.fif$")


def _subject_dir(subjects_dir, subject) -> Path:
    if subjects_dir is None or subject is None:
        raise ValueError(
            "A BEM from the subject's anatomy needs subjects_dir and subject (or pass bem: a "
            "BEM solution file, a ConductorModel or 'sphere')."
        )
    path = Path(subjects_dir).expanduser() / subject
    if not path.is_dir():
        raise FileNotFoundError(
            f"The FreeSurfer subject {subject!r} does not exist in subjects_dir "
            f"{str(subjects_dir)!r} (expected the directory {str(path)!r})."
        )
    return path


def find_bem_solution(subjects_dir, subject, *, layers: int) -> Path | None:
    """The subject's own ``bem/<subject>-N[-N-N]-bem-sol.fif`` with ``layers`` layers, if any.

    Among several, the one with the most triangles is returned.
    """
    check_choice(layers, "layers", (1, 3))
    bem_dir = _subject_dir(subjects_dir, subject) / "bem"
    found = []
    for path in sorted(bem_dir.glob(f"{subject}-*-bem-sol.fif")):
        match = _SOL.search(path.name)
        if match is None:
            continue
        ntri = [int(n) for n in match.group(1).split("-")]
        if len(ntri) == layers:
            found.append((sum(ntri), path))
    return max(found)[1] if found else None


def _surface_files(subject_dir: Path, layers: int) -> list[Path]:
    names = BEM_SURFACES[:layers]
    files = [subject_dir / "bem" / f"{name}.surf" for name in names]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(
            f"A {layers}-layer BEM of subject {subject_dir.name!r} needs the surfaces "
            f"{', '.join(n + '.surf' for n in names)} in {str(subject_dir / 'bem')!r}; missing: "
            f"{', '.join(missing)}. Make them with 'mne watershed_bem' (FreeSurfer), or pass a "
            "BEM solution file or bem='sphere'."
        )
    return files


def bem_cache_path(subjects_dir, subject, *, layers, ico, conductivity, cache_dir=None) -> Path:
    """Where :func:`subject_conductor` caches a BEM solution built from the surfaces."""
    files = _surface_files(_subject_dir(subjects_dir, subject), layers)
    digests = [hashlib.sha256(f.read_bytes()).hexdigest() for f in files]
    key = _cache_key(dict(kind="bem", surfaces=digests, ico=ico,
                          conductivity=list(conductivity), mne=mne.__version__))  # fmt: skip
    return cache_root(cache_dir) / "bem" / f"{subject}-{layers}layer-ico{ico}-{key}-bem-sol.fif"


@verbose
def make_subject_bem(
    subjects_dir, subject, *, layers=1, ico=None, conductivity=None, cache=True, cache_dir=None,
    verbose=None,
):  # fmt: skip
    """Build (or load from the cache) a BEM solution from a subject's BEM surfaces.

    Parameters
    ----------
    subjects_dir : path-like
        FreeSurfer subjects directory.
    subject : str
        Subject name; ``<subjects_dir>/<subject>/bem/inner_skull.surf`` (and for
        3 layers ``outer_skull.surf`` and ``outer_skin.surf``) must exist.
    layers : 1 | 3
        1: inner skull only (MEG); 3: inner skull, outer skull, scalp (MEG and EEG).
    ico : int | None
        Decimation of the surfaces (:func:`mne.make_bem_model`); None:
        :data:`BEM_DEFAULT_ICO` (4 for 1 layer, 3 for 3 layers).
    conductivity : tuple of float | None
        Conductivities (S/m), innermost first; None: :data:`BEM_CONDUCTIVITY`.
    cache : bool
        Load from / store into the cache.
    cache_dir : path-like | None
        Cache root (see :func:`~napari_meg_unet.headmodel.cache_root`).
    verbose : bool | str | int | None
        Verbosity (MNE's levels).

    Returns
    -------
    bem : mne.bem.ConductorModel
        The BEM solution.
    """
    check_choice(layers, "layers", (1, 3))
    ico = BEM_DEFAULT_ICO[layers] if ico is None else check_int(ico, "ico", minimum=2, maximum=5)
    conductivity = BEM_CONDUCTIVITY[layers] if conductivity is None else tuple(conductivity)
    if len(conductivity) != layers:
        raise ValueError(
            f"conductivity must have {layers} value(s) for a {layers}-layer BEM, got "
            f"{conductivity}."
        )
    path = bem_cache_path(subjects_dir, subject, layers=layers, ico=ico,
                          conductivity=conductivity, cache_dir=cache_dir)  # fmt: skip
    if cache and path.is_file():
        try:
            return mne.read_bem_solution(path, verbose=False)
        except Exception as err:  # a corrupt cache file: rebuild it
            logger.warning(f"Rebuilding the cached BEM solution {str(path)!r}: {err}")
    logger.info(f"Building a {layers}-layer ico{ico} BEM of subject {subject!r} from its surfaces")
    try:
        surfs = mne.make_bem_model(subject, ico=ico, conductivity=conductivity,
                                   subjects_dir=subjects_dir, verbose=verbose)  # fmt: skip
        bem = mne.make_bem_solution(surfs, verbose=verbose)
    except (RuntimeError, ValueError) as err:  # e.g. intersecting or misordered surfaces
        raise ValueError(
            f"Could not build a {layers}-layer BEM of subject {subject!r} from its surfaces "
            f"in {str(Path(subjects_dir) / subject / 'bem')!r}: {err}"
        ) from err
    if cache:  # returned as read back (float32 on disk), so a rebuild and a load are equal
        with atomic_path(path, suffix="-bem-sol.fif") as tmp:
            mne.write_bem_solution(tmp, bem, overwrite=True, verbose=False)
        bem = mne.read_bem_solution(path, verbose=False)
    return bem


def subject_conductor(bem, *, subjects_dir, subject, eeg, ico=None, cache_dir=None,
                      verbose=None):  # fmt: skip
    """The conductor model for ``bem`` in :data:`BEM_CHOICES` and where it came from.

    ``"auto"``: the subject's own BEM solution with 1 layer (MEG) or 3 layers
    (with EEG) when it has one, else one built from its surfaces;
    ``"1-layer"``/``"3-layer"``: always built from the surfaces (cached).
    Returns ``(bem, description)``.
    """
    check_choice(bem, "bem", BEM_CHOICES)
    layers = 3 if eeg or bem == "3-layer" else 1
    if bem == "1-layer" and eeg:
        raise ValueError("bem='1-layer' can only model MEG; EEG needs '3-layer' (or 'auto').")
    if bem == "auto":
        found = find_bem_solution(subjects_dir, subject, layers=layers)
        if found is not None:
            model = _read_or_raise(found, "BEM", lambda p: mne.read_bem_solution(p, verbose=False))
            return model, f"subject's BEM solution {found}"
    model = make_subject_bem(subjects_dir, subject, layers=layers, ico=ico, cache_dir=cache_dir,
                             verbose=verbose)  # fmt: skip
    ntri = model["surfs"][0]["ntri"]
    return model, (
        f"built from the subject's BEM surfaces (mne.make_bem_model, {layers} layer(s), "
        f"{ntri} triangles per surface)"
    )
