"""``napari-meg-unet predict``: probability maps of a trained network on an example set."""

from __future__ import annotations

from . import _common

HELP = "apply a trained U-Net to an example set (probability maps)"
DESCRIPTION = """\
Apply a checkpoint (best.pt, or a training directory) to an example set and
write OUT/probabilities.npy, float32 (n_examples, n_rows, n_times): the
probability of an active source at every image row and time sample, plus
OUT/meta.json describing the network and the data. Data made with another
head model, channel set, inverse methods/parameters, normalisation or
hemisphere than the network's training set are refused.
"""


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("predict", help=HELP, description=DESCRIPTION)
    parser.add_argument(
        "--checkpoint", required=True, metavar="PATH", help="checkpoint file or training directory"
    )
    parser.add_argument("--data", required=True, metavar="DIR", help="example set to predict on")
    parser.add_argument(
        "--headmodel", metavar="DIR", help="saved head model to check the data against"
    )
    parser.add_argument("--batch-size", type=int, default=64, help="examples per forward pass")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    _common.add_common(parser, output=True)
    parser.set_defaults(func=handler)


def handler(args) -> dict:

    import numpy as np

    from .._io import atomic_dir, check_output_path, write_json
    from ..checkpoint import load_checkpoint, summary
    from ..dataset import read_dataset
    from ..train import iter_predict

    out = check_output_path(args.out, overwrite=args.overwrite, what="prediction output")
    hm = None
    if args.headmodel:
        from ..headmodel import load_headmodel

        hm = load_headmodel(args.headmodel, verbose=False)
    ckpt = load_checkpoint(args.checkpoint)
    data = read_dataset(args.data)
    probs = _common.drive(
        iter_predict(ckpt, data, headmodel=hm, batch_size=args.batch_size, device=args.device),
        args,
    )
    info = {
        "checkpoint": summary(ckpt),
        "data": str(data.path),
        "data_fingerprint": data.fingerprint,
        "shape": list(probs.shape),
        "hemi": data.meta.get("hemi"),
        "sfreq": data.meta.get("sfreq"),
        "tmin": data.meta.get("tmin"),
    }
    with atomic_dir(out, overwrite=args.overwrite, what="prediction") as tmp:
        np.save(tmp / "probabilities.npy", probs, allow_pickle=False)
        write_json(tmp / "meta.json", info)
    return {
        "path": str(out / "probabilities.npy"),
        "shape": list(probs.shape),
        "checkpoint": ckpt["path"],
        "epoch": ckpt["epoch"],
        "best": ckpt.get("best"),
        "data_fingerprint": data.fingerprint,
    }
