"""Constants and operator helpers shared by the inverse submodules."""

from __future__ import annotations

import re

from mne.io.constants import FIFF
from mne.minimum_norm import InverseOperator

from .._validation import check_choices
from ..configs import METHODS

#: Methods whose estimate is the MNE estimate divided by a per-location noise level.
NOISE_NORMALISED = ("dSPM", "sLORETA")
#: Orientation outputs, as ``pick_ori`` in :func:`mne.minimum_norm.apply_inverse`.
PICK_ORIS = (None, "normal", "vector")
#: Array backends of :func:`apply_kernel`.
BACKENDS = ("numpy", "torch")
#: eLORETA options of MNE 1.13, always passed explicitly (``force_equal=None``
#: is documented as "True for loose" but treated as False by the code).
ELORETA_DEFAULTS = dict(eps=1e-6, max_iter=20, force_equal=False)


def _check_methods(methods) -> tuple[str, ...]:
    """Distinct methods among :data:`METHODS` (a single string is one method)."""
    return check_choices(methods, "methods", METHODS)


def _check_inverse(inv) -> InverseOperator:
    if not isinstance(inv, InverseOperator):
        raise ValueError(
            "inv must be an mne.minimum_norm.InverseOperator (see make_inverse), "
            f"got {type(inv).__name__}."
        )
    return inv


def _eloreta_params(method_params) -> dict:
    params = dict(ELORETA_DEFAULTS)
    if method_params is not None:
        unknown = set(method_params) - set(ELORETA_DEFAULTS)
        if unknown:
            raise ValueError(
                f"method_params keys must be among {sorted(ELORETA_DEFAULTS)}, "
                f"got unknown {sorted(unknown)}."
            )
        params.update(method_params)
    params["force_equal"] = bool(params["force_equal"])
    return params


def _is_free(inv) -> bool:
    return inv["source_ori"] == FIFF.FIFFV_MNE_FREE_ORI


def _inverse_ch_names(inv) -> list[str]:
    return list(inv["eigen_fields"]["col_names"])


def _check_eeg_reference(inv) -> None:
    """Refuse EEG without an average-reference projector, as apply_inverse does."""
    info = inv["info"]
    used = set(_inverse_ch_names(inv))
    has_eeg = any(ch["kind"] == FIFF.FIFFV_EEG_CH and ch["ch_name"] in used for ch in info["chs"])
    if not has_eeg:
        return
    for proj in inv["projs"]:
        if proj["kind"] == FIFF.FIFFV_PROJ_ITEM_EEG_AVREF or re.match(
            "^Average .* reference$", proj["desc"]
        ):
            return
    raise ValueError(
        "The inverse operator has EEG channels but no average-reference projector; "
        "MNE requires one for EEG inverse modelling (set_eeg_reference(projection=True) "
        "before making the operator)."
    )
