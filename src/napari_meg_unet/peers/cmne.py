"""CMNE (contextual minimum-norm estimates), the optional deep-learning peer.

CMNE (Dinh et al. 2021, the ``cmne`` package: ``pip install cmne`` or
``pip install 'napari-meg-unet[peers]'``) re-weights a dSPM estimate sample
by sample with an LSTM that predicts the next (rectified, z-scored) estimate
from the previous ``look_back`` ones. Here the dSPM kernel is this project's
(fixed orientation, depth 0.8, lambda2 = 1/9, the head model's noise
covariance); the LSTM (``num_units`` units) is trained with ``cmne.fit`` for
``n_steps`` minibatches on the *training* simulation of the test set's kind
(at most ``max_train_events`` events) and ``look_back`` is chosen on the
validation sets. The contextual estimate ``b_t`` is scored as a map. Without
the package the peer is skipped with that reason.
"""

from __future__ import annotations

import importlib.util

import numpy as np

from .base import EventEstimate, Peer

#: dSPM regularisation of CMNE's input estimate (the paper's SNR 3).
LAMBDA2 = 1.0 / 9.0


def cmne_installed() -> bool:
    """Whether the optional ``cmne`` package can be imported."""
    return importlib.util.find_spec("cmne") is not None


class Cmne(Peer):
    """CMNE: LSTM re-weighting of dSPM (needs a training simulation)."""

    name = "cmne"
    label = "CMNE"
    family = "cmne"
    trainable = True
    grid = {"look_back": (4, 8)}
    # a CPU budget: about 2 minutes of training per candidate on the shared 2-core machine
    defaults = {"look_back": 8, "num_units": 128, "n_steps": 100, "max_train_events": 2000,
                "seed": 0}  # fmt: skip
    doc = __doc__

    def unavailable(self, hm):
        if not cmne_installed():
            return ("the optional package 'cmne' is not installed "
                    "(pip install 'napari-meg-unet[peers]')")  # fmt: skip
        return None

    def _prepare(self, hm, info, params, training):
        import cmne

        if training is None:
            raise ValueError("CMNE is trained: pass a training simulation (training=...).")
        kernel = dspm_matrix(hm, info, nave=int(training.meta["params"].get("nave", 1)))
        n = min(len(training), int(params["max_train_events"]))
        data = np.asarray(training.data[:n], np.float32)
        model = cmne.fit(
            data, kernel, look_back=int(params["look_back"]), num_units=int(params["num_units"]),
            n_steps=int(params["n_steps"]), device="cpu", amp=False, seed=int(params["seed"]),
            verbose=False,
        )  # fmt: skip
        return {"kernel": kernel, "model": model, "n_train_events": n}

    def estimate(self, state, data, *, n_sources=None):
        return self.estimate_batch(state, np.asarray(data)[np.newaxis])[0]

    def estimate_batch(self, state, data, *, n_sources=None):
        import cmne

        q = np.einsum("sc,ect->est", state.parts["kernel"], np.asarray(data, np.float32))
        b = np.asarray(cmne.apply_cmne(q, state.parts["model"]).cmne, np.float64)
        return [EventEstimate(time_courses=b_i) for b_i in b]


def dspm_matrix(hm, info, *, nave=1) -> np.ndarray:
    """This project's dSPM kernel as a ``(n_sources, n_channels)`` float32 matrix in
    ``info``'s channel order."""
    from ..inverse import apply_kernel, compute_kernel, make_inverse

    inv = make_inverse(hm, loose=0.0, depth=0.8, verbose=False)
    kernel = compute_kernel(inv, method="dSPM", lambda2=LAMBDA2, nave=nave, verbose=False)
    eye = np.eye(len(info["ch_names"]))
    return np.asarray(apply_kernel(kernel, eye, ch_names=list(info["ch_names"])), np.float32)
