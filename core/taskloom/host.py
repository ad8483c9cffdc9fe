"""The plugin host: all plugin state of a process in one object.

A :class:`PluginHost` owns the pluggy manager, the load report (one :class:`PluginInfo` per
plugin), the named contributions collected from the ``taskloom_register_*`` hooks, and the
block and trace switches. Every plugin (built-in, third-party or registered in-process) is
admitted through one path that validates it on its own, and every contribution is checked
against its kind: a plugin that fails either check is reported as failed and left out, while
the other plugins and every lookup keep working.

The process uses one default host, built from the environment on first use
(:func:`default_host`). More hosts can be built side by side, e.g. in a test, the way pytest
builds a fresh ``PytestPluginManager`` for each in-process run. (stevedore memoizes a group's
entry points per process, so a distribution installed after the first host loaded is not
seen by later hosts of the same process.)
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import os
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pluggy
from stevedore import NamedExtensionManager

from taskloom import hookspecs
from taskloom.errors import PluginError, UnknownNameError
from taskloom.kinds import KINDS, Kind

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


@dataclass(frozen=True)
class Contribution:
    """One named thing and the plugin that provided it."""

    kind: str
    name: str
    obj: Any
    provider: str


@dataclass(frozen=True)
class _Catalog:
    """What one kind's register hooks produced: usable names, and names two plugins claimed."""

    found: dict[str, Contribution]
    duplicates: dict[str, list[Contribution]]


