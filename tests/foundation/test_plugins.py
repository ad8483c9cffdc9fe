"""Plugin machinery: loading through the entry-point group, register hooks, errors, env switches."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import taskloom
from taskloom import hookimpl, plugins, registry
from taskloom.errors import PluginError, UnknownNameError

BUILTINS = {"rolling", "multi_horizon", "memory", "sqlite", "mongo", "handlers"}


def run_python(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run code in a fresh interpreter, so plugin loading starts from scratch."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


def test_builtin_plugins_load_through_the_entry_point_group():
    infos = {info.name: info for info in taskloom.list_plugins()}
    for name in BUILTINS:
        assert infos[name].status == "loaded", infos[name]
        assert infos[name].distribution == "taskloom"
        assert infos[name].version == taskloom.__version__


def test_core_never_imports_a_plugin_package():
    core = Path(taskloom.__file__).parent
    offenders = [
        f"{path.relative_to(core)}: {line.strip()}"
        for path in core.rglob("*.py")
        for line in path.read_text().splitlines()
        if line.lstrip().startswith(("import taskloom_", "from taskloom_"))
    ]
    assert offenders == []


class SeedsPlugin:
    """A throwaway plugin contributing one of every named kind."""

    class Gen(taskloom.TaskGen):
        def generate(self, task):
            return [dict(task, seed=0)]

    @hookimpl
    def taskloom_register_generators(self, register):
        register("throwaway_gen", self.Gen)


def test_hook_taskloom_register_generators(register_plugin):
    register_plugin(SeedsPlugin(), "seeds-plugin")
    gen_cls = taskloom.get_generator("throwaway_gen")
    assert gen_cls is SeedsPlugin.Gen
    assert taskloom.task_generator({"a": 1}, gen_cls()) == [{"a": 1, "seed": 0}]
    assert "generator throwaway_gen" in registry.contributions_by_plugin()["seeds-plugin"]


def test_hook_taskloom_register_storage(register_plugin, tmp_path):
    from taskloom.storage import Store

    memory_cls = type(taskloom.get_storage("memory://hook-test"))

    class EchoStore(memory_cls):  # a real, working store under another scheme
        @classmethod
        def from_url(cls, url):
            return memory_cls.from_url("memory://echo-" + url.partition("://")[2])

    class Plugin:
        @hookimpl
        def taskloom_register_storage(self, register):
            register("echo", EchoStore)

    register_plugin(Plugin())
    store = taskloom.get_storage("echo://a")
    assert isinstance(store, Store)
    pool = store.pool("p")
    [(task_id, created)] = pool.insert_many([(taskloom.task_key({"x": 1}), {"x": 1})], now=0.0)
    assert created and pool.get(task_id)["def"] == {"x": 1}


def test_hook_taskloom_register_handlers(register_plugin):
    class Plugin:
        @hookimpl
        def taskloom_register_handlers(self, register):
            register("double", lambda task, **kw: {"value": task["x"] * 2})

    register_plugin(Plugin())
    assert taskloom.get_handler("double")({"x": 21}) == {"value": 42}
    assert registry.resolve_callable("double")({"x": 1}) == {"value": 2}


def test_hook_taskloom_register_processors(register_plugin):
    def mean_of(values):
        return sum(values.values()) / len(values)

    class Plugin:
        @hookimpl
        def taskloom_register_processors(self, register):
            register("mean_of", lambda: mean_of)

    register_plugin(Plugin())
    processor = taskloom.get_processor("mean_of")()
    assert processor({"a": 1.0, "b": 3.0}) == 2.0


def test_hook_taskloom_register_collectors(register_plugin):
    class ConstantCollector:
        def __init__(self, value):
            self.value = value

        def collect(self):
            return {"pred": {"k": self.value}}

    class Plugin:
        @hookimpl
        def taskloom_register_collectors(self, register):
            register("constant", ConstantCollector)

    register_plugin(Plugin())
    assert taskloom.get_collector("constant")(5).collect() == {"pred": {"k": 5}}


def test_unknown_name_lists_the_known_names():
    with pytest.raises(UnknownNameError) as info:
        taskloom.get_generator("rollin")
    message = str(info.value)
    assert "unknown generator 'rollin'" in message
    assert "rolling" in message and "multi_horizon" in message
    assert isinstance(info.value, LookupError)


def test_registration_is_undone_after_the_test(register_plugin):
    class Plugin:
        @hookimpl
        def taskloom_register_handlers(self, register):
            register("short_lived", print)

    name = register_plugin(Plugin())
    assert taskloom.get_handler("short_lived") is print
    plugins.unregister_plugin(name)
    with pytest.raises(UnknownNameError):
        taskloom.get_handler("short_lived")


def test_duplicate_name_names_both_providers(register_plugin):
    class Plugin:
        @hookimpl
        def taskloom_register_generators(self, register):
            register("rolling", SeedsPlugin.Gen)

    register_plugin(Plugin(), "impostor")
    with pytest.raises(PluginError) as info:
        taskloom.get_generator("rolling")
    message = str(info.value)
    assert "'rolling' is registered twice" in message
    assert "plugin 'rolling' (distribution taskloom)" in message
    assert "plugin 'impostor'" in message


def test_a_misspelled_hook_is_rejected(register_plugin):
    class Plugin:
        @hookimpl
        def taskloom_register_generator(self, register):  # missing "s"
            register("x", SeedsPlugin.Gen)

    with pytest.raises(Exception, match="unknown hook 'taskloom_register_generator'"):
        register_plugin(Plugin(), "misspelled")
    assert plugins.get_plugin_manager().get_plugin("misspelled") is None
    assert "misspelled" not in {info.name for info in taskloom.list_plugins()}


def test_block_env_skips_a_plugin_without_importing_it():
    result = run_python(
        """
        import sys, taskloom
        info = {i.name: i for i in taskloom.list_plugins()}
        print(info["rolling"].status, "taskloom_rolling" in sys.modules)
        try:
            taskloom.get_generator("rolling")
        except LookupError as exc:
            print("lookup failed:", exc)
        print(type(taskloom.get_storage("memory://x")).__name__)
        """,
        env={plugins.BLOCK_ENV: "rolling, handlers"},
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "blocked False"
    assert lines[1].startswith("lookup failed: unknown generator 'rolling'")
    assert "multi_horizon" in lines[1]
    assert lines[2] != ""


def test_trace_env_prints_every_hook_call():
    result = run_python(
        "import taskloom; taskloom.get_handler('noop')",
        env={plugins.TRACE_ENV: "1"},
    )
    assert result.returncode == 0, result.stderr
    assert "taskloom trace: taskloom_register_handlers(" in result.stderr
    assert "[handlers]" in result.stderr


@pytest.fixture
def broken_plugin_path(tmp_path: Path) -> Path:
    """A real distribution (dist-info on a sys.path entry) whose plugin fails to import."""
    (tmp_path / "broken_plugin.py").write_text("raise ImportError('needs libfoo >= 2')\n")
    info = tmp_path / "broken_plugin-1.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 1.3\n")
    (info / "entry_points.txt").write_text("[taskloom.plugins]\nbroken = broken_plugin\n")
    return tmp_path


def test_a_broken_plugin_is_reported_and_the_others_still_load(broken_plugin_path):
    result = run_python(
        """
        import taskloom
        info = {i.name: i for i in taskloom.list_plugins()}
        b = info["broken"]
        print(b.status, b.distribution, b.version, b.error)
        print(taskloom.get_generator("rolling").__name__)
        """,
        env={"PYTHONPATH": str(broken_plugin_path)},
    )
    assert result.returncode == 0, result.stderr
    first, second = result.stdout.splitlines()[:2]
    assert first == "failed broken-plugin 1.3 ImportError: needs libfoo >= 2"
    assert second  # the rolling generator still resolves


def test_cli_plugins_shows_a_broken_plugin(broken_plugin_path):
    result = subprocess.run(
        [sys.executable, "-m", "taskloom", "plugins"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(broken_plugin_path)},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    broken = next(line for line in result.stdout.splitlines() if "broken" in line)
    assert "broken-plugin" in broken and "1.3" in broken
    assert "failed: ImportError: needs libfoo >= 2" in broken
    lines = result.stdout.splitlines()
    rolling = next(line for line in lines if line.strip("│ ").startswith("rolling"))
    assert "generator rolling" in rolling and "loaded" in rolling


#: plugin modules that import fine but are invalid; each is installed as its own distribution
INVALID_PLUGINS = {
    "misspelled_hook": """
        from taskloom import hookimpl

        @hookimpl
        def taskloom_register_generatorz(register):
            register("never", object)
        """,
    "wrong_argument": """
        from taskloom import hookimpl

        @hookimpl
        def taskloom_register_handlers(registr):
            registr("never", print)
        """,
    "bad_registration": """
        from taskloom import hookimpl

        @hookimpl
        def taskloom_register_generators(register):
            register("forty_two", 42)
        """,
}


@pytest.fixture
def invalid_plugins_path(tmp_path: Path) -> Path:
    """Real distributions (dist-info on a sys.path entry) whose plugins import but are invalid."""
    for module, source in INVALID_PLUGINS.items():
        (tmp_path / f"{module}.py").write_text(textwrap.dedent(source))
        info = tmp_path / f"{module}-0.1.dist-info"
        info.mkdir()
        dist = module.replace("_", "-")
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(f"[taskloom.plugins]\n{module} = {module}\n")
    return tmp_path


def test_invalid_plugins_fail_alone_and_every_lookup_still_works(invalid_plugins_path):
    result = run_python(
        """
        import taskloom
        for info in taskloom.list_plugins():
            print(info.name, info.status, info.error)
        print("lookups:", taskloom.get_generator("rolling").__name__,
              taskloom.get_handler("noop").__name__,
              type(taskloom.get_storage("memory://x")).__name__)
        """,
        env={"PYTHONPATH": str(invalid_plugins_path)},
    )
    assert result.returncode == 0, result.stderr
    rows = {line.split(" ", 1)[0]: line for line in result.stdout.splitlines()}
    assert rows["misspelled_hook"].startswith(
        "misspelled_hook failed PluginValidationError: unknown hook 'taskloom_register_generatorz'"
    )
    assert rows["wrong_argument"].startswith(
        "wrong_argument failed PluginValidationError: Plugin 'wrong_argument' for hook "
        "'taskloom_register_handlers'"
    )
    assert "Argument(s) {'registr'} are declared in the hookimpl" in result.stdout
    assert rows["rolling"] == "rolling loaded None"
    assert rows["lookups:"] == "lookups: RollingGen noop MemoryStore"


def test_cli_plugins_reports_invalid_plugins_and_lists_the_others(invalid_plugins_path):
    result = subprocess.run(
        [sys.executable, "-m", "taskloom", "plugins"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(invalid_plugins_path)},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    rows = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if "│" in line}
    assert "misspelled-hook" in rows["misspelled_hook"]
    assert "failed: PluginValidationError: unknown hook" in rows["misspelled_hook"]
    assert "failed: PluginValidationError: Plugin 'wrong_argument'" in rows["wrong_argument"]
    assert "bad-registration" in rows["bad_registration"]
    assert "failed: taskloom_register_generators: PluginError: plugin 'bad_registration'" in (
        rows["bad_registration"]
    )
    assert "generator rolling" in rows["rolling"] and "loaded" in rows["rolling"]
    assert "handler noop" in rows["handlers"] and "loaded" in rows["handlers"]
