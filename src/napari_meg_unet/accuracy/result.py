"""The outcome of an accuracy run and the report folder written from it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .._io import atomic_dir, atomic_path, save_npy, to_json, write_json
from .table import format_table

#: Default file names of the figures written by :meth:`AccuracyResult.save`.
FIGURE_NAMES = {
    "dle_kde": "dle_kde_{condition}.png",
    "example": "example_{condition}.png",
    "training": "training_curves.png",
}


def _slug(label: str) -> str:
    keep = [c if c.isalnum() or c in "-_" else "-" for c in label]
    return "".join(keep).strip("-").replace("--", "-")


@dataclass
class AccuracyResult:
    """Outcome of an accuracy run (:func:`~napari_meg_unet.accuracy.iter_run_accuracy`).

    Attributes
    ----------
    summary : dict
        JSON-friendly results: preset, machine, networks (training time,
        throughput, time to target, history), per-condition result rows,
        grid floors, targets, stability experiments, runtime.
    per_vertex : dict
        ``{condition: {label: (n_rows,) mean DLE (mm) per true source row}}``.
    per_event_dle : dict
        ``{condition: {label: (n_events,) DLE (mm) per event}}``.
    examples : dict
        ``{condition: {"event", "times", "true_rows", "panels": {title: image}}}``,
        one test event's truth, dSPM and network maps.
    """

    summary: dict
    per_vertex: dict = field(default_factory=dict)
    per_event_dle: dict = field(default_factory=dict)
    examples: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """The JSON-friendly summary (a copy)."""
        import json

        return json.loads(to_json(self.summary))

    def table(self) -> str:
        """Human-readable markdown report of the results."""
        return format_table(self.summary)

    def save(self, out, *, overwrite=False, figure_names=None, markdown=True) -> dict:
        """Write the report folder ``out`` atomically (see :meth:`write` for its files).

        Everything is written into a temporary sibling directory that replaces
        ``out`` at the end, so a failure leaves ``out`` untouched.

        Parameters
        ----------
        out : path-like
            Output directory; an existing one is refused unless ``overwrite``
            (then it is replaced as a whole).
        overwrite : bool
            Replace an existing ``out``.
        figure_names, markdown
            See :meth:`write`.

        Returns
        -------
        files : dict
            See :meth:`write`.
        """
        with atomic_dir(out, overwrite=overwrite, what="report folder") as tmp:
            files = self.write(tmp, figure_names=figure_names, markdown=markdown)
        return files

    def write(self, directory, *, figure_names=None, markdown=True) -> dict:
        """Write ``results.json``, ``results.md``, PNG plots and per-vertex ``.npy`` arrays.

        Parameters
        ----------
        directory : path-like
            An existing directory (files in it with the same names are replaced).
        figure_names : dict | None
            File names of the figures, replacing :data:`FIGURE_NAMES` entries
            (``"dle_kde"`` and ``"example"`` may use ``{condition}``).
        markdown : bool
            Also write ``results.md`` (:meth:`table`).

        Returns
        -------
        files : dict
            Paths relative to ``directory``: ``"plots"``, ``"per_vertex"`` (lists),
            ``"json"`` and (with ``markdown``) ``"markdown"``.
        """
        out = Path(directory)
        if not out.is_dir():
            raise FileNotFoundError(f"directory {str(out)!r} does not exist.")
        names = {**FIGURE_NAMES, **(figure_names or {})}
        per_vertex = self._write_per_vertex(out)
        plots = [*self._plot_dle(out, names), *self._plot_training(out, names),
                 *self._plot_examples(out, names)]  # fmt: skip
        files = {
            key: [str(Path(p).relative_to(out)) for p in paths]
            for key, paths in (("plots", plots), ("per_vertex", per_vertex))
        }
        if markdown:
            with atomic_path(out / "results.md") as tmp:
                tmp.write_text(self.table() + "\n")
            files["markdown"] = "results.md"
        summary = self.to_dict()
        summary["files"] = files
        write_json(out / "results.json", summary)
        files["json"] = "results.json"
        return files

    def _write_per_vertex(self, out: Path) -> list:
        paths = []
        for cond, arrays in self.per_vertex.items():
            for label, values in arrays.items():
                path = out / "per_vertex" / f"{cond}__{_slug(label)}.npy"
                paths.append(save_npy(path, values))
        return paths

    def _plot_dle(self, out: Path, names: dict) -> list:
        from .. import report

        paths = []
        for cond, dle in self.per_event_dle.items():
            floor = self.summary["conditions"][cond]["grid_floor_mm"]
            paths.append(report.plot_dle_kde(
                dle, out / names["dle_kde"].format(condition=cond), overwrite=True,
                grid_floor_mm=floor["mean"] if floor else None,
                title=f"{self.summary['preset']} / {cond}: DLE per test event",
            ))  # fmt: skip
        return paths

    def _plot_training(self, out: Path, names: dict) -> list:
        from .. import report

        nets = self.summary["networks"].values()
        trained = [net for net in nets if net.get("history")]
        histories = {f"{net['estimator']} ({net['kind']})": net["history"] for net in trained}
        if not histories:
            return []
        batch_losses = {
            f"{net['estimator']} ({net['kind']})": net["batch_loss"]
            for net in trained
            if net.get("batch_loss", {}).get("epoch")
        }
        refs = {f"dSPM ({net['kind']} validation)": net.get("val_reference_dle_mm")
                for net in nets}  # fmt: skip
        return [report.plot_training_curves(
            histories, out / names["training"], references=refs, overwrite=True,
            batch_losses=batch_losses, title=f"bench accuracy {self.summary['preset']}: training",
        )]  # fmt: skip

    def _plot_examples(self, out: Path, names: dict) -> list:
        from .. import report

        return [report.plot_example(
            ex["panels"], out / names["example"].format(condition=cond), times=ex["times"],
            true_rows=ex["true_rows"], overwrite=True,
            title=f"{cond}: test event {ex['event']} (arrows: true source row)",
        ) for cond, ex in self.examples.items()]  # fmt: skip
