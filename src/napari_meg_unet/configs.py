"""The options of each step, declared once.

One frozen dataclass per step — :class:`SimulationConfig`,
:class:`InverseConfig`, :class:`DatasetConfig`, :class:`TrainingConfig`,
:class:`EvaluationConfig`, :class:`RecordingTrainingConfig`, :class:`PeerConfig` — used by
the core functions (as ``config=`` or as keyword arguments), by the command line
(arguments generated from the fields) and by the napari input containers
(defaults, choices and help). The allowed values of each option
(:data:`DESIGNS`, :data:`METHODS`, ...) live here too, so the step modules,
the CLI and the widgets share them.

This module imports neither torch nor Qt.
"""

from __future__ import annotations

from ._config import ConfigBase, config, option

#: Hemisphere selections of image rows.
HEMIS = ("lh", "rh", "both")
#: Source designs of a simulation.
DESIGNS = ("sweep", "multi", "extended")
#: Time-course presets (``docs/simulation.md``).
TIMECOURSES = ("thesis", "realistic")
#: Noise models (None: noise-free).
NOISES = ("cov", "white")
#: Inverse methods, spelled as in MNE-Python.
METHODS = ("MNE", "dSPM", "sLORETA", "eLORETA")
#: Normalisations of the network input stacks.
NORMALISATIONS = ("column-max", "global-max", "none")
#: Scoring protocols: per sample (the thesis) or on the event window's mean map.
PROTOCOLS = ("samples", "window")
#: Networks.
MODELS = ("thesis", "mesh")
#: Peers (non-linear and sparse estimators, :mod:`napari_meg_unet.peers`), in table order.
PEERS = (
    "dipole-sphere-peak", "dipole-sphere-window", "dipole-bem-peak", "dipole-bem-window",
    "rap-music", "rap-music-fixed", "gamma-map", "mxne", "irmxne", "lcmv", "cmne", "sensor-net",
    "sensor-net-fit", "sensor-net-fit-mne",
)  # fmt: skip
#: Estimators built on each trained network of the accuracy protocol
#: (:mod:`napari_meg_unet.accuracy.hybrids`): its peaks moved to their centre of mass,
#: placed by its centre head, and refined by a multi-dipole fit (told the number of
#: sources or not).
HYBRIDS = (
    "centre-of-mass", "centre-head", "dipole-fit", "dipole-fit-mne", "dipole-fit-mne-given",
)  # fmt: skip
#: Mixed-precision modes of training.
AMP_MODES = ("auto", "bf16", "off")
#: Numerical paths of simulation and inversion: the float64 numpy path (the reference, MNE
#: parity) and the float32 torch core (:mod:`napari_meg_unet.simulate.torch_core`, also the
#: training stream's).
PRECISIONS = ("float64", "float32")

#: Sampling rate (Hz) of the MNE sample raw file the 2017 thesis simulated with.
THESIS_SFREQ = 600.614990234375
#: Default sampling rate (Hz) of the ``"realistic"`` preset.
REALISTIC_SFREQ = 250.0
#: Default number of samples per event (both presets).
DEFAULT_N_TIMES = 32
#: ``"thesis"`` preset: 10 Hz sine starting at phase 0, 20 active samples.
THESIS_FREQ = 10.0
THESIS_DURATION = 20
#: ``"realistic"`` preset ranges: frequency (Hz, uniform), relative amplitude
#: (log-uniform), duration as a fraction of ``n_times`` (uniform integer).
REALISTIC_FREQ = (4.0, 20.0)
REALISTIC_REL_AMPLITUDE = (0.5, 2.0)
REALISTIC_DURATION = (0.25, 0.75)


def _precision_option():
    """The ``precision`` option, declared once for the simulation and the inverse steps."""
    return option(
        "float64", choices=PRECISIONS, help="float64: the numpy reference path; float32: the "
        "torch core (the training stream's path; other random draws than float64's)",
    )  # fmt: skip


