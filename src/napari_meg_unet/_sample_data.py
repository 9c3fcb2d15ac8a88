"""napari sample data: simulated dipoles on the template head (npe2 ``sample_data``).

Both samples use the cached fsaverage5 ico3 MEG template head model
(:func:`.headmodel.make_template_headmodel`; built offline once, about a
minute, then loaded from the cache in a second) and simulate a few events in
about a second. Layers: ``sensor data`` (events x channels x time),
``truth`` (events x vertices x time) and ``cortex`` (the truth on the
inflated template cortex, with the event and cortex-time sliders).
"""

from __future__ import annotations

from . import layers

#: Parameters of the two samples (passed to :func:`.simulate.simulate`).
SAMPLES = {
    "single": dict(design="multi", n_events=8, n_dipoles=1, hemi="both", snr=3.0, seed=0),
    "multi": dict(
        design="multi", n_events=8, n_dipoles=(2, 4), min_separation_mm=30.0, hemi="both",
        snr=3.0, seed=0,
    ),
}  # fmt: skip


def simulation_layers(hm, sim, *, truth_name="truth", cortex=True) -> list:
    """Sensor data, truth stack and cortex layer data tuples of a simulation.

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

    Returns
    -------
    layer_data : list of tuple
        Placed with :func:`.layers.layout_tuples`. Every layer's metadata
        holds ``headmodel``, ``simulation``, ``hemi`` and ``rows``.
    """
    import numpy as np

    hemi = sim.meta["params"]["hemi"]
    rows = np.asarray(sim.rows)
    common = {"headmodel": hm, "simulation": sim, "hemi": hemi, "rows": rows}
    truth = np.stack([sim.truth(i, rows=rows) for i in range(len(sim))])
    sensor = layers.sensor_layer(sim.data, sim.info, name="sensor data", metadata=common)
    stack = layers.stack_layer(
        truth, name=truth_name, sfreq=sim.sfreq, metadata=dict(common, units="A·m")
    )
    out = [sensor, stack]
    if cortex:
        mesh = layers.cortex_mesh_from_headmodel(hm, hemi=hemi, kind="inflated")
        out.append(
            layers.cortex_layer(
                mesh, values=truth, name="cortex", colormap=layers.colormap_for(truth_name),
                metadata=dict(common, shows=truth_name),
            )  # fmt: skip
        )
    return layers.layout_tuples(out)


def _sample(key: str) -> list:
    from .headmodel import make_template_headmodel
    from .simulate import simulate

    hm = make_template_headmodel(spacing="ico3", modality="meg")
    sim = simulate(hm, verbose="error", **SAMPLES[key])
    return simulation_layers(hm, sim)


def single_dipoles() -> list:
    """Eight events with one dipole each, both hemispheres, SNR 3, seed 0."""
    return _sample("single")


def multi_dipoles() -> list:
    """Eight events with 2-4 dipoles at least 30 mm apart, both hemispheres, SNR 3, seed 0."""
    return _sample("multi")
