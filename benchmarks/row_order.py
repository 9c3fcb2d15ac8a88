"""How readable the vertex x time images are in each display row order.

For the template head model (fsaverage5, ico3 by default) and each order of
:mod:`napari_meg_unet.layers.ordering` (``source``: the documented order the
networks use; ``spectral``; ``bisection``), per hemisphere:

- ``edge |Δrow|``: how many rows apart two neighbouring sources of the mesh
  are drawn (median and mean over the mesh edges);
- for a cortical patch of radius 10 mm and 20 mm around every source: the
  number of runs of consecutive rows it forms (1 = one blob, n = n stripes)
  and its ``span``, the rows from its first to its last as a fraction of the
  image height (how far apart the stripes are).

Prints a Markdown table and writes JSON::

    python benchmarks/row_order.py --out benchmarks/results/row_order.json
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spacing", default="ico3")
    parser.add_argument("--out", help="write the result as JSON to this file")
    args = parser.parse_args(argv)

    from napari_meg_unet.headmodel import make_template_headmodel
    from napari_meg_unet.layers import ordering

    hm = make_template_headmodel(spacing=args.spacing, modality="meg")
    rows = []
    for hemi in ("lh", "rh"):
        adjacency = hm.adjacency(hemi)
        positions = hm.positions[hm.rows(hemi)]
        for kind in ordering.ORDERS:
            order = None if kind == "source" else ordering.hemisphere_order(adjacency, kind)
            edges = ordering.edge_spread(adjacency, order)
            row = {"hemi": hemi, "order": kind, "n_rows": int(adjacency.shape[0]),
                   "edge_median": edges["median"], "edge_mean": edges["mean"]}  # fmt: skip
            for radius in (10, 20):
                patch = ordering.patch_runs(positions, order, radius_m=radius / 1000)
                row[f"runs_{radius}mm"] = patch["mean"]
                row[f"span_{radius}mm"] = patch["span_mean"]
            rows.append(row)
    lines = [
        "| hemi | order | edge Δrow median | edge Δrow mean | runs, 10 mm patch | span, 10 mm "
        "| runs, 20 mm patch | span, 20 mm |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['hemi']} | {r['order']} | {r['edge_median']:.0f} | {r['edge_mean']:.1f} | "
            f"{r['runs_10mm']:.2f} | {100 * r['span_10mm']:.0f}% | {r['runs_20mm']:.2f} | "
            f"{100 * r['span_20mm']:.0f}% |"
        )
    print(f"template head model, {args.spacing} ({rows[0]['n_rows']} rows per hemisphere)")
    print("\n".join(lines))
    result = {"benchmark": "row_order", "spacing": args.spacing, "machine": platform.platform(),
              "rows": rows}  # fmt: skip
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