@config
class SimulationConfig(ConfigBase):
    """Options of :func:`napari_meg_unet.simulate.simulate`."""

    design: str = option("sweep", choices=DESIGNS, help="source design")
    hemi: str = option("rh", choices=HEMIS, help="hemisphere(s) the sources are drawn from")
    n_repeats: int = option(
        1, minimum=1, help="times each row is used (sweep, and extended without n_events)"
    )
    n_events: int | None = option(
        None,
        kind="int",
        minimum=1,
        help="number of events (required for multi; None for sweep, whose size is "
        "n_repeats times the number of rows)",
    )
    n_dipoles: tuple = option(
        (2, 5),
        kind="int_range",
        minimum=1,
        metavar="N",
        help="dipoles per multi event: a number, or an inclusive (lo, hi) range drawn per event",
    )
    min_separation_mm: float | None = option(
        None, kind="float", minimum=0.0, strict=False, help="multi: minimum distance between "
        "the dipoles of one event (mm)",
    )  # fmt: skip
    extent_mm: float = option(
        10.0, minimum=0.0, strict=False, help="extended: patch radius along the mesh (mm)"
    )
    off_grid: bool = option(
        False, help="put dipoles at dense source-space vertices (their own normals and forward), "
        "off the inversion grid",
    )  # fmt: skip
    dense_spacing: str | None = option(
        None, kind="str", help="spacing of the dense source space of off-grid dipoles "
        "(default: the head model's finer mesh)",
    )  # fmt: skip
    timecourse: str = option("thesis", choices=TIMECOURSES, help="waveform preset")
    snr: tuple = option(
        1.0,
        kind="float_range",
        minimum=0.0,
        metavar="SNR",
        help="whitened-space SNR per event; a (lo, hi) range is drawn log-uniformly per event",
    )
    noise: str | None = option(
        "cov",
        choices=NOISES,
        optional=True,
        help="noise: 'cov' (the head model's noise covariance), 'white' (one variance per "
        "channel type) or None (noise-free)",
    )
    nave: int = option(1, minimum=1, help="number of averaged trials (noise / sqrt(nave))")
    sfreq: float | None = option(
        None, kind="float", minimum=0.0, help="sampling rate in Hz (None: the preset's, "
        f"{THESIS_SFREQ:.1f} thesis / {REALISTIC_SFREQ:g} realistic)",
    )  # fmt: skip
    n_times: int | None = option(
        None, kind="int", minimum=1, help=f"samples per event (None: {DEFAULT_N_TIMES})"
    )
    seed: int = option(0, minimum=0, help="seed of every random draw")
    precision: str = _precision_option()

    def _check(self) -> None:
        design = self.design
        if self.n_events is not None and design == "sweep":
            raise ValueError(
                "n_events must be None for design='sweep': it sweeps every row of the "
                "hemisphere n_repeats times (use design='multi' for a fixed count)."
            )
        if self.n_events is None and design == "multi":
            raise ValueError("n_events is required for design='multi'.")
        if self.min_separation_mm is not None and design != "multi":
            raise ValueError("min_separation_mm only applies to design='multi'.")
        if self.off_grid and design == "extended":
            raise ValueError(
                "off_grid=True is supported for design='sweep' and 'multi', not 'extended'."
            )
        if self.dense_spacing is not None and not self.off_grid:
            raise ValueError("dense_spacing only applies with off_grid=True.")
        min_times = THESIS_DURATION if self.timecourse == "thesis" else 4
        if self.n_times is not None and self.n_times < min_times:
            raise ValueError(
                f"n_times must be >= {min_times} for timecourse={self.timecourse!r}, "
                f"got {self.n_times}."
            )
        sfreq = self.resolved_sfreq
        if self.timecourse == "thesis" and sfreq <= 2 * THESIS_FREQ:
            raise ValueError(f"sfreq must exceed {2 * THESIS_FREQ} Hz for the thesis 10 Hz burst.")
        if self.timecourse == "realistic" and sfreq <= 2 * REALISTIC_FREQ[0] / 0.8:
            raise ValueError(
                f"sfreq must exceed {2 * REALISTIC_FREQ[0] / 0.8:g} Hz for the realistic preset."
            )

    @property
    def resolved_sfreq(self) -> float:
        """``sfreq``, or the preset's when None."""
        if self.sfreq is not None:
            return self.sfreq
        return THESIS_SFREQ if self.timecourse == "thesis" else REALISTIC_SFREQ

    @property
    def resolved_n_times(self) -> int:
        """``n_times``, or :data:`DEFAULT_N_TIMES` when None."""
        return DEFAULT_N_TIMES if self.n_times is None else self.n_times


