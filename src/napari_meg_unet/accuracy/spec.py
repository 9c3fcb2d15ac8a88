"""What one run of the accuracy protocol is: its test conditions, sizes, networks and seeds."""

from __future__ import annotations

import dataclasses
import zlib
from dataclasses import dataclass

import numpy as np

from .._config import option_spec
from .._validation import check_choice, check_int, check_number
from ..configs import HYBRIDS, METHODS, PEERS, InverseConfig, PeerConfig, SimulationConfig

#: Linear inverse methods scored by the protocol.
LINEAR_METHODS = METHODS
#: Network image channels (the thesis's inputs).
INPUT_METHODS = ("MNE", "dSPM", "sLORETA")
#: Kinds of training/test sets: single dipoles, 2-5 dipoles, extended patches.
KINDS = ("single", "multi", "extended")
#: Model errors of test conditions: name -> keyword arguments of
#: :func:`~napari_meg_unet.headmodel.make_perturbed_headmodel` (the seed of a coregistration
#: error and skull shape are drawn per condition, see :func:`model_error_seed`).
MODEL_ERRORS = {
    "coreg": {"kind": "coreg", "translation_mm": 5.0, "rotation_deg": 3.0},
    "conductor": {"kind": "conductor"},
    "skull": {"kind": "skull", "skull_shape_mm": 3.0},
    "pial": {"kind": "surface"},
}


@dataclass(frozen=True)
class Condition:
    """One test set: ``kind`` (``"single"`` sweep, ``"multi"``-dipole or ``"extended"``
    patches) at whitened ``snr``, optionally simulated with a model error.

    ``model_error`` names an entry of :data:`MODEL_ERRORS`: the test data are
    simulated on that perturbation of the head model and inverted with the
    nominal one (training and validation data never have it).
    """

    name: str
    kind: str
    snr: float
    model_error: str | None = None


