"""User-facing errors: each one says what was wrong and what is allowed.

The CLI prints these as one paragraph instead of a traceback.
"""


class Gnn1000Error(Exception):
    """Base class of every error gnn1000 raises on purpose."""


class UnknownNameError(Gnn1000Error, LookupError):
    """A registry name, config name or option that does not exist."""


class PluginLoadError(Gnn1000Error, ImportError):
    """A plugin's entry point exists but importing it failed."""


class ConfigError(Gnn1000Error, ValueError):
    """A gin file, binding or option value that cannot be used."""


class NonFiniteLossError(Gnn1000Error, FloatingPointError):
    """Training produced NaN or Inf; the last good checkpoint is kept."""


def did_you_mean(name: str, choices, n: int = 3) -> list[str]:
    """Closest matches for a mistyped name, compared case- and separator-insensitively."""
    import difflib

    by_key = {normalize(c): c for c in choices}
    keys = difflib.get_close_matches(normalize(name), list(by_key), n=n, cutoff=0.5)
    return [by_key[k] for k in keys]


def normalize(name: str) -> str:
    """PyG's resolver rule: case, '-', '_' and spaces do not matter."""
    return name.lower().replace("-", "").replace("_", "").replace(" ", "")


def unknown_name_message(what: str, name: str, choices) -> str:
    choices = sorted(choices)
    close = did_you_mean(name, choices)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    listing = ", ".join(choices) if choices else "(none)"
    return f"Unknown {what} {name!r}.{hint} Available {what}s: {listing}."


def paragraph(exc: BaseException) -> str:
    """An error's own message without the call chain gin appends to exceptions raised inside
    configurables ('In call to configurable ...'): the user needs what was wrong, not where."""
    text = str(exc)
    for marker in ("\n  No values supplied by Gin", "\n  In call to configurable"):
        text = text.split(marker)[0]
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def check_positive_ints(owner: str, **values) -> None:
    """Raise a ConfigError naming ``owner.arg`` for the first value that is not a positive integer."""
    for arg, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{owner}.{arg}={value!r} must be a positive integer.")


def check_bools(owner: str, **values) -> None:
    """Raise a ConfigError naming ``owner.arg`` for the first value that is not True or False: a
    quoted 'False' is a non-empty string, which Python would take as true."""
    for arg, value in values.items():
        if not isinstance(value, bool):
            hint = f" (write {value.strip().capitalize()} without quotes in gin)" if isinstance(value, str) and \
                value.strip().lower() in ("true", "false") else ""
            raise ConfigError(f"{owner}.{arg}={value!r} is not allowed: it must be True or False{hint}.")


class RunDirError(Gnn1000Error):
    """A run directory that belongs to another run, or is locked by a running process."""


class CorruptFileError(Gnn1000Error):
    """A checkpoint, dataset or record file that exists but cannot be read whole."""


def _interval(low, high, low_open: bool, high_open: bool) -> str:
    low, high = (v if isinstance(v, int) or v is None else f"{v:g}" for v in (low, high))
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low}"
    return f"{'<' if high_open else '<='} {high}"


def check_number(owner: str, name: str, value, *, low=None, high=None, low_open: bool = False,
                 high_open: bool = False, integer: bool = False, allow_none: bool = False) -> None:
    """Raise a ConfigError naming ``owner.name``, the value and the allowed range, unless ``value``
    is a finite number (an int when ``integer``) within it. Strings such as '0.01' are refused:
    gin passes quoted values through as text."""
    import math

    if value is None and allow_none:
        return
    kind = "an integer" if integer else "a number"
    allowed = f"{kind}{' ' + _interval(low, high, low_open, high_open) if (low, high) != (None, None) else ''}"
    if allow_none:
        allowed += ", or None"
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    ok = ok and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = ((low is None or (value > low if low_open else value >= low))
              and (high is None or (value < high if high_open else value <= high)))
    if not ok:
        hint = " (write it without quotes in gin)" if isinstance(value, str) else ""
        raise ConfigError(f"{owner}.{name}={value!r} is not allowed: it must be {allowed}{hint}.")


def plugin_error(what: str, exc: BaseException) -> ConfigError:
    """A plugin's own exception, raised while ``what`` was built, as one paragraph: the innermost
    plugin named and its message first (gin appends its call chain; that is kept after it)."""
    import re

    text = str(exc)
    message, _, trace = text.partition("\n  In call to configurable")
    chain = re.findall(r"In call to configurable '([\w.]+)'", text)
    plugin = f"plugin {chain[0]!r}" if chain else what
    via = f" (built through {' <- '.join(repr(c) for c in chain[1:])})" if len(chain) > 1 else ""
    return ConfigError(f"{plugin} failed while building {what}{via}: "
                       f"{type(exc).__name__}: {message.strip() or '(no message)'}")