#: The simulation options a network shares with the data it is applied to (sampling rate,
#: samples, nave, SNR range, off-grid sources, time course): exposed by ``dataset`` and by
#: ``train --for-recording`` (where the recording gives the defaults).
RECORDING_MATCH_OPTIONS = (
    "sfreq", "n_times", "nave", "snr", "off_grid", "dense_spacing", "timecourse",
)  # fmt: skip


@config
class InverseConfig(ConfigBase):
    """Options of the linear inverses and of the network input stacks made from them."""

    methods: tuple = option(
        ("MNE", "dSPM", "sLORETA"),
        choices=METHODS,
        help="inverse methods, in order (the channels of an input stack)",
    )
    lambda2: float = option(
        1.0 / 9.0,
        kind="number",
        minimum=0.0,
        help="regularisation lambda^2, fractions allowed (1/9 for SNR 3)",
    )
    loose: float = option(
        0.0,
        minimum=0.0,
        maximum=1.0,
        strict=False,
        help="tangential source variance factor; 0 = fixed orientation",
    )
    depth: float | None = option(
        0.8,
        kind="float",
        minimum=0.0,
        strict=False,
        optional=True,
        help="depth-weighting exponent (None: no depth weighting)",
    )
    nave: int | None = option(
        None,
        kind="int",
        minimum=1,
        help="number of averaged trials (None: the data's own, an evoked's nave or a "
        "simulation's, else 1)",
    )
    hemi: str | None = option(
        None,
        choices=HEMIS,
        optional=True,
        help="hemisphere(s) forming the image rows (None: a simulation's, else 'rh')",
    )
    normalisation: str = option(
        "column-max", choices=NORMALISATIONS, help="per-image scaling of the input stacks"
    )
    precision: str = _precision_option()


@config
class DatasetConfig(ConfigBase):
    """Sizes and seeds of the train/val/test example sets (with a Simulation- and InverseConfig)."""

    n_train: int = option(2000, minimum=1, help="training examples")
    n_val: int = option(300, minimum=1, help="validation examples")
    n_test: int = option(642, minimum=1, help="test examples")
    seed: int = option(0, minimum=0, help="master seed; each split gets its own disjoint seed")
    amplitudes: bool = option(
        False, help="also store the true source amplitudes (A·m) of every example"
    )


@config
class StreamConfig(ConfigBase):
    """Training data simulated on the fly (:class:`napari_meg_unet.dataset.StreamSpec`)."""

    examples_per_epoch: int = option(
        25680, minimum=1, help="examples drawn per epoch (never repeated: the stream is endless)"
    )
    n_val: int = option(321, minimum=1, help="examples of the fixed validation set")
    data_seed: int = option(
        0, minimum=0, help="master seed of the data: the stream and the validation set get "
        "disjoint seeds (the weights' seed is the training's)",
    )  # fmt: skip


@config
class TrainingConfig(ConfigBase):
    """Options of :func:`napari_meg_unet.train.fit` (None: the recipe's or the resumed run's)."""

    model: str | None = option(
        None, choices=MODELS, optional=True, help="network (None: thesis, or the resumed run's)"
    )
    preset: str | None = option(
        None, kind="str", help="model and recipe preset (None: small, or the resumed run's)"
    )
    epochs: int | None = option(None, kind="int", minimum=1, help="epochs (None: the recipe's)")
    lr: float | None = option(
        None, kind="number", minimum=0.0, help="learning rate, e.g. 0.02 or 1/50 (None: "
        "the recipe's)",
    )  # fmt: skip
    batch_size: int | None = option(
        None, kind="int", minimum=1, help="global batch size, split over DDP ranks (None: the "
        "recipe's)",
    )  # fmt: skip
    device: str = option("auto", kind="str", help="'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")
    amp: str = option("auto", choices=AMP_MODES, help="mixed precision (auto: bf16 on CUDA)")
    seed: int = option(0, minimum=0, help="seed of the weights, sample order and dropout")
    deterministic: bool = option(False, help="use deterministic algorithms only")
    early_stopping: bool = option(
        True, help="stop when the validation DLE stops improving for 'patience' epochs"
    )
    compile: bool = option(False, help="use torch.compile for the training forward pass")
    num_threads: int | None = option(
        None, kind="int", minimum=1, help="CPU threads (None: the available cores up to 16)"
    )
    num_workers: int = option(0, minimum=0, help="data-loader worker processes")


