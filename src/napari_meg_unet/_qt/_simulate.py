"""Simulate dock widget: dipoles on the current head model -> sensor data, truth, cortex."""

from __future__ import annotations

from magicgui.widgets import Container, FloatSpinBox, SpinBox

from ..configs import SimulationConfig
from ._common import DockWidget, current_headmodel, option_widget
from ._inputs import SimulateInputs, spec
from ._layerqueue import queue_for
from ._tasks import iter_simulate_step


class SimulateWidget(DockWidget):
    """Simulate events on the current head model (``cortex`` layer or a sample).

    Adds ``sensor data`` (events x channels x time), ``truth`` (events x
    vertices x time, A·m), ``truth sources`` (a ring at every true source on
    every stack of the simulation) and shows the truth on the ``cortex`` layer
    with a disc at every source (``truth sources (cortex)``).
    """

    title = "Simulate"

    def __init__(self, napari_viewer):
        super().__init__(napari_viewer)
        d = SimulateInputs()
        cfg = SimulationConfig
        self.design = option_widget(cfg, "design")
        self.hemi = option_widget(cfg, "hemi", label="hemisphere")
        self.n_events = SpinBox(label="events", min=1, max=100_000, value=d.n_events,
                                tooltip="number of events (multi, extended)")  # fmt: skip
        self.n_dipoles = SpinBox(label="dipoles (min)", min=1, max=50, value=d.n_dipoles,
                                 tooltip="dipoles per multi event (lower end)")  # fmt: skip
        self.n_dipoles_max = SpinBox(label="dipoles (max)", min=1, max=50, value=d.n_dipoles_max,
                                     tooltip="dipoles per multi event (upper end)")  # fmt: skip
        self.min_separation = FloatSpinBox(
            label="min separation (mm)", min=0.0, max=200.0, value=d.min_separation_mm,
            tooltip=spec(cfg, "min_separation_mm")["help"],
        )  # fmt: skip
        self.extent = option_widget(cfg, "extent_mm", label="patch radius (mm)")
        self.off_grid = option_widget(cfg, "off_grid", label="off grid")
        self.snr = FloatSpinBox(
            label="SNR", min=0.01, max=1000.0, step=0.5, value=d.snr,
            tooltip=spec(cfg, "snr")["help"],
        )  # fmt: skip
        self.timecourse = option_widget(cfg, "timecourse", label="time course")
        self.seed = option_widget(cfg, "seed")
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
        try:
            kwargs = self.inputs().simulate_kwargs()
            hm = current_headmodel(self.viewer)
            if hm is None:
                raise ValueError("no head model: build one with the Head model widget first.")
        except Exception as err:
            self.fail(err)
            return None
        return self.run_step(iter_simulate_step, hm, kwargs, on_done=self._done)

    def _done(self, step, made):
        self.simulation = sim = step.value
        queue_for(self.viewer).add(made)
        self.status.setText(f"{sim!r}")
