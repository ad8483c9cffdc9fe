"""Running the ``taskloom`` CLI in subprocesses, with the test handlers importable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def cli_env(**extra: str) -> dict[str, str]:
    """The environment for ``taskloom`` subprocesses: test handlers importable, no colour."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
    env.pop("TASKLOOM_STORAGE", None)
    env.update(extra)
    return env


def taskloom_command(*args: str) -> list[str]:
    """The argv that runs the ``taskloom`` CLI with this interpreter."""
    return [sys.executable, "-m", "taskloom", *args]


def run_cli(*args: str, timeout: float = 120, **kwargs: object) -> subprocess.CompletedProcess:
    """Run ``taskloom ARGS`` to completion and capture its output."""
    return subprocess.run(taskloom_command(*args), capture_output=True, text=True,
                          timeout=timeout, env=cli_env(), **kwargs)