@config
class EvaluationConfig(ConfigBase):
    """How estimates are scored (:mod:`napari_meg_unet.evaluation`)."""

    protocols: tuple = option(
        PROTOCOLS, choices=PROTOCOLS, help="per sample (the thesis) and/or the window's mean map"
    )
    n_boot: int = option(2000, minimum=1, help="bootstrap resamples of the confidence intervals")
    seed: int = option(0, minimum=0, help="seed of the bootstrap and of the AUC negative draws")


#: What marks the events of a raw recording (besides a path to an MNE events file).
EVENT_SOURCES = ("auto", "none", "stim", "annotations")
#: How a subject's maps are carried to a template network's source space and back.
MORPHS = ("auto", "sphere", "mni")


@config
class RecordingConfig(ConfigBase):
    """How a recording (FIF evoked/epochs/raw or BIDS) becomes the sensor data to invert."""

    tmin: float | None = option(
        None, kind="float", help="start (s): of the epochs around events (None: -0.2), or of "
        "the crop of a continuous recording (None: its first sample)",
    )  # fmt: skip
    tmax: float | None = option(
        None, kind="float", help="end (s): of the epochs (None: 0.5), or of the crop of a "
        "continuous recording (None: its last sample)",
    )  # fmt: skip
    events: str = option(
        "auto", kind="str", help="events of a raw recording: 'stim' (trigger channel), "
        "'annotations', 'none' (use it continuous), a path to an MNE events file, or 'auto' "
        "(a BIDS recording's events.tsv, else continuous)",
    )  # fmt: skip
    stim_channel: str | None = option(
        None, kind="str", help="trigger channel of events='stim' (None: MNE's default)"
    )
    condition: str | None = option(
        None, kind="str", help="keep only this condition (evoked comment or event name)"
    )
    average: bool = option(
        True, flag="--each-epoch", help="average epochs per condition (with its nave); "
        "--each-epoch keeps one output per epoch (nave 1)",
    )  # fmt: skip
    baseline: bool = option(
        True, flag="--no-baseline", help="subtract the pre-stimulus mean of epochs cut here "
        "(when tmin < 0)",
    )  # fmt: skip
    l_freq: float | None = option(
        None, kind="float", minimum=0.0, help="high-pass edge (Hz) applied before cutting"
    )
    h_freq: float | None = option(
        None, kind="float", minimum=0.0, help="low-pass edge (Hz) applied before cutting"
    )

    def _check(self) -> None:
        if self.tmin is not None and self.tmax is not None and self.tmax <= self.tmin:
            raise ValueError(f"tmax must be > tmin, got tmin={self.tmin}, tmax={self.tmax}.")
        if self.l_freq is not None and self.h_freq is not None and self.h_freq <= self.l_freq:
            raise ValueError(
                f"h_freq must be > l_freq for a band-pass, got l_freq={self.l_freq}, "
                f"h_freq={self.h_freq}."
            )


@config
class NetworkApplyConfig(ConfigBase):
    """How a trained network is applied to a recording of any length and sampling rate."""

    resample: bool = option(
        True, flag="--no-resample", help="resample the recording to the network's sampling "
        "rate (said in the output); --no-resample refuses a different rate",
    )  # fmt: skip
    overlap: float = option(
        0.5, minimum=0.0, maximum=0.9, strict=False, help="fraction of the network's window "
        "shared by consecutive windows (stitched by a triangular weighting)",
    )  # fmt: skip
    morph: str = option(
        "auto", choices=MORPHS, help="carrying the subject's maps to a template network's "
        "sources and back: 'sphere' (mne.compute_source_morph, needs surf/?h.sphere.reg and "
        "fsaverage), 'mni' (Gaussian mapping of MNI positions via talairach.xfm), 'auto' "
        "(sphere when available, else mni)",
    )  # fmt: skip
    batch_size: int = option(16, minimum=1, help="windows per forward pass")


