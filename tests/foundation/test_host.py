"""The plugin host: one object per set of plugins, each plugin and contribution checked alone."""

from __future__ import annotations

import pytest
import taskloom
from taskloom import hookimpl, registry
from taskloom.errors import PluginError, UnknownNameError
from taskloom.host import PluginHost
from taskloom.storage import Store


class OneHandler:
    """A valid in-process plugin contributing the handler ``only_here``."""

    @hookimpl
    def taskloom_register_handlers(self, register):
        register("only_here", print)


def test_two_hosts_in_one_process_are_independent():
    without_rolling = PluginHost(blocked={"rolling"})
    everything = PluginHost()
    without_rolling.register(OneHandler(), "one-handler")

    statuses = {info.name: info.status for info in without_rolling.plugins()}
    assert statuses["rolling"] == "blocked" and statuses["one-handler"] == "in-process"
    assert {info.name: info.status for info in everything.plugins()}["rolling"] == "loaded"
    with pytest.raises(UnknownNameError):
        without_rolling.lookup("generator", "rolling")
    assert everything.lookup("generator", "rolling").__name__ == "RollingGen"
    assert without_rolling.lookup("handler", "only_here") is print
    with pytest.raises(UnknownNameError):
        everything.lookup("handler", "only_here")
    assert "one-handler" not in {info.name for info in taskloom.list_plugins()}


def test_a_traced_host_prints_its_hook_calls(capsys):
    PluginHost(trace=True).lookup("handler", "noop")
    err = capsys.readouterr().err
    assert "taskloom trace: taskloom_register_handlers(" in err
    assert "[handlers]" in err


def test_an_in_process_plugin_with_a_wrong_argument_is_rejected(register_plugin):
    class Plugin:
        @hookimpl
        def taskloom_register_handlers(self, registr):
            registr("never", print)

    with pytest.raises(PluginError, match="(?s)plugin 'wrong-arg' was rejected: .*'registr'"):
        register_plugin(Plugin(), "wrong-arg")
    assert "wrong-arg" not in {info.name for info in taskloom.list_plugins()}
    assert taskloom.get_handler("noop").__name__ == "noop"


class SeedGen(taskloom.TaskGen):
    """A minimal valid generator."""

    def generate(self, task):
        return [task]


def test_a_register_hook_that_looks_up_its_own_kind_fails_alone(register_plugin):
    class Plugin:
        @hookimpl
        def taskloom_register_generators(self, register):
            register("rolling_too", taskloom.get_generator("rolling"))

    register_plugin(Plugin(), "reentrant")
    assert taskloom.get_generator("rolling").__name__ == "RollingGen"
    row = {i.name: i for i in taskloom.list_plugins()}["reentrant"]
    assert row.status == "failed"
    assert "a generator was looked up while generators are registered" in row.error


class NotAStore:
    """Has the right name for a store class, but not the contract."""


@pytest.mark.parametrize(
    ("kind", "obj", "expected"),
    [
        ("generator", NotAStore, "a subclass of taskloom.TaskGen"),
        ("generator", 42, "a subclass of taskloom.TaskGen"),
        ("storage scheme", NotAStore, "a subclass of taskloom.storage.Store"),
        ("handler", "noop", "a callable func(param, **kwargs)"),
        ("processor", None, "a callable (a class or factory) that builds a processor"),
        ("collector", 3.5, "a callable (a class or factory) that builds a collector"),
    ],
)
def test_a_bad_registration_fails_only_its_plugin(register_plugin, kind, obj, expected):
    hook = {
        "generator": "taskloom_register_generators",
        "storage scheme": "taskloom_register_storage",
        "handler": "taskloom_register_handlers",
        "processor": "taskloom_register_processors",
        "collector": "taskloom_register_collectors",
    }[kind]

    def contribute(register):
        register("bad_one", obj)

    plugin = type("BadPlugin", (), {hook: staticmethod(hookimpl(contribute, specname=hook))})
    register_plugin(plugin, "bad-plugin")

    with pytest.raises(PluginError) as info:
        registry.lookup(kind, "bad_one")
    message = str(info.value)
    assert f"{kind} 'bad_one' is unavailable: plugin 'bad-plugin' failed" in message
    assert f"registered {kind} 'bad_one' as {obj!r}" in message
    assert f"expected {expected}" in message
    row = {i.name: i for i in taskloom.list_plugins()}["bad-plugin"]
    assert row.status == "failed" and f"expected {expected}" in row.error
    # every other lookup of the same kind still works
    assert registry.lookup("generator", "rolling").__name__ == "RollingGen"
    assert issubclass(registry.lookup("storage scheme", "memory"), Store)
    assert registry.lookup("handler", "noop").__name__ == "noop"


def test_a_register_hook_that_raises_fails_only_its_plugin(register_plugin):
    class Plugin:
        @hookimpl
        def taskloom_register_generators(self, register):
            raise ImportError("needs torch")

    register_plugin(Plugin(), "needs-torch")
    assert taskloom.get_generator("rolling").__name__ == "RollingGen"
    row = {i.name: i for i in taskloom.list_plugins()}["needs-torch"]
    assert row.status == "failed"
    assert row.error == "taskloom_register_generators: ImportError: needs torch"


def test_a_failed_plugin_contributes_nothing_at_all(register_plugin):
    class Plugin:
        @hookimpl
        def taskloom_register_handlers(self, register):
            register("half_good", print)

        @hookimpl
        def taskloom_register_generators(self, register):
            register("half_bad", print)

    register_plugin(Plugin(), "half")
    assert taskloom.get_handler("half_good") is print
    by_plugin = registry.contributions_by_plugin()  # collects generators: the plugin fails
    assert "half" not in by_plugin
    with pytest.raises(UnknownNameError):
        taskloom.get_handler("half_good")


def test_a_duplicate_name_leaves_the_other_names_usable(register_plugin):
    class Plugin:
        @hookimpl
        def taskloom_register_generators(self, register):
            register("rolling", SeedGen)

    register_plugin(Plugin(), "impostor")
    with pytest.raises(PluginError, match="'rolling' is registered twice"):
        taskloom.get_generator("rolling")
    assert taskloom.get_generator("multi_horizon").__name__ == "MultiHorizonGen"
    by_plugin = registry.contributions_by_plugin()
    assert "generator rolling (unusable: registered twice)" in by_plugin["impostor"]
    assert "generator rolling (unusable: registered twice)" in by_plugin["rolling"]


def test_a_name_registered_twice_by_one_plugin_fails_that_plugin(register_plugin):
    class Plugin:
        @hookimpl
        def taskloom_register_handlers(self, register):
            register("echo", print)
            register("echo", repr)

    register_plugin(Plugin(), "stutter")
    with pytest.raises(PluginError, match="plugin 'stutter' registered handler 'echo' twice"):
        taskloom.get_handler("echo")
    assert taskloom.get_handler("noop").__name__ == "noop"
