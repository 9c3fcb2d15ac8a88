"""One declaration per option: the config dataclasses behind the core, the CLI and the widgets.

Each step (simulation, inverse, dataset, training, evaluation) declares its
options once, as the fields of a frozen dataclass made with :func:`config`,
each field an :func:`option` carrying its default, kind, bounds, choices and
help text. From that single declaration:

- the dataclass validates and normalises every value (``__post_init__``), with
  errors naming the option;
- :func:`takes_config` gives a core function keyword arguments for every
  option (``simulate(hm, design="multi", n_events=10)``) or a whole
  ``config=`` object, with a generated signature and docstring;
- :func:`add_cli_options` / :func:`config_from_args` generate the argparse
  arguments and read them back;
- the napari input containers read defaults, choices and help from
  :func:`option_spec`.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import functools
import inspect
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path

from . import _validation as V
from ._docs import docdict
from ._parse import parse_number

KINDS = (
    "int",
    "float",
    "number",  # a float that may be typed as a fraction ("1/9")
    "bool",
    "choice",
    "choices",
    "str",
    "path",
    "int_range",
    "float_range",
)


def option(
    default,
    *,
    help: str,
    kind: str | None = None,
    choices=None,
    minimum=None,
    maximum=None,
    strict: bool = True,
    optional: bool = False,
    cli: bool = True,
    flag: str | None = None,
    metavar: str | None = None,
):
    """A config field.

    Parameters
    ----------
    default
        The default value (``None`` makes the option optional).
    help : str
        One sentence: what the option does (shown by ``--help``, tooltips and
        the generated docstring).
    kind : str | None
        One of :data:`KINDS`; inferred from ``default``/``choices`` when None.
    choices : sequence | None
        Allowed values (``kind="choice"`` / ``"choices"``).
    minimum, maximum : number | None
        Bounds; ``minimum`` is exclusive for floats when ``strict``.
    optional : bool
        ``None`` is accepted (implied by ``default=None``).
    cli : bool
        Generate a command-line argument for it.
    flag, metavar : str | None
        Command-line flag (default ``--<name-with-dashes>``) and metavar.
    """
    if kind is None:
        kind = _infer_kind(default, choices)
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}.")
    metadata = dict(
        help=help,
        kind=kind,
        choices=None if choices is None else tuple(choices),
        minimum=minimum,
        maximum=maximum,
        strict=strict,
        optional=optional or default is None,
        cli=cli,
        flag=flag,
        metavar=metavar,
    )
    if isinstance(default, list | dict | set):
        raise TypeError("Use a tuple (immutable) default for a config option.")
    return field(default=default, metadata=metadata)


def _infer_kind(default, choices) -> str:
    if isinstance(default, bool):
        return "bool"
    if choices is not None:
        return "choices" if isinstance(default, tuple) else "choice"
    if isinstance(default, int):
        return "int"
    if isinstance(default, float):
        return "float"
    if isinstance(default, str):
        return "str"
    raise TypeError(f"Cannot infer the kind of an option with default {default!r}; pass kind=.")


# --------------------------------------------------------------------------- validation
def _check_value(name: str, md: dict, value):
    if value is None:
        if md["optional"]:
            return None
        raise ValueError(f"{name} must not be None.")
    kind = md["kind"]
    lo, hi = md["minimum"], md["maximum"]
    if kind == "int":
        return V.check_int(value, name, minimum=lo, maximum=hi)
    if kind == "float":
        return V.check_number(value, name, minimum=lo, maximum=hi, strict=md["strict"])
    if kind == "number":
        if isinstance(value, str):
            value = parse_number(value, name=name, positive=False)
        return V.check_number(value, name, minimum=lo, maximum=hi, strict=md["strict"])
    if kind == "bool":
        if not isinstance(value, bool) and type(value).__name__ != "bool_":
            raise ValueError(f"{name} must be True or False, got {value!r}.")
        return bool(value)
    if kind == "choice":
        return V.check_choice(value, name, md["choices"] + ((None,) if md["optional"] else ()))
    if kind == "choices":
        return V.check_choices(value, name, md["choices"])
    if kind == "str":
        return V.check_type(value, str, name)
    if kind == "path":
        V.check_type(value, "path-like", name)
        return str(value) if isinstance(value, Path) else value
    if kind == "int_range":
        return V.check_range(value, name, lambda v, n: V.check_int(v, n, minimum=lo, maximum=hi))
    # float_range
    return V.check_range(
        value,
        name,
        lambda v, n: V.check_number(v, n, minimum=lo, maximum=hi, strict=md["strict"]),
    )


class ConfigBase:
    """Methods shared by every config dataclass (made with :func:`config`)."""

    def __post_init__(self):
        for f in fields(self):
            value = _check_value(f.name, f.metadata, getattr(self, f.name))
            object.__setattr__(self, f.name, value)
        self._check()

    def _check(self) -> None:
        """Cross-option rules of a subclass (after each option is valid on its own)."""

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def build(cls, config=None, /, **options):
        """``config`` (or the defaults) with ``options`` replaced; unknown names are a TypeError."""
        unknown = sorted(set(options) - set(cls.option_names()))
        if unknown:
            hints = []
            for name in unknown:
                close = difflib.get_close_matches(name, cls.option_names(), n=1)
                hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            raise TypeError(
                f"Unknown {cls.__name__} option(s): {', '.join(hints)}. "
                f"Valid options: {', '.join(cls.option_names())}."
            )
        if config is None:
            return cls(**options)
        if not isinstance(config, cls):
            raise TypeError(f"config must be a {cls.__name__}, got {type(config).__name__}.")
        return dataclasses.replace(config, **options) if options else config

    def replace(self, **options):
        return type(self).build(self, **options)

    def as_kwargs(self) -> dict:
        """The options as keyword arguments (values as stored, tuples kept)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def to_dict(self) -> dict:
        """JSON-friendly values (tuples become lists)."""
        return {
            f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v
            for f in fields(self)
        }

    @classmethod
    def from_dict(cls, values: dict):
        """Inverse of :meth:`to_dict` (unknown keys are an error)."""
        return cls.build(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def config(cls):
    """Class decorator: a frozen, keyword-only config dataclass with a docdict entry."""
    if not issubclass(cls, ConfigBase):
        raise TypeError(f"{cls.__name__} must derive from ConfigBase.")
    cls = dataclass(frozen=True, kw_only=True)(cls)
    docdict[cls.__name__] = options_doc(cls)
    return cls


# --------------------------------------------------------------------------- documentation
def _type_doc(md: dict) -> str:
    kind = md["kind"]
    if kind in ("choice", "choices"):
        alts = " | ".join(repr(c) for c in md["choices"])
        text = alts if kind == "choice" else f"sequence of {alts}"
    else:
        text = {
            "int": "int",
            "float": "float",
            "number": "float | str",
            "bool": "bool",
            "str": "str",
            "path": "path-like",
            "int_range": "int | (int, int)",
            "float_range": "float | (float, float)",
        }[kind]
    return text + (" | None" if md["optional"] else "")


def options_doc(cls) -> str:
    """Numpydoc ``Parameters`` entries for every option of ``cls``."""
    entries = []
    for f in fields(cls):
        text = f.metadata["help"]
        text = text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")
        default = "" if f.default is MISSING else f" Default: ``{f.default!r}``."
        entries.append(f"{f.name} : {_type_doc(f.metadata)}\n    {text}{default}")
    return "\n".join(entries)


def option_spec(cls, name: str) -> dict:
    """Default, kind, choices, bounds and help of one option (for widgets)."""
    for f in fields(cls):
        if f.name == name:
            return {"default": f.default, **f.metadata}
    raise KeyError(f"{cls.__name__} has no option {name!r}.")


# --------------------------------------------------------------------------- functions
def takes_config(cls, *, param: str = "config"):
    """Decorator: the function takes ``config=`` or any of ``cls``'s options as keywords.

    The decorated function is written as ``def f(hm, *, config, verbose=None)``;
    callers pass ``f(hm, design="multi")``, ``f(hm, config=cfg)`` or
    ``f(hm, config=cfg, snr=3)``. Validation happens at call time (before a
    generator's first step). The generated signature lists every option as a
    keyword-only argument, and ``%(options)s`` in the docstring lists them.
    Unknown keywords are a TypeError, unless the function has a ``**kwargs``
    parameter: then keywords that are not options are passed on to it.
    """

    def decorate(func):
        sig = inspect.signature(func)
        if param not in sig.parameters:
            raise TypeError(f"{func.__qualname__} has no {param!r} parameter.")
        own = set(sig.parameters) - {param}
        names = set(cls.option_names())
        clash = own & names
        if clash:
            raise TypeError(f"{func.__qualname__} repeats options of {cls.__name__}: {clash}.")
        var_kw = any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values())

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            cfg = kwargs.pop(param, None)
            options = {
                k: kwargs.pop(k) for k in list(kwargs) if k in names or not (var_kw or k in own)
            }
            return func(*args, **kwargs, **{param: cls.build(cfg, **options)})

        params = [p for p in sig.parameters.values() if p.name != param]
        tail = [p for p in params if p.name == "verbose" or p.kind == p.VAR_KEYWORD]
        head = [p for p in params if p not in tail]
        generated = [inspect.Parameter(param, inspect.Parameter.KEYWORD_ONLY, default=None)]
        generated += [
            inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default)
            for f in fields(cls)
        ]
        wrapper.__signature__ = sig.replace(parameters=head + generated + tail)
        if func.__doc__ and "%(options)s" in func.__doc__:
            lines = func.__doc__.splitlines()
            body = [line for line in lines[1:] if line.strip()]
            indent = " " * min((len(x) - len(x.lstrip()) for x in body), default=0)
            doc = (
                f"config : {cls.__name__} | None\n    All options at once (the keywords "
                f"below replace its values).\n{options_doc(cls)}"
            )
            doc = doc.replace("\n", "\n" + indent)
            wrapper.__doc__ = func.__doc__.replace("%(options)s", doc)
        wrapper.config_class = cls
        return wrapper

    return decorate


