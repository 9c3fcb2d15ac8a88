"""The :class:`HeadModel` container and the checks of its selections."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import mne
import numpy as np
from scipy import sparse

from .._io import atomic_dir
from .._validation import check_choice
from ..configs import HEMIS

#: Sensor modalities of a head model.
MODALITIES = ("meg", "eeg", "meg+eeg")
#: Display surfaces stored in ``HeadModel.surfaces``.
SURFACE_KINDS = ("white", "pial", "inflated")


def check_hemi(hemi: str) -> str:
    """Validate a hemisphere selection."""
    return check_choice(hemi, "hemi", HEMIS)


def check_modality(modality: str) -> tuple[bool, bool]:
    """Validate ``modality`` and return ``(meg, eeg)`` flags."""
    check_choice(modality, "modality", MODALITIES)
    return "meg" in modality, "eeg" in modality


@dataclass(eq=False)
class HeadModel:
    """Everything needed to simulate and invert M/EEG data for one head.

    Attributes
    ----------
    info : mne.Info
        Measurement info restricted to the channels of the forward solution,
        with projectors (an average-reference projector when EEG is present).
    src : mne.SourceSpaces
        Two-hemisphere surface source space (lh, rh); ``vertno`` and
        ``use_tris`` describe the used vertices and their triangulation.
    fwd : mne.Forward
        Free-orientation, surface-oriented forward solution (``surf_ori=True``).
    fwd_fixed : mne.Forward
        Fixed (surface-normal) forward solution with the same sources.
    noise_cov : mne.Covariance
        Noise covariance matching ``info`` channels.
    surfaces : dict
        Display surfaces ``{kind: {hemi: (rr, tris)}}`` with ``kind`` among
        ``"white"``, ``"pial"``, ``"inflated"``; ``rr`` in metres in the same
        (head) frame as the sources, indexed by full-surface vertex number.
    trans : mne.transforms.Transform | None
        Head <-> MRI transform.
    subject : str
        Subject name (``"fsaverage5"`` for the template).
    spacing : str
        Source-space spacing (``"ico3"``, ``"oct5"``, ...).
    modality : str
        ``"meg"``, ``"eeg"`` or ``"meg+eeg"``.
    conductor : str
        Description of the conductor model (BEM layers or sphere).
    provenance : dict
        How this model was made (builder, parameters, versions, cache path).
    bem : mne.bem.ConductorModel | None
        The conductor model the forward solutions were computed with (BEM
        solution or sphere model); needed to compute further forwards with
        the same conductor, e.g. :func:`make_dense_sources`.
    """

    info: mne.Info
    src: mne.SourceSpaces
    fwd: mne.Forward
    fwd_fixed: mne.Forward
    noise_cov: mne.Covariance
    surfaces: dict = field(default_factory=dict)
    trans: mne.transforms.Transform | None = None
    subject: str = "fsaverage5"
    spacing: str = "ico3"
    modality: str = "meg"
    conductor: str = ""
    provenance: dict = field(default_factory=dict)
    bem: mne.bem.ConductorModel | None = None

    # ------------------------------------------------------------------ sources
    @property
    def vertno(self) -> list[np.ndarray]:
        """Used vertex numbers per hemisphere ``[lh, rh]``."""
        return [s["vertno"] for s in self.fwd["src"]]

    @property
    def n_sources(self) -> int:
        return int(sum(len(v) for v in self.vertno))

    @property
    def ch_names(self) -> list[str]:
        return list(self.info["ch_names"])

    @property
    def positions(self) -> np.ndarray:
        """Source positions (n_sources, 3) in metres, head coordinates."""
        return np.asarray(self.fwd_fixed["source_rr"], float)

    @property
    def normals(self) -> np.ndarray:
        """Source orientations (n_sources, 3): the (patch) surface normals."""
        return np.asarray(self.fwd_fixed["source_nn"], float)

    @cached_property
    def gain(self) -> np.ndarray:
        """Fixed-orientation gain (n_channels, n_sources) as float64."""
        return np.asarray(self.fwd_fixed["sol"]["data"], dtype=np.float64)

    def rows(self, hemi: str = "both") -> np.ndarray:
        """Indices of the sources forming the image rows of ``hemi``."""
        check_hemi(hemi)
        n_lh = len(self.vertno[0])
        if hemi == "lh":
            return np.arange(n_lh)
        if hemi == "rh":
            return np.arange(n_lh, self.n_sources)
        return np.arange(self.n_sources)

    def triangles(self, hemi: str = "both") -> np.ndarray:
        """Triangulation of the used vertices, as indices into ``rows(hemi)``.

        Built from the source space's ``use_tris`` (the ico/oct triangulation).
        """
        check_hemi(hemi)
        hemis = [0, 1] if hemi == "both" else [HEMIS.index(hemi)]
        out, offset = [], 0
        for h in hemis:
            s = self.fwd["src"][h]
            vertno = s["vertno"]
            tris = s.get("use_tris")
            if tris is None or len(tris) == 0:
                raise ValueError(
                    f"The {HEMIS[h]} source space has no use_tris triangulation; "
                    "mesh-aware operations need an ico/oct source space."
                )
            lut = np.full(s["np"], -1, int)
            lut[vertno] = np.arange(len(vertno))
            local = lut[tris]
            local = local[(local >= 0).all(axis=1)]
            out.append(local + offset)
            offset += len(vertno)
        return np.concatenate(out, axis=0)

    def adjacency(self, hemi: str = "both") -> sparse.csr_matrix:
        """Symmetric vertex adjacency (rows(hemi) x rows(hemi)) from :meth:`triangles`."""
        tris = self.triangles(hemi)
        n = len(self.rows(hemi))
        i = np.concatenate([tris[:, 0], tris[:, 1], tris[:, 2]])
        j = np.concatenate([tris[:, 1], tris[:, 2], tris[:, 0]])
        a = sparse.coo_matrix((np.ones(len(i)), (i, j)), shape=(n, n)).tocsr()
        a = ((a + a.T) > 0).astype(np.float64)
        return a.tocsr()

    @cached_property
    def noise_rank(self) -> dict:
        """The whitener's noise rank for these channels and this covariance, and why.

        See :func:`~napari_meg_unet.headmodel.covariance.noise_rank`: MNE's
        ``rank='info'`` for Maxwell-filtered (SSS) data, else the covariance's
        rank; ``noise_rank["mne"]`` is the ``rank`` argument the inverse and the
        simulated noise pass to MNE.
        """
        from .covariance import noise_rank

        return noise_rank(self.info, self.noise_cov)

    # -------------------------------------------------------------- identity
    @cached_property
    def fingerprint(self) -> str:
        """Stable hash of sensor geometry, source positions/normals and conductor model."""
        from ..fingerprint import headmodel_fingerprint

        return headmodel_fingerprint(self)

    def summary(self) -> dict:
        """A JSON-friendly summary of this head model."""
        picks = {
            kind: len(mne.pick_types(self.info, meg=kind, eeg=False, exclude=[]))
            for kind in ("mag", "grad")
        }
        picks["eeg"] = len(mne.pick_types(self.info, meg=False, eeg=True, exclude=[]))
        return {
            "subject": self.subject,
            "spacing": self.spacing,
            "modality": self.modality,
            "conductor": self.conductor,
            "n_sources": self.n_sources,
            "n_sources_lh": len(self.vertno[0]),
            "n_sources_rh": len(self.vertno[1]),
            "n_channels": len(self.ch_names),
            "channels": picks,
            "noise_rank": self.noise_rank["total"],
            "noise_rank_method": self.noise_rank["method"],
            "fingerprint": self.fingerprint,
            **({"noise_rank_warning": self.noise_rank["message"]}
               if self.noise_rank["message"] else {}),
        }

    # ------------------------------------------------------------------ disk
    def save(self, path, *, overwrite: bool = False) -> Path:
        """Save this head model to the directory ``path``.

        The directory holds the forward solution (with its source space), the
        measurement info, the noise covariance, the head<->MRI transform and
        the BEM solution as FIF files, the display surfaces as ``.npz`` and the
        remaining attributes as ``headmodel.json``. It is written into a
        temporary sibling directory and renamed into place, so a partially
        written model never appears at ``path``.

        Parameters
        ----------
        path : path-like
            Output directory.
        overwrite : bool
            Replace an existing ``path``.

        Returns
        -------
        path : Path
            The directory written.
        """
        from .io import _write_headmodel_files

        with atomic_dir(path, overwrite=overwrite, what="head model") as tmp:
            _write_headmodel_files(self, tmp)
        return Path(path)