class PluginHost:
    """The plugins of the ``taskloom.plugins`` group: validation, load report, contributions.

    ``blocked`` plugin names are never imported; with ``trace`` every hook call is printed to
    stderr. Plugins load the first time :attr:`manager` (or anything built on it) is used, so
    building a host costs nothing.
    """

    def __init__(self, *, blocked: Iterable[str] = (), trace: bool = False) -> None:
        self.blocked = frozenset(blocked)
        self.trace = trace
        self._lock = threading.RLock()
        self._manager: pluggy.PluginManager | None = None
        self._infos: dict[str, PluginInfo] = {}
        self._catalogs: dict[str, _Catalog] = {}
        self._collecting: set[str] = set()  # kinds whose register hooks are running
        # (kind, name) -> the failed plugin that tried to register it, so a lookup can say why
        self._failed_names: dict[tuple[str, str], str] = {}

    @classmethod
    def from_environment(cls) -> PluginHost:
        """A host switched by ``TASKLOOM_BLOCK_PLUGINS`` and ``TASKLOOM_TRACE_PLUGINS``."""
        raw = os.environ.get(BLOCK_ENV, "")
        return cls(
            blocked=[part.strip() for part in raw.split(",") if part.strip()],
            trace=os.environ.get(TRACE_ENV, "") not in ("", "0"),
        )

    # ----------------------------------------------------------------------------------------
    # Plugins
    # ----------------------------------------------------------------------------------------

    @property
    def manager(self) -> pluggy.PluginManager:
        """The pluggy manager, loading the entry-point group on first use."""
        return self._loaded()

    def _loaded(self) -> pluggy.PluginManager:
        """The pluggy manager, after loading the entry-point group if not done yet."""
        manager = self._manager
        if manager is not None:
            return manager
        with self._lock:
            if self._manager is None:
                pm = pluggy.PluginManager(hookspecs.PROJECT)
                pm.add_hookspecs(hookspecs)
                if self.trace:
                    _print_hook_calls(pm)
                self._load(pm)
                self._manager = pm
            return self._manager

    @property
    def hook(self) -> Any:
        """The manager's hook relay, used to fire lifecycle hooks."""
        return self.manager.hook

    def plugins(self) -> list[PluginInfo]:
        """Every plugin this host has seen: loaded, failed, blocked or registered in-process."""
        self._loaded()
        with self._lock:
            return sorted(self._infos.values(), key=lambda info: info.name)

    def register(self, plugin: object, name: str) -> None:
        """Admit an in-process plugin object (tests, notebooks); a rejected one raises."""
        with self._lock:
            error = _admit(self.manager, plugin, name)
            if error is not None:
                raise PluginError(f"plugin {name!r} was rejected: {error}")
            self._infos[name] = PluginInfo(
                name, None, None, "in-process", module=type(plugin).__module__
            )
            self._catalogs.clear()

    def unregister(self, name: str) -> None:
        """Remove a plugin by name (one registered in-process, or any other) and its report."""
        with self._lock:
            plugin = self.manager.get_plugin(name)
            if plugin is not None:
                self.manager.unregister(plugin, name=name)
            self._infos.pop(name, None)
            self._failed_names = {
                key: failed for key, failed in self._failed_names.items() if failed != name
            }
            self._catalogs.clear()

    def _load(self, pm: pluggy.PluginManager) -> None:
        """Import every non-blocked plugin of the group and admit each one on its own."""
        eps = _entry_points(ENTRY_POINT_GROUP)
        # importlib.metadata knows each entry point's distribution; stevedore's cached entry
        # points do not, so provenance is looked up here by name.
        provenance = {name: _distribution(ep) for name, ep in eps.items()}
        for name in self.blocked & eps.keys():
            self._infos[name] = PluginInfo(
                name, *provenance[name], "blocked", module=eps[name].value
            )

        def on_import_failure(_manager: Any, ep: importlib.metadata.EntryPoint,
                              err: Exception) -> None:
            self._infos[ep.name] = PluginInfo(
                ep.name, *provenance[ep.name], "failed", f"{type(err).__name__}: {err}", ep.value
            )

        extensions = NamedExtensionManager(
            ENTRY_POINT_GROUP,
            names=[name for name in eps if name not in self.blocked],
            on_load_failure_callback=on_import_failure,
            on_missing_entrypoints_callback=lambda names: None,
        )
        for ext in extensions:
            error = _admit(pm, ext.plugin, ext.name)
            self._infos[ext.name] = PluginInfo(
                ext.name,
                *provenance[ext.name],
                "loaded" if error is None else "failed",
                error,
                ext.entry_point.value,
            )

    def _fail(self, name: str, error: str, attempted: list[tuple[str, str]]) -> None:
        """Take a plugin that misbehaved after loading out of this host and report why."""
        plugin = self.manager.get_plugin(name)
        if plugin is not None:
            self.manager.unregister(plugin, name=name)
        info = self._infos.get(name) or PluginInfo(name, None, None, "failed")
        self._infos[name] = dataclasses.replace(info, status="failed", error=error)
        for key in attempted:
            self._failed_names[key] = name
        self._catalogs.clear()  # whatever it contributed to other kinds is gone too

    def _label(self, name: str) -> str:
        info = self._infos.get(name)
        if info is not None and info.distribution:
            return f"plugin {name!r} (distribution {info.distribution})"
        return f"plugin {name!r}"

    # ----------------------------------------------------------------------------------------
    # Named contributions
    # ----------------------------------------------------------------------------------------

    def contributions(self, kind: str) -> dict[str, Contribution]:
        """Every usable contribution of ``kind`` (a key of :data:`taskloom.kinds.KINDS`)."""
        return dict(self._catalog(kind).found)

    def lookup(self, kind: str, name: str) -> Any:
        """The object registered as ``name``; the error says why when there is none."""
        with self._lock:
            catalog = self._catalog(kind)
            if name in catalog.found:
                return catalog.found[name].obj
            if name in catalog.duplicates:
                raise PluginError(self._duplicate_message(catalog.duplicates[name]))
            failed = self._failed_names.get((kind, name))
            if failed is not None:
                raise PluginError(
                    f"{kind} {name!r} is unavailable: plugin {failed!r} failed: "
                    f"{self._infos[failed].error}"
                )
            raise UnknownNameError(kind, name, list(catalog.found))

    def contributions_by_plugin(self) -> dict[str, list[str]]:
        """plugin name -> ``["generator rolling", ...]``, for ``taskloom plugins``."""
        with self._lock:
            # A plugin failing while one kind is collected clears the kinds collected before
            # it (its contributions there are void), so collect until every kind is settled.
            while len(self._catalogs) < len(KINDS):
                for kind in KINDS:
                    self._catalog(kind)
            out: dict[str, list[str]] = {}
            for kind in KINDS:
                catalog = self._catalogs[kind]
                for item in catalog.found.values():
                    out.setdefault(item.provider, []).append(f"{kind} {item.name}")
                for items in catalog.duplicates.values():
                    for item in items:
                        out.setdefault(item.provider, []).append(
                            f"{kind} {item.name} (unusable: registered twice)"
                        )
            return out

    def _catalog(self, kind: str) -> _Catalog:
        with self._lock:
            if kind not in self._catalogs:
                if kind in self._collecting:  # a register hook looked up its own kind
                    raise PluginError(f"a {kind} was looked up while {kind}s are registered")
                self._collecting.add(kind)
                try:
                    self._catalogs[kind] = self._collect(KINDS[kind])
                finally:
                    self._collecting.discard(kind)
            return self._catalogs[kind]

    def _collect(self, kind: Kind) -> _Catalog:
        """Call ``kind``'s register hook plugin by plugin, so each plugin can fail alone."""
        pm = self.manager
        impls = getattr(pm.hook, kind.hook).get_hookimpls()
        by_name: dict[str, list[Contribution]] = {}
        for impl in impls:
            others = [other.plugin for other in impls if other is not impl]
            for item in self._contributions_of(pm, kind, impl.plugin_name, others):
                by_name.setdefault(item.name, []).append(item)
        return _Catalog(
            found={name: items[0] for name, items in by_name.items() if len(items) == 1},
            duplicates={name: items for name, items in by_name.items() if len(items) > 1},
        )

    def _contributions_of(
        self, pm: pluggy.PluginManager, kind: Kind, plugin: str, others: list[object]
    ) -> list[Contribution]:
        """What one plugin registers for ``kind``; nothing, and the plugin failed, if invalid."""
        label = self._label(plugin)
        staged: dict[str, Contribution] = {}
        attempted: list[tuple[str, str]] = []

        def register(name: str, obj: Any) -> None:
            if not isinstance(name, str) or not name:
                raise PluginError(
                    f"{label} registered a {kind.name} under the name {name!r}; "
                    "expected a non-empty string"
                )
            attempted.append((kind.name, name))
            if name in staged:
                raise PluginError(f"{label} registered {kind.name} {name!r} twice")
            if not kind.accepts(obj):
                raise PluginError(
                    f"{label} registered {kind.name} {name!r} as {obj!r:.80} "
                    f"({type(obj).__name__}); expected {kind.expected}"
                )
            staged[name] = Contribution(kind.name, name, obj, plugin)

        # subset_hook_caller still goes through pluggy, so tracing shows these calls
        caller = pm.subset_hook_caller(kind.hook, remove_plugins=others)
        try:
            caller(register=register)
        except Exception as err:  # the plugin's own code failed: it fails, not the lookup
            self._fail(plugin, f"{kind.hook}: {type(err).__name__}: {err}", attempted)
            return []
        return list(staged.values())

    def _duplicate_message(self, items: list[Contribution]) -> str:
        times = "twice" if len(items) == 2 else f"{len(items)} times"
        providers = [self._label(item.provider) for item in items]
        listing = ", by ".join(providers[:-1]) + " and by " + providers[-1]
        return f"{items[0].kind} {items[0].name!r} is registered {times}: by {listing}"


