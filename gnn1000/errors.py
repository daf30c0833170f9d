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


def check_positive_ints(owner: str, **values) -> None:
    """Raise a ConfigError naming ``owner.arg`` for the first value that is not a positive integer."""
    for arg, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{owner}.{arg}={value!r} must be a positive integer.")

