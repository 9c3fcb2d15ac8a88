"""Simulate dock widget: dipoles on the current head model -> sensor data, truth, cortex."""

from __future__ import annotations

from magicgui.widgets import CheckBox, ComboBox, Container, FloatSpinBox, SpinBox

from .. import layers
from .._sample_data import simulation_layers
from ._common import DockWidget, add_or_replace, current_headmodel, place_all, show_on_cortex
from ._inputs import DESIGNS, HEMIS, TIMECOURSES, SimulateInputs


class SimulateWidget(DockWidget):
    """Simulate events on the current head model (``cortex`` layer or a sample).

    Adds ``sensor data`` (events x channels x time) and ``truth`` (events x
    vertices x time, A·m) and shows the truth on the ``cortex`` layer.
    """

    title = "Simulate"

    def __init__(self, napari_viewer):
        super().__init__(napari_viewer)
        d = SimulateInputs()
        self.design = ComboBox(label="design", choices=DESIGNS, value=d.design)
        self.hemi = ComboBox(label="hemisphere", choices=HEMIS, value=d.hemi)
        self.n_events = SpinBox(label="events", min=1, max=100_000, value=d.n_events)
        self.n_dipoles = SpinBox(label="dipoles (min)", min=1, max=50, value=d.n_dipoles)
        self.n_dipoles_max = SpinBox(label="dipoles (max)", min=1, max=50, value=d.n_dipoles_max)
        self.min_separation = FloatSpinBox(
            label="min separation (mm)", min=0.0, max=200.0, value=d.min_separation_mm
        )
        self.extent = FloatSpinBox(label="patch radius (mm)", min=0.5, max=100.0,
                                   value=d.extent_mm)  # fmt: skip
        self.off_grid = CheckBox(label="off grid", value=d.off_grid)
        self.snr = FloatSpinBox(label="SNR", min=0.01, max=1000.0, step=0.5, value=d.snr)
        self.timecourse = ComboBox(label="time course", choices=TIMECOURSES, value=d.timecourse)
        self.seed = SpinBox(label="seed", min=0, max=2**31 - 1, value=d.seed)
        self.form = Container(
            widgets=[self.design, self.hemi, self.n_events, self.n_dipoles, self.n_dipoles_max,
                     self.min_separation, self.extent, self.off_grid, self.snr, self.timecourse,
                     self.seed]  # fmt: skip
        )
        self.add(self.form)
        self.simulate_button = self.button("Simulate", self.simulate)
        self.finish(self.form)
        self.simulation = None

    def inputs(self) -> SimulateInputs:
        return SimulateInputs(
            design=self.design.value, hemi=self.hemi.value, n_events=self.n_events.value,
            n_dipoles=self.n_dipoles.value, n_dipoles_max=self.n_dipoles_max.value,
            min_separation_mm=self.min_separation.value, extent_mm=self.extent.value,
            off_grid=self.off_grid.value, snr=self.snr.value, timecourse=self.timecourse.value,
            seed=self.seed.value,
        )  # fmt: skip

    def simulate(self):
        from ..simulate import iter_simulate

        try:
            kwargs = self.inputs().simulate_kwargs()
            hm = current_headmodel(self.viewer)
            if hm is None:
                raise ValueError("no head model: build one with the Head model widget first.")
            gen = iter_simulate(hm, verbose="error", **kwargs)
        except Exception as err:
            self.fail(err)
            return None
        return self.run(gen, on_return=lambda sim: self._done(hm, sim))

    def _done(self, hm, sim):
        self.simulation = sim
        sensor, truth = simulation_layers(hm, sim, cortex=False)
        for data in (sensor, truth):
            add_or_replace(self.viewer, data)
        place_all(self.viewer)
        show_on_cortex(
            self.viewer, hm, hemi=sim.meta["params"]["hemi"], source="truth",
            stack=layers.stack_data(truth[0]), extra={"simulation": sim},
        )  # fmt: skip
        self.status.setText(f"{sim!r}")
