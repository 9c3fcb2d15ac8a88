"""CLI plumbing shared by ``inverse`` and ``predict`` on recordings: reading and STC files."""

from __future__ import annotations

import re
from pathlib import Path

#: Output formats of source estimates on the command line.
STC_FORMATS = ("stc", "h5")

DATA_HELP = (
    "recording: an evoked file (-ave.fif: every condition, each with its own nave), an epochs "
    "file (-epo.fif), a raw FIF file (cropped with --tmin/--tmax, or cut around --events), or "
    "a BIDS recording (a file in a BIDS tree)"
)


def add_recording_options(parser) -> None:
    """The options of :class:`~napari_meg_unet.configs.RecordingConfig` and ``--format``."""
    from .._config import add_cli_options
    from ..configs import RecordingConfig

    group = parser.add_argument_group("recording")
    add_cli_options(group, RecordingConfig)
    group.add_argument(
        "--format", default="stc", choices=STC_FORMATS, dest="stc_format",
        help="source-estimate files: stc (<name>-lh.stc/-rh.stc) or h5 (<name>-stc.h5, "
        "needs h5io) (default: stc)",
    )  # fmt: skip


def recording_config(args):
    from .._config import config_from_args
    from ..configs import RecordingConfig

    return config_from_args(RecordingConfig, args)


def read_data(args):
    """The segments of ``--data`` (a missing file is named)."""
    from ..recordings import read_segments

    path = Path(args.data)
    if not path.exists():
        raise FileNotFoundError(f"--data {str(path)!r} does not exist.")
    return read_segments(path, config=recording_config(args))


def file_names(names) -> list[str]:
    """File-system safe, distinct names for conditions (``Left Auditory`` -> ``Left_Auditory``)."""
    out, seen = [], {}
    for name in names:
        safe = re.sub(r"[^A-Za-z0-9.+=-]+", "_", str(name)).strip("_.") or "condition"
        count = seen.get(safe, 0)
        seen[safe] = count + 1
        out.append(safe if count == 0 else f"{safe}_{count}")
    return out


def write_stc(stc, folder: Path, stem: str, fmt: str) -> list[str]:
    """Write one source estimate under ``folder`` (created); returns the file names."""
    from ..inverse import write_source_estimate

    folder.mkdir(parents=True, exist_ok=True)
    paths = write_source_estimate(stc, folder / stem, ftype=fmt, overwrite=True)
    return [p.name for p in paths]
