"""Task functions for the pool tests, importable by worker subprocesses (``pool_handlers:NAME``).

``record`` and ``record_slowly`` append one line ``<task i> <pid>`` per execution to the file
named by ``TASKLOOM_TEST_LOG`` (O_APPEND writes of one short line are atomic), so a test can
count how many times each task really ran, in which process.
"""

from __future__ import annotations

import os
import random
import time
from typing import Any

LOG_ENV = "TASKLOOM_TEST_LOG"


def _log_run(param: dict[str, Any]) -> None:
    fd = os.open(os.environ[LOG_ENV], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{param['i']} {os.getpid()}\n".encode())
    finally:
        os.close(fd)


def record(param: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """Log the run and return the task's number."""
    _log_run(param)
    return {"i": param["i"], "pid": os.getpid()}


def record_slowly(param: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """Log the run, then sleep ``param["seconds"]`` (or a random 0-50 ms)."""
    _log_run(param)
    time.sleep(param.get("seconds", random.uniform(0.0, 0.05)))
    return {"i": param["i"], "pid": os.getpid()}


def pid(param: Any, **kwargs: Any) -> int:
    """The id of the process that ran the task (for ``force_release``)."""
    return os.getpid()


def fail(param: Any, **kwargs: Any) -> None:
    """Always raise."""
    raise RuntimeError(f"task {param!r} cannot succeed")


def runs(log_path: str) -> dict[int, list[int]]:
    """``{task i: [pid of each run]}`` from a run log."""
    out: dict[int, list[int]] = {}
    with open(log_path) as lines:
        for line in lines:
            i, process = line.split()
            out.setdefault(int(i), []).append(int(process))
    return out
