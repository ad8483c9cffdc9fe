"""The README's commands: the first installs and runs the demo, the second runs the suite; and
the pool walkthrough it points to runs end to end on the defaults."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from taskloom import TaskManager

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "rolling_pool.sh"
FIRST_COMMAND = ('python3 -m venv .venv && . .venv/bin/activate && pip install -e ".[dev]" '
                 "&& taskloom demo")


def readme_commands() -> list[str]:
    """The README's bash blocks, in order."""
    return re.findall(r"```bash\n(.*?)\n```", (ROOT / "README.md").read_text(), re.S)


def environment(**extra: str) -> dict[str, str]:
    """This interpreter's scripts first on PATH, and no pool or tracking store from outside."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("MLFLOW_TRACKING_URI", "TASKLOOM_STORAGE")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    return {**env, **extra}


def test_readme_runs_the_demo_first_and_the_tests_second():
    commands = readme_commands()
    assert commands[:2] == [FIRST_COMMAND, "python -m pytest"]
    assert (ROOT / "docs" / "images" / "demo.png").is_file()
    assert "](docs/images/demo.png)" in (ROOT / "README.md").read_text()
    assert (ROOT / ".ci" / "run").read_text().rstrip().endswith("python -m pytest")


@pytest.mark.slow
def test_the_first_command_runs_the_demo(tmp_path):
    # the installed console script, as the README runs it (reduced size to stay quick)
    result = subprocess.run(["taskloom", "demo", "--size", "small"], cwd=tmp_path,
                            env=environment(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    directory = tmp_path / "taskloom-demo"
    tasks = list(TaskManager("rolling_demo", storage=f"sqlite:///{directory}/taskloom.db")
                 .query())
    assert len(tasks) == 3 * 4  # three models, four quarterly windows each
    assert {task["status"] for task in tasks} == {"done"}
    summary = pd.read_parquet(directory / "outputs" / "summary.parquet")
    for model in summary.index:  # the printed table holds the written numbers
        line = next(line for line in result.stdout.splitlines() if f" {model} " in line)
        assert f"{summary.loc[model, 'Rank IC']:.4f}" in line
    assert f"cd {directory} && mlflow ui --backend-store-uri sqlite:///mlflow.db" in (
        " ".join(result.stdout.split()))


def test_example_rolling_pool_script(tmp_path):
    result = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True,
                            env=environment(TASKLOOM_EXAMPLE_DIR=str(tmp_path)), timeout=300)
    assert result.returncode == 0, result.stderr
    assert "4 new, 0 already there" in result.stdout
    assert "finished    4/4 (100.0%)" in result.stdout
    tasks = list(TaskManager("rolling_study", storage=f"sqlite:///{tmp_path}/taskloom.db").query())
    assert [task["status"] for task in tasks] == ["done"] * 4
    last = tasks[-1]["res"]
    assert last["model"] == "LGBModel"
    assert last["test"] == ["2019-12-09", "2020-11-27"]
    # 250 trading days plus the 5 weekday holidays of the example calendar in that window
    assert last["test_days"] == 255
