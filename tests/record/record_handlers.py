"""Task functions for the recording tests, importable by worker subprocesses.

``predict`` returns a small prediction Series and a metric, like a model-training handler;
``hang`` writes a marker file naming its process, then sleeps (a worker to kill mid-task);
``running_task`` returns what :func:`taskloom.current_task` says where it runs.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd
from taskloom import current_task

#: the file ``hang`` writes its pid to before it sleeps
HANG_MARKER_ENV = "TASKLOOM_TEST_HANG_MARKER"


def predict(param: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """A prediction Series over three days and an ``ic`` metric, both from the task's ``i``."""
    index = pd.date_range("2020-01-01", periods=3, name="datetime")
    return {"pred": pd.Series([param["i"] * 1.0] * 3, index=index, name="score"),
            "ic": param["i"] / 100}


def hang(param: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """Mark the file named by ``TASKLOOM_TEST_HANG_MARKER`` on the first attempt, then sleep.

    A later attempt (the marker exists) returns at once, so a reclaimed task finishes.
    """
    marker = Path(os.environ[HANG_MARKER_ENV])
    if not marker.exists():
        marker.write_text(str(os.getpid()))
        time.sleep(600)
    return {"done": param["i"]}


def running_task(param: Any, **kwargs: Any) -> dict[str, Any] | None:
    """The running task as a dict, this process's pid, and whether it may have been reclaimed."""
    task = current_task()
    if task is None:
        return None
    return {**asdict(task), "pid": os.getpid(), "may_be_reclaimed": task.may_be_reclaimed()}
