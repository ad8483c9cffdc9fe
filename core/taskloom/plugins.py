"""Plugin loading: stevedore discovers the ``taskloom.plugins`` group, pluggy calls the hooks.

Each entry point in the group is imported once per process and registered with the pluggy
manager under its entry-point name. Built-in plugins arrive this way too. A plugin that fails
to import is recorded (name, distribution, error) and skipped; the others still load.

Environment variables:

* ``TASKLOOM_BLOCK_PLUGINS``: comma-separated plugin names that are not even imported.
* ``TASKLOOM_TRACE_PLUGINS``: when set to a non-empty value other than ``0``, every hook call,
  its arguments and its result are printed to stderr.
"""

from __future__ import annotations

import importlib.metadata
import os
import sys
import threading
from dataclasses import dataclass
from typing import Any

import pluggy
from stevedore import NamedExtensionManager

from taskloom import hookspecs

ENTRY_POINT_GROUP = "taskloom.plugins"
BLOCK_ENV = "TASKLOOM_BLOCK_PLUGINS"
TRACE_ENV = "TASKLOOM_TRACE_PLUGINS"


@dataclass(frozen=True)
class PluginInfo:
    """What ``taskloom plugins`` shows for one plugin."""

    name: str
    distribution: str | None
    version: str | None
    status: str  # "loaded", "failed", "blocked" or "in-process"
    error: str | None = None
    module: str | None = None


_lock = threading.RLock()
_manager: pluggy.PluginManager | None = None
_infos: dict[str, PluginInfo] = {}
_listeners: list[Any] = []


def _blocked_names() -> set[str]:
    raw = os.environ.get(BLOCK_ENV, "")
    return {part.strip() for part in raw.split(",") if part.strip()}


def _entry_points() -> list[importlib.metadata.EntryPoint]:
    """The group's entry points, one per name (a distribution seen twice on sys.path is one)."""
    seen: dict[str, importlib.metadata.EntryPoint] = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        seen.setdefault(ep.name, ep)
    return list(seen.values())


def _dist_of(ep: importlib.metadata.EntryPoint) -> tuple[str | None, str | None]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return None, None
    return dist.metadata["Name"], dist.version


def tracing() -> bool:
    """Whether ``TASKLOOM_TRACE_PLUGINS`` asks for every hook call to be printed."""
    return os.environ.get(TRACE_ENV, "") not in ("", "0")


def _trace(pm: pluggy.PluginManager) -> None:
    def before(hook_name: str, impls: list[Any], kwargs: dict[str, Any]) -> None:
        names = ", ".join(impl.plugin_name for impl in impls)
        print(f"taskloom trace: {hook_name}({kwargs!r}) -> [{names}]", file=sys.stderr)

    def after(outcome: Any, hook_name: str, impls: list[Any], kwargs: dict[str, Any]) -> None:
        try:
            result = outcome.get_result()
        except BaseException as exc:  # the hook raised; pluggy re-raises it to the caller
            result = f"raised {exc!r}"
        print(f"taskloom trace: {hook_name} returned {result!r}", file=sys.stderr)

    pm.add_hookcall_monitoring(before, after)


def _load(pm: pluggy.PluginManager) -> dict[str, PluginInfo]:
    infos: dict[str, PluginInfo] = {}
    blocked = _blocked_names()
    # importlib.metadata knows each entry point's distribution; stevedore's cached entry
    # points do not, so provenance is looked up here by name.
    eps = {ep.name: ep for ep in _entry_points()}
    provenance = {name: _dist_of(ep) for name, ep in eps.items()}
    for name in blocked & eps.keys():
        infos[name] = PluginInfo(name, *provenance[name], "blocked", module=eps[name].value)

    def on_failure(_manager: Any, ep: importlib.metadata.EntryPoint, err: Exception) -> None:
        infos[ep.name] = PluginInfo(
            ep.name,
            *provenance.get(ep.name, (None, None)),
            "failed",
            f"{type(err).__name__}: {err}",
            ep.value,
        )

    extensions = NamedExtensionManager(
        ENTRY_POINT_GROUP,
        names=[name for name in eps if name not in blocked],
        on_load_failure_callback=on_failure,
        on_missing_entrypoints_callback=lambda names: None,
    )
    for ext in extensions:
        dist, version = provenance.get(ext.name, (None, None))
        module = ext.entry_point.value
        try:
            pm.register(ext.plugin, name=ext.name)
        except ValueError as err:  # pluggy: the same object or name is already registered
            infos[ext.name] = PluginInfo(
                ext.name, dist, version, "failed", f"ValueError: {err}", module
            )
            continue
        infos[ext.name] = PluginInfo(ext.name, dist, version, "loaded", None, module)
    return infos


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, loading the entry-point group on first use."""
    global _manager
    if _manager is not None:
        return _manager
    with _lock:
        if _manager is None:
            pm = pluggy.PluginManager(hookspecs.PROJECT)
            pm.add_hookspecs(hookspecs)
            if tracing():
                _trace(pm)
            _infos.update(_load(pm))
            pm.check_pending()
            _manager = pm
    return _manager


def hook() -> Any:
    """Shortcut for ``get_plugin_manager().hook``, used to fire lifecycle hooks."""
    return get_plugin_manager().hook


def list_plugins() -> list[PluginInfo]:
    """Every plugin seen in this process: loaded, failed, blocked or registered in-process."""
    get_plugin_manager()
    with _lock:
        return sorted(_infos.values(), key=lambda info: info.name)


def on_change(listener: Any) -> None:
    """Call ``listener()`` whenever plugins are registered or removed at run time."""
    _listeners.append(listener)


def register_plugin(plugin: object, name: str) -> None:
    """Register an in-process plugin object (tests, notebooks); undo with unregister_plugin."""
    pm = get_plugin_manager()
    with _lock:
        pm.register(plugin, name=name)
        try:
            pm.check_pending()
        except pluggy.PluginValidationError:
            pm.unregister(plugin, name=name)  # a rejected plugin must not linger
            raise
        _infos[name] = PluginInfo(name, None, None, "in-process", module=type(plugin).__module__)
    for listener in _listeners:
        listener()


def unregister_plugin(name: str) -> None:
    """Remove a plugin registered with :func:`register_plugin` (or any plugin, by name)."""
    pm = get_plugin_manager()
    with _lock:
        plugin = pm.get_plugin(name)
        if plugin is not None:
            pm.unregister(plugin, name=name)
        _infos.pop(name, None)
    for listener in _listeners:
        listener()
