"""Running ``taskloom worker --record`` in subprocesses, with the test handlers importable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def cli_env(**extra: str) -> dict[str, str]:
    """The environment of a ``taskloom`` subprocess: handlers importable, MLflow's default store.

    ``MLFLOW_TRACKING_URI`` is removed, so that a worker records into the default store of
    its working directory unless ``extra`` sets one.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
    env.pop("TASKLOOM_STORAGE", None)
    env.pop("MLFLOW_TRACKING_URI", None)
    env.update(extra)
    return env


def worker(cwd: Path, *args: str, **env: str) -> subprocess.Popen:
    """A ``taskloom worker ARGS`` subprocess in ``cwd``; read its output with communicate()."""
    return subprocess.Popen([sys.executable, "-m", "taskloom", "worker", *args], cwd=cwd,
                            env=cli_env(**env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
