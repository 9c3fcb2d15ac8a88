"""Qt-free input containers of the dock widgets: defaults, validation, core keyword arguments.

Each dock widget shows the fields of one dataclass here and calls its
``validate()``/``*_kwargs()`` before running anything, so the mapping from
what the user typed to the core API is testable without a display (the same
split as brainglobe cellfinder's napari plugin).

One declaration per option: defaults, choices, bounds and help come from the
step configs (:mod:`..configs`, via :func:`spec`); :data:`GUI_DEFAULTS` lists
the few defaults the widgets choose differently, with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .._config import option_spec
from .._parse import parse_number
from ..configs import (
    DESIGNS,
    HEMIS,
    METHODS,
    MODELS,
    NORMALISATIONS,
    PEERS,
    PROTOCOLS,
    TIMECOURSES,
    DatasetConfig,
    EvaluationConfig,
    InverseConfig,
    PeerConfig,
    SimulationConfig,
    TrainingConfig,
)
from ..headmodel import MODALITIES, TEMPLATE_SPACINGS

__all__ = [
    "DESIGNS", "HEMIS", "METHODS", "MODELS", "NORMALISATIONS", "PROTOCOLS", "TIMECOURSES",
    "EvaluateInputs", "HeadModelInputs", "InverseInputs", "PredictInputs", "SimulateInputs",
    "TrainInputs", "available_devices", "parse_number", "spec",
]  # fmt: skip

#: Defaults the widgets choose differently from the configs (interactive sizes).
GUI_DEFAULTS = {
    # a sweep of every vertex (642 events) is too slow to browse interactively
    (SimulationConfig, "design"): "multi",
    (SimulationConfig, "n_events"): 8,
    (SimulationConfig, "n_dipoles"): 1,
    # a visible example: SNR 3 (the config's 1.0 is the thesis' hard case)
    (SimulationConfig, "snr"): 3.0,
    # the inverse widget shows values, not network inputs
    (InverseConfig, "normalisation"): "none",
    # a first network in minutes on a laptop
    (DatasetConfig, "n_train"): 64,
    (DatasetConfig, "n_val"): 16,
    (TrainingConfig, "epochs"): 2,
    (TrainingConfig, "batch_size"): 8,
    # bootstrap CIs in a second rather than several
    (EvaluationConfig, "n_boot"): 1000,
}


def spec(cls, name: str) -> dict:
    """Default (the widgets' own where :data:`GUI_DEFAULTS` says), kind, choices, bounds, help."""
    out = dict(option_spec(cls, name))
    if (cls, name) in GUI_DEFAULTS:
        out["default"] = GUI_DEFAULTS[(cls, name)]
    return out


def _default(cls, name):
    return field(default=spec(cls, name)["default"])


def _check_choice(value, name, options):
    if value not in options:
        raise ValueError(f"{name} must be one of {tuple(options)}, got {value!r}.")


def _check_int(value, name, minimum):
    if isinstance(value, bool) or int(value) != value or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")


def _range(text, name) -> float | tuple:
    """A number or ``lo-hi`` / ``lo hi`` / ``lo..hi`` range typed as text (fractions allowed)."""
    parts = [p for p in str(text).replace("..", " ").replace(",", " ").split() if p]
    if len(parts) == 1 and "-" in parts[0][1:]:
        head, _, tail = parts[0][1:].partition("-")
        parts = [parts[0][0] + head, tail]
    values = tuple(parse_number(p, name=name) for p in parts)
    if len(values) == 1:
        return values[0]
    if len(values) != 2 or values[0] > values[1]:
        raise ValueError(f"{name} must be a number or a range 'lo-hi' (lo <= hi), got {text!r}.")
    return values


@dataclass
class HeadModelInputs:
    """Head-model widget: template or opened recording, spacing, modality, noise covariance.

    ``source="recording"`` builds the model for the sensors of the opened
    recording (BIDS: the subject anatomy from ``derivatives/freesurfer`` when
    complete; else, and for plain FIF files, the fsaverage5 template anatomy
    fitted to the digitisation). ``noise_cov="auto"`` uses the recording's
    empty-room data only when it matches (same MEG channels, recorded within
    30 days), else an ad hoc covariance, and says which.
    """

    source: str = "template"
    spacing: str = "ico3"
    modality: str = "meg"
    noise_cov: str = "auto"
    lambda2: str = "1/9"

    SOURCES = ("template", "recording")
    NOISE_COVS = ("auto", "adhoc", "emptyroom")

    def validate(self) -> None:
        _check_choice(self.source, "source", self.SOURCES)
        _check_choice(self.spacing, "spacing", TEMPLATE_SPACINGS)
        _check_choice(self.modality, "modality", MODALITIES)
        _check_choice(self.noise_cov, "noise covariance", self.NOISE_COVS)
        self.lambda2_value()

    def lambda2_value(self) -> float:
        return parse_number(self.lambda2, name="lambda2")

    def template_kwargs(self) -> dict:
        """Keyword arguments of :func:`~napari_meg_unet.headmodel.make_template_headmodel`."""
        self.validate()
        return dict(spacing=self.spacing, modality=self.modality)


@dataclass
class SimulateInputs:
    """Simulate widget: maps to :func:`~napari_meg_unet.simulate.simulate`."""

    design: str = _default(SimulationConfig, "design")
    hemi: str = _default(SimulationConfig, "hemi")
    n_events: int = _default(SimulationConfig, "n_events")
    n_dipoles: int = _default(SimulationConfig, "n_dipoles")
    n_dipoles_max: int = _default(SimulationConfig, "n_dipoles")
    min_separation_mm: float = 0.0
    extent_mm: float = _default(SimulationConfig, "extent_mm")
    off_grid: bool = _default(SimulationConfig, "off_grid")
    snr: float = _default(SimulationConfig, "snr")
    timecourse: str = _default(SimulationConfig, "timecourse")
    seed: int = _default(SimulationConfig, "seed")

    def validate(self) -> None:
        self.simulate_kwargs()

    def simulate_kwargs(self) -> dict:
        """Keyword arguments of :func:`~napari_meg_unet.simulate.simulate` (without ``hm``).

        Checked by :class:`~napari_meg_unet.configs.SimulationConfig` itself.
        """
        _check_int(self.n_dipoles_max, "max dipoles", self.n_dipoles)
        kwargs = dict(
            design=self.design, hemi=self.hemi, off_grid=bool(self.off_grid),
            snr=float(self.snr), timecourse=self.timecourse, seed=int(self.seed),
        )  # fmt: skip
        if self.design == "sweep":
            kwargs["n_repeats"] = 1
        else:
            kwargs["n_events"] = int(self.n_events)
        if self.design == "multi":
            kwargs["n_dipoles"] = (
                int(self.n_dipoles)
                if self.n_dipoles == self.n_dipoles_max
                else (int(self.n_dipoles), int(self.n_dipoles_max))
            )
            if self.min_separation_mm > 0:
                kwargs["min_separation_mm"] = float(self.min_separation_mm)
        if self.design == "extended":
            kwargs["extent_mm"] = float(self.extent_mm)
            kwargs.pop("off_grid")
        SimulationConfig.build(**kwargs)  # every option checked where it is declared
        return kwargs


@dataclass
class InverseInputs:
    """Inverse widget: methods, λ² (text), loose, depth, nave and, for recordings, epochs."""

    methods: tuple = _default(InverseConfig, "methods")
    lambda2: str = "1/9"
    loose: float = _default(InverseConfig, "loose")
    depth: str = str(spec(InverseConfig, "depth")["default"])
    nave: str = "auto"
    normalisation: str = _default(InverseConfig, "normalisation")
    tmin: float = -0.1
    tmax: float = 0.3
    average: bool = True

    def validate(self) -> None:
        if not self.methods:
            raise ValueError("choose at least one inverse method.")
        for method in self.methods:
            _check_choice(method, "method", METHODS)
        _check_choice(self.normalisation, "normalisation", NORMALISATIONS)
        if not 0 <= self.loose <= 1:
            raise ValueError(f"loose must be between 0 and 1, got {self.loose!r}.")
        if self.tmax <= self.tmin:
            raise ValueError(f"tmax ({self.tmax}) must be after tmin ({self.tmin}).")
        self.lambda2_value()
        self.depth_value()
        self.nave_value(1)

    def lambda2_value(self) -> float:
        return parse_number(self.lambda2, name="lambda2")

    def depth_value(self) -> float | None:
        text = str(self.depth).strip().lower()
        if text in ("", "none", "off", "0"):
            return None
        return parse_number(text, name="depth")

    def nave_value(self, data_nave: int) -> int:
        """``nave`` typed, or the data's own (``"auto"``)."""
        text = str(self.nave).strip().lower()
        if text in ("", "auto"):
            return int(data_nave)
        value = parse_number(text, name="nave")
        if value != int(value):
            raise ValueError(f"nave must be a positive integer or 'auto', got {self.nave!r}.")
        return int(value)

    def operator_kwargs(self) -> dict:
        """Keyword arguments of :func:`~napari_meg_unet.inverse.make_inverse`."""
        self.validate()
        return dict(loose=float(self.loose), depth=self.depth_value())


def available_devices() -> list[str]:
    """``auto``, ``cpu`` and every accelerator torch sees (``cuda:N``, ``mps``)."""
    import torch

    devices = ["auto", "cpu"]
    if torch.cuda.is_available():
        devices += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append("mps")
    return devices


@dataclass
class TrainInputs:
    """Train widget: data made from the current head model, network and recipe.

    Training and validation sets are simulated with independent seeds
    (:func:`~napari_meg_unet.dataset.make_splits`) under ``out_dir/data``;
    the run (``last.pt``, ``best.pt``, ``history.json``) goes to ``out_dir/run``.
    The simulation options (SNR or SNR range, off-grid, time course, sampling
    rate, samples per event) are those of the data the network will be
    evaluated on: the widget fills them from the current simulation or recording.
    """

    model: str = "thesis"
    preset: str = "small"
    epochs: int = _default(TrainingConfig, "epochs")
    lr: str = ""
    batch_size: int = _default(TrainingConfig, "batch_size")
    device: str = _default(TrainingConfig, "device")
    out_dir: str = ""
    design: str = "sweep"
    hemi: str = _default(SimulationConfig, "hemi")
    n_train: int = _default(DatasetConfig, "n_train")
    n_val: int = _default(DatasetConfig, "n_val")
    lambda2: str = "1/9"
    normalisation: str = "column-max"
    snr: str = "1"
    off_grid: bool = _default(SimulationConfig, "off_grid")
    timecourse: str = _default(SimulationConfig, "timecourse")
    sfreq: str = "auto"
    n_times: int = 32
    seed: int = _default(DatasetConfig, "seed")

    def validate(self) -> None:
        from ..models import PRESETS

        _check_choice(self.model, "model", MODELS)
        _check_choice(self.preset, "preset", tuple(PRESETS[self.model]))
        _check_choice(self.design, "design", DESIGNS)
        _check_choice(self.hemi, "hemi", HEMIS)
        _check_choice(self.normalisation, "normalisation", NORMALISATIONS)
        _check_choice(self.device, "device", available_devices())
        for name in ("epochs", "batch_size", "n_train", "n_val", "n_times"):
            _check_int(getattr(self, name), name.replace("_", " "), 1)
        _check_int(self.seed, "seed", 0)
        if not str(self.out_dir).strip():
            raise ValueError("choose an output folder for the training run.")
        self.lr_value()
        parse_number(self.lambda2, name="lambda2")
        self.simulation_kwargs()

    def lr_value(self) -> float | None:
        """The learning rate typed, or None (the preset's) when empty."""
        if not str(self.lr).strip():
            return None
        return parse_number(self.lr, name="learning rate")

    def sfreq_value(self) -> float | None:
        """The sampling rate typed (Hz), or None (the time course preset's) for ``auto``."""
        text = str(self.sfreq).strip().lower()
        return None if text in ("", "auto") else parse_number(text, name="sfreq")

    def simulation_kwargs(self) -> dict:
        """The simulation options of the training data (checked by ``SimulationConfig``)."""
        kwargs = dict(
            snr=_range(self.snr, "SNR"), off_grid=bool(self.off_grid) and self.design != "extended",
            timecourse=self.timecourse, sfreq=self.sfreq_value(), n_times=int(self.n_times),
        )  # fmt: skip
        n_events = None if self.design == "sweep" else int(self.n_train)
        SimulationConfig.build(design=self.design, hemi=self.hemi, n_events=n_events, **kwargs)
        return kwargs

    @property
    def data_dir(self) -> Path:
        return Path(self.out_dir) / "data"

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir) / "run"

    def splits_kwargs(self) -> dict:
        """Keyword arguments of :func:`~napari_meg_unet.dataset.make_splits` (without ``hm``)."""
        self.validate()
        return dict(
            design=self.design, n_train=int(self.n_train), n_val=int(self.n_val),
            n_test=int(self.n_val), seed=int(self.seed), out=self.data_dir, hemi=self.hemi,
            lambda2=parse_number(self.lambda2, name="lambda2"),
            normalisation=self.normalisation, **self.simulation_kwargs(),
        )  # fmt: skip

    def fit_kwargs(self, *, resume: bool) -> dict:
        """Keyword arguments of :func:`~napari_meg_unet.train.fit` (without data/stop/mesh)."""
        self.validate()
        return dict(
            model=self.model, preset=self.preset, out_dir=self.run_dir, epochs=int(self.epochs),
            lr=self.lr_value(), batch_size=int(self.batch_size), device=self.device,
            seed=int(self.seed), resume=resume, overwrite=not resume,
        )  # fmt: skip