def _admit(pm: pluggy.PluginManager, plugin: object, name: str) -> str | None:
    """Register one plugin and validate its hooks; why it was rejected, or None.

    ``check_pending`` finds hooks with no spec (a misspelled hook name). It checks the whole
    manager, but every plugin admitted before passed it, so a failure is this plugin's.
    """
    try:
        pm.register(plugin, name=name)
        pm.check_pending()
    except (ValueError, pluggy.PluginValidationError) as err:
        # a rejected plugin must not stay registered (older pluggy releases register before
        # validating every hook, and check_pending runs after registering)
        if pm.get_plugin(name) is plugin:
            pm.unregister(plugin, name=name)
        return f"{type(err).__name__}: {err}"
    return None


def _entry_points(group: str) -> dict[str, importlib.metadata.EntryPoint]:
    """The group's entry points by name (a distribution seen twice on sys.path is one)."""
    seen: dict[str, importlib.metadata.EntryPoint] = {}
    for ep in importlib.metadata.entry_points(group=group):
        seen.setdefault(ep.name, ep)
    return seen


def _distribution(ep: importlib.metadata.EntryPoint) -> tuple[str | None, str | None]:
    """The name and version of the distribution that declares ``ep``, when known."""
    dist = getattr(ep, "dist", None)
    if dist is None:
        return None, None
    return dist.metadata["Name"], dist.version


def _print_hook_calls(pm: pluggy.PluginManager) -> None:
    """Print every hook call, its implementing plugins and its result to stderr."""

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


_default: PluginHost | None = None
_default_lock = threading.Lock()


def default_host() -> PluginHost:
    """The process-wide host, built from the environment on first use."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = PluginHost.from_environment()
    return _default
