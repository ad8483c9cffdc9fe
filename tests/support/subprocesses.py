"""Starting ``taskloom worker`` subprocesses with a folder of test handlers importable."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
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


def kill_once_hung(cwd: Path, importable: Path, marker_env: str, marker: Path,
                   *args: str) -> None:
    """A worker dying mid-task: start ``taskloom worker ARGS`` with ``marker_env=marker``, wait
    until its handler has written ``marker`` (it then hangs), and SIGKILL it."""
    doomed = worker(cwd, importable, *args, **{marker_env: str(marker)})
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert time.monotonic() < deadline and doomed.poll() is None, doomed.communicate()
        time.sleep(0.05)
    os.kill(doomed.pid, signal.SIGKILL)
    doomed.communicate(timeout=30)
