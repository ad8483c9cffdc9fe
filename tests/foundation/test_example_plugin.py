"""The example third-party plugin, installed with pip as a user would, works by name.

The test installs it with ``pip install --target`` into a folder of its own and runs the
checks in subprocesses with that folder on ``PYTHONPATH``, so the environment under test is
never changed: installing it there would make the plugin of the docs/plugins.md tutorial
(which registers the same generator name) clash with it afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "plugin-example"
DISTRIBUTION = "taskloom-plugin-example"
#: prints {distribution name: version} for everything the interpreter's environment holds
LIST_DISTRIBUTIONS = (
    "import json\n"
    "from importlib import metadata\n"
    "print(json.dumps(sorted((d.metadata['Name'], d.version) for d in metadata.distributions())))\n"
)


def installed_distributions(env: dict[str, str] | None = None) -> list[list[str]]:
    """[name, version] of every distribution a fresh interpreter sees, sorted."""
    result = subprocess.run([sys.executable, "-c", LIST_DISTRIBUTIONS], capture_output=True,
                            text=True, env=env, check=True, timeout=120)
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def environment_before() -> list[list[str]]:
    """The distributions of the environment under test before the example is installed."""
    return installed_distributions()


@pytest.fixture(scope="module")
def example_env(
    environment_before: list[list[str]], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """An environment (variables) in which the example plugin is installed, once per module.

    pip builds from a copy, so the build leaves nothing behind in the checkout either.
    """
    work = tmp_path_factory.mktemp("example-plugin")
    source = shutil.copytree(EXAMPLE, work / "source")
    site = work / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "--no-deps", "--target", str(site), str(source)],
        check=True,
        timeout=600,
    )
    path = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path}


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=120)


def test_cli_lists_the_example_plugin_with_its_distribution(example_env):
    result = run([sys.executable, "-m", "taskloom", "plugins"], example_env)
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if DISTRIBUTION in line)
    assert "example" in row and "0.2.0" in row and "loaded" in row
    assert "generator seeds" in result.stdout and "handler score_params" in result.stdout


def test_the_example_generator_and_handler_work_by_name(example_env):
    code = (
        "import json, taskloom\n"
        "gen = taskloom.get_generator('seeds')(seeds=[1, 2])\n"
        "tasks = taskloom.task_generator({'model': {'kwargs': {'lr': 0.5}}}, gen)\n"
        "print(json.dumps(tasks))\n"
        "print(json.dumps(taskloom.get_handler('score_params')(tasks[1])))\n"
    )
    result = run([sys.executable, "-c", code], example_env)
    assert result.returncode == 0, result.stderr
    tasks_line, score_line = result.stdout.splitlines()
    assert json.loads(tasks_line) == [
        {"model": {"kwargs": {"lr": 0.5, "seed": 1}}},
        {"model": {"kwargs": {"lr": 0.5, "seed": 2}}},
    ]
    assert score_line == '{"score": 2.5, "n_params": 2}'


def test_installing_the_example_leaves_the_environment_under_test_unchanged(
    example_env, environment_before
):
    assert [DISTRIBUTION, "0.2.0"] in installed_distributions(example_env)
    assert installed_distributions() == environment_before
