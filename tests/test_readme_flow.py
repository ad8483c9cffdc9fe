"""The README's first command: the example rolling study runs end to end on the defaults."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from taskloom import TaskManager

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "rolling_pool.sh"


def test_readme_runs_the_example_flow_and_the_tests():
    readme = (ROOT / "README.md").read_text()
    assert "bash examples/rolling_pool.sh" in readme
    assert "python -m pytest" in readme
    assert (ROOT / ".ci" / "run").read_text().rstrip().endswith("python -m pytest")


def test_example_rolling_pool_script(tmp_path):
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "TASKLOOM_EXAMPLE_DIR": str(tmp_path),
    }
    env.pop("TASKLOOM_STORAGE", None)
    result = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env=env,
                            timeout=300)
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
