"""The one place that turns a device name into a :class:`torch.device`."""

from __future__ import annotations

DEVICE_HELP = "'auto' (CUDA, then Apple MPS, then CPU), 'cpu', 'cuda', 'cuda:N' or 'mps'"


def _mps_available(torch) -> bool:
    mps = getattr(torch.backends, "mps", None)
    return mps is not None and mps.is_available()


def resolve_device(device="auto", *, local_rank: int = 0):
    """The torch device for ``device``.

    Parameters
    ----------
    device : str | torch.device | None
        ``"auto"`` or None: CUDA (under DDP the rank's local GPU), then Apple
        MPS, then the CPU. An explicit ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or
        ``"mps"`` is used as asked; one that is not available is an error, never
        a silent fallback.
    local_rank : int
        GPU index used by ``"auto"`` and by a bare ``"cuda"`` under DDP.

    Returns
    -------
    device : torch.device

    Raises
    ------
    ValueError
        An unknown device name, or a device that this machine does not have.
    """
    import torch

    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        if _mps_available(torch):
            return torch.device("mps")
        return torch.device("cpu")
    if isinstance(device, torch.device):
        dev = device
    elif isinstance(device, str):
        try:
            dev = torch.device(device)
        except RuntimeError:
            raise ValueError(f"device must be {DEVICE_HELP}, got {device!r}.") from None
    else:
        raise ValueError(f"device must be a str or torch.device, got {type(device).__name__}.")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={str(device)!r} was requested but CUDA is not available on this "
                "machine; use device='cpu' or 'auto'."
            )
        index = local_rank if dev.index is None else dev.index
        if index >= torch.cuda.device_count():
            raise ValueError(
                f"device={str(device)!r}: only {torch.cuda.device_count()} CUDA device(s) exist."
            )
        return torch.device("cuda", index)
    if dev.type == "mps":
        if not _mps_available(torch):
            raise ValueError("device='mps' was requested but MPS is not available.")
    elif dev.type != "cpu":
        raise ValueError(f"Unsupported device {str(device)!r}; use {DEVICE_HELP}.")
    return dev
