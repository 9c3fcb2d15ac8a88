"""The numbers of ``docs/real-data.md``: the MNE sample recording, end to end.

Part A (simulated, the sample subject's anatomy): the test set of the network
trained for the sample subject (``benchmarks/train_pretrained.py --headmodel``)
scored by DLE (per event, mean and 95% bootstrap CI) for that network, the
pretrained template network (its images mapped onto the template and back) and
the linear inverses the networks take as input.

Part B (real data, ``test-ave.fif.gz``): for every condition and hemisphere, an
equivalent current dipole (:func:`mne.fit_dipole`, that hemisphere's temporal
sensors for the auditory conditions, occipital ones for the visual conditions, at
their gradiometer GFP peak 70-130 ms) and the peak of every method
(mean |estimate| over the dipole time +-10 ms, same hemisphere): MNE, dSPM,
sLORETA, eLORETA, the subject network, the pretrained network mapped to the
sample subject (MNI) and on the template coregistered to the recording; the
distance peak-ECD in mm. Also dSPM with the other shared noise covariances.

    python benchmarks/real_data.py --data ../shared/data --headmodel /tmp/rec/hm-sample1280 \\
        --subject-net /tmp/rec/sample-net --out benchmarks/results/real-data.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

METHODS = ("MNE", "dSPM", "sLORETA", "eLORETA")
M100 = (0.07, 0.13)
HALF_WIDTH = 0.010


def _dle(prob_t, target_t, true_positions, positions) -> float:
    from napari_meg_unet.metrics import peak_localisation_error, window_map

    true_positions = true_positions[~np.isnan(true_positions).any(axis=1)]
    active = target_t.any(axis=0)
    estimate = window_map(prob_t, active if active.any() else slice(None))
    return float(peak_localisation_error(estimate, positions, true_positions)["dle_mm"])


def _pretrained_on_images(ckpt, images, mapping):
    """The template network on subject images (n, M, R, T), mapped there and back."""
    from napari_meg_unet.checkpoint import data_record
    from napari_meg_unet.progress import run
    from napari_meg_unet.train import iter_probabilities, load_model
    from napari_meg_unet.train.windows import cut_windows

    record = data_record(ckpt)
    model, _ = load_model(ckpt, device="cpu")
    mapped = np.stack([
        cut_windows(np.stack([mapping.to_template @ m for m in image]), [0], image.shape[-1],
                    record["normalisation"])[0]
        for image in np.asarray(images, np.float64)
    ])  # fmt: skip
    probs = run(iter_probabilities(model, mapped, batch_size=16))
    return np.stack([mapping.from_template @ p for p in probs])


def part_a(hm, subject_net: Path, pretrained: Path, subjects_dir) -> dict:
    """DLE on the sample subject's simulated test set."""
    from napari_meg_unet.checkpoint import load_checkpoint
    from napari_meg_unet.dataset import read_dataset
    from napari_meg_unet.metrics import aggregate
    from napari_meg_unet.recordings import source_mapping, template_sources
    from napari_meg_unet.train import predict

    test = read_dataset(subject_net / "sets" / "test")
    inputs, targets = np.asarray(test.inputs), np.asarray(test.targets).astype(bool)
    truth, positions = np.asarray(test.true_positions), np.asarray(test.positions)
    ckpt = load_checkpoint(pretrained)
    mapping = source_mapping(hm, template_sources("ico3"), hemi="both",
                             subjects_dir=subjects_dir)  # fmt: skip
    maps = {
        "subject network": predict(subject_net / "network.pt", test, device="cpu"),
        f"pretrained ({mapping.method} mapping)": _pretrained_on_images(ckpt, inputs, mapping),
    }
    for mi, method in enumerate(test.meta["methods"]):
        maps[f"{method} (input image)"] = np.abs(inputs[:, mi])
    events = np.asarray(test.events)
    rows = {}
    for name, prob in maps.items():
        dle = np.array([_dle(prob[i], targets[i], truth[i], positions) for i in range(len(test))])
        agg = aggregate(dle, events, n_boot=2000, seed=0)
        rows[name] = dict(dle_mm=agg["mean"], ci_low=agg["ci_low"], ci_high=agg["ci_high"],
                          median_mm=float(np.median(dle)))  # fmt: skip
    return dict(n_events=len(test), settings=test.meta["simulation"]["params"], dle=rows)


