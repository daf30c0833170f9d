"""Reading gin config text without binding or importing anything: gnn1000's one gin parser delegate.

The configuration layer reads which configurables a config names (to load only those plugins) and
which macros it uses; ``--resume`` compares two configs binding by binding; the tune layer finds
where statements start. All three read gin's own parser output through :func:`parse`.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from gin import config_parser

from gnn1000.errors import ConfigError


class _Literal(config_parser.ParserDelegate):
    """Keeps ``@references`` and ``%macros`` as their text, so two configs compare without importing
    anything, and notes each one."""

    def __init__(self):
        self.references: list[str] = []
        self.macros: list[str] = []

    def configurable_reference(self, scoped_configurable_name, evaluate):
        self.references.append(scoped_configurable_name)
        return f"@{scoped_configurable_name}{'()' if evaluate else ''}"

    def macro(self, macro_name):
        self.macros.append(macro_name)
        return f"%{macro_name}"


@dataclass
class Parsed:
    statements: list  # gin's statements (BindingStatement, IncludeStatement, ...) in order
    references: list[str]  # every ``@scope/name`` used, as written
    macros: list[str]  # every ``%name`` used


def parse(text: str, source: str) -> Parsed:
    """gin's statements of ``text``; a syntax error names ``source``."""
    delegate = _Literal()
    try:
        statements = list(config_parser.ConfigParser(io.StringIO(text), delegate))
    except SyntaxError as exc:
        raise ConfigError(f"gin syntax error in {source}: {exc}") from exc
    return Parsed(statements, delegate.references, delegate.macros)
