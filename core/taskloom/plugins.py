"""The process's plugins: the default :class:`~taskloom.host.PluginHost`, behind plain functions.

Each entry point in the ``taskloom.plugins`` group is imported once per process and registered
with pluggy under its entry-point name; built-in plugins arrive this way too. A plugin that
fails to import, or whose hooks do not match the specs, is reported (name, distribution,
error) and left out; the others still load. All state lives in the host; see
:mod:`taskloom.host`.

Environment variables, read when the default host is built:

* ``TASKLOOM_BLOCK_PLUGINS``: comma-separated plugin names that are not even imported.
* ``TASKLOOM_TRACE_PLUGINS``: when set to a non-empty value other than ``0``, every hook call,
  its arguments and its result are printed to stderr.
"""

from __future__ import annotations

from typing import Any

import pluggy

from taskloom.host import BLOCK_ENV, ENTRY_POINT_GROUP, TRACE_ENV, PluginInfo, default_host

__all__ = [
    "BLOCK_ENV",
    "ENTRY_POINT_GROUP",
    "TRACE_ENV",
    "PluginInfo",
    "get_plugin_manager",
    "hook",
    "list_plugins",
    "register_plugin",
    "tracing",
    "unregister_plugin",
]


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, loading the entry-point group on first use."""
    return default_host().manager


def hook() -> Any:
    """The process-wide hook relay, used to fire lifecycle hooks."""
    return default_host().hook


def tracing() -> bool:
    """Whether ``TASKLOOM_TRACE_PLUGINS`` asks for every hook call to be printed."""
    return default_host().trace


def list_plugins() -> list[PluginInfo]:
    """Every plugin seen in this process: loaded, failed, blocked or registered in-process."""
    return default_host().plugins()


def register_plugin(plugin: object, name: str) -> None:
    """Register an in-process plugin object (tests, notebooks); undo with unregister_plugin.

    A plugin whose hooks do not match the specs raises :class:`taskloom.errors.PluginError`.
    """
    default_host().register(plugin, name)


def unregister_plugin(name: str) -> None:
    """Remove a plugin registered with :func:`register_plugin` (or any plugin, by name)."""
    default_host().unregister(name)