def _ecd(evoked, cov, bem, trans, hemi, region):
    """Time and dipole of the peak 70-130 ms on one hemisphere's sensors of ``region``."""
    import mne

    names = mne.read_vectorview_selection(f"{'Left' if hemi == 'lh' else 'Right'}-{region}",
                                          info=evoked.info)  # fmt: skip
    side = evoked.copy().pick(names)
    grads = side.copy().pick("grad")
    gfp = np.sqrt((grads.data**2).mean(axis=0))
    sel = np.flatnonzero((side.times >= M100[0]) & (side.times <= M100[1]))
    t_peak = float(side.times[sel[np.argmax(gfp[sel])]])
    dip, _ = mne.fit_dipole(side.copy().crop(t_peak, t_peak), cov, bem, trans, verbose="error")
    return t_peak, dip.pos[0], float(dip.gof[0])


def _peak(stc, rows, positions, t_peak) -> np.ndarray:
    times = stc.times
    sel = (times >= t_peak - HALF_WIDTH) & (times <= t_peak + HALF_WIDTH)
    if not sel.any():
        sel = np.argmin(np.abs(times - t_peak))
    amp = np.abs(np.asarray(stc.data)[rows][:, sel]).reshape(len(rows), -1).mean(axis=1)
    return positions[rows[np.argmax(amp)]]


def part_a_template(pretrained_work: Path) -> dict:
    """The pretrained network on its own (template) test set, for reference."""
    from napari_meg_unet.dataset import read_dataset
    from napari_meg_unet.metrics import aggregate
    from napari_meg_unet.train import predict

    test = read_dataset(pretrained_work / "sets" / "test")
    inputs, targets = np.asarray(test.inputs), np.asarray(test.targets).astype(bool)
    truth, positions = np.asarray(test.true_positions), np.asarray(test.positions)
    maps = {"pretrained": predict(pretrained_work / "network.pt", test, device="cpu")}
    for mi, method in enumerate(test.meta["methods"]):
        maps[f"{method} (input image)"] = np.abs(inputs[:, mi])
    rows = {}
    for name, prob in maps.items():
        dle = np.array([_dle(prob[i], targets[i], truth[i], positions) for i in range(len(test))])
        agg = aggregate(dle, np.asarray(test.events), n_boot=2000, seed=0)
        rows[name] = dict(dle_mm=agg["mean"], ci_low=agg["ci_low"], ci_high=agg["ci_high"],
                          median_mm=float(np.median(dle)))  # fmt: skip
    return dict(n_events=len(test), dle=rows)


def _estimates(hm, segments, subject_net, pretrained, coreg_hm, covs):
    """``{label: [stc per condition]}`` and the positions/rows of each label's head model."""
    from napari_meg_unet.inverse import invert_recording, make_inverse, source_estimates
    from napari_meg_unet.train import predict_recording

    result = invert_recording(hm, segments, methods=METHODS)
    out = {m: ([c.stcs[m] for c in result.conditions], hm) for m in METHODS}
    out["subject network"] = ([p.stc for p in predict_recording(subject_net, segments,
                                                                  headmodel=hm)], hm)  # fmt: skip
    preds = predict_recording(pretrained, segments, headmodel=hm)
    out["pretrained (mapped to sample)"] = ([p.stc for p in preds], hm)
    out["pretrained (coregistered template)"] = (
        [p.stc for p in predict_recording(pretrained, segments, headmodel=coreg_hm)], coreg_hm)
    for name, cov in covs.items():
        inv = make_inverse(hm, noise_cov=cov, verbose=False)
        out[f"dSPM, {name}"] = ([source_estimates(inv, s, methods=["dSPM"])["dSPM"]
                                 for s in segments], hm)  # fmt: skip
    return out, result


def part_b(data: Path, hm, subject_net: Path, pretrained: Path) -> dict:
    import mne

    from napari_meg_unet.coreg import iter_make_template_anatomy_headmodel
    from napari_meg_unet.progress import run
    from napari_meg_unet.recordings import Segment, measure_snr, read_segments

    meg = data / "sample" / "MEG"
    bem = data / "sample/subjects/sample/bem/sample-1280-bem-sol.fif"
    trans = meg / "sample_audvis_trunc-trans.fif"
    cov = mne.read_cov(meg / "sample_audvis_trunc-cov.fif", verbose="error")
    segments = read_segments(meg / "test-ave.fif.gz")
    coreg_hm, _ = run(iter_make_template_anatomy_headmodel(
        meg / "test-ave.fif.gz", noise_cov=meg / "sample_audvis_trunc-cov.fif", verbose="error"
    ))  # fmt: skip
    files = (("test-cov", "test-cov.fif"), ("empty room", "test_erm-cov.fif"))
    covs = {name: mne.read_cov(meg / f, verbose="error") for name, f in files}
    estimates, result = _estimates(hm, segments, subject_net, pretrained, coreg_hm, covs)
    table = []
    for ci, seg in enumerate(segments):
        snr = measure_snr(Segment(seg.name, seg.inst.copy().pick("meg"), nave=seg.nave), cov,
                          window=M100)  # fmt: skip
        region = "temporal" if "auditory" in seg.name.lower() else "occipital"
        for hemi in ("lh", "rh"):
            t_peak, pos, gof = _ecd(seg.inst, cov, bem, trans, hemi, region)
            row = dict(condition=seg.name, nave=seg.nave, hemi=hemi, sensors=region,
                       t_ms=1e3 * t_peak, ecd_gof=gof, snr_peak=snr.peak, snr_rms=snr.window_rms,
                       ecd_mm=pos * 1e3, ecd_in_hemi=bool((pos[0] < 0) == (hemi == "lh")),
                       distances_mm={})  # fmt: skip
            for label, (stcs, model) in estimates.items():
                peak = _peak(stcs[ci], model.rows(hemi), model.positions, t_peak)
                row["distances_mm"][label] = float(1e3 * np.linalg.norm(peak - pos))
            table.append(row)
    return dict(rank=result.rank.message, rows=table)


