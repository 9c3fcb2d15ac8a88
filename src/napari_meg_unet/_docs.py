"""Docstring dictionary for parameter entries repeated across the package (MNE's ``fill_doc``).

Write ``%(hm)s`` in a numpydoc ``Parameters`` section and decorate the function
with :func:`fill_doc`; the entry is indented to the docstring's own indent.
Config dataclasses register their options as ``%(<ClassName>)s`` (see
:mod:`napari_meg_unet._config`).
"""

from __future__ import annotations

docdict: dict[str, str] = {}

docdict["hm"] = """\
hm : HeadModel
    The head model (sources, forward solutions, sensor info, noise
    covariance); see :mod:`napari_meg_unet.headmodel`."""

docdict["verbose"] = """\
verbose : bool | str | int | None
    Log level of this package and of MNE for the call (``True``: INFO,
    ``False``: WARNING, a level name or number); None keeps the current one."""

docdict["overwrite"] = """\
overwrite : bool
    Replace an existing output (CLI: ``--overwrite``); otherwise an existing
    path is refused before any work is done."""

docdict["seed"] = """\
seed : int
    Seed of every random draw; the same seed gives bit-identical output."""

docdict["hemi"] = """\
hemi : "lh" | "rh" | "both"
    Hemisphere(s) whose sources form the image rows (``HeadModel.rows(hemi)``)."""

docdict["lambda2"] = """\
lambda2 : float
    Regularisation λ² of the linear inverse (MNE's ``lambda2``; 1/9 for SNR 3)."""

docdict["methods"] = """\
methods : sequence of str
    Linear inverse methods among ``"MNE"``, ``"dSPM"``, ``"sLORETA"``, ``"eLORETA"``."""

docdict["nave"] = """\
nave : int
    Number of averaged trials the data represent (scales the noise covariance)."""

docdict["device"] = """\
device : str
    ``"auto"`` (CUDA, then Apple MPS, then CPU), ``"cpu"``, ``"cuda"``,
    ``"cuda:N"`` or ``"mps"``; see :func:`napari_meg_unet.device.resolve_device`."""

docdict["stop"] = """\
stop : threading.Event | callable | None
    Polled between steps; when set (or returning True) the work ends cleanly,
    keeping what is already written."""

docdict["progress_yields"] = """\
progress : Progress
    Small typed progress events (:class:`napari_meg_unet.progress.Progress`)."""


def _indented(text: str, indent: str) -> str:
    first, *rest = text.splitlines()
    return "\n".join([first, *(indent + line if line else line for line in rest)])


def fill_doc(func):
    """Replace ``%(key)s`` in ``func.__doc__`` with :data:`docdict` entries, indented."""
    doc = func.__doc__
    if not doc:
        return func
    lines = doc.splitlines()
    body = [line for line in lines[1:] if line.strip()]
    indent = " " * min((len(line) - len(line.lstrip()) for line in body), default=0)
    table = {key: _indented(value, indent) for key, value in docdict.items()}
    try:
        func.__doc__ = doc % table
    except (KeyError, TypeError, ValueError) as err:
        raise RuntimeError(f"Cannot fill the docstring of {func.__qualname__}: {err!r}") from None
    return func

