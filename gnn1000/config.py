"""The configuration layer: gin files in, gin references to plain components out.

Here gin files become gin references; no component class imports gin. The registry maps names to
plain classes; :func:`reference` gives gin its own wrapper of one (``gin.external_configurable``), so a
class built in Python never reads gin. Other modules that import gin read a parsed config
(``build``, ``repeats``, ``dataroot``'s ``data.*`` settings, the tune layer) or parse config text
without binding it (``gin_text``, which ``resume`` and the tune layer use too).
A reference fills the component arguments it is given by name (``operator``, ``norm``, ``solver``...)
with references too, so ``gen.*`` bindings reach the operators a ``revgnn`` reference builds.

On top of gin: a config is a path or the name of a shipped config; ``include`` resolves relative to
the including file, then to the shipped configs; only the plugins a config names are imported; gin's
errors gain the list of valid names. :mod:`gnn1000.build` turns the bound references into objects.
"""

from __future__ import annotations

import importlib.resources
import importlib.util  # noqa: F401  gin 0.5.0 uses importlib.util without importing it
import functools
import inspect
import io
import re
import threading
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gin
from gin import config_parser

from gnn1000 import gin_text, registry
from gnn1000.errors import ConfigError, did_you_mean
from gnn1000.settings import ExperimentConfig

_RESOLVED = "gnn1000-config:"  # marks an include path this module has already resolved
_INCLUDE = re.compile(r"""^(?P<lead>[ \t]*include[ \t]+)(?P<q>['"])(?P<path>[^'"]+)(?P=q)""", re.M)
DEFAULT_CONFIG = "default"


def configs_root() -> Path:
    """Where the shipped configs live, in a source checkout and in an installed copy alike."""
    return Path(str(importlib.resources.files("gnn1000.configs")))


def shipped_configs() -> list[str]:
    root = configs_root()
    return sorted(str(p.relative_to(root).with_suffix("")) for p in root.rglob("*.gin"))


def find_config(name_or_path: str | Path) -> Path:
    """A config file from a path, or from a shipped config's name (with or without ``.gin``)."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path.resolve()
    stem = str(name_or_path).removesuffix(".gin")
    shipped = configs_root() / f"{stem}.gin"
    if shipped.is_file():
        return shipped
    names = shipped_configs()
    close = did_you_mean(stem, names)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise ConfigError(
        f"Config {str(name_or_path)!r} is neither a file nor a shipped config.{hint} "
        f"Shipped configs (under {configs_root()}): {', '.join(names)}."
    )


def _resolve_include(target: str, including_file: Path) -> Path:
    candidates = [including_file.parent / target, configs_root() / target]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    raise ConfigError(
        f"include {target!r} in {including_file} was not found; looked in "
        f"{', '.join(str(c.parent) for c in candidates)}."
    )


def _read_with_resolved_includes(path: Path) -> str:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"Config {path} cannot be read: {exc.strerror or exc}. Check its permissions, or "
                          f"copy it somewhere you may read it.") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not a gin config: it is not UTF-8 text (byte {exc.start} is "
                          f"{exc.object[exc.start:exc.start + 1]!r}). A config is a text file of "
                          f"'configurable.parameter = value' lines.") from None
    return _INCLUDE.sub(
        lambda m: f"{m['lead']}'{_RESOLVED}{_resolve_include(m['path'], path)}'", text
    )


@contextmanager
def _open_resolved(marked_path: str):
    path = Path(marked_path.removeprefix(_RESOLVED))
    stream = io.StringIO(_read_with_resolved_includes(path))
    stream.name = str(path)
    yield stream


gin.config.register_file_reader(_open_resolved, lambda p: p.startswith(_RESOLVED))
# Not gin.add_config_file_search_path: it tries the working directory first and never the including
# file's folder. A reader is gin's one public hook, but gin asks its package-resource reader first,
# which logs a false "Path not found" for our paths, so ours is moved ahead in gin's reader list.
gin.config._FILE_READERS.sort(key=lambda reader: reader[0] is not _open_resolved)

# Arguments whose string value names another registered component, and that component's kind.
COMPONENT_ARGUMENTS = {"operator": "operators", "norm": "norms", "solver": "solvers", "bwd_solver": "solvers"}
BUILT_ONCE = {"solvers"}  # taken as an instance (one per model), the others as a factory (one per layer)
_references: dict[tuple[str, str], Callable[..., Any]] = {}
_references_lock = threading.RLock()


def _configured(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` with its component arguments (bound, passed or default) turned into gin references."""
    signature = inspect.signature(fn)
    components = [name for name in COMPONENT_ARGUMENTS if name in signature.parameters]

    def build(*args, **kwargs):
        given = signature.bind_partial(*args, **kwargs).arguments
        for name in components:
            value = given.get(name, signature.parameters[name].default)
            if isinstance(value, str):
                kind = COMPONENT_ARGUMENTS[name]
                kwargs[name] = reference(kind, value)() if kind in BUILT_ONCE else reference(kind, value)
        return fn(*args, **kwargs)

    # Name and docs only: wraps() would copy a class's whole __dict__ and set __wrapped__.
    functools.update_wrapper(build, fn, assigned=("__module__", "__name__", "__qualname__", "__doc__"), updated=())
    build.__signature__ = signature  # gin reads the parameters (and their defaults) from here
    return build


