"""BIDS helpers on top of mne-bids: find MEG recordings, read them, find anatomy.

Everything here is Qt-free; the napari reader (``_reader.py``) and the dock
widgets build on it.

What counts as "a BIDS MEG path"
--------------------------------
:func:`find_recordings` accepts

- a BIDS root (a folder with ``dataset_description.json``),
- a subject, session or ``meg`` folder inside one,
- one MEG recording inside a BIDS tree, in any format
  :func:`mne_bids.read_raw_bids` reads (FIF, CTF ``.ds``, BTi, KIT ``.con``/``.sqd``),

and returns the MEG recordings found there, empty-room recordings
(``sub-emptyroom``) excluded unless the path points into ``sub-emptyroom``.
Anything else gives an empty list; it never raises for a path that merely is
not BIDS.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import mne
import numpy as np

#: Extensions of MEG recordings that :func:`mne_bids.read_raw_bids` reads.
#: BTi/4D recordings are folders without an extension (``None``).
MEG_EXTENSIONS = (".fif", ".ds", ".con", ".sqd", ".pdf")

#: Subject label of empty-room recordings in BIDS.
EMPTYROOM_SUBJECT = "emptyroom"

#: Surface kinds the cortex helpers know, with their nilearn fsaverage names.
SURFACE_KINDS = {"pial": "pial", "inflated": "infl", "white": "white"}

_DESCRIPTION = "dataset_description.json"
# Parents searched upwards for dataset_description.json (root/sub/ses/meg/file.ds/x).
_MAX_ROOT_DEPTH = 6


def find_bids_root(path) -> Path | None:
    """Return the BIDS root containing ``path`` (or ``path`` itself), else None.

    The root is the nearest folder, starting at ``path``, holding a
    ``dataset_description.json``; folders inside ``derivatives/`` are skipped
    so that a derivative dataset is never mistaken for the raw dataset.
    """
    path = Path(path).expanduser()
    try:
        path = path.resolve()
    except OSError:
        return None
    candidates = [path, *path.parents][: _MAX_ROOT_DEPTH + 1]
    for folder in candidates:
        if "derivatives" in folder.parts:
            continue
        if (folder / _DESCRIPTION).is_file():
            return folder
    return None


def _entities_of(path: Path, root: Path) -> dict | None:
    """BIDS entities selected by ``path`` relative to ``root`` (None: not a MEG path)."""
    rel = path.relative_to(root).parts
    entities: dict = {}
    for part in rel:
        if part.startswith("sub-") and "subject" not in entities and "_" not in part:
            entities["subject"] = part[4:]
        elif part.startswith("ses-") and "session" not in entities and "_" not in part:
            entities["session"] = part[4:]
        elif part == "meg":
            entities["datatype"] = "meg"
        elif "_" in part:  # a file (or a .ds / BTi folder) inside the tree
            from mne_bids import get_bids_path_from_fname

            try:
                bp = get_bids_path_from_fname(path.parent / part, check=False, verbose=False)
            except Exception:
                return None
            if bp.suffix != "meg":
                return None
            entities["basename"] = bp
            break
        elif part in ("derivatives", "sourcedata", "code", "stimuli"):
            return None
        else:
            return None
    return entities


def _is_recording(bids_path) -> bool:
    """Whether a BIDSPath from the file system is a readable MEG recording."""
    if bids_path.suffix != "meg" or bids_path.datatype not in ("meg", None):
        return False
    ext = bids_path.extension
    if ext in MEG_EXTENSIONS:
        return True
    # BTi/4D: a folder named ..._meg holding the c,rfDC data file
    fpath = Path(bids_path.fpath) if ext is None else None
    return fpath is not None and fpath.is_dir()


def find_recordings(path, *, include_emptyroom: bool = False) -> list:
    """List the MEG recordings that ``path`` selects inside a BIDS dataset.

    Parameters
    ----------
    path : path-like
        A BIDS root, a subject/session/``meg`` folder inside one, or one MEG
        recording (file or ``.ds``/BTi folder) inside a BIDS tree.
    include_emptyroom : bool
        Also list ``sub-emptyroom`` recordings when ``path`` is above them.
        When ``path`` points into ``sub-emptyroom`` they are always listed.

    Returns
    -------
    recordings : list of mne_bids.BIDSPath
        One BIDSPath per recording (split FIF files count once, without the
        ``split`` entity), with ``root`` set, sorted by their path. Empty when
        ``path`` is not inside a BIDS dataset or selects no MEG recording.
    """
    from mne_bids import BIDSPath, find_matching_paths

    path = Path(path).expanduser()
    if not path.exists():
        return []
    root = find_bids_root(path)
    if root is None:
        return []
    entities = _entities_of(path.resolve(), root)
    if entities is None:
        return []
    if "basename" in entities:
        bp = entities["basename"].copy().update(root=root, split=None, check=False)
        if bp.datatype is None:
            bp.update(datatype="meg")
        return [bp] if _is_recording(bp) else []

    subject = entities.get("subject")
    found = find_matching_paths(
        root,
        subjects=subject,
        sessions=entities.get("session"),
        datatypes="meg",
        suffixes="meg",
        ignore_json=True,
        ignore_nosub=True,
    )
    recordings = {}
    for bp in found:
        if not _is_recording(bp):
            continue
        if bp.subject == EMPTYROOM_SUBJECT and not (
            include_emptyroom or subject == EMPTYROOM_SUBJECT
        ):
            continue
        bp = BIDSPath(
            **{**bp.entities, "split": None},
            root=root,
            datatype="meg",
            suffix="meg",
            extension=bp.extension,
            check=False,
        )
        recordings[str(bp.fpath)] = bp
    return [recordings[key] for key in sorted(recordings)]


def recording_label(bids_path) -> str:
    """A short label of a recording: its basename without suffix and extension."""
    return bids_path.copy().update(suffix=None, extension=None, check=False).basename


def find_emptyroom(bids_path):
    """Return the empty-room recording associated with ``bids_path``, or None.

    Uses the ``AssociatedEmptyRoom`` sidecar entry when present, else the
    ``sub-emptyroom`` recording closest in measurement date
    (:meth:`mne_bids.BIDSPath.find_empty_room`). Never raises: a dataset
    without empty-room data, or with an unreadable sidecar, gives None.
    """
    if bids_path.subject == EMPTYROOM_SUBJECT:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found = bids_path.find_empty_room(verbose=False)
    except Exception:
        return None
    if found is None:
        return None
    return found.update(root=bids_path.root, check=False)


@dataclass(eq=False)
class Recording:
    """One MEG recording read from a BIDS dataset.

    Attributes
    ----------
    bids_path : mne_bids.BIDSPath
        The recording.
    raw : mne.io.BaseRaw
        The data, preloaded, with annotations from ``events.tsv`` and bad
        channels from ``channels.tsv``.
    events : ndarray, shape (n_events, 3)
        Events from the annotations (``BAD``/``EDGE`` annotations excluded);
        the sample column includes ``raw.first_samp`` as in MNE.
    event_id : dict
        Event description -> integer code.
    emptyroom : mne_bids.BIDSPath | None
        The associated empty-room recording, for the noise covariance.
    messages : list of str
        Warnings raised while reading (missing sidecars, ...).
    """

    bids_path: object
    raw: mne.io.BaseRaw
    events: np.ndarray
    event_id: dict
    emptyroom: object = None
    messages: list = field(default_factory=list)

    @property
    def info(self) -> mne.Info:
        return self.raw.info

    @property
    def label(self) -> str:
        return recording_label(self.bids_path)

    @property
    def subject(self) -> str | None:
        return self.bids_path.subject

    @property
    def event_times(self) -> np.ndarray:
        """Event onsets in seconds from the first sample of ``raw``."""
        return (self.events[:, 0] - self.raw.first_samp) / self.raw.info["sfreq"]

    @property
    def event_names(self) -> list[str]:
        """Description of each event (from ``event_id``)."""
        names = {code: name for name, code in self.event_id.items()}
        return [names.get(int(code), str(int(code))) for code in self.events[:, 2]]


def read_recording(bids_path, *, verbose=None) -> Recording:
    """Read one BIDS MEG recording with :func:`mne_bids.read_raw_bids`.

    Parameters
    ----------
    bids_path : mne_bids.BIDSPath
        The recording, with ``root`` set (as returned by :func:`find_recordings`).
    verbose : bool | str | int | None
        MNE logging level.

    Returns
    -------
    recording : Recording
        The preloaded raw data, its events and the empty-room recording.

    Raises
    ------
    ValueError, OSError, RuntimeError
        What mne-bids/MNE raise for a file they cannot read (e.g. a truncated
        FIF); the message names the file.
    """
    from mne_bids import read_raw_bids

    if getattr(bids_path, "root", None) is None:
        raise ValueError(f"bids_path must be a BIDSPath with root set, got {bids_path!r}.")
    fpath = Path(bids_path.fpath)
    messages: list[str] = []
    # mne-bids 0.20 fails on return_event_dict=True when there is no events.tsv
    events_tsv = bids_path.copy().update(suffix="events", extension=".tsv", check=False)
    has_events_tsv = Path(events_tsv.fpath).is_file()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            out = read_raw_bids(
                bids_path,
                return_event_dict=has_events_tsv,
                on_ch_mismatch="warn",
                verbose=verbose if verbose is not None else "error",
            )
            raw, event_id = out if has_events_tsv else (out, None)
            raw.load_data(verbose=False)
        except Exception as err:
            message = f"Could not read the MEG recording {str(fpath)!r}: {err}"
            try:
                new_err = type(err)(message)
            except Exception:
                new_err = RuntimeError(message)
            raise new_err from err
        if len(raw.annotations):
            events, event_id = mne.events_from_annotations(
                raw, event_id=event_id or "auto", verbose=False
            )
        else:
            events, event_id = np.zeros((0, 3), int), {}
    for w in caught:
        text = str(w.message).strip().splitlines()[0]
        if text not in messages:
            messages.append(text)
    return Recording(
        bids_path=bids_path,
        raw=raw,
        events=np.asarray(events, int).reshape(-1, 3),
        event_id=dict(event_id),
        emptyroom=find_emptyroom(bids_path),
        messages=messages,
    )


def simulation_to_raw(sim, *, description="simulated", meas_date=None) -> mne.io.RawArray:
    """Concatenate a simulation's events into continuous data with one annotation per event.

    Useful to write simulated data as a BIDS recording
    (:func:`mne_bids.write_raw_bids` with ``allow_preload=True, format="FIF"``).

    Parameters
    ----------
    sim : Simulation
        The simulation (events are laid end to end, event ``i`` starting at
        ``i * n_times / sfreq`` seconds).
    description : str
        Annotation description of every event.
    meas_date : datetime | None
        Measurement date (UTC); BIDS needs one to match empty-room recordings.

    Returns
    -------
    raw : mne.io.RawArray
        Channels as in ``sim.info``.
    """
    data = np.asarray(sim.data, dtype=np.float64)
    n_events, n_channels, n_times = data.shape
    if n_events == 0:
        raise ValueError("sim has no events to write.")
    continuous = data.transpose(1, 0, 2).reshape(n_channels, n_events * n_times)
    raw = mne.io.RawArray(continuous, sim.info.copy(), verbose=False)
    if meas_date is not None:
        raw.set_meas_date(meas_date)
    onsets = np.arange(n_events) * n_times / sim.sfreq
    raw.set_annotations(
        mne.Annotations(
            onsets, np.zeros(n_events), [description] * n_events,
            orig_time=raw.info["meas_date"],
        )  # fmt: skip
    )
    return raw


# ----------------------------------------------------------------- anatomy
def freesurfer_subject_dir(bids_root, subject) -> Path | None:
    """The subject's FreeSurfer folder under ``derivatives/freesurfer``, or None.

    Both ``derivatives/freesurfer/sub-<label>`` and the MNE-BIDS-pipeline
    layout ``derivatives/freesurfer/subjects/sub-<label>`` are recognised; the
    folder must hold ``surf/lh.<kind>`` and ``surf/rh.<kind>`` for at least
    one kind.
    """
    if bids_root is None or subject is None:
        return None
    base = Path(bids_root) / "derivatives" / "freesurfer"
    for folder in (base / f"sub-{subject}", base / "subjects" / f"sub-{subject}"):
        surf = folder / "surf"
        if any((surf / f"lh.{k}").is_file() and (surf / f"rh.{k}").is_file()
               for k in SURFACE_KINDS):
            return folder
    return None


def _check_kind(kind: str) -> str:
    if kind not in SURFACE_KINDS:
        raise ValueError(f"kind must be one of {tuple(SURFACE_KINDS)}, got {kind!r}.")
    return kind


def read_freesurfer_surfaces(subject_dir, *, kind: str = "pial") -> dict:
    """Read ``surf/{lh,rh}.<kind>`` (and ``.sulc`` when present) of a FreeSurfer subject.

    Returns
    -------
    surfaces : dict
        ``{hemi: (rr, tris, sulc)}`` with ``rr`` in metres (FreeSurfer surface
        RAS), ``tris`` int triangles and ``sulc`` per-vertex sulcal depth (zeros
        when ``?h.sulc`` is absent).
    """
    import nibabel as nib

    _check_kind(kind)
    surf = Path(subject_dir) / "surf"
    out = {}
    for hemi in ("lh", "rh"):
        fname = surf / f"{hemi}.{kind}"
        if not fname.is_file():
            raise FileNotFoundError(f"Expected the FreeSurfer surface {str(fname)!r}.")
        rr, tris = mne.read_surface(fname, verbose=False)
        sulc_fname = surf / f"{hemi}.sulc"
        sulc = (
            np.asarray(nib.freesurfer.read_morph_data(sulc_fname), float)
            if sulc_fname.is_file()
            else np.zeros(len(rr))
        )
        out[hemi] = (np.asarray(rr, float) / 1000.0, np.asarray(tris, int), sulc)
    return out


def template_surfaces(*, kind: str = "pial") -> dict:
    """The fsaverage5 ``kind`` surfaces shipped with nilearn (no download).

    Returns the same ``{hemi: (rr, tris, sulc)}`` structure as
    :func:`read_freesurfer_surfaces` (metres, fsaverage surface RAS).
    """
    from nilearn import datasets, surface

    _check_kind(kind)
    fsavg = datasets.fetch_surf_fsaverage("fsaverage5")
    out = {}
    for hemi, side in (("lh", "left"), ("rh", "right")):
        mesh = surface.load_surf_mesh(fsavg[f"{SURFACE_KINDS[kind]}_{side}"])
        sulc = np.asarray(surface.load_surf_data(fsavg[f"sulc_{side}"]), float)
        out[hemi] = (
            np.asarray(mesh.coordinates, float) / 1000.0,
            np.asarray(mesh.faces, int),
            sulc,
        )
    return out


def cortex_surfaces(bids_root=None, subject=None, *, kind: str = "pial") -> tuple[dict, str]:
    """The subject's FreeSurfer surfaces when present, else the fsaverage5 template.

    Parameters
    ----------
    bids_root : path-like | None
        The BIDS root whose ``derivatives/freesurfer`` is searched.
    subject : str | None
        BIDS subject label (without ``sub-``).
    kind : str
        ``"pial"``, ``"inflated"`` or ``"white"``.

    Returns
    -------
    surfaces : dict
        ``{hemi: (rr, tris, sulc)}``, see :func:`read_freesurfer_surfaces`.
    source : str
        ``"freesurfer:sub-<label>"`` or ``"template:fsaverage5"``.
    """
    _check_kind(kind)
    folder = freesurfer_subject_dir(bids_root, subject)
    if folder is not None:
        surf = folder / "surf"
        if (surf / f"lh.{kind}").is_file() and (surf / f"rh.{kind}").is_file():
            return read_freesurfer_surfaces(folder, kind=kind), f"freesurfer:sub-{subject}"
    return template_surfaces(kind=kind), "template:fsaverage5"


@dataclass
class SubjectAnatomy:
    """A BIDS subject's anatomy for a head model (see :func:`subject_anatomy`)."""

    subjects_dir: Path
    subject: str
    trans: object
    bem: object


