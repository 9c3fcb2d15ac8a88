"""A trained network's window map of raw sensor data, its peaks and their centres of mass.

:class:`NetworkMaps` runs a network on an event's sensor data exactly as the
accuracy protocol does: the input images are made with the inverse settings
of the network's training set (its methods, lambda2, loose, depth, nave,
normalisation and precision, from the checkpoint, the kernels of
:func:`~napari_meg_unet.dataset.iter_build_dataset`), the probabilities come
from :func:`~napari_meg_unet.train.iter_probabilities`, and the event's map is
their mean over the epoch (the ``window`` map the network row is scored on).

:func:`propose_peaks` reads sources off the map: the local maxima over the
mesh adjacency (the peaks the map's DLE is scored with), strongest first, that
reach ``threshold`` times the map's maximum, at most ``max_sources``.
:func:`centre_of_mass` moves each peak off the grid: the probability-weighted
mean position of the peak vertex and its mesh neighbours.
"""

from __future__ import annotations

import numpy as np

from .._validation import check_int, check_number
from ..metrics.peaks import _find_peaks


class NetworkMaps:
    """A network's window maps of sensor data on the head model ``hm``.

    Parameters
    ----------
    checkpoint : path-like
        The network (``best.pt``).
    hm : HeadModel
        The head model the network was trained for.
    info : mne.Info
        The data's channels (``hm``'s).
    device : str
        Torch device of the network.
    """

    def __init__(self, checkpoint, hm, info, *, device="cpu"):
        from ..configs import InverseConfig
        from ..dataset.building import _inverse_kernels
        from ..train.inference import load_model

        self.model, ckpt = load_model(checkpoint, mesh=hm, device=device)
        meta = ckpt["dataset_meta"]
        if meta.get("headmodel_fingerprint") != hm.fingerprint:
            raise ValueError("The network was not trained on this head model.")
        self.inverse = InverseConfig(
            methods=tuple(meta["methods"]), lambda2=meta["lambda2"], loose=meta["loose"],
            depth=meta["depth"], nave=meta["nave"], hemi=meta["hemi"],
            normalisation=meta["normalisation"], precision=meta.get("precision", "float64"),
        )  # fmt: skip
        sfreq = meta.get("sfreq")
        if sfreq is not None and not np.isclose(float(sfreq), float(info["sfreq"])):
            raise ValueError(
                f"The data are sampled at {info['sfreq']:g} Hz but the network was trained at "
                f"{float(sfreq):g} Hz."
            )
        self.rows = np.asarray(hm.rows(meta["hemi"]))
        self.n_times = int(meta["n_times"])
        self.ch_names = list(info["ch_names"])
        self.kernels = _inverse_kernels(hm, self.inverse, verbose=False)

    def _stack(self, data):
        """The input images of ``data`` (n, n_channels, n_times), as the set builder makes them."""
        from ..inverse import make_input_stack

        if self.inverse.precision == "float32":
            from ..inverse.torch_stack import KernelStack

            stacker = KernelStack(self.kernels, self.inverse.methods, self.rows, self.ch_names,
                                  normalisation=self.inverse.normalisation)  # fmt: skip
            return stacker.stack_numpy(data, chunk=len(data))
        kernels = [self.kernels[m] for m in self.inverse.methods]
        return make_input_stack(kernels, data, rows=self.rows,
                                normalisation=self.inverse.normalisation)  # fmt: skip

    def window_maps(self, data, *, batch_size=16) -> np.ndarray:
        """Mean probability over the epoch ``(n, n_rows)`` of ``data`` (n, n_channels, n_times)."""
        from ..progress import plain
        from ..train.inference import iter_probabilities

        data = np.asarray(data, np.float64)
        if data.ndim != 3 or data.shape[1:] != (len(self.ch_names), self.n_times):
            raise ValueError(
                f"data must have shape (n, {len(self.ch_names)}, {self.n_times}) for this "
                f"network, got {data.shape}."
            )
        probs = plain(iter_probabilities)(self.model, self._stack(data), batch_size=batch_size)
        return np.abs(probs).mean(axis=-1)


def propose_peaks(amplitude, adjacency, *, threshold=0.5, max_sources=5) -> np.ndarray:
    """Rows of the map's peaks proposed as sources, strongest first.

    Parameters
    ----------
    amplitude : array, shape (n_rows,)
        A non-negative map.
    adjacency : scipy.sparse matrix, shape (n_rows, n_rows)
        Mesh adjacency of the rows.
    threshold : float
        Keep the local maxima at or above ``threshold`` times the maximum (0-1].
    max_sources : int
        At most this many peaks.

    Returns
    -------
    rows : ndarray of int
        Empty for an all-zero map.
    """
    amplitude = np.asarray(amplitude, np.float64)
    if amplitude.ndim != 1 or adjacency.shape != (len(amplitude),) * 2:
        raise ValueError("amplitude must be one map over the adjacency's rows.")
    if not np.isfinite(amplitude).all() or (amplitude < 0).any():
        raise ValueError("amplitude must be finite and non-negative.")
    check_number(threshold, "threshold", minimum=0, maximum=1, strict=True)
    max_sources = check_int(max_sources, "max_sources", minimum=1)
    peaks = _find_peaks(amplitude, None, max_sources, adjacency.tocsr(), None)
    if len(peaks) == 0:
        return peaks
    return peaks[amplitude[peaks] >= threshold * amplitude[peaks[0]]]


def centre_of_mass(amplitude, rows, adjacency, positions) -> np.ndarray:
    """The amplitude-weighted mean position of each row and its mesh neighbours.

    Parameters
    ----------
    amplitude : array, shape (n_rows,)
        A non-negative map.
    rows : array of int, shape (m,)
        The peaks.
    adjacency : scipy.sparse matrix, shape (n_rows, n_rows)
        Mesh adjacency of the rows.
    positions : array, shape (n_rows, 3)
        Row positions (metres).

    Returns
    -------
    centres : ndarray, shape (m, 3)
        A row whose neighbourhood has no weight keeps its own position.
    """
    amplitude = np.asarray(amplitude, np.float64)
    adjacency = adjacency.tocsr()
    out = np.empty((len(rows), 3))
    for k, row in enumerate(np.asarray(rows, int)):
        hood = np.concatenate([[row], adjacency.indices[adjacency.indptr[row]:
                                                        adjacency.indptr[row + 1]]])
        w = amplitude[hood]
        out[k] = positions[row] if w.sum() <= 0 else w @ positions[hood] / w.sum()
    return out
