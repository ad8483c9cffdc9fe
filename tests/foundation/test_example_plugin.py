"""The example third-party plugin, installed with pip as a user would, works by name."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "plugin-example"


@pytest.fixture(scope="module")
def example_installed() -> None:
    """Install examples/plugin-example into the environment under test (once)."""
    try:
        metadata.distribution("taskloom-plugin-example")
    except metadata.PackageNotFoundError:
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", str(EXAMPLE)],
            check=True,
            timeout=600,
        )


def run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, env=os.environ.copy(), timeout=120)


def test_cli_lists_the_example_plugin_with_its_distribution(example_installed):
    result = run([sys.executable, "-m", "taskloom", "plugins"])
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if "taskloom-plugin-example" in line)
    assert "example" in row and "0.2.0" in row and "loaded" in row
    assert "generator seeds" in result.stdout and "handler score_params" in result.stdout


def test_the_example_generator_and_handler_work_by_name(example_installed):
    code = (
        "import json, taskloom\n"
        "gen = taskloom.get_generator('seeds')(seeds=[1, 2])\n"
        "tasks = taskloom.task_generator({'model': {'kwargs': {'lr': 0.5}}}, gen)\n"
        "print(json.dumps(tasks))\n"
        "print(json.dumps(taskloom.get_handler('score_params')(tasks[1])))\n"
    )
    result = run([sys.executable, "-c", code])
    assert result.returncode == 0, result.stderr
    tasks_line, score_line = result.stdout.splitlines()
    assert json.loads(tasks_line) == [
        {"model": {"kwargs": {"lr": 0.5, "seed": 1}}},
        {"model": {"kwargs": {"lr": 0.5, "seed": 2}}},
    ]
    assert score_line == '{"score": 2.5, "n_params": 2}'