@config
class RecordingTrainingConfig(ConfigBase):
    """Options of :func:`napari_meg_unet.training_for_recording.train_for_recording` (beyond
    the simulation, dataset, inverse and training configs)."""

    condition: str | None = option(
        None, kind="str", help="train for this condition only (an evoked comment or an event "
        "name; None: all of them)",
    )  # fmt: skip
    spacing: str | None = option(
        None, kind="str", help="source spacing of a head model built here (None: ico3 on the "
        "template, oct5 on a subject with FreeSurfer surfaces)",
    )  # fmt: skip
    emptyroom_max_days: float = option(
        30.0, minimum=0.0, strict=False, help="use an empty-room recording made at most this "
        "many days from the recording",
    )  # fmt: skip
    keep_data: bool = option(
        False, help="keep the simulated example sets (OUT/data) after training"
    )
    sensor_network: bool = option(
        False, help="train the sensor network (one source per window, on no grid; with "
        "--design multi up to the largest --n-dipoles; OUT/network/sensor-net.pt) instead of "
        "a U-Net",
    )  # fmt: skip


@config
class SensorNetConfig(ConfigBase):
    """Training recipe of the sensor network (:mod:`napari_meg_unet.models.sensor_dipole`)."""

    n_blocks: int = option(
        800, minimum=1, flag="--sensor-blocks", help="blocks of new simulated events the "
        "sensor network trains on (its budget)",
    )  # fmt: skip
    block: int = option(
        512, minimum=1, flag="--sensor-block", help="events per block of the sensor network"
    )
    # the rest of the recipe: not on the command line, whose train parser has its own
    # batch size, learning rate and weight decay (the U-Net's)
    passes: int = option(4, minimum=1, cli=False, help="passes over each block")
    batch_size: int = option(128, minimum=1, cli=False, help="events per optimiser step")
    lr: float = option(1e-3, minimum=0.0, cli=False, help="AdamW's initial learning rate (it "
                       "falls linearly to a twentieth)")  # fmt: skip
    weight_decay: float = option(1e-4, minimum=0.0, strict=False, cli=False,
                                 help="AdamW's weight decay")  # fmt: skip
    val_events: int = option(1024, minimum=1, cli=False, help="events of the validation draw")
    val_every: int = option(20, minimum=1, cli=False, help="blocks between validations")


@config
class PeerConfig(ConfigBase):
    """Which peers are scored, and on how many events (:mod:`napari_meg_unet.peers`)."""

    peers: tuple | None = option(
        None, kind="choices", choices=PEERS, optional=True, cli=False,
        help="peers scored next to the linear inverses and networks; their "
        "hyper-parameters are chosen on validation simulations only",
    )  # fmt: skip
    peer_events: int = option(
        100, minimum=1, help="test events of each fast peer (the first ones of each test set)"
    )
    peer_events_slow: int = option(
        20, minimum=1, help="test events of each slow peer (BEM dipole fits, gamma-MAP)"
    )
    search_events: int = option(
        30, minimum=1, help="validation events of each fast peer's hyper-parameter search"
    )
    search_events_slow: int = option(
        10, minimum=1, help="validation events of each slow peer's hyper-parameter search"
    )
    sensor_blocks: int | None = option(
        None, kind="int", minimum=1, flag="--sensor-net-blocks", help="blocks of new events "
        "the sensor-net peers train on (None: their recipe's, SensorNetConfig.n_blocks)",
    )  # fmt: skip
    sensor_net_file: str | None = option(
        None, kind="str", help="a trained sensor network (.pt of train --sensor-network or "
        "benchmarks/sensor_net_device.py) the sensor-net peers use instead of training one; "
        "it must fit the conditions (channels, window, one or several sources)",
    )  # fmt: skip
