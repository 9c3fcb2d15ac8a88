"""The package's logger and ``verbose=`` handling, the MNE way.

Every module logs through a child of the ``napari_meg_unet`` logger
(``logging.getLogger(__name__)``). A function decorated with :func:`verbose`
takes ``verbose=None`` (keep the current level), ``True`` (INFO), ``False``
(WARNING) or a level name/number, and applies it to this package's logger
and to MNE's for the duration of the call; generator functions get it for
each step they run, so the consumer's code between steps is unaffected.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging

logger = logging.getLogger("napari_meg_unet")
if not logger.handlers:
    _handler = logging.StreamHandler()
    _handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(_handler)
    logger.setLevel(logging.WARNING)
    logger.propagate = False

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}


def _as_level(verbose) -> int | None:
    if verbose is None:
        return None
    if isinstance(verbose, bool):
        return logging.INFO if verbose else logging.WARNING
    if isinstance(verbose, int):
        return verbose
    if isinstance(verbose, str) and verbose.lower() in _LEVELS:
        return _LEVELS[verbose.lower()]
    raise ValueError(
        f"verbose must be None, a bool, an int or one of {tuple(_LEVELS)}, got {verbose!r}."
    )


def set_log_level(verbose) -> int:
    """Set the package logger's level; returns the previous one."""
    old = logger.level
    level = _as_level(verbose)
    if level is not None:
        logger.setLevel(level)
    return old


@contextlib.contextmanager
def use_log_level(verbose):
    """Apply ``verbose`` to this package's and MNE's loggers inside the block."""
    level = _as_level(verbose)
    if level is None:
        yield
        return
    import mne

    old = logger.level
    logger.setLevel(level)
    try:
        with mne.utils.use_log_level(level):
            yield
    finally:
        logger.setLevel(old)


def _step_under(gen, verbose):
    """Run generator ``gen`` with the log level set only while it runs."""
    send, value = gen.send, None
    while True:
        with use_log_level(verbose):
            try:
                event = send(value)
            except StopIteration as stop:
                return stop.value
        try:
            value = yield event
            send = gen.send
        except GeneratorExit:
            gen.close()
            raise
        except BaseException as err:  # forwarded to the inner generator
            send, value = gen.throw, err


def verbose(func):
    """Decorator: honour the function's ``verbose`` argument for its whole run."""
    sig = inspect.signature(func)
    if "verbose" not in sig.parameters:
        raise TypeError(f"{func.__qualname__} has no 'verbose' parameter.")

    def _verbose_of(args, kwargs):
        if "verbose" in kwargs:
            return kwargs["verbose"]
        bound = sig.bind_partial(*args, **kwargs)
        return bound.arguments.get("verbose", sig.parameters["verbose"].default)

    if inspect.isgeneratorfunction(func):

        @functools.wraps(func)
        def gen_wrapper(*args, **kwargs):
            level = _verbose_of(args, kwargs)
            _as_level(level)  # validate before the generator starts
            return _step_under(func(*args, **kwargs), level)

        return gen_wrapper

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with use_log_level(_verbose_of(args, kwargs)):
            return func(*args, **kwargs)

    return wrapper
