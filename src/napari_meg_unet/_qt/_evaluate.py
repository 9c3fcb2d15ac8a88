"""Evaluate dock widget: DLE/SD/OA/AUC with CIs, DLE densities, per-vertex DLE maps, export."""

from __future__ import annotations

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, Select, SpinBox
from qtpy.QtWidgets import QFileDialog, QLabel, QTableWidget, QTableWidgetItem

from ..configs import PEERS, EvaluationConfig, PeerConfig
from ..evaluation import TABLE_METRICS, shown_metrics
from ..layers import META_KEY, STACK_ORDER, stack_values
from ..metrics import dle_density, dle_density_grid, format_aggregate, per_event_mean
from ._checks import prediction_problem
from ._common import DockWidget, ThreadedPlot, is_sensor_layer, layer_combo, option_widget
from ._export import write_evaluation
from ._inputs import PROTOCOLS, EvaluateInputs, InverseInputs, spec
from ._layerqueue import queue_for
from ._tasks import dle_map_tuple, iter_evaluate_step

#: What the table's DLE is (the Train widget shows the validation DLE's definition).
DLE_DEFINITION = (
    "DLE: the distance (mm) from each true source to the matched peak of the estimate "
    "('window': the estimate averaged over the event's active window; 'samples': every active "
    "sample), averaged per event, then over events with a bootstrap 95% CI. The Train widget's "
    "validation DLE is the 'window' DLE of the network on its validation set."
)


def _is_simulation_layer(layer) -> bool:
    return is_sensor_layer(layer) and layer.metadata.get("simulation") is not None


