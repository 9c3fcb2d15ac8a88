"""Input stacks in float32 on a torch device: every method's kernel in one matrix product.

:class:`KernelStack` takes the imaging kernels computed once by the float64
reference code (:func:`~napari_meg_unet.inverse.compute_kernel`), keeps the
rows of the images and embeds them in the data's channels; the stack of a
batch is then one matrix product for every method (dSPM and sLORETA are
per-location rescalings of the MNE estimate, also after combining the 3
components of a loose kernel), the per-location magnitude and the
normalisation of :func:`~napari_meg_unet.inverse.make_input_stack`. The
float32 torch core (:mod:`napari_meg_unet.simulate.torch_core`) and
``make_input_stack(..., precision="float32")`` use it.
"""

from __future__ import annotations

import numpy as np
import torch

from .._validation import check_choice
from ..configs import NORMALISATIONS
from ._common import NOISE_NORMALISED

#: Methods served by the MNE kernel product (scaled per location).
FAMILY = ("MNE", *NOISE_NORMALISED)


class KernelStack:
    """Stacks (n, n_methods, n_rows, n_times) of sensor data with fixed kernels.

    Parameters
    ----------
    kernels : dict
        ``{method: InverseKernel}``; must hold every method of ``methods`` (an
        extra ``"MNE"`` kernel is used as the base of dSPM/sLORETA when present).
    methods : sequence of str
        The image channels, in order.
    rows : array of int
        Kernel source indices forming the image rows.
    ch_names : list of str
        The data's channels (the kernels' channels are picked from them).
    normalisation : str
        As :func:`~napari_meg_unet.inverse.make_input_stack`.
    device, dtype
        Where and in which dtype the products run.
    """

    def __init__(self, kernels, methods, rows, ch_names, *, normalisation="column-max",
                 device="cpu", dtype=torch.float32):  # fmt: skip
        self.normalisation = check_choice(normalisation, "normalisation", NORMALISATIONS)
        self.methods = tuple(methods)
        missing = [m for m in self.methods if m not in kernels]
        if missing:
            raise ValueError(f"kernels lacks the method(s) {missing}.")
        self.rows = np.asarray(rows, np.int64)
        self.n_rows = len(self.rows)
        matrix, self.n_orient, base_of, norms = kernel_matrix(kernels, self.methods, self.rows,
                                                              list(ch_names))  # fmt: skip
        self.device, self.dtype = torch.device(device), dtype
        self.kernel = torch.as_tensor(matrix, dtype=dtype, device=self.device)
        self.base_of = torch.as_tensor(base_of, dtype=torch.long, device=self.device)
        self.single_base = bool((base_of == 0).all())
        self.norms = torch.as_tensor(norms, dtype=dtype, device=self.device)

    def stack(self, data: torch.Tensor) -> torch.Tensor:
        """Stacks of data (n, n_channels, n_times), made contiguous first (any input strides
        give the same product)."""
        data = data.to(self.dtype).contiguous()
        y = torch.matmul(self.kernel, data)  # (n, n_bases * n_rows * n_orient, n_times)
        n, _, n_times = y.shape
        if self.n_orient == 1:
            y = y.reshape(n, -1, self.n_rows, n_times)
        else:
            y = torch.linalg.vector_norm(
                y.reshape(n, -1, self.n_rows, self.n_orient, n_times), dim=3
            )
        if self.single_base:  # one product serves every channel: broadcast, no gather
            est = y * self.norms[None, :, :, None]
        else:
            est = y[:, self.base_of] * self.norms[None, :, :, None]
        return normalise_(est, self.normalisation)

    def stack_numpy(self, data, *, chunk: int = 256) -> np.ndarray:
        """float32 stacks of host data (n, n_channels, n_times), ``chunk`` events per product."""
        out = np.empty((len(data), len(self.methods), self.n_rows, data.shape[-1]), np.float32)
        for start in range(0, len(data), chunk):
            block = torch.as_tensor(np.asarray(data[start : start + chunk]), device=self.device)
            out[start : start + len(block)] = self.stack(block).float().cpu().numpy()
        return out


def normalise_(est: torch.Tensor, normalisation: str) -> torch.Tensor:
    """Scale (n, C, n_rows, n_times) images in place as
    :func:`~napari_meg_unet.inverse.make_input_stack` (all-zero columns/images stay zero)."""
    if normalisation == "none":
        return est
    dims = (-2,) if normalisation == "column-max" else (-2, -1)
    scale = torch.linalg.vector_norm(est, ord=float("inf"), dim=dims, keepdim=True)
    return est.div_(torch.where(scale == 0, torch.ones_like(scale), scale))


def kernel_matrix(kernels, methods, rows, ch_names):
    """The distinct kernels on ``rows``, embedded in ``ch_names``, and the channel map.

    Returns ``(matrix (n_bases * n_rows * n_orient, n_channels), n_orient,
    base_of (n_methods,), norms (n_methods, n_rows))``.
    """
    n_orient = kernels[methods[0]].n_orient
    bases, base_of, norms = [], [], []
    for method in methods:
        k = kernels[method]
        if k.n_orient != n_orient:
            raise ValueError("All kernels of an input stack must have the same orientations.")
        base = "MNE" if method in FAMILY else method
        if base not in bases:
            bases.append(base)
        base_of.append(bases.index(base))
        norms.append(np.ones(len(rows)) if k.noise_norm is None else k.noise_norm[rows])
    index = {name: ii for ii, name in enumerate(ch_names)}
    mats = []
    for base in bases:
        k = kernels[base] if base in kernels else _family_kernel(kernels, methods)
        missing = [ch for ch in k.ch_names if ch not in index]
        if missing:
            raise ValueError(f"{len(missing)} kernel channels are not data channels: {missing[:5]}")
        comp = (rows[:, None] * n_orient + np.arange(n_orient)).ravel()
        raw = k.K[comp]
        if k.noise_norm is not None:  # the MNE estimate: undo the folded-in normalisation
            raw = raw / np.repeat(k.noise_norm[rows], n_orient)[:, None]
        full = np.zeros((len(comp), len(ch_names)))
        full[:, [index[ch] for ch in k.ch_names]] = raw
        mats.append(full)
    return np.concatenate(mats), n_orient, np.asarray(base_of), np.stack(norms)


def _family_kernel(kernels, methods):
    for method in FAMILY:
        if method in methods:
            return kernels[method]
    raise KeyError("no kernel of the MNE family")  # pragma: no cover - bases come from methods
