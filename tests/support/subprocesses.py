"""Starting ``taskloom worker`` subprocesses with a folder of test handlers importable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def cli_env(importable: Path, **extra: str) -> dict[str, str]:
    """A ``taskloom`` subprocess's environment: ``importable`` on PYTHONPATH, no default stores.

    ``TASKLOOM_STORAGE`` and ``MLFLOW_TRACKING_URI`` are removed, so that a worker records into
    the default MLflow store of its working directory unless ``extra`` sets one.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(importable), env.get("PYTHONPATH")]))
    env.pop("TASKLOOM_STORAGE", None)
    env.pop("MLFLOW_TRACKING_URI", None)
    env.update(extra)
    return env


def worker(cwd: Path, importable: Path, *args: str, **env: str) -> subprocess.Popen:
    """A ``taskloom worker ARGS`` subprocess in ``cwd``; read its output with communicate()."""
    return subprocess.Popen([sys.executable, "-m", "taskloom", "worker", *args], cwd=cwd,
                            env=cli_env(importable, **env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
