"""The thesis 2D U-Net on vertex x time images, with the original bugs fixed.

The network of the 2017 thesis ("MEG-inverse-UNet", a TensorFlow-1 adaptation
of tf_unet) treats the linear inverse solutions of one hemisphere as a
multi-channel image whose rows are source vertices (``HeadModel.rows(hemi)``
order) and whose columns are time samples, and labels every pixel active /
inactive. ``docs/thesis-deviations.md`` lists every difference to the original.

Architecture (``levels`` resolution levels, ``f_l = root_features * 2**l``)::

    down l:  [Conv kxk "same" -> BatchNorm -> ReLU -> Dropout] x 2 (f_l),
             2x2 max-pool below the last level
    up l:    2x2 stride-2 transposed conv (f_{l+1} -> f_l) + bias -> ReLU,
             concat [skip, up], [Conv kxk "same" -> BatchNorm -> ReLU -> Dropout] x 2
    output:  1x1 conv -> 2 logits (no activation: the loss applies the only softmax)

Rows and time are zero-padded at the end to a multiple of ``2**(levels - 1)``
and cropped back, so every vertex row and time sample gets a prediction.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ._validation import check_input, check_positive_int

#: Hyper-parameter presets of :class:`ThesisUNet`.
THESIS_PRESETS = {
    # the thesis configuration for ico3 (network/parameters: 5 layers, 4x4, 64 root features)
    "thesis": dict(root_features=64, levels=5, kernel_size=4, dropout=0.2),
    # trains on a laptop CPU in minutes
    "small": dict(root_features=16, levels=4, kernel_size=4, dropout=0.2),
    # GPU benchmark size: thesis depth at half the width
    "benchmark": dict(root_features=32, levels=5, kernel_size=4, dropout=0.2),
}


class SamePadConv2d(nn.Module):
    """Stride-1 convolution with TensorFlow ``"SAME"`` zero padding.

    For an even kernel ``k`` the ``k - 1`` padded rows/columns are split as
    ``(k - 1) // 2`` before and the rest after, as TF1 did for the thesis' 4x4
    kernels (1 before, 2 after).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, bias: bool):
        super().__init__()
        before = (kernel_size - 1) // 2
        after = kernel_size - 1 - before
        self.padding = (before, after, before, after)  # (left, right, top, bottom)
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, self.padding))


class _ConvBlock(nn.Sequential):
    """Two [conv -> BatchNorm -> ReLU -> Dropout] units (thesis' ``conv2d`` + activation)."""

    def __init__(self, in_channels, out_channels, kernel_size, dropout):
        layers = []
        for c_in in (in_channels, out_channels):
            layers += [
                SamePadConv2d(c_in, out_channels, kernel_size, bias=False),
                nn.BatchNorm2d(out_channels, eps=1e-3),  # TF1 batch-norm epsilon
                nn.ReLU(inplace=True),
                nn.Dropout(dropout),
            ]
        super().__init__(*layers)


class ThesisUNet(nn.Module):
    """2D U-Net on ``(batch, channels, n_rows, n_times)`` inverse-solution images.

    Parameters
    ----------
    in_channels : int
        Number of input channels (e.g. 3 for MNE, dSPM, sLORETA).
    n_rows : int
        Number of vertex rows (``len(hm.rows(hemi))``); inputs must have exactly these.
    n_times : int
        Nominal number of time samples (recorded in :attr:`config`; any length works).
    root_features : int
        Feature maps at the finest level; doubled at every coarser level.
    levels : int
        Number of resolution levels (``levels - 1`` pooling steps).
    kernel_size : int
        Side of the square convolution kernels (4 in the thesis).
    dropout : float
        Drop probability after every convolution (thesis keep-probability 0.8).
    """

    name = "thesis"

    def __init__(
        self,
        *,
        in_channels: int,
        n_rows: int,
        n_times: int,
        root_features: int = 16,
        levels: int = 4,
        kernel_size: int = 4,
        dropout: float = 0.2,
    ):
        super().__init__()
        check_positive_int(
            in_channels=in_channels,
            n_rows=n_rows,
            n_times=n_times,
            root_features=root_features,
            levels=levels,
            kernel_size=kernel_size,
        )
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}.")
        self.in_channels = int(in_channels)
        self.n_rows = int(n_rows)
        self.n_times = int(n_times)
        self.levels = int(levels)
        self.multiple = 2 ** (self.levels - 1)
        features = [int(root_features) * 2**level for level in range(self.levels)]
        self.down = nn.ModuleList()
        c_in = self.in_channels
        for f in features:
            self.down.append(_ConvBlock(c_in, f, kernel_size, dropout))
            c_in = f
        self.upsample = nn.ModuleList()
        self.up = nn.ModuleList()
        for level in range(self.levels - 2, -1, -1):
            f = features[level]
            self.upsample.append(nn.ConvTranspose2d(2 * f, f, kernel_size=2, stride=2))
            self.up.append(_ConvBlock(2 * f, f, kernel_size, dropout))
        self.head = nn.Conv2d(features[0], 2, kernel_size=1)
        self.config = {
            "name": self.name,
            "in_channels": self.in_channels,
            "n_rows": self.n_rows,
            "n_times": self.n_times,
            "root_features": int(root_features),
            "levels": self.levels,
            "kernel_size": int(kernel_size),
            "dropout": float(dropout),
        }
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He-style initialisation as in the thesis: truncated normal (2 sigma) kernels.

        sigma = sqrt(2 / (k^2 * c_out)); biases (transposed convolutions) start at 0.1
        as in tf_unet, the output bias at 0; batch-norm scales 1 and shifts 0.
        """
        for module in self.modules():
            if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
                k = module.kernel_size[0] * module.kernel_size[1]
                std = math.sqrt(2.0 / (k * module.out_channels))
                nn.init.trunc_normal_(module.weight, std=std, a=-2 * std, b=2 * std)
                if module.bias is not None:
                    nn.init.constant_(module.bias, 0.0 if module is self.head else 0.1)
            elif isinstance(module, nn.BatchNorm2d):
                module.reset_parameters()

    def l1_parameters(self) -> list[torch.Tensor]:
        """The weights the thesis' L1 penalty covered: the kernels of the conv blocks."""
        blocks = [*self.down, *self.up]
        return [m.conv.weight for b in blocks for m in b if isinstance(m, SamePadConv2d)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(batch, 2, n_rows, n_times)`` for an input ``(batch, C, n_rows, n_times)``."""
        check_input(x, self.in_channels, self.n_rows)
        n_rows, n_times = x.shape[-2:]
        pad_rows = -n_rows % self.multiple
        pad_times = -n_times % self.multiple
        if pad_rows or pad_times:
            x = F.pad(x, (0, pad_times, 0, pad_rows))
        if self.down[0][0].conv.weight.is_contiguous(memory_format=torch.channels_last):
            x = x.contiguous(memory_format=torch.channels_last)
        skips = []
        for level, block in enumerate(self.down):
            x = block(x)
            if level < self.levels - 1:
                skips.append(x)
                x = F.max_pool2d(x, 2)
        for upsample, block in zip(self.upsample, self.up, strict=True):
            x = F.relu(upsample(x))
            x = block(torch.cat([skips.pop(), x], dim=1))
        return self.head(x)[..., :n_rows, :n_times]
