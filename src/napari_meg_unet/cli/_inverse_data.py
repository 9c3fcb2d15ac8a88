"""``napari-meg-unet inverse --data``: a recording's conditions as source estimates."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..progress import Progress
from . import _recording


def _estimate(hm, segments, config, npy: bool):
    """Memory and disk of the estimates (float64 in memory, float32 on disk) and stacks."""
    from .._resources import ResourceEstimate

    comps = hm.n_sources * (1 if config.loose == 0 else 3)
    n_methods = len(config.methods)
    items = [len(s.inst) if s.kind == "epochs" else 1 for s in segments]
    samples = sum(i * s.n_times for i, s in zip(items, segments, strict=True))
    biggest = max(i * s.n_times for i, s in zip(items, segments, strict=True))
    memory = (n_methods + 1) * comps * biggest * 8 + 4 * len(hm.ch_names) * biggest * 8
    memory += n_methods * comps * len(hm.ch_names) * 8
    disk = n_methods * hm.n_sources * samples * 4 * (2 if npy else 1)
    return ResourceEstimate(
        f"inverse of {len(segments)} condition(s), {samples} samples x {n_methods} methods",
        memory=memory, disk=disk + comps * len(hm.ch_names) * 8,
    )  # fmt: skip


def _write_conditions(tmp: Path, result, names, fmt) -> dict:
    files = {}
    for name, cond in zip(names, result.conditions, strict=True):
        for method, stcs in cond.stcs.items():
            items = stcs if isinstance(stcs, list) else [stcs]
            stems = [f"{name}-{method}"] if len(items) == 1 else [
                f"{name}-{method}-{i}" for i in range(len(items))
            ]  # fmt: skip
            for stem, stc in zip(stems, items, strict=True):
                files[stem] = [
                    f"stc/{f}" for f in _recording.write_stc(stc, tmp / "stc", stem, fmt)
                ]
    return files


def _write_stacks(tmp: Path, result, config, hemi, hm) -> dict:
    from .._io import save_npy

    lengths = {c.segment.n_times for c in result.conditions}
    if len(lengths) > 1:
        raise ValueError(
            f"--npy stacks need conditions of one length; these have {sorted(lengths)} samples."
        )
    stack = np.concatenate(
        [c.stack(hm.rows(hemi), config.normalisation) for c in result.conditions]
    )
    files = {}
    for mi, method in enumerate(config.methods):
        save_npy(tmp / f"stack-{method}.npy", stack[:, mi])
        files[f"stack-{method}"] = f"stack-{method}.npy"
    return files, stack.shape


def _write_kernels(tmp: Path, result, config) -> dict:
    from ..inverse import save_kernel

    naves = sorted({c.nave for c in result.conditions})
    files = {}
    for nave in naves:
        for method, kernel in result.kernels(nave).items():
            stem = f"kernel-{method}" + ("" if len(naves) == 1 else f"-nave{nave}")
            save_kernel(kernel, tmp / stem, overwrite=True)
            files[stem] = f"{stem}.npy"
    return files


def _explained_summary(result) -> dict:
    keys = dict.fromkeys(k for c in result.conditions for k in c.explained)
    out = {}
    for key in keys:
        values = np.array([c.explained[key] for c in result.conditions if key in c.explained])
        out[key] = dict(mean=float(values.mean()), min=float(values.min()),
                        max=float(values.max()))  # fmt: skip
    return out


def _summary(args, hm, segments, result, config, hemi, files, names, stack_shape) -> dict:
    from ..inverse import svd_spectrum

    spectrum = svd_spectrum(result.inv, lambda2=config.lambda2)
    naves = [c.nave for c in result.conditions]
    return dict(
        input=f"{segments[0].source}: {len(segments)} condition(s)",
        conditions=[
            dict(c.summary(), file_stem=name) for c, name in zip(result.conditions, names,
                                                                 strict=True)
        ],  # fmt: skip
        n_samples=int(stack_shape[0]) if stack_shape else len(segments),
        stack_shape=None if not stack_shape else [int(stack_shape[0]), int(stack_shape[2]),
                                                  int(stack_shape[3])],  # fmt: skip
        methods=list(config.methods), lambda2=config.lambda2,
        nave=naves[0] if len(set(naves)) == 1 else naves, loose=config.loose,
        depth=config.depth, hemi=hemi, normalisation=config.normalisation,
        headmodel=hm.summary(),
        svd=dict(rank=spectrum["rank"], n_channels=spectrum["n_channels"],
                 condition_number=spectrum["condition_number"],
                 n_above_marker=spectrum["n_above_marker"],
                 effective_dof=spectrum["effective_dof"]),
        rank=dict(whitener=result.rank.whitener_rank, data_info=result.rank.data_rank,
                  sss=result.rank.sss, message=result.rank.message),
        explained_variance=_explained_summary(result),
        files={key: str(Path(args.out) / v) if isinstance(v, str) else
               [str(Path(args.out) / f) for f in v] for key, v in files.items()},
    )  # fmt: skip


def iter_recording(args, config):
    """The ``--data`` path of ``inverse``: read, invert every condition, write atomically."""
    from .._io import atomic_dir, check_output_path, write_json
    from .._resources import check_resources
    from ..inverse import iter_invert_recording, write_operator
    from ..inverse.recording import check_segments
    from ._inverse import _load_headmodel

    yield Progress("inverse", 0, 1, "reading")
    segments = _recording.read_data(args)
    out = check_output_path(args.out, overwrite=args.overwrite, what="inverse output")
    hm = _load_headmodel(args, {})
    check_segments(segments, set(hm.ch_names) - set(hm.info["bads"]))
    check_resources(_estimate(hm, segments, config, args.npy), out=out, force=args.force)
    result = yield from iter_invert_recording(hm, segments, check=False, config=config,
                                              verbose=False)  # fmt: skip
    hemi = config.hemi or "rh"
    names = _recording.file_names(c.name for c in result.conditions)
    with atomic_dir(out, overwrite=args.overwrite, what="inverse output") as tmp:
        write_operator(result.inv, tmp / "operator-inv.fif", overwrite=True, verbose=False)
        files = {"operator": "operator-inv.fif", "summary": "summary.json"}
        files.update(_write_conditions(tmp, result, names, args.stc_format))
        files.update(_write_kernels(tmp, result, config))
        stack_shape = None
        if args.npy:
            stack_files, stack_shape = _write_stacks(tmp, result, config, hemi, hm)
            files.update(stack_files)
        summary = _summary(args, hm, segments, result, config, hemi, files, names, stack_shape)
        write_json(tmp / "summary.json", summary)
    return summary
