"""One registry for every kind of component: register, resolve, available.

Components are found through the entry-point groups ``gnn1000.<kind>`` (this package declares its
own built-ins there too) and through ``@register`` in imported code. Entry points are read from
package metadata only; a plugin's module is imported the first time its name is resolved, so a
broken plugin fails only when it is asked for. The registry is a plain name -> object map: it never
touches gin. The configuration layer (:mod:`gnn1000.config`) gives gin its own reference to each
component it uses, under :func:`gin_name` in the gin module ``kind``, leaving the classes unchanged.
"""

from __future__ import annotations

import re
import threading
import warnings
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Callable

from gnn1000.errors import PluginLoadError, UnknownNameError, normalize, unknown_name_message

KINDS = ("architectures", "operators", "norms", "samplers", "solvers", "datasets", "optimizers", "schedulers", "loggers",
         "callbacks")
BUILT_IN = "built-in"
_DISTRIBUTION = "gnn1000"

__all__ = ["KINDS", "register", "resolve", "entry", "available", "describe", "gin_name", "refresh", "Entry"]


@dataclass
class Entry:
    """One registered name: where it comes from and, once loaded, the object."""

    kind: str
    name: str
    origin: str
    target: str
    obj: Any = None
    entry_point: metadata.EntryPoint | None = None
    rivals: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)  # what register() was told besides the name

    @property
    def loaded(self) -> bool:
        return self.obj is not None


_lock = threading.RLock()
_entries: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
_discovered: set[str] = set()


def gin_name(name: str) -> str:
    """The gin configurable name of a registry name: 'synthetic-proteins' -> 'synthetic_proteins'."""
    ident = re.sub(r"\W", "_", name)
    return ident if not ident[:1].isdigit() else f"_{ident}"


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise UnknownNameError(unknown_name_message("registry kind", kind, KINDS))


def _origin_of_module(module: str) -> str:
    return BUILT_IN if module.split(".")[0] == _DISTRIBUTION else f"module {module}"


def _origin_of_entry_point(ep: metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return f"entry point {ep.value}"
    if dist.name == _DISTRIBUTION:
        return BUILT_IN
    return f"distribution {dist.name} {dist.version}"


def _discover(kind: str) -> None:
    """Read the entry points of one kind from metadata, without importing anything."""
    if kind in _discovered:
        return
    with _lock:
        if kind in _discovered:
            return
        found = sorted(
            metadata.entry_points(group=f"gnn1000.{kind}"),
            key=lambda ep: _origin_of_entry_point(ep) != BUILT_IN,  # built-ins win a name clash
        )
        for ep in found:
            key = normalize(ep.name)
            origin = _origin_of_entry_point(ep)
            existing = _entries[kind].get(key)
            if existing is None:
                _entries[kind][key] = Entry(kind, ep.name, origin, ep.value, entry_point=ep)
            elif existing.target != ep.value and f"{ep.value} ({origin})" not in existing.rivals:
                existing.rivals.append(f"{ep.value} ({origin})")
        _discovered.add(kind)


def register(kind: str, name: str | None = None, **info: Any) -> Callable[[Any], Any]:
    """Decorator: ``@register("operators", "myconv")`` makes a class resolvable by name; it stays unchanged.

    ``info`` is kept on the entry (:func:`entry` ``.info``) for what callers want to know without
    calling the object, e.g. a dataset's ``metric`` (``@register("datasets", "cora", metric="acc")``).
    """
    _check_kind(kind)

    def decorator(obj: Any) -> Any:
        reg_name = name or obj.__name__
        key = normalize(reg_name)
        with _lock:
            _discover(kind)
            entry = _entries[kind].get(key)
            target = f"{obj.__module__}:{obj.__qualname__}"
            clash = entry is not None and (
                entry.target != target if entry.loaded
                # while its entry point imports, the module registers itself: same module
                else entry.target.split(":")[0] != obj.__module__
            )
            if clash:
                raise ValueError(
                    f"{kind} name {reg_name!r} is already registered by {entry.target} "
                    f"({entry.origin}); choose another name for {target}."
                )
            if entry is None:
                entry = Entry(kind, reg_name, _origin_of_module(obj.__module__), target)
                _entries[kind][key] = entry
            entry.obj = obj
            entry.info = dict(info)
        return obj

    return decorator


def _check_rivals(entry: Entry) -> None:
    """A built-in keeps its name against a plugin (with a warning); two plugins' clash is an error."""
    if not entry.rivals:
        return
    if entry.origin != BUILT_IN:
        raise PluginLoadError(
            f"{entry.kind} name {entry.name!r} is declared by more than one plugin: "
            f"{entry.target} ({entry.origin}) and {', '.join(entry.rivals)}. Uninstall one of them."
        )
    warnings.warn(f"{entry.kind} name {entry.name!r} is built in; ignoring the plugin(s) that also "
                  f"declare it: {', '.join(entry.rivals)}. Give those another name.", stacklevel=3)


def _load(entry: Entry) -> Any:
    if entry.loaded:
        return entry.obj
    try:
        obj = entry.entry_point.load()
    except Exception as exc:
        raise PluginLoadError(
            f"{entry.kind} plugin {entry.name!r} from {entry.origin} could not be loaded "
            f"({entry.target}): {type(exc).__name__}: {exc}"
        ) from exc
    with _lock:
        if not entry.loaded:  # its module may have called register() while importing
            entry.obj = obj
    return entry.obj


def entry(kind: str, name: str) -> Entry:
    """The loaded entry registered as ``name`` (any spelling :func:`normalize` maps to it) in ``kind``."""
    _check_kind(kind)
    _discover(kind)
    found = _entries[kind].get(normalize(name))
    if found is None:
        raise UnknownNameError(unknown_name_message(kind[:-1], name, available(kind)))
    _check_rivals(found)
    _load(found)
    return found


def resolve(kind: str, name_or_obj: Any) -> Any:
    """The class (or function) registered as ``name`` in ``kind``; non-strings pass straight through."""
    _check_kind(kind)
    if not isinstance(name_or_obj, str):
        return name_or_obj
    return entry(kind, name_or_obj).obj


def available(kind: str) -> list[str]:
    """Registered names of one kind, sorted; nothing is imported."""
    _check_kind(kind)
    _discover(kind)
    return sorted(entry.name for entry in _entries[kind].values())


def describe(kind: str) -> list[Entry]:
    """The entries of one kind with their origins, for ``gnn1000 list``."""
    _check_kind(kind)
    _discover(kind)
    return sorted(_entries[kind].values(), key=lambda e: e.name)


def find_by_gin_name(ident: str, kind: str | None = None) -> list[Entry]:
    """Entries whose gin name is ``ident`` (in one kind, or any), for loading what a config uses."""
    kinds = [kind] if kind else KINDS
    hits = []
    for k in kinds:
        if k not in KINDS:
            continue
        _discover(k)
        hits.extend(e for e in _entries[k].values() if gin_name(e.name) == ident)
    return hits


def refresh() -> None:
    """Forget discovered entry points (after installing a plugin into a running interpreter)."""
    with _lock:
        for kind in KINDS:
            for key in [k for k, e in _entries[kind].items() if not e.loaded]:
                del _entries[kind][key]
            for entry in _entries[kind].values():
                entry.rivals.clear()
        _discovered.clear()