def _register_reference(name: str, module: str | None, obj: Callable[..., Any]) -> Callable[..., Any]:
    with _references_lock:
        key = (module or "", name)
        if key not in _references:
            _references[key] = gin.external_configurable(_configured(obj), name=name, module=module)
        return _references[key]


def reference(kind: str, name: str) -> Callable[..., Any]:
    """gin's reference to the component registered as ``name``: calling it applies the bindings of
    ``<gin name>.*`` (registered with gin on first use, under the gin module ``kind``)."""
    entry = registry.entry(kind, name)
    return _register_reference(registry.gin_name(entry.name), kind, entry.obj)


def settings() -> ExperimentConfig:
    """The loop's settings as the parsed gin config binds them (``experiment.*``)."""
    return _register_reference("experiment", None, ExperimentConfig)()


def _selectors(text: str, source: str, chain: tuple[str, ...] = ()) -> list[str]:
    """Every configurable a config text binds or references, following its includes (``chain``: the
    files that included this one, so that a cycle is an error and not an endless recursion)."""
    chain = (*chain, source)
    parsed = gin_text.parse(text, source)
    found = []
    for st in parsed.statements:
        if isinstance(st, config_parser.BindingStatement) and st.arg_name:
            found.append(st.selector)
        elif isinstance(st, config_parser.BlockDeclaration):
            found.append(st.selector)
        elif isinstance(st, config_parser.IncludeStatement) and st.filename.startswith(_RESOLVED):
            path = Path(st.filename.removeprefix(_RESOLVED))
            if str(path) in chain:
                cycle = " -> ".join([*chain[chain.index(str(path)):], str(path)])
                raise ConfigError(f"{path} includes itself ({cycle}); remove the include that leads back to it.")
            found += _selectors(_read_with_resolved_includes(path), str(path), chain)
    return found + [reference.split("/")[-1] for reference in parsed.references]


def _import_named_plugins(selectors: list[str]) -> None:
    """Load the registry entries a config names and give gin references to them before it parses."""
    for selector in selectors:
        parts = selector.split(".")
        kind = parts[-2] if len(parts) >= 2 else None
        for entry in registry.find_by_gin_name(parts[-1], kind):
            reference(entry.kind, entry.name)


def known_configurables() -> dict[str, object]:
    """gin name -> object for the core configurables; registry entries are listed without loading."""
    from gnn1000 import dataroot

    _register_reference("experiment", None, ExperimentConfig)
    return {"experiment": ExperimentConfig, "data": dataroot.settings}


def _all_gin_names() -> list[str]:
    names = set(known_configurables())
    for kind in registry.KINDS:
        names.update(registry.gin_name(n) for n in registry.available(kind))
    return sorted(names)


