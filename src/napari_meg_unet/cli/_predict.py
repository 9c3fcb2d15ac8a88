"""``napari-meg-unet predict``: a trained network's source maps of a recording or example set."""

from __future__ import annotations

from pathlib import Path

from . import _common, _recording

HELP = "apply a trained U-Net to a recording or an example set (probability maps)"
DESCRIPTION = """\
Apply a checkpoint (best.pt, a training directory, or 'pretrained': the small
template network shipped with the package) to a recording or an example set.
A sensor network (network/sensor-net.pt of 'train --for-recording
--sensor-network', with --headmodel its OUT/headmodel) gives one dipole per
window of each condition instead (a several-source network: its sources in
each window): OUT/<condition>.dip (mne.read_dipole) and OUT/meta.json.

On a recording (--data: an evoked file, epochs, a raw FIF file or a BIDS
recording) every condition becomes a source estimate of probabilities (0 to 1:
an active source at that vertex and time), OUT/<condition>-lh.stc/-rh.stc (or
-stc.h5), plus OUT/meta.json. The recording is resampled to the network's
sampling rate and the network slides over it in windows of its training length
(stitched with overlap); every difference between the data and the network is
named, and either adapted (said in the output: sampling rate, nave, another
subject's head model mapped onto the template) or refused (channels, hemisphere,
inverse settings, data shorter than the window). The inverse maps are made with
--headmodel (the recording's head model); without one, a template network uses
the template coregistered to the recording's digitisation.

On an example set (--data DIR made by 'dataset') it writes
OUT/probabilities.npy, float32 (n_examples, n_rows, n_times), and OUT/meta.json;
sets made differently from the network's training set are refused.
"""


def add_parser(subparsers) -> None:
    from .._config import add_cli_options
    from ..configs import NetworkApplyConfig

    parser = subparsers.add_parser("predict", help=HELP, description=DESCRIPTION)
    parser.add_argument(
        "--checkpoint", required=True, metavar="PATH",
        help="checkpoint file, training directory, or 'pretrained' (the shipped template "
        "network)",
    )  # fmt: skip
    parser.add_argument(
        "--data", required=True, metavar="PATH",
        help="example set directory, or a " + _recording.DATA_HELP,
    )  # fmt: skip
    parser.add_argument(
        "--headmodel", metavar="DIR", help="saved head model of the data (a recording's makes "
        "its inverse maps; an example set's is checked)",
    )  # fmt: skip
    parser.add_argument(
        "--subjects-dir", metavar="DIR", help="FreeSurfer subjects folder of the recording's "
        "subject, to map a template network (default: the head model's)",
    )  # fmt: skip
    parser.add_argument(
        "--cov", metavar="FILE", help="noise covariance of the coregistered template (default: "
        "ad hoc)",
    )  # fmt: skip
    parser.add_argument(
        "--hemi", default=None, choices=("lh", "rh", "both"),
        help="hemisphere expected: another than the network's is refused",
    )  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=64, help="examples per forward pass")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument(
        "--npy", action="store_true", help="with a recording, also write each condition's "
        "probabilities as <condition>.npy (n_sources, n_times)",
    )  # fmt: skip
    add_cli_options(parser.add_argument_group("network on a recording"), NetworkApplyConfig,
                    exclude=("batch_size",))  # fmt: skip
    _recording.add_recording_options(parser)
    _common.add_common(parser, output=True)
    parser.set_defaults(func=handler)


def _is_example_set(path: Path) -> bool:
    return path.is_dir() and (path / "meta.json").is_file() and (path / "inputs.npy").is_file()


def _checkpoint(args):
    from ..checkpoint import load_checkpoint
    from ..train import pretrained_checkpoint

    if args.checkpoint == "pretrained":
        return load_checkpoint(pretrained_checkpoint())
    return load_checkpoint(args.checkpoint)