def subject_anatomy(bids_path, *, verbose=None) -> tuple[SubjectAnatomy | None, str]:
    """The subject's FreeSurfer anatomy and head <-> MRI transform, when complete.

    Needs ``derivatives/freesurfer/[subjects/]sub-<label>`` with
    ``surf/?h.white`` and ``surf/?h.sphere`` (for the source space) and a T1w
    image whose sidecar has anatomical landmarks
    (:func:`mne_bids.get_head_mri_trans`). The conductor is the first
    ``bem/*-bem-sol.fif`` of the subject, else a sphere fitted to the
    head-shape points.

    Returns
    -------
    anatomy : SubjectAnatomy | None
        None when something is missing.
    reason : str
        What was used, or why the anatomy is incomplete.
    """
    from mne_bids import get_head_mri_trans

    folder = freesurfer_subject_dir(bids_path.root, bids_path.subject)
    if folder is None:
        return None, f"no derivatives/freesurfer folder for sub-{bids_path.subject}"
    surf = folder / "surf"
    missing = [
        f"surf/{h}.{k}" for h in ("lh", "rh") for k in ("white", "sphere")
        if not (surf / f"{h}.{k}").is_file()
    ]  # fmt: skip
    if missing:
        return None, f"{folder} lacks {', '.join(missing)}"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trans = get_head_mri_trans(
                bids_path, fs_subject=folder.name, fs_subjects_dir=folder.parent,
                verbose=verbose if verbose is not None else "error",
            )  # fmt: skip
    except Exception as err:
        return None, f"no head <-> MRI transform for sub-{bids_path.subject} ({err})"
    solutions = sorted((folder / "bem").glob("*-bem-sol.fif"))
    bem = solutions[0] if solutions else "sphere"
    anatomy = SubjectAnatomy(subjects_dir=folder.parent, subject=folder.name, trans=trans, bem=bem)
    return anatomy, f"FreeSurfer {folder.name} ({'BEM ' + bem.name if solutions else 'sphere'})"