def _parameters_of(selector: str) -> list[str] | None:
    name = selector.split(".")[-1]
    obj = known_configurables().get(name)
    if obj is None:
        entries = registry.find_by_gin_name(name)
        if not entries:
            return None
        obj = registry.resolve(entries[0].kind, entries[0].name)
    params = inspect.signature(obj).parameters.values()
    return [p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def _explain_gin_error(exc: Exception) -> str:
    message = str(exc)
    unknown = re.search(r"No configurable matching (?:reference )?'@?([\w.]+)", message)
    if unknown:
        name = unknown.group(1).split(".")[-1]
        close = did_you_mean(name, _all_gin_names())
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        return f"{message}{hint} Configurable names: {', '.join(_all_gin_names())}."
    bad_param = re.search(r"Configurable '([\w.]+)' doesn't have a parameter named '(\w+)'", message)
    if bad_param:
        params = _parameters_of(bad_param.group(1)) or []
        close = did_you_mean(bad_param.group(2), params)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        return f"{message}{hint} Parameters of {bad_param.group(1)}: {', '.join(params)}."
    return message


def _config_name(path: Path) -> str:
    """'ogbn-proteins/revgnn-deep' for a shipped config, the file's stem for any other."""
    try:
        return str(path.relative_to(configs_root()).with_suffix(""))
    except ValueError:
        return path.stem


@dataclass
class LoadedConfig:
    name: str
    path: Path | None
    bindings: list[str]


def load(config: str | Path | None = DEFAULT_CONFIG, bindings: list[str] | tuple[str, ...] = (), *,
         search: bool = False) -> LoadedConfig:
    """Clear gin, then parse one config (a path or a shipped name) and ``key=value`` bindings.

    ``search``: the config may hold a Ray Tune search (``search.*``); only ``gnn1000 tune`` reads those.
    """
    gin.clear_config()
    known_configurables()  # imports the core configurables, so gin knows `experiment` and `data`
    path = find_config(config) if config is not None else None
    bindings = list(bindings)
    for binding in bindings:
        if "=" not in binding:
            raise ConfigError(f"Binding {binding!r} is not of the form 'configurable.parameter = value'.")
    selectors = _selectors(_read_with_resolved_includes(path), str(path)) if path else []
    selectors += _selectors("\n".join(bindings), "--bind")
    if not search and "search" in {selector.split(".")[-1] for selector in selectors}:
        raise ConfigError(f"{path or 'The bindings'} set 'search.*': that makes a Ray Tune search file; "
                          "run it with 'gnn1000 tune FILE'.")
    _import_named_plugins(selectors)
    files = [f"{_RESOLVED}{path}"] if path else []
    try:
        # Not finalized: plugins a config does not name (defaults) register with gin later.
        gin.parse_config_files_and_bindings(files, bindings, finalize_config=False)
    except ImportError as exc:
        missing = re.search(r"No module named '([\w.]+)'", str(exc))
        module = missing.group(1) if missing else str(exc).splitlines()[0]
        raise ConfigError(f"{path or 'The bindings'}: a gin 'import' failed: module {module!r} is not "
                          f"installed or not on the Python path. Install it, or remove the import line.") from None
    except (ValueError, KeyError, TypeError, SyntaxError, OSError) as exc:
        raise ConfigError(f"Invalid gin config ({path or 'bindings'}): {_explain_gin_error(exc)}") from exc
    _check_macros([(_read_with_resolved_includes(path), str(path))] if path else [], bindings)
    name = _config_name(path) if path else "bindings"
    global _SOURCE
    _SOURCE = path
    return LoadedConfig(name=name, path=path, bindings=bindings)


_SOURCE: Path | None = None


def source() -> Path | None:
    """The file the gin config loaded now came from (None: bindings only, or nothing loaded); the
    environment record in summary.json names its git commit."""
    return _SOURCE


def _check_macros(texts: list[tuple[str, str]], bindings: list[str]) -> None:
    """A macro used but never defined fails here, by name, not later as a missing setting."""
    for text, source in [*texts, ("\n".join(bindings), "--bind")]:
        for name in gin_text.parse(text, source).macros:
            try:
                gin.query_parameter(f"%{name}")
            except ValueError:
                raise ConfigError(f"gin macro %{name} is used in {source} but never defined; define it "
                                  f"with a line '{name} = <value>' (in the config, an included file or "
                                  f"--bind).") from None


def operative_config() -> str:
    """Every parameter value the run actually used, as a gin file that reproduces it."""
    return gin.operative_config_str()


# Built during training, not before it: a binding to them cannot be judged when the run starts.
_BUILT_LATER = ("loggers.", "callbacks.")


def unused_bindings() -> list[str]:
    """``configurable.parameter`` of every binding whose configurable this process has not called:
    another architecture's, a dataset or sampler the run does not use. A warning, not an error: a
    shared fragment (default.gin, a paper config) binds more than one component on purpose."""
    called = set(gin.config._OPERATIVE_CONFIG)  # gin has no public view of what it has called
    unused = []
    for (scope, selector), params in gin.config._CONFIG.items():
        if (scope, selector) in called or selector.startswith(_BUILT_LATER):
            continue
        name = f"{scope + '/' if scope else ''}{selector.split('.')[-1]}"
        unused += [f"{name}.{param}" for param in params]
    return sorted(unused)


def run_name(config_name: str) -> str:
    """A new run's folder name: the config's name, plus the dataset's own name when the dataset
    plugin takes one (``tu-MUTAG``)."""
    dataset = settings().dataset
    try:
        own = gin.query_parameter(f"{registry.gin_name(dataset)}.name")
    except (ValueError, TypeError):  # the plugin takes no name, or none is bound
        return config_name
    return f"{config_name}-{own}" if isinstance(own, str) and own not in config_name else config_name
