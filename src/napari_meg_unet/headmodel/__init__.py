"""Head models: source space, forward solutions, sensor info and noise covariance.

A :class:`HeadModel` bundles everything the simulation, inverse and learning
code needs about one subject/sensor configuration.

Builders
--------
- :func:`make_template_headmodel`: the fsaverage5 template, offline from
  installed packages, cached on disk (:func:`cache_root`).
- :func:`make_headmodel`: from real inputs (Info/FIF/BIDS, trans, BEM, source
  space, noise covariance).
- :func:`make_subject_bem`: a FreeSurfer subject's BEM solution from its
  ``bem/*.surf`` surfaces (1 or 3 layers), cached.
- :func:`make_dense_sources`: off-grid dense sources sharing a head model's
  sensors and conductor, for simulations that avoid the "inverse crime".
- :meth:`HeadModel.save` / :func:`load_headmodel`: a directory of FIF/npz/JSON.

Vertex order of image rows
--------------------------
Sources are ordered as in :class:`mne.SourceEstimate`: left-hemisphere used
vertices in increasing vertex number, then right-hemisphere ones.
``HeadModel.rows(hemi)`` gives the indices into that order that form the rows
of a vertex x time image for ``hemi`` (``"lh"``, ``"rh"`` or ``"both"``); the
rows keep the same increasing-vertex order.

Modules
-------
- ``model``: :class:`HeadModel` and the checks of its selections.
- ``covariance``: :func:`prepare_noise_cov` (read, computed or ad hoc; checked),
  :func:`noise_rank` (the whitener's rank: MNE's ``rank='info'`` for SSS data).
- ``bem``: a FreeSurfer subject's BEM solution, found or built from its surfaces.
- ``forward``: forward solutions and conductor descriptions.
- ``io``: the saved layout, :func:`load_headmodel` and the cache.
- ``fsaverage``: the fsaverage5 template anatomy from installed packages.
- ``template``: the template head model builder.
- ``readers`` and ``real``: the builder from real inputs.
- ``dense``: off-grid dense sources.
- ``perturb``: perturbed (model-error) head models, :func:`make_perturbed_headmodel`.
"""

from __future__ import annotations

from ..configs import HEMIS
from . import _docs  # noqa: F401  (registers the package's docdict entries)
from .bem import (
    BEM_CHOICES,
    BEM_CONDUCTIVITY,
    BEM_DEFAULT_ICO,
    bem_cache_path,
    find_bem_solution,
    make_subject_bem,
)
from .covariance import check_noise_cov, describe_rank, is_sss, noise_rank, prepare_noise_cov
from .dense import (
    DENSE_DEFAULT_SPACING,
    DENSE_SPACINGS,
    FULL_SURFACE_LIMIT,
    DenseSources,
    iter_make_dense_sources,
    make_dense_sources,
)
from .forward import compute_forward

# The private names marked F401 are re-exported for coreg, simulate and the tests.
from .fsaverage import (
    BRAIN_CONDUCTIVITY,
    TEMPLATE_BEM_ICO,
    TEMPLATE_SPACINGS,
    TEMPLATE_SUBJECT,
    _mne_fsaverage_dir,  # noqa: F401
    _template_trans,  # noqa: F401
    _write_template_subject,  # noqa: F401
    check_template_spacing,
)
from .io import CACHE_ENV, FORMAT_VERSION, cache_root, load_headmodel
from .model import MODALITIES, SURFACE_KINDS, HeadModel, check_hemi, check_modality
from .perturb import (
    PERTURBATION_KINDS,
    check_simulated_on,
    make_perturbed_headmodel,
    perturbation_record,
)
from .readers import _read_info_input  # noqa: F401
from .real import (
    _has_eeg_average_ref_proj,  # noqa: F401
    iter_make_headmodel,
    make_headmodel,
)
from .template import (
    TEMPLATE_DEV_HEAD_TRANSLATION,
    TEMPLATE_EEG_CHANNELS,
    TEMPLATE_EEG_MONTAGE,
    _is_template,  # noqa: F401
    iter_make_template_headmodel,
    make_template_headmodel,
    template_cache_path,
)

__all__ = [
    "BEM_CHOICES",
    "BEM_CONDUCTIVITY",
    "BEM_DEFAULT_ICO",
    "BRAIN_CONDUCTIVITY",
    "CACHE_ENV",
    "DENSE_DEFAULT_SPACING",
    "DENSE_SPACINGS",
    "FORMAT_VERSION",
    "FULL_SURFACE_LIMIT",
    "HEMIS",
    "MODALITIES",
    "PERTURBATION_KINDS",
    "SURFACE_KINDS",
    "TEMPLATE_BEM_ICO",
    "TEMPLATE_DEV_HEAD_TRANSLATION",
    "TEMPLATE_EEG_CHANNELS",
    "TEMPLATE_EEG_MONTAGE",
    "TEMPLATE_SPACINGS",
    "TEMPLATE_SUBJECT",
    "DenseSources",
    "HeadModel",
    "bem_cache_path",
    "cache_root",
    "check_hemi",
    "check_modality",
    "check_noise_cov",
    "check_simulated_on",
    "check_template_spacing",
    "compute_forward",
    "describe_rank",
    "find_bem_solution",
    "iter_make_dense_sources",
    "iter_make_headmodel",
    "is_sss",
    "iter_make_template_headmodel",
    "load_headmodel",
    "make_dense_sources",
    "make_headmodel",
    "make_perturbed_headmodel",
    "make_subject_bem",
    "make_template_headmodel",
    "noise_rank",
    "perturbation_record",
    "prepare_noise_cov",
    "template_cache_path",
]
