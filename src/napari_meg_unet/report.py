"""Report building blocks: markdown tables and PNG figures of accuracy results.

Everything here is Qt-free: figures are :class:`matplotlib.figure.Figure`
objects drawn by the Agg canvas directly (pyplot and its global backend are
never touched), so the functions run headless, in worker threads and next to
a napari viewer alike. Every file is written atomically and an existing one is
refused unless ``overwrite=True``.

A *result row* is a dict with ``"estimator"``, ``"protocol"`` and, per metric
key of :data:`TABLE_METRICS`, an aggregate from
:func:`napari_meg_unet.metrics.aggregate` (``mean``, ``ci_low``, ``ci_high``,
...) or None where the metric is not defined (e.g. the AUC of the per-sample
protocol). :meth:`napari_meg_unet.evaluation.Evaluation.to_dict` ``["results"]``
has this form.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ._io import atomic_path, check_output_path
from .evaluation import OPTIONAL_METRICS, TABLE_METRICS, shown_metrics
from .metrics import dle_density, dle_density_grid, format_aggregate

#: Colours of the estimators in every figure (others cycle through the rest of ``tab10``).
ESTIMATOR_COLOURS = {
    "MNE": "#1f77b4",
    "dSPM": "#ff7f0e",
    "sLORETA": "#2ca02c",
    "eLORETA": "#9467bd",
    "thesis U-Net": "#d62728",
    "mesh U-Net": "#000000",
}
#: Rows shown per image panel: taller images are max-pooled over blocks of rows for display.
MAX_DISPLAY_ROWS = 220
#: Longest side of a figure, inches.
_FIGURE_WIDTH = 7.5
_DPI = 120


# =========================================================================== tables
def results_table(
    results: Sequence[Mapping],
    *,
    metrics=None,
    columns=("estimator", "protocol"),
    headers: Mapping | None = None,
) -> str:
    """Markdown table of result rows: label columns, then mean [95% CI] per metric.

    Parameters
    ----------
    results : sequence of dict
        Result rows (see the module docstring); every key of ``columns`` and
        ``metrics`` must be present (a metric may be None), but an optional
        metric (:data:`~napari_meg_unet.evaluation.OPTIONAL_METRICS`) not
        measured in a row is "n/a".
    metrics : sequence of str | None
        Metric keys, among :data:`~napari_meg_unet.evaluation.TABLE_METRICS`;
        None: :func:`~napari_meg_unet.evaluation.shown_metrics` of the rows.
    columns : sequence of str
        Leading label columns, taken verbatim from each row.
    headers : dict | None
        Column titles replacing the keys of ``columns`` (metric titles come
        from ``TABLE_METRICS``).

    Returns
    -------
    table : str
        The markdown table (no trailing newline).
    """
    if isinstance(results, Mapping) or not all(isinstance(r, Mapping) for r in results):
        raise ValueError("results must be a sequence of dicts (result rows).")
    metrics = shown_metrics(results) if metrics is None else list(metrics)
    unknown = [m for m in metrics if m not in TABLE_METRICS]
    if unknown:
        raise ValueError(f"metrics must be among {tuple(TABLE_METRICS)}, got {unknown}.")
    headers = dict(headers or {})
    for i, row in enumerate(results):
        missing = [k for k in (*columns, *metrics) if k not in row and k not in OPTIONAL_METRICS]
        if missing:
            raise ValueError(f"result row {i} lacks the key(s) {missing}.")
    titles = [headers.get(c, c) for c in columns] + [TABLE_METRICS[m] for m in metrics]
    lines = ["| " + " | ".join(titles) + " |", "|" + "---|" * len(titles)]
    for row in results:
        cells = [str(row[c]) for c in columns] + [format_aggregate(row.get(m)) for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def key_value_table(items: Mapping, *, headers=("quantity", "value")) -> str:
    """Two-column markdown table of ``items`` (values formatted with ``str``)."""
    lines = [f"| {headers[0]} | {headers[1]} |", "|---|---|"]
    for key, value in items.items():
        if isinstance(value, float):
            value = f"{value:.4g}"
        lines.append(f"| {key} | {value} |")
    return "\n".join(lines)


# =========================================================================== figures
def _new_figure(n_axes=1, *, height=3.6, ncols=None, sharey=False):
    from matplotlib.figure import Figure

    ncols = n_axes if ncols is None else ncols
    nrows = -(-n_axes // ncols)
    fig = Figure(figsize=(_FIGURE_WIDTH, height * nrows), dpi=_DPI, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=sharey).ravel()
    for ax in axes[n_axes:]:
        ax.set_visible(False)
    return fig, list(axes[:n_axes])


def save_figure(fig, path, *, overwrite=False) -> Path:
    """Write a figure as PNG atomically (Agg canvas; no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    path = check_output_path(path, overwrite=overwrite, what="figure")
    if path.suffix.lower() != ".png":
        raise ValueError(f"path must end in .png, got {str(path)!r}.")
    FigureCanvasAgg(fig)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    return path


def _colour(label: str, index: int) -> str:
    from matplotlib import colormaps

    for name, colour in ESTIMATOR_COLOURS.items():
        if label == name or label.startswith(name + " "):
            return colour
    palette = colormaps["tab10"].colors[4:]  # 0-3 are the linear methods' colours
    return palette[index % len(palette)]


def plot_dle_kde(
    dle: Mapping,
    path,
    *,
    grid_floor_mm=None,
    title="",
    xmax=None,
    overwrite=False,
) -> Path:
    """Kernel-density curves of per-event DLE, one per estimator (cf. thesis Figure 28).

    The curves are :func:`napari_meg_unet.metrics.dle_density` (reflected
    Gaussian KDE, Scott's bandwidth), as in the Evaluate widget.

    Parameters
    ----------
    dle : dict of str -> array
        Per-event DLE values (mm) by label, e.g. ``{"dSPM (window)": ...}``;
        NaNs are dropped.
    path : path-like
        Output ``.png``.
    grid_floor_mm : float | None
        Mean distance from the true sources to the grid, drawn as a dotted
        vertical line (the DLE no grid-bound estimate can beat on average).
    title : str
        Figure title.
    xmax : float | None
        Right end of the DLE axis (default: just past the 99th percentile of
        all values; :func:`napari_meg_unet.metrics.dle_density_grid`).
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    path : Path
    """
    if not isinstance(dle, Mapping) or not dle:
        raise ValueError("dle must be a non-empty dict of label -> per-event DLE values.")
    clean = {}
    for label, values in dle.items():
        values = np.asarray(values, dtype=float).ravel()
        values = values[np.isfinite(values)]
        if values.size == 0:
            raise ValueError(f"dle[{label!r}] holds no finite value.")
        if (values < 0).any():
            raise ValueError(f"dle[{label!r}] holds negative distances.")
        clean[label] = values
    grid = dle_density_grid(np.concatenate(list(clean.values())), xmax=xmax)
    xmax = grid[-1]
    fig, (ax,) = _new_figure()
    for i, (label, values) in enumerate(clean.items()):
        colour = _colour(label, i)
        style = "--" if "sample" in label else "-"
        text = f"{label}: mean {values.mean():.1f} mm (n={values.size})"
        density = dle_density(values, grid)[1]
        if density is not None:
            ax.plot(grid, density, style, color=colour, lw=1.8, label=text)
        else:  # a KDE of one distinct value is undefined: mark the value
            ax.axvline(values.mean(), ls=style, color=colour, lw=1.8, label=text)
    if grid_floor_mm is not None and np.isfinite(grid_floor_mm):
        ax.axvline(
            grid_floor_mm, color="0.3", ls=":", lw=1.2, label=f"grid floor {grid_floor_mm:.1f} mm"
        )
    ax.set_xlim(0, xmax)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("dipole localisation error (mm), per event")
    ax.set_ylabel("density")
    ax.set_title(title)
    ax.legend(fontsize=7, frameon=False)
    return save_figure(fig, path, overwrite=overwrite)


def plot_training_curves(
    histories: Mapping,
    path,
    *,
    batch_losses: Mapping | None = None,
    references: Mapping | None = None,
    title="",
    overwrite=False,
) -> Path:
    """Training / validation loss and validation DLE against epochs for one or more networks.

    Parameters
    ----------
    histories : dict of str -> list of dict
        Per network, the ``history`` of :func:`napari_meg_unet.train.fit`'s
        summary (records with ``epoch``, ``train_loss``, ``val_loss``,
        ``dle_mm``), drawn at the end of each epoch.
    path : path-like
        Output ``.png``.
    batch_losses : dict of str -> dict | None
        Per network (same names), ``{"epoch": [...], "loss": [...]}``: the
        training loss of the batches (or of bins of batches) against the
        fractional epoch at which they ended, drawn as a thin line.
    references : dict of str -> float | None
        Horizontal reference lines on the DLE panel, e.g. dSPM's DLE on the
        validation set with the same definition.
    title : str
        Figure title.
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    path : Path
    """
    batch_losses = _check_histories(histories, batch_losses)
    fig, (ax_loss, ax_dle) = _new_figure(2)
    last_epoch = 1
    for i, (name, history) in enumerate(histories.items()):
        epochs = [r["epoch"] for r in history]
        last_epoch = max(last_epoch, max(epochs))
        colour = _colour(name, i)
        if name in batch_losses:
            curve = batch_losses[name]
            ax_loss.plot(curve["epoch"], curve["loss"], "-", lw=0.8, alpha=0.6, color=colour,
                         label=f"{name} train (batches)")  # fmt: skip
        ax_loss.plot(epochs, [r["train_loss"] for r in history], "-o", ms=4, color=colour,
                     label=f"{name} train (epoch mean)")  # fmt: skip
        ax_loss.plot(epochs, [r["val_loss"] for r in history], "--s", ms=4, color=colour,
                     label=f"{name} validation")  # fmt: skip
        ax_dle.plot(epochs, [r["dle_mm"] for r in history], "-o", ms=4, color=colour, label=name)
    for j, (label, value) in enumerate((references or {}).items()):
        if value is not None and np.isfinite(value):
            ax_dle.axhline(value, color=_colour(label, j), ls=":", lw=1.5,
                           label=f"{label} {value:.1f} mm")  # fmt: skip
    _label_training_axes(ax_loss, ax_dle, last_epoch)
    if title:
        fig.suptitle(title)
    return save_figure(fig, path, overwrite=overwrite)


def _check_histories(histories, batch_losses) -> dict:
    """Validate :func:`plot_training_curves`' inputs; returns ``batch_losses`` as a dict."""
    if not isinstance(histories, Mapping) or not histories:
        raise ValueError("histories must be a non-empty dict of network -> history records.")
    batch_losses = dict(batch_losses or {})
    unknown = sorted(set(batch_losses) - set(histories))
    if unknown:
        raise ValueError(f"batch_losses names {unknown} that are not in histories.")
    for name, history in histories.items():
        if not history:
            raise ValueError(f"histories[{name!r}] is empty (no epoch finished).")
        for key in ("epoch", "train_loss", "val_loss", "dle_mm"):
            if key not in history[0]:
                raise ValueError(f"histories[{name!r}] records lack {key!r}.")
        curve = batch_losses.get(name)
        if curve is not None and len(curve["epoch"]) != len(curve["loss"]):
            raise ValueError(f"batch_losses[{name!r}] has epoch and loss of different length.")
    return batch_losses


def _label_training_axes(ax_loss, ax_dle, last_epoch) -> None:
    from matplotlib.ticker import MaxNLocator

    for ax in (ax_loss, ax_dle):
        ax.set_xlim(0, last_epoch + 0.2)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7, frameon=False)
    ax_loss.set_ylabel("loss")
    ax_loss.set_title("loss")
    ax_dle.set_ylabel("validation DLE (mm)")
    ax_dle.set_ylim(bottom=0)
    ax_dle.set_title("validation DLE")


