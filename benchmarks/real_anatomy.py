"""Real anatomy on the shared sample data: subject BEM, coregistration, SSS rank, dense sources.

Measures, on ``$NAPARI_MEG_UNET_DATA`` (the MNE sample subject), what
``docs/real-anatomy.md`` reports:

- the 1-layer BEM built from ``bem/inner_skull.surf`` (ico3 and ico4) against the
  shipped ``sample-1280-bem-sol.fif``: per-source correlation of the fixed-orientation
  forward fields (median, power-weighted mean) on the ``small-src`` sources;
- :func:`napari_meg_unet.coreg.coregister_subject` (MNI-estimated and the subject's own
  fiducials) against the shipped ``sample_audvis_trunc-trans.fif``: displacement of the
  digitised points (median, max), median distance to the scalp, the pitch profile;
- the noise rank of the SSS raw with the non-SSS covariance;
- the off-grid dense sources of the sample head model.

    python benchmarks/real_anatomy.py --out benchmarks/results/real-anatomy.json

Prints a table and writes the numbers (with the machine) as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import warnings
from pathlib import Path

import mne
import numpy as np
from mne.transforms import apply_trans
from scipy.spatial import cKDTree


def _files():
    root = Path(os.environ.get("NAPARI_MEG_UNET_DATA", "../shared/data"))
    meg, subjects_dir = root / "sample" / "MEG", root / "sample" / "subjects"
    return dict(raw=meg / "sample_audvis_trunc_raw_sss.fif",
                cov=meg / "sample_audvis_trunc-cov.fif",
                trans=meg / "sample_audvis_trunc-trans.fif", subjects_dir=subjects_dir,
                bem_dir=subjects_dir / "sample" / "bem",
                src=subjects_dir / "sample" / "bem" / "small-src.fif.gz")  # fmt: skip


def _gain(info, trans, src, bem):
    fwd = mne.make_forward_solution(info, trans=trans, src=src, bem=bem, meg=True, eeg=False,
                                    mindist=0.0, verbose=False)  # fmt: skip
    fwd = mne.convert_forward_solution(fwd, surf_ori=True, force_fixed=True, use_cps=True,
                                       verbose=False)  # fmt: skip
    return fwd["sol"]["data"], [s["vertno"] for s in fwd["src"]]


def bem_section(f, cache_dir) -> dict:
    from napari_meg_unet.headmodel import make_subject_bem

    info = mne.io.read_info(f["raw"], verbose=False)
    src = mne.read_source_spaces(f["src"], verbose=False)
    for s in src:
        s["rr"] *= 1000.0
    ref, v_ref = _gain(info, f["trans"], src, f["bem_dir"] / "sample-1280-bem-sol.fif")
    out = {}
    for ico in (3, 4):
        t0 = time.perf_counter()
        bem = make_subject_bem(f["subjects_dir"], "sample", ico=ico, cache=False,
                               cache_dir=cache_dir)  # fmt: skip
        build_s = time.perf_counter() - t0
        g, v = _gain(info, f["trans"], src, bem)
        ka = np.concatenate([np.isin(a, b) for a, b in zip(v, v_ref, strict=True)])
        kb = np.concatenate([np.isin(b, a) for a, b in zip(v, v_ref, strict=True)])
        a, b = g[:, ka] - g[:, ka].mean(0), ref[:, kb] - ref[:, kb].mean(0)
        corr = (a * b).sum(0) / np.sqrt((a * a).sum(0) * (b * b).sum(0))
        power = (ref[:, kb] ** 2).sum(0)
        out[f"ico{ico}"] = dict(
            triangles=int(bem["surfs"][0]["ntri"]), n_sources=int(ka.sum()),
            median_corr=float(np.median(corr)), p5_corr=float(np.percentile(corr, 5)),
            power_weighted_corr=float((corr * power).sum() / power.sum()),
            build_s=round(build_s, 1),
        )  # fmt: skip
    return out


def coreg_section(f) -> dict:
    from napari_meg_unet.coreg import coregister_subject

    info = mne.io.read_info(f["raw"], verbose=False)
    ref = mne.read_trans(f["trans"])
    points = np.array([d["r"] for d in info["dig"]])
    scalp = mne.get_head_surf("sample", source="head", subjects_dir=f["subjects_dir"],
                              verbose=False)  # fmt: skip
    tree = cKDTree(scalp["rr"])
    out = {"shipped_trans_scalp_median_mm": float(
        np.median(tree.query(apply_trans(ref, points))[0]) * 1e3)}  # fmt: skip
    mri = mne.io.read_fiducials(f["bem_dir"] / "sample-fiducials.fif", verbose=False)[0]
    dig = {d["ident"]: d["r"] for d in info["dig"] if d["kind"] == 1}
    names = {1: "lpa", 2: "nasion", 3: "rpa"}
    out["shipped_trans_fiducial_to_mri_fiducial_mm"] = {
        names[int(d["ident"])]: float(
            np.linalg.norm(apply_trans(ref, dig[d["ident"]]) - d["r"]) * 1e3
        )
        for d in mri
    }
    for fiducials in ("estimated", "auto"):
        t0 = time.perf_counter()
        fit = coregister_subject(info, subject="sample", subjects_dir=f["subjects_dir"],
                                 fiducials=fiducials)  # fmt: skip
        moved = np.linalg.norm(apply_trans(fit.trans, points) - apply_trans(ref, points), axis=1)
        out[fiducials] = dict(
            fiducials=fit.fiducials, seconds=round(time.perf_counter() - t0, 1),
            displacement_median_mm=float(np.median(moved) * 1e3),
            displacement_max_mm=float(moved.max() * 1e3),
            scalp_median_mm=fit.distance_mm["median"], n_omitted=fit.n_omitted,
            pitch_profile=fit.starts,
        )  # fmt: skip
    return out


def _uncovered(hm, dense) -> int:
    """Rows (per hemisphere) that no dense source is nearest to, before the covering step."""
    n = 0
    for h, hemi in enumerate(("lh", "rh")):
        rows = hm.rows(hemi)
        idx = cKDTree(hm.positions[rows]).query(dense.positions[dense.hemi == h])[1]
        n += int(np.sum(np.bincount(idx, minlength=len(rows)) == 0))
    return n


def headmodel_section(f, cache_dir) -> dict:
    from napari_meg_unet.headmodel import make_dense_sources, make_headmodel

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        hm = make_headmodel(info=f["raw"], trans=f["trans"], src=f["src"],
                            subjects_dir=f["subjects_dir"], subject="sample", noise_cov=f["cov"])
    dense = make_dense_sources(hm, cache_dir=cache_dir)
    counts = np.bincount(dense.nearest_row, minlength=hm.n_sources)
    rank = hm.noise_rank
    return dict(
        n_sources=hm.n_sources, n_channels=len(hm.ch_names), noise_rank=rank["total"],
        info_meg_rank=rank["info_meg_rank"], cov_meg_rank=rank["cov_meg_rank"],
        n_dense=dense.n_dense, dense_spacing=dense.spacing,
        rows_without_nearest_dense=_uncovered(hm, dense),
        min_dense_per_row=int(counts.min()),
        grid_distance_median_mm=float(np.median(dense.grid_distance) * 1e3),
        grid_distance_max_mm=float(dense.grid_distance.max() * 1e3),
    )  # fmt: skip


def table(result) -> str:
    lines = ["| BEM from inner_skull.surf vs sample-1280-bem-sol | triangles | median r | "
             "5th pct r | power-weighted r | build (s) |", "|---|---|---|---|---|---|"]
    for key, b in result["bem"].items():
        lines.append(f"| {key} | {b['triangles']} | {b['median_corr']:.5f} | {b['p5_corr']:.4f} | "
                     f"{b['power_weighted_corr']:.5f} | {b['build_s']} |")  # fmt: skip
    c = result["coreg"]
    lines += ["", "| coregistration vs sample_audvis_trunc-trans | displacement median (mm) | "
              "max (mm) | scalp median (mm) |", "|---|---|---|---|"]  # fmt: skip
    for key in ("estimated", "auto"):
        r = c[key]
        lines.append(f"| {r['fiducials']} fiducials | {r['displacement_median_mm']:.1f} | "
                     f"{r['displacement_max_mm']:.1f} | {r['scalp_median_mm']:.2f} |")
    lines.append(f"| shipped transform | 0 | 0 | {c['shipped_trans_scalp_median_mm']:.2f} |")
    h = result["headmodel"]
    lines += ["", f"SSS raw + non-SSS covariance: noise rank {h['noise_rank']} (info SSS rank "
              f"{h['info_meg_rank']}, covariance MEG rank {h['cov_meg_rank']}); dense sources "
              f"{h['n_dense']} ({h['dense_spacing']}), {h['rows_without_nearest_dense']} of "
              f"{h['n_sources']} rows nearest to none before covering, grid distance median "
              f"{h['grid_distance_median_mm']:.1f} mm, max {h['grid_distance_max_mm']:.1f} mm"]
    return "\n".join(lines)


def main() -> None:
    from napari_meg_unet._machine import machine_description

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="write the result JSON here")
    args = parser.parse_args()
    mne.set_log_level("WARNING")
    f = _files()
    with tempfile.TemporaryDirectory() as cache_dir:
        result = {"machine": machine_description(), "bem": bem_section(f, cache_dir),
                  "coreg": coreg_section(f), "headmodel": headmodel_section(f, cache_dir)}
    result["command"] = "python benchmarks/real_anatomy.py" + (
        f" --out {args.out}" if args.out else "")  # fmt: skip
    print(table(result))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2, default=float) + "\n")


if __name__ == "__main__":
    main()