def _print(result):
    if "part_a" in result:
        print("A. DLE (mm) on the sample subject's simulated test set "
              f"({result['part_a']['n_events']} events)")  # fmt: skip
        for name, r in result["part_a"]["dle"].items():
            print(f"  {name:34s} {r['dle_mm']:6.1f} [{r['ci_low']:.1f}, {r['ci_high']:.1f}] "
                  f"median {r['median_mm']:.1f}")  # fmt: skip
    if "part_a_template" in result:
        print("A'. DLE (mm) of the pretrained network on its own template test set "
              f"({result['part_a_template']['n_events']} events)")  # fmt: skip
        for name, r in result["part_a_template"]["dle"].items():
            print(f"  {name:34s} {r['dle_mm']:6.1f} [{r['ci_low']:.1f}, {r['ci_high']:.1f}] "
                  f"median {r['median_mm']:.1f}")  # fmt: skip
    if "part_b" not in result:
        return
    rows = result["part_b"]["rows"]
    labels = list(rows[0]["distances_mm"])
    print("B. Peak - ECD distance (mm), real test-ave.fif.gz")
    print("  " + " | ".join(["condition", "hemi", "sensors", "t ms", "GOF %", "ECD side",
                             "SNR", *labels]))  # fmt: skip
    for r in rows:
        cells = [r["condition"], r["hemi"], r["sensors"], f"{r['t_ms']:.0f}",
                 f"{r['ecd_gof']:.0f}", "ok" if r["ecd_in_hemi"] else "other",
                 f"{r['snr_peak']:.2f}"]  # fmt: skip
        cells += [f"{r['distances_mm'][k]:.0f}" for k in labels]
        print("  " + " | ".join(cells))


def main(argv=None):
    from napari_meg_unet._machine import machine_description
    from napari_meg_unet.headmodel import load_headmodel
    from napari_meg_unet.train import pretrained_checkpoint

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, type=Path, help="the shared data folder")
    parser.add_argument("--headmodel", required=True, help="the sample subject's head model")
    parser.add_argument("--subject-net", required=True, type=Path,
                        help="WORK folder of train_pretrained.py --headmodel")  # fmt: skip
    parser.add_argument("--pretrained", type=Path, default=None,
                        help="checkpoint (default: the shipped one)")  # fmt: skip
    parser.add_argument(
        "--pretrained-work", type=Path, help="WORK folder of train_pretrained.py (its test set)"
    )
    parser.add_argument("--out", type=Path, help="JSON output")
    parser.add_argument("--parts", default="ab", help="a: simulated, b: real (default: ab)")
    args = parser.parse_args(argv)
    import mne

    mne.set_log_level("error")
    t0 = time.perf_counter()
    hm = load_headmodel(args.headmodel, verbose=False)
    pretrained = args.pretrained or pretrained_checkpoint()
    subjects_dir = args.data / "sample" / "subjects"
    result = dict(machine=machine_description(), headmodel=hm.summary())
    if "a" in args.parts:
        result["part_a"] = part_a(hm, args.subject_net, pretrained, subjects_dir)
        if args.pretrained_work:
            result["part_a_template"] = part_a_template(args.pretrained_work)
    if "b" in args.parts:
        result["part_b"] = part_b(args.data, hm, args.subject_net / "network.pt", pretrained)
    result["elapsed_s"] = time.perf_counter() - t0
    _print(result)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2, default=lambda o: np.asarray(o).tolist()))
    return result


if __name__ == "__main__":
    main()
