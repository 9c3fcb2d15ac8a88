"""Stable fingerprints (short sha256 hex digests) of head models and arrays.

A fingerprint identifies *what a computation depends on*, so that caches,
datasets and trained networks can refuse to be combined with a head model
they were not made for. Floating-point content is rounded to float32 before
hashing, so that harmless last-bit differences (a FIF round trip, a different
BLAS) do not change the fingerprint while any real change in geometry does.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

#: Number of hex characters kept from the sha256 digest.
FINGERPRINT_LENGTH = 16


def _update_with_array(digest, array) -> None:
    array = np.asarray(array)
    if array.dtype.kind == "f":
        array = array.astype(np.float32)
    elif array.dtype.kind == "c":
        array = array.astype(np.complex64)
    elif array.dtype.kind in "iub":
        array = array.astype(np.int64)
    elif array.dtype.kind in "UO":
        array = np.asarray([str(a) for a in array.ravel()]).reshape(array.shape)
        digest.update(json.dumps(array.tolist()).encode())
        return
    array = np.ascontiguousarray(array)
    digest.update(f"{array.dtype.str}|{array.shape}|".encode())
    digest.update(array.tobytes())


def _params_json(params: dict) -> str:
    def default(obj):
        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
        return str(obj)

    return json.dumps(params, sort_keys=True, default=default)


def array_fingerprint(*arrays, **params) -> str:
    """Short sha256 hex digest of arrays (float content rounded to float32) and parameters.

    Parameters
    ----------
    *arrays : array-like
        Arrays hashed in order, including their shape and (normalised) dtype
        kind: floats are cast to float32, integers and booleans to int64.
    **params
        JSON-serialisable parameters hashed by name (order-independent).

    Returns
    -------
    fingerprint : str
        The first :data:`FINGERPRINT_LENGTH` hex characters of the digest.
    """
    digest = hashlib.sha256()
    digest.update(f"n_arrays={len(arrays)}|".encode())
    for array in arrays:
        _update_with_array(digest, array)
    digest.update(_params_json(params).encode())
    return digest.hexdigest()[:FINGERPRINT_LENGTH]


def _sensor_items(info) -> tuple[list, dict]:
    """Arrays and parameters describing the sensors of ``info``."""
    chs = info["chs"]
    locs = np.array([ch["loc"] for ch in chs], float).reshape(len(chs), -1)
    dev_head_t = info["dev_head_t"]
    dev_head = np.eye(4) if dev_head_t is None else np.asarray(dev_head_t["trans"], float)
    params = dict(
        ch_names=list(info["ch_names"]),
        kinds=[int(ch["kind"]) for ch in chs],
        coil_types=[int(ch["coil_type"]) for ch in chs],
        coord_frames=[int(ch["coord_frame"]) for ch in chs],
    )
    return [locs, dev_head], params


def _proj_items(info) -> tuple[list, list]:
    arrays, descs = [], []
    for proj in info["projs"]:
        data = proj["data"]
        arrays.append(np.asarray(data["data"], float))
        descs.append(
            dict(
                desc=proj["desc"],
                kind=int(proj["kind"]),
                active=bool(proj["active"]),
                col_names=list(data["col_names"]),
            )
        )
    return arrays, descs


def headmodel_fingerprint(hm) -> str:
    """Stable fingerprint of a :class:`~napari_meg_unet.headmodel.HeadModel`.

    The digest covers what the forward model depends on: the sensor geometry
    (coil locations, device-to-head transform, channel names and types), the
    source positions and normals (rounded to float32) with their vertex
    numbers, the conductor model description, and the projectors. It does not
    cover the noise covariance or the display surfaces.

    Parameters
    ----------
    hm : HeadModel
        The head model.

    Returns
    -------
    fingerprint : str
        Short hex digest; identical builds give identical fingerprints.
    """
    sensor_arrays, sensor_params = _sensor_items(hm.info)
    proj_arrays, proj_params = _proj_items(hm.info)
    return array_fingerprint(
        *sensor_arrays,
        np.asarray(hm.positions, float),
        np.asarray(hm.normals, float),
        *[np.asarray(v) for v in hm.vertno],
        *proj_arrays,
        kind="headmodel",
        sensors=sensor_params,
        projs=proj_params,
        conductor=str(hm.conductor),
        modality=str(hm.modality),
    )