def _example_set(args, ckpt) -> dict:
    import numpy as np

    from .._io import atomic_dir, write_json
    from ..checkpoint import summary
    from ..dataset import read_dataset
    from ..train import iter_predict

    hm = None
    if args.headmodel:
        from ..headmodel import load_headmodel

        hm = load_headmodel(args.headmodel, verbose=False)
    data = read_dataset(args.data)
    probs = _common.drive(
        iter_predict(ckpt, data, headmodel=hm, hemi=args.hemi, batch_size=args.batch_size,
                     device=args.device),
        args,
    )  # fmt: skip
    info = {
        "checkpoint": summary(ckpt), "data": str(data.path), "data_fingerprint": data.fingerprint,
        "shape": list(probs.shape), "hemi": data.meta.get("hemi"),
        "sfreq": data.meta.get("sfreq"), "tmin": data.meta.get("tmin"),
    }  # fmt: skip
    with atomic_dir(args.out, overwrite=args.overwrite, what="prediction") as tmp:
        np.save(tmp / "probabilities.npy", probs, allow_pickle=False)
        write_json(tmp / "meta.json", info)
    return {
        "path": str(Path(args.out) / "probabilities.npy"), "shape": list(probs.shape),
        "checkpoint": ckpt["path"], "epoch": ckpt["epoch"], "best": ckpt.get("best"),
        "data_fingerprint": data.fingerprint,
    }  # fmt: skip


def _recording_run(args, ckpt) -> dict:
    from .._config import config_from_args
    from .._io import atomic_dir, save_npy, write_json
    from ..checkpoint import data_record, summary
    from ..configs import NetworkApplyConfig
    from ..train import PROBABILITY_UNIT, iter_predict_recording

    hm = None
    if args.headmodel:
        from ..headmodel import load_headmodel

        hm = load_headmodel(args.headmodel, verbose=False)
    segments = _recording.read_data(args)
    config = config_from_args(NetworkApplyConfig, args, batch_size=args.batch_size)
    preds = _common.drive(
        iter_predict_recording(
            ckpt, segments, headmodel=hm, subjects_dir=args.subjects_dir, noise_cov=args.cov,
            hemi=args.hemi, device=args.device, config=config,
        ),
        args,
    )  # fmt: skip
    names = _recording.file_names(p.name for p in preds)
    conditions = []
    with atomic_dir(args.out, overwrite=args.overwrite, what="prediction") as tmp:
        for name, pred in zip(names, preds, strict=True):
            files = _recording.write_stc(pred.stc, tmp, name, args.stc_format)
            if args.npy:
                save_npy(tmp / f"{name}.npy", pred.stc.data.astype("float32"))
                files.append(f"{name}.npy")
            conditions.append(dict(pred.summary(), files=files))
        meta = dict(checkpoint=summary(ckpt), network=_network(data_record(ckpt)),
                    data=str(args.data), unit=PROBABILITY_UNIT, conditions=conditions)
        write_json(tmp / "meta.json", meta)
    return dict(meta, table="\n".join(_lines(meta, args.out)))


def _network(record: dict) -> dict:
    keys = ("sfreq", "n_times", "window_s", "hemi", "methods", "lambda2", "nave",
            "normalisation", "headmodel_fingerprint", "snr", "timecourse")  # fmt: skip
    return {k: record[k] for k in keys} | {"subject": record["headmodel"].get("subject")}


def _lines(meta: dict, out) -> list[str]:
    net = meta["network"]
    lines = [
        f"network: {meta['checkpoint']['model_name']} ({net['subject']}, hemi {net['hemi']}, "
        f"{net['sfreq']:.6g} Hz, window {net['n_times']} samples = {1e3 * net['window_s']:.0f} "
        f"ms, inputs {'/'.join(net['methods'])}, nave {net['nave']})",
        f"values: {meta['unit']}",
    ]
    for cond in meta["conditions"]:
        lines.append(
            f"  {cond['name']}: nave {cond['nave']}, {cond['n_times']} samples at "
            f"{cond['sfreq']:.6g} Hz from {cond['tmin']:.3f} s, max {cond['max']:.3f} -> "
            f"{', '.join(cond['files'])}"
        )
    notes = dict.fromkeys(n for cond in meta["conditions"] for n in cond["notes"])
    lines += [f"note: {n}" for n in notes]
    lines.append(f"written to: {out}")
    return lines


def _is_sensor_net(path: str) -> bool:
    """Whether ``path`` is a sensor network's file (``train --for-recording --sensor-network``)."""
    from ..models.sensor_dipole import is_sensor_dipole_file

    return path != "pretrained" and is_sensor_dipole_file(path)


