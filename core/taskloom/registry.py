"""Named contributions: what the ``taskloom_register_*`` hooks registered, and lookups by name.

For each kind the register hook is called through pluggy once per plugin, with a ``register``
callback that knows which plugin is calling. That is how a duplicate name can name both
providers. Results are cached until a plugin is registered or removed at run time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from taskloom import plugins
from taskloom.errors import PluginError, UnknownNameError

#: kind -> the hook that contributes it
HOOKS: dict[str, str] = {
    "generator": "taskloom_register_generators",
    "storage scheme": "taskloom_register_storage",
    "handler": "taskloom_register_handlers",
    "processor": "taskloom_register_processors",
    "collector": "taskloom_register_collectors",
}


@dataclass(frozen=True)
class Contribution:
    """One named thing and the plugin that provided it."""

    kind: str
    name: str
    obj: Any
    provider: str


_lock = threading.RLock()
_cache: dict[str, dict[str, Contribution]] = {}


def _clear() -> None:
    with _lock:
        _cache.clear()


plugins.on_change(_clear)


def _provider_label(name: str) -> str:
    for info in plugins.list_plugins():
        if info.name == name and info.distribution:
            return f"plugin {name!r} (distribution {info.distribution})"
    return f"plugin {name!r}"


def _collect(kind: str) -> dict[str, Contribution]:
    pm = plugins.get_plugin_manager()
    hook_name = HOOKS[kind]
    found: dict[str, Contribution] = {}
    impls = getattr(pm.hook, hook_name).get_hookimpls()
    all_plugins = [impl.plugin for impl in impls]
    for impl in impls:

        def register(name: str, obj: Any, _provider: str = impl.plugin_name) -> None:
            if not isinstance(name, str) or not name:
                raise PluginError(
                    f"{_provider_label(_provider)} registered a {kind} "
                    f"with an invalid name {name!r}"
                )
            if name in found:
                first = _provider_label(found[name].provider)
                raise PluginError(
                    f"{kind} {name!r} is registered twice: by {first}"
                    f" and by {_provider_label(_provider)}"
                )
            found[name] = Contribution(kind, name, obj, _provider)

        others = [p for p in all_plugins if p is not impl.plugin]
        caller = pm.subset_hook_caller(hook_name, remove_plugins=others)
        caller(register=register)
    return found


def contributions(kind: str) -> dict[str, Contribution]:
    """Everything registered for ``kind`` (one of :data:`HOOKS`), by name."""
    with _lock:
        if kind not in _cache:
            _cache[kind] = _collect(kind)
        return dict(_cache[kind])


def lookup(kind: str, name: str) -> Any:
    """The object registered as ``name``; an :class:`UnknownNameError` lists the known names."""
    found = contributions(kind)
    if name not in found:
        raise UnknownNameError(kind, name, list(found))
    return found[name].obj


def contributions_by_plugin() -> dict[str, list[str]]:
    """plugin name -> ``["generator rolling", ...]``, for ``taskloom plugins``."""
    out: dict[str, list[str]] = {}
    for kind in HOOKS:
        for item in contributions(kind).values():
            out.setdefault(item.provider, []).append(f"{kind} {item.name}")
    return out


def resolve_callable(spec: str, kind: str = "handler") -> Callable[..., Any]:
    """A registered ``kind`` by name, or an importable ``module:attr`` path."""
    if ":" in spec:
        import importlib

        module_name, _, attr = spec.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise UnknownNameError(kind, spec, list(contributions(kind))) from exc
        try:
            return getattr(module, attr)
        except AttributeError as exc:
            raise UnknownNameError(kind, spec, list(contributions(kind))) from exc
    return lookup(kind, spec)