# --------------------------------------------------------------------------- command line
def _cli_help(md: dict, default) -> str:
    text = md["help"]
    if md["kind"] != "bool" and default is not None:
        shown = " ".join(map(str, default)) if isinstance(default, tuple) else default
        text += f" (default: {shown})"
    return text.replace("%", "%%")  # argparse %-formats help strings


def _cli_type(md: dict, name: str):
    """The argparse ``type`` of an option; optional numbers also accept ``none``."""
    import argparse

    kind = md["kind"]
    convert = {"int": int, "int_range": int, "float": float, "float_range": float}.get(kind)
    if kind == "number":

        def convert(text):
            return parse_number(text, name=f"--{name}", positive=False)

    if convert is None:
        return None

    def parse(text):
        if md["optional"] and text.strip().lower() == "none":
            return None
        try:
            return convert(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    parse.__name__ = kind  # argparse names the type in its "invalid ... value" message
    return parse


def add_cli_options(parser, cls, *, only=None, exclude=(), defaults=None, required=()) -> None:
    """Add one argparse argument per option of ``cls`` to ``parser`` (or an argument group).

    ``only``/``exclude`` select options; ``defaults`` overrides defaults for this
    command (e.g. a different preset); ``required`` options get no default.
    """
    defaults = dict(defaults or {})
    for f in fields(cls):
        md = f.metadata
        if not md["cli"] or f.name in exclude or (only is not None and f.name not in only):
            continue
        default = defaults.get(f.name, f.default)
        dashed = f.name.replace("_", "-")
        kwargs = dict(dest=f.name, help=_cli_help(md, default))
        if md["kind"] == "bool":
            if default is None:  # tri-state: None lets the command decide
                flags = [f"--{dashed}"]
                kwargs.update(action=argparse.BooleanOptionalAction, default=None)
            elif default:
                flags = [md["flag"] or f"--no-{dashed}"]
                kwargs.update(action="store_false", default=True)
            else:
                flags = [md["flag"] or f"--{dashed}"]
                kwargs.update(action="store_true", default=False)
            parser.add_argument(*flags, **kwargs)
            continue
        flags = [md["flag"] or f"--{dashed}"]
        if md["kind"] in ("choice", "choices"):
            kwargs["choices"] = md["choices"] + (("none",) if md["optional"] else ())
        if md["kind"] in ("choices", "int_range", "float_range"):
            kwargs["nargs"] = "+"
        if (t := _cli_type(md, dashed)) is not None:
            kwargs["type"] = t
        if md["kind"] in ("int_range", "float_range"):
            kwargs["metavar"] = md["metavar"] or "X"
            kwargs["help"] += " (one value, or LO HI)"
        elif md["metavar"]:
            kwargs["metavar"] = md["metavar"]
        if f.name in required:
            kwargs["required"] = True
        else:
            kwargs["default"] = list(default) if isinstance(default, tuple) else default
        parser.add_argument(*flags, **kwargs)


def config_from_args(cls, args, **extra):
    """Build ``cls`` from parsed arguments (options absent from ``args`` keep their defaults).

    Options declared without a command-line argument (``cli=False``) are not read from
    ``args``: an attribute of that name belongs to another config's option (give them in
    ``extra``).
    """
    values = {}
    for f in fields(cls):
        if not f.metadata["cli"] or not hasattr(args, f.name):
            continue
        value = getattr(args, f.name)
        kind = f.metadata["kind"]
        if kind in ("int_range", "float_range") and isinstance(value, list):
            if len(value) not in (1, 2):
                flag = f.metadata["flag"] or "--" + f.name.replace("_", "-")
                raise ValueError(f"{flag} takes one value or two (LO HI), got {len(value)}.")
            value = value[0] if len(value) == 1 else tuple(value)
        elif isinstance(value, list):
            value = tuple(value)
        elif kind == "choice" and value == "none" and f.metadata["optional"]:
            value = None
        values[f.name] = value
    values.update(extra)
    return cls.build(**values)
