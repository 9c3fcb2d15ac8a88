"""napari sample data: simulated dipoles on the template head (npe2 ``sample_data``).

Both samples use the cached fsaverage5 ico3 MEG template head model
(:func:`.headmodel.make_template_headmodel`; built offline once, about a
minute, then loaded from the cache in a second) and simulate a few events in
about a second. Layers: ``sensor data`` (events x channels x time), ``truth``
(events x vertices x time, A·m), ``truth sources`` (a marker at every true
source on the stacks), ``cortex`` (the truth on the inflated template cortex,
with the event and cortex-time sliders), ``truth sources (cortex)`` and the
canvas ``titles``.

The plugin's sample commands (``_qt/_open.py``) run :func:`sample_layers` in
a worker thread; :func:`single_dipoles` / :func:`multi_dipoles` run it here.
"""

from __future__ import annotations

import numpy as np

from . import layers

#: Parameters of the two samples (passed to :func:`.simulate.simulate`).
SAMPLES = {
    "single": dict(design="multi", n_events=8, n_dipoles=1, hemi="both", snr=3.0, seed=0),
    "multi": dict(
        design="multi", n_events=8, n_dipoles=(2, 4), min_separation_mm=30.0, hemi="both",
        snr=3.0, seed=0,
    ),
}  # fmt: skip


def simulation_layers(hm, sim, *, truth_name="truth", cortex=True, markers=True, titles=True,
                      layout=True) -> list:  # fmt: skip
    """Sensor data, truth stack, markers, cortex and titles layer data tuples of a simulation.

    Parameters
    ----------
    hm : HeadModel
        The head model the simulation was made on.
    sim : Simulation
        The simulation.
    truth_name : str
        Name of the ground-truth layer.
    cortex : bool
        Also return the ``cortex`` layer showing the truth.
    markers : bool
        Also return the truth markers (on the stacks and, with ``cortex``, on it).
    titles : bool
        Also return the canvas titles layer.
    layout : bool
        Place the tuples (:func:`.layers.layout_tuples`); the widgets place
        them together with the layers already in the viewer instead.

    Returns
    -------
    layer_data : list of tuple
        Every layer's metadata holds ``headmodel``, ``simulation``, ``hemi``
        and ``rows``.
    """
    hemi = sim.meta["params"]["hemi"]
    rows = np.asarray(sim.rows)
    common = {"headmodel": hm, "simulation": sim, "hemi": hemi, "rows": rows,
              "labels": [f"event {i}" for i in range(len(sim))]}  # fmt: skip
    truth = np.stack([sim.truth(i, rows=rows) for i in range(len(sim))]).astype(np.float32)
    sensor = layers.sensor_layer(
        sim.data, sim.info, name="sensor data", metadata=common, event_names=common["labels"]
    )
    stack = layers.stack_layer(
        truth, name=truth_name, sfreq=sim.sfreq, metadata=dict(common, units="A·m"),
        group=sim.fingerprint,
    )  # fmt: skip
    out = [sensor, stack]
    if markers:
        out.append(layers.stack_markers(sim, rows, group=sim.fingerprint,
                                        height=sim.data.shape[2] / sim.sfreq))  # fmt: skip
    if cortex:
        from .layers.cortex import cortex_mesh, cortex_size, headmodel_cortex

        out.append(
            headmodel_cortex(hm, hemi=hemi, source=truth_name, stack=truth, sfreq=sim.sfreq,
                         limits=stack[1]["contrast_limits"],
                         extra=dict(common, source_layer=truth_name, stack=truth))  # fmt: skip
        )
        if markers:
            mesh = cortex_mesh(hm, hemi, cortex_size(hm, truth))
            out.append(layers.cortex_markers(sim, mesh, rows, on="cortex"))
    if titles:
        out.append(layers.titles_layer())
    return layers.layout_tuples(out) if layout else out


def sample_layers(key: str) -> list:
    """The layer data tuples of sample ``key`` (``"single"`` or ``"multi"``)."""
    from .headmodel import make_template_headmodel
    from .simulate import simulate

    hm = make_template_headmodel(spacing="ico3", modality="meg")
    sim = simulate(hm, verbose="error", **SAMPLES[key])
    return simulation_layers(hm, sim)


def single_dipoles() -> list:
    """Eight events with one dipole each, both hemispheres, SNR 3, seed 0."""
    return sample_layers("single")


def multi_dipoles() -> list:
    """Eight events with 2-4 dipoles at least 30 mm apart, both hemispheres, SNR 3, seed 0."""
    return sample_layers("multi")
