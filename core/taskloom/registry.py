"""Named contributions of the process's plugins, looked up by name.

The default :class:`~taskloom.host.PluginHost` collects them: for each kind it calls the
register hook through pluggy once per plugin, with a ``register`` callback that knows which
plugin is calling and checks what it is given (see :mod:`taskloom.kinds`). That is how a
duplicate name can name both providers, and how one bad registration fails only its plugin.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from taskloom.errors import UnknownNameError
from taskloom.host import Contribution, default_host

__all__ = ["Contribution", "contributions", "contributions_by_plugin", "lookup", "resolve_callable"]


def contributions(kind: str) -> dict[str, Contribution]:
    """Everything usable registered for ``kind`` (a key of :data:`taskloom.kinds.KINDS`)."""
    return default_host().contributions(kind)


def lookup(kind: str, name: str) -> Any:
    """The object registered as ``name``; an :class:`UnknownNameError` lists the known names.

    A name two plugins registered, or one a failed plugin tried to register, is a
    :class:`taskloom.errors.PluginError` naming the plugins instead.
    """
    return default_host().lookup(kind, name)


def contributions_by_plugin() -> dict[str, list[str]]:
    """plugin name -> ``["generator rolling", ...]``, for ``taskloom plugins``."""
    return default_host().contributions_by_plugin()


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
