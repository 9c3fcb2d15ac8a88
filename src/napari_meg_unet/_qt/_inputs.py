"""Qt-free input containers of the dock widgets: defaults, validation, core keyword arguments.

Each dock widget shows the fields of one dataclass here and calls its
``validate()``/``*_kwargs()`` before running anything, so the mapping from
what the user typed to the core API is testable without a display (the same
split as brainglobe cellfinder's napari plugin).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from .._parse import parse_number
from ..headmodel import MODALITIES, TEMPLATE_SPACINGS
from ..inverse import METHODS, NORMALISATIONS

HEMIS = ("lh", "rh", "both")
DESIGNS = ("sweep", "multi", "extended")
TIMECOURSES = ("thesis", "realistic")
PROTOCOLS = ("window", "samples")


def _check_choice(value, name, options):
    if value not in options:
        raise ValueError(f"{name} must be one of {tuple(options)}, got {value!r}.")


def _check_int(value, name, minimum):
    if isinstance(value, bool) or int(value) != value or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")


@dataclass
class HeadModelInputs:
    """Head-model widget: template or opened recording, spacing, modality, noise covariance.

    ``source="recording"`` builds the model for the sensors of the opened BIDS
    recording (subject anatomy from ``derivatives/freesurfer`` when it is
    complete, else the fsaverage5 template anatomy); ``noise_cov="auto"`` uses
    the recording's empty-room data when found, else an ad hoc covariance.
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

    def noise_cov_for(self, emptyroom) -> str:
        """``"adhoc"`` or the empty-room FIF path for a recording's ``emptyroom`` BIDSPath."""
        if self.noise_cov == "adhoc" or (self.noise_cov == "auto" and emptyroom is None):
            return "adhoc"
        if emptyroom is None:
            raise ValueError(
                "noise covariance 'emptyroom' was chosen but the recording has no empty-room "
                "data (no AssociatedEmptyRoom entry and no sub-emptyroom recording)."
            )
        return str(emptyroom.fpath)


@dataclass
class SimulateInputs:
    """Simulate widget: maps to :func:`~napari_meg_unet.simulate.simulate`."""

    design: str = "multi"
    hemi: str = "rh"
    n_events: int = 8
    n_dipoles: int = 1
    n_dipoles_max: int = 1
    min_separation_mm: float = 0.0
    extent_mm: float = 10.0
    off_grid: bool = False
    snr: float = 3.0
    timecourse: str = "thesis"
    seed: int = 0

    def validate(self) -> None:
        _check_choice(self.design, "design", DESIGNS)
        _check_choice(self.hemi, "hemi", HEMIS)
        _check_choice(self.timecourse, "time course", TIMECOURSES)
        _check_int(self.n_events, "events", 1)
        _check_int(self.n_dipoles, "dipoles", 1)
        _check_int(self.n_dipoles_max, "max dipoles", self.n_dipoles)
        _check_int(self.seed, "seed", 0)
        if not (math.isfinite(self.snr) and self.snr > 0):
            raise ValueError(f"SNR must be a positive number, got {self.snr!r}.")
        if self.min_separation_mm < 0 or self.extent_mm <= 0:
            raise ValueError("min separation must be >= 0 mm and extent > 0 mm.")

    def simulate_kwargs(self) -> dict:
        """Keyword arguments of :func:`~napari_meg_unet.simulate.simulate` (without ``hm``)."""
        self.validate()
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
        return kwargs


@dataclass
class InverseInputs:
    """Inverse widget: methods, λ² (text), loose, depth, nave and, for recordings, epochs."""

    methods: tuple = ("MNE", "dSPM", "sLORETA")
    lambda2: str = "1/9"
    loose: float = 0.0
    depth: str = "0.8"
    nave: str = "auto"
    normalisation: str = "none"
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
    """

    model: str = "thesis"
    preset: str = "small"
    epochs: int = 2
    lr: str = ""
    batch_size: int = 8
    device: str = "auto"
    out_dir: str = ""
    design: str = "sweep"
    hemi: str = "rh"
    n_train: int = 64
    n_val: int = 16
    lambda2: str = "1/9"
    normalisation: str = "column-max"
    seed: int = 0

    def validate(self) -> None:
        from ..models import MODEL_NAMES, PRESETS

        _check_choice(self.model, "model", MODEL_NAMES)
        _check_choice(self.preset, "preset", tuple(PRESETS[self.model]))
        _check_choice(self.design, "design", DESIGNS)
        _check_choice(self.hemi, "hemi", HEMIS)
        _check_choice(self.normalisation, "normalisation", NORMALISATIONS)
        _check_choice(self.device, "device", available_devices())
        for name in ("epochs", "batch_size", "n_train", "n_val"):
            _check_int(getattr(self, name), name.replace("_", " "), 1)
        _check_int(self.seed, "seed", 0)
        if not str(self.out_dir).strip():
            raise ValueError("choose an output folder for the training run.")
        self.lr_value()
        parse_number(self.lambda2, name="lambda2")

    def lr_value(self) -> float | None:
        """The learning rate typed, or None (the preset's) when empty."""
        if not str(self.lr).strip():
            return None
        return parse_number(self.lr, name="learning rate")

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
            normalisation=self.normalisation,
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
    device: str = "auto"
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
    """Evaluate widget: protocols, bootstrap resamples and seed."""

    protocols: tuple = ("window",)
    n_boot: int = 1000
    seed: int = 0

    def validate(self) -> None:
        if not self.protocols:
            raise ValueError("choose at least one protocol.")
        for protocol in self.protocols:
            _check_choice(protocol, "protocol", PROTOCOLS)
        _check_int(self.n_boot, "bootstrap resamples", 100)
        _check_int(self.seed, "seed", 0)