@dataclass
class PredictInputs:
    """Predict widget: checkpoint, device, batch size."""

    checkpoint: str = ""
    device: str = _default(TrainingConfig, "device")
    batch_size: int = 32

    def validate(self) -> None:
        if not str(self.checkpoint).strip():
            raise ValueError("choose a checkpoint (best.pt, last.pt or a training folder).")
        path = Path(self.checkpoint)
        if not (path.is_file() or (path / "best.pt").is_file()):
            raise FileNotFoundError(f"No checkpoint at {str(path)!r}.")
        _check_choice(self.device, "device", available_devices())
        _check_int(self.batch_size, "batch size", 1)


@dataclass
class EvaluateInputs:
    """Evaluate widget: protocols, bootstrap resamples, seed, and the peers scored."""

    protocols: tuple = ("window",)
    n_boot: int = _default(EvaluationConfig, "n_boot")
    seed: int = _default(EvaluationConfig, "seed")
    peers: tuple = ()
    peer_events: int = _default(PeerConfig, "peer_events")

    def validate(self) -> None:
        if not self.protocols:
            raise ValueError("choose at least one protocol.")
        for protocol in self.protocols:
            _check_choice(protocol, "protocol", PROTOCOLS)
        _check_int(self.n_boot, "bootstrap resamples", 100)
        _check_int(self.seed, "seed", 0)
        for peer in self.peers:
            _check_choice(peer, "peer", PEERS)
        _check_int(self.peer_events, "peer events", 1)


def data_settings(sim=None, sdata=None) -> dict:
    """Train widget settings matching a simulation (or recording data): what to evaluate on.

    Returns a dict of :class:`TrainInputs` fields: ``hemi``, ``snr`` (the
    simulation's SNR or range), ``off_grid``, ``timecourse``, ``sfreq``,
    ``n_times``; for recording data only ``sfreq`` and ``n_times``.
    """
    if sim is not None:
        p = sim.meta["params"]
        snr = p.get("snr", 1.0)
        snr_text = (
            f"{snr[0]:g}-{snr[1]:g}" if isinstance(snr, list | tuple) and len(snr) == 2
            and snr[0] != snr[1] else f"{snr[0] if isinstance(snr, list | tuple) else snr:g}"
        )  # fmt: skip
        return dict(
            hemi=p["hemi"], snr=snr_text, off_grid=bool(p.get("off_grid", False)),
            timecourse=p.get("timecourse", "thesis"), sfreq=repr(float(sim.sfreq)),
            n_times=int(sim.data.shape[2]),
        )  # fmt: skip
    if sdata is not None:
        return dict(sfreq=repr(float(sdata.sfreq)), n_times=int(sdata.data.shape[-1]))
    return {}
