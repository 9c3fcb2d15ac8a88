"""Evaluation tables written by the Evaluate widget (CSV rows or the JSON summary), Qt-free."""

from __future__ import annotations

import numpy as np


def evaluation_rows(evaluation) -> list[dict]:
    """Flat rows (estimator, protocol, metric, mean, CI, counts) for tables and CSV."""
    from ..evaluation import shown_metrics

    rows = []
    shown = shown_metrics(list(evaluation.summary.values()))
    for (estimator, protocol), summary in evaluation.summary.items():
        for metric in shown:
            agg = summary.get(metric) or {}
            rows.append(
                dict(
                    estimator=estimator, protocol=protocol, metric=metric,
                    mean=agg.get("mean", np.nan), ci_low=agg.get("ci_low", np.nan),
                    ci_high=agg.get("ci_high", np.nan), n_events=agg.get("n_events", 0),
                )  # fmt: skip
            )
    return rows


def write_evaluation(evaluation, path, *, overwrite: bool = False):
    """Write an evaluation as JSON (``.json``) or CSV (``.csv``), atomically."""
    import csv
    import io
    from pathlib import Path

    from .._io import atomic_path, check_output_path, write_json

    path = check_output_path(Path(path), overwrite=overwrite, what="evaluation export")
    if path.suffix.lower() == ".json":
        return write_json(path, evaluation.to_dict())
    if path.suffix.lower() != ".csv":
        raise ValueError(f"export path must end with .json or .csv, got {str(path)!r}.")
    rows = evaluation_rows(evaluation)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else ["estimator"])
    writer.writeheader()
    writer.writerows(rows)
    with atomic_path(path) as tmp:
        tmp.write_text(buffer.getvalue())
    return path