@dataclass(frozen=True)
class AccuracyPreset:
    """Everything that defines a run of the accuracy protocol.

    Attributes
    ----------
    name : str
        Preset name.
    spacing, modality, hemi : str
        Template head model and image hemisphere.
    off_grid : bool
        Simulate at dense off-grid vertices (invert on the coarse grid).
    timecourse : ``"thesis"`` | ``"realistic"``
        Waveform preset of :func:`~napari_meg_unet.simulate.simulate`.
    lambda2 : float
        Regularisation of every inverse (inputs and linear baselines).
    normalisation : str
        Network input normalisation (:func:`~napari_meg_unet.inverse.make_input_stack`).
    conditions : tuple of Condition
        Test sets.
    train_snr : float | (float, float)
        SNR of the training and validation simulations (a range is drawn
        log-uniformly per event).
    n_train, n_val, n_test : int
        Examples per training / validation set (per kind) and per test set.
    multi_dipoles : (int, int)
        Dipoles per event of the ``"multi"`` sets.
    networks : tuple of (str, str)
        ``(model, model preset)`` pairs to train, e.g. ``("mesh", "small")``.
    epochs : int | None
        Epochs per network (None: the model recipe's).
    patience : int | None
        Early-stopping patience (None: the recipe's).
    stability_network : (str, str)
        The network of the stability experiments
        (:func:`~napari_meg_unet.accuracy.iter_stability`).
    extent_mm : float
        Patch radius of the ``"extended"`` sets (mm).
    peers : tuple of str
        Peers scored next to the linear inverses and networks
        (:data:`napari_meg_unet.configs.PEERS`).
    hybrids : tuple of str
        Estimators built on each trained network
        (:data:`napari_meg_unet.configs.HYBRIDS`, :mod:`napari_meg_unet.accuracy.hybrids`):
        searched, run and scored like the peers, one row per network and hybrid.
    peer_events, peer_events_slow : int
        Test events per condition of each peer (the first ones), for the fast
        and the slow peers (BEM dipole fits, gamma-MAP).
    search_events, search_events_slow : int
        Validation events of each kind used by a peer's hyper-parameter search.
    """

    name: str
    off_grid: bool
    timecourse: str
    conditions: tuple
    train_snr: object
    n_train: int
    n_val: int
    n_test: int
    networks: tuple
    stability_network: tuple
    epochs: int | None = None
    patience: int | None = None
    spacing: str = "ico3"
    modality: str = "meg"
    hemi: str = "rh"
    lambda2: float = 1.0 / 9.0
    normalisation: str = "column-max"
    multi_dipoles: tuple = (2, 5)
    extent_mm: float = 20.0
    peers: tuple = ()
    hybrids: tuple = ()
    # the sizes of the peers' runs: PeerConfig's defaults (its options are declared there)
    peer_events: int = option_spec(PeerConfig, "peer_events")["default"]
    peer_events_slow: int = option_spec(PeerConfig, "peer_events_slow")["default"]
    search_events: int = option_spec(PeerConfig, "search_events")["default"]
    search_events_slow: int = option_spec(PeerConfig, "search_events_slow")["default"]
    sensor_blocks: int | None = option_spec(PeerConfig, "sensor_blocks")["default"]
    sensor_net_file: str | None = option_spec(PeerConfig, "sensor_net_file")["default"]

    @property
    def kinds(self) -> tuple:
        """The kinds of training sets the conditions need, in :data:`KINDS` order."""
        return tuple(k for k in KINDS if any(c.kind == k for c in self.conditions))

    def describe(self, hm=None) -> str:
        """One line: grid, dipoles, time courses, SNRs, head model (``hm``: a given one)."""
        grid = "off-grid" if self.off_grid else "on-grid"
        snrs = ", ".join(f"{c.snr:g}" for c in self.conditions if c.kind == self.conditions[0].kind)
        names = {"single": "single dipoles",
                 "multi": f"{self.multi_dipoles[0]}-{self.multi_dipoles[1]} dipoles",
                 "extended": f"{self.extent_mm:g} mm patches"}  # fmt: skip
        kinds = " and ".join(names[k] for k in self.kinds)
        errors = sorted({c.model_error for c in self.conditions if c.model_error})
        if errors:
            kinds += " (also with model error: " + ", ".join(errors) + ")"
        model = f"template {self.spacing}"
        if hm is not None and hm.provenance.get("builder") != "make_template_headmodel":
            model = f"head model of subject {hm.subject} ({hm.spacing}, {hm.n_sources} sources)"
        return (
            f"{grid} {kinds}, {self.timecourse} time courses, whitened SNR {snrs}, "
            f"{model} {self.hemi} {self.modality.upper()}, lambda2 = {self.lambda2:.4g}"
        )

    def simulation_config(self, hm, *, kind, n, snr, seed) -> SimulationConfig:
        """The simulation of ``n`` events of ``kind`` (a sweep: enough repeats to hold ``n``)."""
        common = dict(
            hemi=self.hemi, off_grid=self.off_grid, timecourse=self.timecourse, snr=snr,
            seed=seed,
        )  # fmt: skip
        if kind == "single":
            n_rows = len(hm.rows(self.hemi))
            return SimulationConfig(design="sweep", n_repeats=-(-n // n_rows), **common)
        if kind == "extended":  # patches grow on the grid's mesh: never off-grid
            return SimulationConfig(design="extended", n_events=n, extent_mm=self.extent_mm,
                                    **{**common, "off_grid": False})  # fmt: skip
        return SimulationConfig(
            design="multi", n_events=n, n_dipoles=tuple(self.multi_dipoles), **common
        )

    def inverse_config(self, *, lambda2=None, methods=INPUT_METHODS) -> InverseConfig:
        """The inverses of the network inputs (or, with ``methods``, of the linear baselines)."""
        return InverseConfig(
            methods=methods, lambda2=self.lambda2 if lambda2 is None else lambda2, nave=1,
            hemi=self.hemi, normalisation=self.normalisation,
        )  # fmt: skip


def check_preset(p: AccuracyPreset) -> None:
    """Raise ValueError naming the first invalid field of ``p``."""
    from ..models import PRESETS as MODEL_PRESETS

    for key in ("n_train", "n_val", "n_test"):
        check_int(getattr(p, key), key, minimum=1)
    for key in ("epochs", "patience"):  # None: the model recipe's
        if getattr(p, key) is not None:
            check_int(getattr(p, key), key, minimum=1)
    for key in ("peer_events", "peer_events_slow", "search_events", "search_events_slow"):
        check_int(getattr(p, key), key, minimum=1)
    check_number(p.extent_mm, "extent_mm", minimum=0)
    for name in p.peers:
        check_choice(name, "peers", PEERS)
    if len(set(p.peers)) != len(p.peers):
        raise ValueError(f"peers lists a peer twice: {p.peers}.")
    for name in p.hybrids:
        check_choice(name, "hybrids", HYBRIDS)
    if len(set(p.hybrids)) != len(p.hybrids):
        raise ValueError(f"hybrids lists a hybrid twice: {p.hybrids}.")
    for model, preset in (*p.networks, p.stability_network):
        if model not in MODEL_PRESETS or preset not in MODEL_PRESETS[model]:
            raise ValueError(
                f"network ({model!r}, {preset!r}) is unknown; models and presets: "
                f"{ {m: tuple(v) for m, v in MODEL_PRESETS.items()} }."
            )
    if len({m for m, _ in p.networks}) != len(p.networks):
        raise ValueError(f"networks must name each model once, got {p.networks}.")
    if not p.conditions:
        raise ValueError("conditions must hold at least one test set.")
    for c in p.conditions:
        check_choice(c.kind, f"condition {c.name!r}: kind", KINDS)
        check_number(c.snr, f"condition {c.name!r}: snr", minimum=0)
        if c.model_error is not None:
            check_choice(c.model_error, f"condition {c.name!r}: model_error", tuple(MODEL_ERRORS))
    if len({c.name for c in p.conditions}) != len(p.conditions):
        raise ValueError("conditions must have distinct names.")


def with_overrides(p: AccuracyPreset, **overrides) -> AccuracyPreset:
    """``p`` with fields replaced by ``overrides`` (None values ignored), checked.

    Raises
    ------
    ValueError
        An unknown field name, or an invalid resulting preset.
    """
    fields = {f.name for f in dataclasses.fields(AccuracyPreset)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"Unknown preset field(s) {unknown}; expected some of {sorted(fields)}.")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if "networks" in overrides:
        overrides["networks"] = tuple(tuple(n) for n in overrides["networks"])
    for key in ("peers", "hybrids"):
        if key in overrides:
            overrides[key] = tuple(overrides[key])
    p = dataclasses.replace(p, **overrides)
    check_preset(p)
    return p


def derive_seed(seed: int, *keys) -> int:
    """A 32-bit seed for the stream named by ``keys``, derived from ``seed``.

    Different keys (``("train", "single")``, ``("test", "single-snr1")``, ...)
    give independent simulation streams, so training, validation and test
    data never share a seed.
    """
    entropy = [int(seed)] + [zlib.crc32(str(k).encode()) for k in keys]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def model_error_seed(seed: int, condition: Condition) -> int:
    """The seed of ``condition``'s model error (its coregistration error is drawn per condition)."""
    return derive_seed(seed, "model-error", condition.name)
