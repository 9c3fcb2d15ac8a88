"""npe2 writers: estimate layers to MNE source estimates (``.stc`` / ``.h5``) with their metadata.

*File > Save Selected Layers…* with a ``.stc`` or ``.h5`` name on a stack
layer (``truth``, ``MNE``, ``dSPM``, ..., ``prediction (...)``) or on a cortex
layer showing one writes one :class:`mne.SourceEstimate` per event (fixed
orientation; vertices from the head model's source space, rows in the
documented order whatever the display order; ``tmin``, ``tstep = 1 / sfreq``,
``subject``), and a JSON sidecar ``<name>.json`` with what the layer is
(method, unit, λ², loose, depth, nave, normalisation, hemisphere, head-model
fingerprint, simulation, checkpoint, event labels, the files written).

``.stc`` files come in pairs (``<name>-lh.stc``, ``<name>-rh.stc``); ``.h5``
needs the ``h5io`` package (MNE's HDF5 writer). Several events get numbered
names (``<name>_000_<label>``). Nothing is overwritten: an existing output is
an error naming it.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .layers import META_KEY, stack_values

#: Metadata copied into the sidecar when present.
SIDECAR_KEYS = (
    "method", "unit", "lambda2", "loose", "depth", "naves", "normalisation", "hemi", "model",
    "checkpoint", "labels", "data_layer", "explained_variance", "estimator", "protocol",
)  # fmt: skip


def _vertices(hm, rows) -> list[np.ndarray]:
    rows = np.asarray(rows)
    n_lh = len(hm.vertno[0])
    lh, rh = rows[rows < n_lh], rows[rows >= n_lh] - n_lh
    if not (np.all(np.diff(lh) > 0) and np.all(np.diff(rh) > 0) and np.all(rows[: len(lh)] < n_lh)):
        raise ValueError("the layer's rows are not in the documented order (lh, then rh).")
    return [np.asarray(hm.vertno[0])[lh], np.asarray(hm.vertno[1])[rh]]


def _values(data, metadata) -> np.ndarray:
    """``(n_events, n_rows, n_times)`` values of a stack layer or of a cortex layer's source."""
    role = metadata.get(META_KEY, {}).get("role")
    if role == "stack":
        return np.asarray(stack_values(data, metadata), dtype=np.float64)
    if role in ("cortex", "map"):
        if metadata.get("stack") is not None:
            return np.asarray(metadata["stack"], dtype=np.float64)
        if metadata.get("per_row") is not None:
            return np.asarray(metadata["per_row"], dtype=np.float64)[np.newaxis, :, np.newaxis]
        raise ValueError(
            f"the cortex layer {metadata[META_KEY]['name']!r} shows anatomy only: nothing to save."
        )
    raise ValueError(
        "only napari-meg-unet estimate layers (stacks, or a cortex showing one) can be written "
        "as source estimates."
    )


def source_estimates(data, metadata) -> list:
    """``[(label, mne.SourceEstimate)]``, one per event of an estimate layer."""
    import mne

    hm, rows = metadata.get("headmodel"), metadata.get("rows")
    if hm is None or rows is None:
        raise ValueError("the layer's metadata lack the head model and rows of its values.")
    values = _values(data, metadata)
    vertices = _vertices(hm, rows)
    sfreq = metadata.get("sfreq") or metadata.get(META_KEY, {}).get("sfreq") or 1.0
    tmin = metadata.get("tmin", metadata.get(META_KEY, {}).get("tmin", 0.0)) or 0.0
    labels = list(metadata.get("labels") or [f"event {i}" for i in range(len(values))])
    out = []
    for i, block in enumerate(values):
        stc = mne.SourceEstimate(
            block, vertices=vertices, tmin=float(tmin), tstep=1.0 / float(sfreq),
            subject=hm.subject,
        )  # fmt: skip
        out.append((labels[i] if i < len(labels) else f"event {i}", stc))
    return out


def _base(path: Path) -> tuple[Path, str]:
    name = path.name
    for ext in (".stc", ".h5"):
        if name.lower().endswith(ext):
            stem = name[: -len(ext)]
            for hemi in ("-lh", "-rh"):
                stem = stem[: -len(hemi)] if stem.endswith(hemi) else stem
            return path.with_name(stem), ext
    raise ValueError(f"source estimates are written as .stc or .h5, got {str(path)!r}.")


def _safe(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+-]+", "-", str(label)).strip("-") or "event"


def _outputs(base: Path, ext: str, n: int, labels) -> list[tuple[Path, list[Path]]]:
    outs = []
    for i in range(n):
        stem = base if n == 1 else base.with_name(f"{base.name}_{i:03d}_{_safe(labels[i])}")
        files = [Path(f"{stem}-lh.stc"), Path(f"{stem}-rh.stc")] if ext == ".stc" else [
            Path(f"{stem}-stc.h5")
        ]  # fmt: skip
        outs.append((stem, files))
    return outs


def write_estimate(path: str, data, meta: dict) -> list[str]:
    """npe2 single-layer writer: the estimate layer ``data`` / ``meta`` as source estimates."""
    from ._io import write_json

    metadata = meta.get("metadata", meta)
    base, ext = _base(Path(path))
    if ext == ".h5":
        try:
            import h5io  # noqa: F401
        except ImportError:
            raise ImportError(
                "writing .h5 source estimates needs the h5io package (pip install h5io); "
                "save as .stc instead."
            ) from None
    stcs = source_estimates(data, metadata)
    outputs = _outputs(base, ext, len(stcs), [label for label, _ in stcs])
    sidecar = base.with_name(base.name + ".json")
    existing = [f for _, files in outputs for f in files if f.exists()]
    existing += [sidecar] if sidecar.exists() else []
    if existing:
        raise FileExistsError(f"not overwriting {[str(f) for f in existing]}.")
    written = []
    for (stem, files), (_, stc) in zip(outputs, stcs, strict=True):
        stc.save(stem, ftype="stc" if ext == ".stc" else "h5", overwrite=False, verbose="error")
        written.extend(str(f) for f in files)
    write_json(sidecar, _sidecar(metadata, stcs, written))
    return [*written, str(sidecar)]


def _plain(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _sidecar(metadata, stcs, written) -> dict:
    lay = metadata.get(META_KEY, {})
    hm, sim = metadata.get("headmodel"), metadata.get("simulation")
    out = {
        "layer": lay.get("name"),
        "shows": lay.get("shows") or metadata.get("shows"),
        "unit": lay.get("unit") or metadata.get("unit"),
        "headmodel": {"fingerprint": hm.fingerprint, "subject": hm.subject,
                      "spacing": getattr(hm, "spacing", None)},  # fmt: skip
        "simulation": None if sim is None else sim.fingerprint,
        "sfreq": 1.0 / stcs[0][1].tstep,
        "tmin": stcs[0][1].tmin,
        "events": [label for label, _ in stcs],
        "files": [Path(f).name for f in written],
    }
    for key in SIDECAR_KEYS:
        if key in metadata and metadata[key] is not None:
            out[key] = _plain(metadata[key])
    return out
