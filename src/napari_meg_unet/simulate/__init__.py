"""Vectorised dipole simulation on a head model's gain matrix.

Sensor data for every event is ``gain[:, sources] @ time_courses`` plus
noise, computed for chunks of events with one batched matrix product each
(no :func:`mne.simulation.simulate_raw`). Three designs are available:

``"sweep"``
    One dipole per event; every source row of the chosen hemisphere(s) is
    used exactly ``n_repeats`` times, in a shuffled order.
``"multi"``
    ``n_events`` events with several simultaneous dipoles at distinct rows,
    optionally at least ``min_separation_mm`` apart.
``"extended"``
    One cortical patch per event, grown along the source-space mesh from a
    seed row to a radius of ``extent_mm``.

The signal-to-noise ratio is set exactly, per event, in whitened sensor
space; see ``docs/simulation.md`` for the definitions.

Modules: :mod:`.container` (the :class:`Simulation`, its files and
fingerprint), :mod:`.layout` (rows, dense vertices, patches),
:mod:`.waveforms`, :mod:`.noise` and :mod:`.core` (:func:`iter_simulate`).
The options are declared once, in :class:`~napari_meg_unet.configs.SimulationConfig`.
"""

from __future__ import annotations

from ..configs import (
    DEFAULT_N_TIMES,
    DESIGNS,
    HEMIS,
    REALISTIC_DURATION,
    REALISTIC_FREQ,
    REALISTIC_REL_AMPLITUDE,
    REALISTIC_SFREQ,
    THESIS_DURATION,
    THESIS_FREQ,
    THESIS_SFREQ,
    TIMECOURSES,
    SimulationConfig,
)
from ..configs import NOISES as _NOISE_MODELS
from .container import (
    FORMAT_NAME,
    FORMAT_VERSION,
    INFO_FILE,
    SIDECAR,
    SOURCE_COLUMNS,
    Simulation,
    load_simulation,
    simulation_fingerprint,
)
from .core import SWEEP_DENSE_SPACING, estimate_simulation, iter_simulate, simulate

#: Values of ``noise``: the noise models, and None for noise-free data.
NOISES = (*_NOISE_MODELS, None)

__all__ = [
    "DEFAULT_N_TIMES",
    "DESIGNS",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "HEMIS",
    "INFO_FILE",
    "NOISES",
    "REALISTIC_DURATION",
    "REALISTIC_FREQ",
    "REALISTIC_REL_AMPLITUDE",
    "REALISTIC_SFREQ",
    "SIDECAR",
    "SOURCE_COLUMNS",
    "SWEEP_DENSE_SPACING",
    "Simulation",
    "SimulationConfig",
    "THESIS_DURATION",
    "THESIS_FREQ",
    "THESIS_SFREQ",
    "TIMECOURSES",
    "estimate_simulation",
    "iter_simulate",
    "load_simulation",
    "simulate",
    "simulation_fingerprint",
]
