"""Linear minimum-norm inverses: operators, imaging kernels and batched application.

MNE-Python (:mod:`mne.minimum_norm`) is the numerical reference. The operator
is built with :func:`mne.minimum_norm.make_inverse_operator`, prepared with
:func:`mne.minimum_norm.prepare_inverse_operator` (which also runs MNE's own
eLORETA iteration), and everything that :func:`mne.minimum_norm.apply_inverse`
does per call is folded into one imaging kernel ``K`` (projector, whitener,
regularised inverter, source weighting and, for dSPM/sLORETA, the noise
normalisation). Applying ``K`` to many events at once is then one matrix
product (numpy or torch), with the per-location magnitude, normal or head-xyz
vector output of ``apply_inverse``.

Submodules:

- :mod:`.operator`: :func:`make_inverse`, :func:`write_operator`;
- :mod:`.kernels`: :class:`InverseKernel`, :func:`compute_kernel`;
- :mod:`.apply`: :func:`apply_kernel`, :func:`apply_inverse_batch`;
- :mod:`.diagnostics`: :func:`svd_spectrum`, :func:`residual`,
  :func:`explained_variance` (as ``apply_inverse`` computes them);
- :mod:`.brainstorm`: the Brainstorm <-> MNE regularisation mapping;
- :mod:`.export`: :func:`save_kernel`, :func:`load_kernel`;
- :mod:`.estimates`: :func:`source_estimates` (``mne.Evoked``/``Epochs``/``Raw``
  in, ``mne.SourceEstimate`` out, as ``apply_inverse``), :func:`rank_report`,
  :func:`write_source_estimate`;
- :mod:`.recording`: :func:`invert_recording`, every condition of a recording
  with its own nave (source estimates, measured SNR, rank report);
- :mod:`.stacks`: the thesis-layout input stacks (methods x vertices x time)
  fed to the U-Nets, :func:`make_input_stack` and :func:`inverse_stack`.

See ``inverse-math.md`` (§1, §2.6, §3, §5) for the equations.
"""

from __future__ import annotations

from ..configs import METHODS, NORMALISATIONS, InverseConfig
from ..device import resolve_device
from ._common import BACKENDS, ELORETA_DEFAULTS, NOISE_NORMALISED, PICK_ORIS, _check_methods
from ._data import check_data_finite, warn_flat_channels
from .apply import apply_inverse_batch, apply_kernel
from .brainstorm import brainstorm_snr_to_lambda2, lambda2_to_brainstorm_snr
from .diagnostics import explained_variance, residual, svd_spectrum
from .estimates import (
    STC_FORMATS,
    RankReport,
    make_source_estimate,
    rank_report,
    source_estimates,
    write_source_estimate,
)
from .export import load_kernel, save_kernel
from .kernels import InverseKernel, compute_kernel
from .operator import make_inverse, write_operator
from .recording import (
    ConditionEstimates,
    RecordingInverse,
    invert_recording,
    iter_invert_recording,
)
from .stacks import inverse_stack, iter_inverse_stack, make_input_stack

__all__ = [
    "BACKENDS",
    "ConditionEstimates",
    "ELORETA_DEFAULTS",
    "METHODS",
    "NOISE_NORMALISED",
    "NORMALISATIONS",
    "PICK_ORIS",
    "STC_FORMATS",
    "RankReport",
    "RecordingInverse",
    "InverseConfig",
    "InverseKernel",
    "_check_methods",
    "apply_inverse_batch",
    "apply_kernel",
    "brainstorm_snr_to_lambda2",
    "check_data_finite",
    "compute_kernel",
    "explained_variance",
    "inverse_stack",
    "invert_recording",
    "iter_invert_recording",
    "iter_inverse_stack",
    "lambda2_to_brainstorm_snr",
    "load_kernel",
    "make_input_stack",
    "make_source_estimate",
    "make_inverse",
    "rank_report",
    "residual",
    "resolve_device",
    "save_kernel",
    "source_estimates",
    "svd_spectrum",
    "warn_flat_channels",
    "write_operator",
    "write_source_estimate",
]