class EvaluateWidget(DockWidget):
    """Score every estimator of a simulation: the linear methods, the predictions, the peers.

    Linear methods are those with a stack layer on the chosen simulation
    (scored with their λ²/loose/depth by :func:`..evaluation.iter_evaluate_linear`;
    the Inverse widget defaults when there is none), networks are the
    ``prediction (...)`` layers of that simulation; a prediction made for
    other rows (another hemisphere) or another simulation is refused. The
    peers chosen (:mod:`..peers`) are searched on a validation simulation of
    the same settings and scored on the first ``peer events`` events.
    Aggregates are per event with bootstrap 95% CIs. The per-vertex mean DLE
    of the chosen estimator is drawn on a ``mean DLE (<estimator>)`` surface;
    with multi-dipole events each true source contributes its own distance.
    """

    title = "Evaluate"

    def __init__(self, napari_viewer):
        super().__init__(napari_viewer)
        d = EvaluateInputs()
        self.data_layer = layer_combo(napari_viewer, _is_simulation_layer, label="simulation")
        self.protocol_boxes = {p: CheckBox(label=f"protocol {p}", value=p in d.protocols)
                               for p in PROTOCOLS}  # fmt: skip
        self.n_boot = SpinBox(
            label="bootstrap resamples", min=100, max=100_000, value=d.n_boot,
            tooltip=spec(EvaluationConfig, "n_boot")["help"],
        )  # fmt: skip
        self.seed = option_widget(EvaluationConfig, "seed")
        self.peers = Select(
            label="peers", choices=PEERS, value=list(d.peers),
            tooltip="methods a researcher would use instead (dipole fits, RAP-MUSIC, "
            "gamma-MAP, MxNE, LCMV, CMNE, this project's sensor networks): each searched on a "
            "validation simulation of the same settings, then scored on the first 'peer "
            "events' events (window protocol); the slow ones take seconds per event",
        )  # fmt: skip
        self.peer_events = SpinBox(
            label="peer events", min=1, max=100_000, value=d.peer_events,
            tooltip=spec(PeerConfig, "peer_events")["help"],
        )  # fmt: skip
        self.form = Container(
            widgets=[self.data_layer, *self.protocol_boxes.values(), self.n_boot, self.seed,
                     self.peers, self.peer_events]
        )  # fmt: skip
        self.add(self.form)
        self.evaluate_button = self.button("Evaluate", self.evaluate)
        shown = shown_metrics([])
        self.table = QTableWidget(0, 2 + len(shown))
        self.table.setHorizontalHeaderLabels(["estimator", "protocol",
                                              *(TABLE_METRICS[m] for m in shown)])  # fmt: skip
        self.table.setMinimumHeight(140)
        self.add(self.table)
        definition = QLabel(DLE_DEFINITION)
        definition.setWordWrap(True)
        self.add(definition)
        self.plot = ThreadedPlot(_setup_density, _update_density, height=2.4)
        self.add(self.plot)
        self.map_of = ComboBox(label="DLE map of", choices=[])
        self.add(self.map_of)
        self.map_note = QLabel("")
        self.map_note.setWordWrap(True)
        self.add(self.map_note)
        self.export_button = self.button("Export CSV/JSON…", self._export_dialog)
        self.finish(self.form)
        self.evaluation = None
        self.maps = {}
        self._context = None
        self.map_of.changed.connect(self._show_map)

    def inputs(self) -> EvaluateInputs:
        return EvaluateInputs(
            protocols=tuple(p for p, box in self.protocol_boxes.items() if box.value),
            n_boot=self.n_boot.value, seed=self.seed.value, peers=tuple(self.peers.value),
            peer_events=self.peer_events.value,
        )  # fmt: skip

    def _estimators(self, sim):
        """Linear methods (with their parameters) and predictions made on ``sim``."""
        methods, params, networks, refused = [], None, {}, []
        for layer in self.viewer.layers:
            lay = layer.metadata.get(META_KEY)
            if lay is None or lay["role"] != "stack":
                continue
            made_on = layer.metadata.get("simulation")
            if lay["name"].startswith("prediction"):
                problem = prediction_problem(layer.metadata, sim)
                if problem is None:
                    networks[lay["name"]] = stack_values(layer.data, layer.metadata)
                elif made_on is not None and made_on.fingerprint == sim.fingerprint:
                    refused.append(problem)
                continue
            if made_on is None or made_on.fingerprint != sim.fingerprint:
                continue
            if lay["name"] in STACK_ORDER[1:]:
                these = {k: layer.metadata[k] for k in ("lambda2", "loose", "depth")}
                if params is not None and these != params:
                    raise ValueError(
                        "the inverse layers of this simulation were computed with different "
                        "parameters; recompute them together (Inverse widget)."
                    )
                params = these
                methods.append(lay["name"])
        if refused:
            raise ValueError("; ".join(refused) + ".")
        if not methods and not networks:
            methods = list(InverseInputs().methods)
        if params is None:
            d = InverseInputs()
            params = dict(lambda2=d.lambda2_value(), **d.operator_kwargs())
        order = [m for m in STACK_ORDER if m in methods]
        return order, params, networks

    def evaluate(self):
        try:
            inputs = self.inputs()
            inputs.validate()
            if not self.data_layer.value:
                raise ValueError("no simulation: simulate or open a sample first.")
            layer = self.viewer.layers[self.data_layer.value]
            sim, hm = layer.metadata["simulation"], layer.metadata["headmodel"]
            methods, params, networks = self._estimators(sim)
        except Exception as err:
            self.fail(err)
            return None
        self._context = (hm, sim)
        return self.run_step(iter_evaluate_step, hm, sim, methods=methods, inverse_params=params,
                             networks=networks, inputs=inputs, on_done=self._done)  # fmt: skip

    def _done(self, step, _made):
        self.evaluation, self.maps = step.value
        evaluation = self.evaluation
        keys = list(evaluation.summary)
        shown = shown_metrics(list(evaluation.summary.values()))
        self.table.setColumnCount(2 + len(shown))
        self.table.setHorizontalHeaderLabels(["estimator", "protocol",
                                              *(TABLE_METRICS[m] for m in shown)])  # fmt: skip
        self.table.setRowCount(len(keys))
        for i, (estimator, protocol) in enumerate(keys):
            cells = [estimator, protocol] + [
                format_aggregate(evaluation.summary[(estimator, protocol)].get(metric))
                for metric in shown
            ]
            for j, text in enumerate(cells):
                self.table.setItem(i, j, QTableWidgetItem(text))
        self.table.resizeColumnsToContents()
        self._draw_density()
        _, sim = self._context
        multi = np.diff(sim.event_indptr).max() > 1
        self.map_note.setText(
            ("Per-vertex DLE: with several sources per event, each true source is matched to a "
             "peak (optimal assignment) and its own distance goes to its vertex."
             if multi else "Per-vertex DLE: the mean DLE of the events with a source at that "
             "vertex.")
            + " Shown on the vertex and its mesh neighbours without a source; grey: no source."
        )  # fmt: skip
        names = [f"{est} ({prot})" for est, prot in keys]
        with self.map_of.changed.blocked():  # one map worker, not one per signal
            self.map_of.choices = names
            if names:
                self.map_of.value = names[0]
        if names:
            self._show_map()
        floor = evaluation.grid_floor
        self.status.setText(
            f"{len(keys)} estimator/protocol rows; grid floor {format_aggregate(floor)} mm"
            if floor else f"{len(keys)} estimator/protocol rows"
        )

    def per_event_dle(self) -> dict:
        """``{"<estimator> (<protocol>)": per-event mean DLE (mm)}`` of the last evaluation.

        Estimator/protocol pairs without a finite DLE are left out; these are
        the values whose densities :meth:`_draw_density` draws.
        """
        out = {}
        for (estimator, protocol), scores in self.evaluation.scores.items():
            values = per_event_mean(scores["dle_mm"], scores["event"])
            if values.size:
                out[f"{estimator} ({protocol})"] = values
        return out

    def _draw_density(self):
        self.plot.submit(self.per_event_dle())

    def _show_map(self, *_):
        from napari.qt.threading import thread_worker

        from ._common import make_layers

        if self.evaluation is None or not self.map_of.value or self._context is None:
            return
        hm, sim = self._context
        key = next(k for k in self.maps if f"{k[0]} ({k[1]})" == self.map_of.value)
        per_row = self.maps[key]
        if not np.isfinite(per_row).any():
            self.map_note.setText(f"No per-vertex DLE for {key[0]}: no event could be scored.")
            return

        viewer = self.viewer

        def work():  # placed among the viewer's layers here: adding it moves nothing
            return make_layers([dle_map_tuple(hm, sim, per_row, estimator=key[0],
                                              protocol=key[1])], viewer)  # fmt: skip

        return thread_worker(
            work, connect={"returned": lambda made: queue_for(self.viewer).add(made, fit=False),
                           "errored": self.fail},
        )()  # fmt: skip

    def export(self, path, *, overwrite: bool = False):
        """Write the evaluation to ``path`` (``.csv`` rows or ``.json`` summary)."""
        if self.evaluation is None:
            raise ValueError("nothing to export: run Evaluate first.")
        return write_evaluation(self.evaluation, path, overwrite=overwrite)

    def _export_dialog(self):
        path, _ = QFileDialog.getSaveFileName(
            self, "Export evaluation", "evaluation.csv", "CSV (*.csv);;JSON (*.json)"
        )
        if path:  # the dialog has asked before replacing a file
            try:
                self.export(path, overwrite=True)
            except Exception as err:
                self.fail(err)


def _setup_density(figure):
    figure.subplots_adjust(left=0.15, right=0.97, bottom=0.19, top=0.95)
    return figure.add_subplot()


def _update_density(ax, dle):
    ax.clear()
    if dle:
        grid = dle_density_grid(np.concatenate(list(dle.values())))
    for label, values in dle.items():
        density = dle_density(values, grid)[1]
        if density is not None:
            ax.plot(grid, density, label=label)
        else:  # a density of one distinct value is undefined: mark the value
            ax.axvline(values.mean(), label=label)
    ax.set_xlabel("per-event DLE (mm)")
    ax.set_ylabel("density")
    if dle:
        ax.legend(fontsize=7)