def _sensor_run(args) -> dict:
    """The sensor network's dipoles and time courses of every condition, and meta.json.

    ``OUT/<condition>.dip`` (the dipoles of every window) and
    ``OUT/<condition>-sources`` (their moment time courses: along the cortex's
    normals as ``.stc``, the moment vectors as ``-stc.h5`` with ``--format h5``).
    """
    import numpy as np

    from .._io import atomic_dir, write_json
    from ..headmodel import load_headmodel
    from ..models.sensor_dipole import load_sensor_dipole_net, predict_dipoles, window_starts
    from ..models.sensor_timecourses import predict_source_estimate

    if not args.headmodel:
        raise ValueError("A sensor network needs --headmodel (the recording's head model, "
                         "OUT/headmodel of 'train --for-recording') for the dipole moments.")
    net = load_sensor_dipole_net(args.checkpoint)
    hm = load_headmodel(args.headmodel, verbose=False)
    segments = _recording.read_data(args)
    conditions = []
    with atomic_dir(args.out, overwrite=args.overwrite, what="prediction") as tmp:
        for name, seg in zip(_recording.file_names(s.name for s in segments), segments,
                             strict=True):  # fmt: skip
            data = seg.get_data(picks=net.ch_names)
            if data.ndim != 2:
                raise ValueError(f"{seg.describe()}: the sensor network reads averaged data "
                                 "(an evoked response or a raw recording), not single epochs.")
            if not np.isclose(seg.sfreq, net.trained_on["sfreq"]):
                raise ValueError(f"{seg.describe()} is sampled at {seg.sfreq:g} Hz but the "
                                 f"network at {net.trained_on['sfreq']:g} Hz.")  # fmt: skip
            dip = predict_dipoles(net, data, hm, sfreq=seg.sfreq, tmin=seg.tmin, nave=seg.nave)
            dip.save(tmp / f"{name}.dip", overwrite=True, verbose=False)
            # .stc holds one value per source: the moments along the cortex's normals
            stc = predict_source_estimate(
                net, data, hm, sfreq=seg.sfreq, tmin=seg.tmin, nave=seg.nave,
                pick_ori="normal" if args.stc_format == "stc" else None,
            )  # fmt: skip
            courses = _recording.write_stc(stc, tmp, f"{name}-sources", args.stc_format)
            best = int(np.argmax(dip.gof))
            conditions.append({
                "name": seg.name, "nave": seg.nave, "file": f"{name}.dip",
                "time_courses": courses, "n_sources_with_time_courses": len(stc.data),
                "n_windows": len(window_starts(data.shape[1], net.trained_on["n_times"])),
                "n_dipoles": len(dip),
                "best_window": {"time_s": float(dip.times[best]), "gof": float(dip.gof[best]),
                                "pos_m": dip.pos[best].tolist(),
                                "amplitude_nAm": float(dip.amplitude[best] * 1e9)},
            })  # fmt: skip
        meta = {"network": {"kind": "sensor", "path": str(args.checkpoint),
                            "n_sources": net.n_sources, **net.trained_on},
                "data": str(args.data), "conditions": conditions}  # fmt: skip
        write_json(tmp / "meta.json", meta)
    per_window = ("one dipole" if net.n_sources == 1
                  else f"up to {net.n_sources} dipoles")  # fmt: skip
    lines = [f"sensor network ({net.trained_on['sfreq']:.6g} Hz, window "
             f"{net.trained_on['n_times']} samples): {per_window} per window"]  # fmt: skip
    for cond in conditions:
        b = cond["best_window"]
        lines.append(f"  {cond['name']}: {cond['n_windows']} windows, {cond['n_dipoles']} "
                     f"dipoles -> {cond['file']}, time courses (A·m) -> "
                     f"{', '.join(cond['time_courses'])}; best fit "
                     f"at {b['time_s']:.3f} s, GOF {b['gof']:.0f}%, {b['amplitude_nAm']:.1f} nAm")
    lines.append(f"written to: {args.out}")
    return dict(meta, table="\n".join(lines))


def handler(args) -> dict:
    import mne

    from .._io import check_output_path

    check_output_path(args.out, overwrite=args.overwrite, what="prediction output")
    if _is_sensor_net(args.checkpoint):
        with mne.use_log_level("error"):
            return _sensor_run(args)
    ckpt = _checkpoint(args)
    if _is_example_set(Path(args.data)):
        return _example_set(args, ckpt)
    with mne.use_log_level("error"):
        return _recording_run(args, ckpt)