def _pool_rows(image, block):
    """Maximum over consecutive blocks of ``block`` rows (the last one zero-padded)."""
    n_rows, n_times = image.shape
    n_shown = -(-n_rows // block)
    padded = np.zeros((n_shown * block, n_times))
    padded[:n_rows] = image
    return padded.reshape(n_shown, block, n_times).max(axis=1)


def plot_example(
    panels: Mapping,
    path,
    *,
    times=None,
    true_rows=None,
    title="",
    overwrite=False,
) -> Path:
    """Vertex x time images side by side (e.g. truth, an inverse, the network's map).

    Parameters
    ----------
    panels : dict of str -> array, shape (n_rows, n_times)
        Images by title; each is shown as ``|value|`` scaled to its own maximum
        (images taller than :data:`MAX_DISPLAY_ROWS` rows are shown max-pooled
        over blocks of consecutive rows, so that single active rows stay visible).
    path : path-like
        Output ``.png``.
    times : array, shape (n_times,) | None
        Sample times (s) for the x axis (sample indices if None).
    true_rows : sequence of int | None
        Rows of the true sources, marked with arrows on both edges of every panel.
    title : str
        Figure title.
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    path : Path
    """
    if not isinstance(panels, Mapping) or not panels:
        raise ValueError("panels must be a non-empty dict of title -> (n_rows, n_times) image.")
    shapes = {k: np.shape(v) for k, v in panels.items()}
    if len(set(shapes.values())) != 1 or len(next(iter(shapes.values()))) != 2:
        raise ValueError(f"panels must all be 2-D images of one shape, got {shapes}.")
    n_rows, n_times = next(iter(shapes.values()))
    # One source row is far thinner than a pixel: block-max pooling keeps it visible.
    block = max(1, -(-n_rows // MAX_DISPLAY_ROWS))
    n_shown = -(-n_rows // block)
    bottom = n_shown * block - 0.5
    if times is None:
        extent, xlabel = (-0.5, n_times - 0.5, bottom, -0.5), "sample"
    else:
        times = np.asarray(times, float)
        if times.shape != (n_times,):
            raise ValueError(f"times must have shape ({n_times},), got {times.shape}.")
        step = times[1] - times[0] if n_times > 1 else 1.0
        extent = (
            1e3 * (times[0] - step / 2), 1e3 * (times[-1] + step / 2), bottom, -0.5
        )  # fmt: skip
        xlabel = "time (ms)"
    fig, axes = _new_figure(len(panels), height=4.2, sharey=True)
    for ax, (name, image) in zip(axes, panels.items(), strict=True):
        shown = _pool_rows(np.abs(np.asarray(image, float)), block)
        peak = shown.max()
        ax.imshow(shown / peak if peak > 0 else shown, aspect="auto", cmap="magma",
                  vmin=0, vmax=1, extent=extent, interpolation="nearest")  # fmt: skip
        if true_rows is not None:  # arrows on both edges: a line would hide a one-row source
            for row in np.atleast_1d(true_rows):
                ax.plot([extent[0], extent[1]], [row, row], ls="none", color="cyan", ms=7,
                        marker=">", markevery=[0], clip_on=False)  # fmt: skip
                ax.plot([extent[1]], [row], ls="none", color="cyan", ms=7, marker="<",
                        clip_on=False)  # fmt: skip
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(xlabel)
    axes[0].set_ylabel("source row")
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, path, overwrite=overwrite)


__all__ = [
    "ESTIMATOR_COLOURS",
    "MAX_DISPLAY_ROWS",
    "format_aggregate",
    "key_value_table",
    "plot_dle_kde",
    "plot_example",
    "plot_training_curves",
    "results_table",
    "save_figure",
]
