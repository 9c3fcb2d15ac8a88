"""Docstring entries shared by the metric functions, and the ``fill_doc`` that fills them.

Modules of this package import :func:`fill_doc` from here, so the entries are
registered in the package's docdict before any docstring is filled.
"""

from __future__ import annotations

from .._docs import docdict, fill_doc

__all__ = ["fill_doc"]

docdict.update(
    {
        "metrics_positions": """\
positions : array, shape (n_rows, 3)
    Positions of the rows in metres.""",
        "metrics_adjacency": """\
adjacency : scipy.sparse matrix, shape (n_rows, n_rows) | None
    Mesh adjacency. With several sources, peaks are the strongest local
    maxima of ``|estimate|`` on this graph (a row is a local maximum when it
    beats all its neighbours; ties go to the lower row index).""",
        "metrics_peak_radius_mm": """\
peak_radius_mm : float
    Without ``adjacency``, several peaks are found greedily: the strongest
    row, then the strongest row farther than this radius from every peak
    found so far, and so on (non-maximum suppression).""",
    }
)
