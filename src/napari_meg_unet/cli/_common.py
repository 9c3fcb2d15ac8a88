"""Shared CLI plumbing: common options, progress bars and output."""

from __future__ import annotations

import sys

from .._io import to_json
from .._parse import parse_number
from ..progress import Progress, run


class Interrupted(KeyboardInterrupt):
    """Ctrl-C after which something was kept on disk; ``kept`` says what."""

    def __init__(self, kept: str):
        super().__init__(kept)
        self.kept = kept


def positive_int(text: str) -> int:
    """An argparse ``type`` accepting integers >= 1."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def number(name: str, *, positive: bool = True):
    """An argparse ``type`` accepting numbers and fractions such as ``1/9``."""
    import argparse

    def parse(text):
        try:
            return parse_number(text, name=name, positive=positive)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    return parse


def add_common(parser, *, output: bool = False) -> None:
    """Add ``--json`` (and ``--out``/``--overwrite`` when ``output``) to ``parser``."""
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument(
        "--no-progress", action="store_true", help="do not show progress bars (stderr)"
    )
    if output:
        parser.add_argument("--out", "-o", required=True, help="output path")
        parser.add_argument(
            "--overwrite", action="store_true", help="replace an existing output path"
        )


class ProgressBar:
    """Callback drawing one tqdm bar per progress stage on stderr."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self._bar = None
        self._stage = None

    def __call__(self, event) -> None:
        if not self.enabled or not isinstance(event, Progress):
            return
        from tqdm.auto import tqdm

        if event.stage != self._stage:
            self.close()
            self._stage = event.stage
            self._bar = tqdm(total=event.total, desc=event.stage, file=sys.stderr, leave=False)
        self._bar.total = event.total
        self._bar.n = event.done
        if event.message:
            self._bar.set_postfix_str(event.message, refresh=False)
        self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def drive(gen, args):
    """Run a progress generator with a progress bar unless ``--no-progress``."""
    bar = ProgressBar(enabled=not getattr(args, "no_progress", False))
    try:
        return run(gen, bar)
    finally:
        bar.close()


def emit(result, *, as_json: bool) -> None:
    """Print a handler's result as JSON or as ``key: value`` lines / a preformatted table."""
    if result is None:
        return
    if as_json:
        print(to_json(result, indent=2, sort_keys=True))
        return
    if isinstance(result, dict) and "table" in result:
        print(result["table"])
        return
    if isinstance(result, dict):
        for key, value in result.items():
            print(f"{key}: {value}")
    else:
        print(result)


def _name_list(text, choices, what):
    """``"all"``, ``"none"`` or ``"NAME[,NAME...]"`` of ``choices`` -> a tuple of names."""
    import argparse

    if text.strip() in ("all", "none"):
        return tuple(choices) if text.strip() == "all" else ()
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in choices]
    if unknown or not names or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(
            f"expected 'all', 'none' or {what} from {', '.join(choices)} (each once); "
            f"got {text!r}"
        )
    return names


def peer_list(text):
    """An argparse ``type``: ``"all"``, ``"none"`` or ``"PEER[,PEER...]"`` -> a tuple of peers."""
    from ..configs import PEERS

    return _name_list(text, PEERS, "peers")


def hybrid_list(text):
    """An argparse ``type``: ``"all"``, ``"none"`` or ``"HYBRID[,...]"`` -> a tuple of hybrids."""
    from ..configs import HYBRIDS

    return _name_list(text, HYBRIDS, "hybrids")


def add_peers_option(parser, *, default_text="none") -> None:
    """``--peers`` (:class:`~napari_meg_unet.configs.PeerConfig`'s ``peers``, as a list)."""
    from .._config import option_spec
    from ..configs import PeerConfig

    parser.add_argument(
        "--peers", type=peer_list, metavar="all|none|PEER[,...]",
        help=option_spec(PeerConfig, "peers")["help"] + f" (default: {default_text})",
    )  # fmt: skip
