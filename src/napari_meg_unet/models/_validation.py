"""Argument checks shared by the networks."""

from __future__ import annotations

import numbers

import torch


def check_positive_int(**values) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}.")


def check_input(x: torch.Tensor, in_channels: int, n_rows: int) -> None:
    if x.ndim != 4 or x.shape[1] != in_channels or x.shape[2] != n_rows:
        raise ValueError(
            f"Expected input of shape (batch, {in_channels}, {n_rows}, n_times), "
            f"got {tuple(x.shape)}."
        )
