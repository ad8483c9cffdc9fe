"""Task functions for the pool tests, importable by worker subprocesses (``pool_handlers:NAME``).

``record`` and ``record_slowly`` append one line ``<task i> <pid>`` per execution to the file
named by ``TASKLOOM_TEST_LOG`` (O_APPEND writes of one short line are atomic), so a test can
count how many times each task really ran, in which process.
"""

from __future__ import annotations

import gc
import os
import random
import signal
import sys
import time
from typing import Any

from taskloom import hookimpl, plugins

LOG_ENV = "TASKLOOM_TEST_LOG"
#: set by the ``set_up`` initializer in the process it ran in
SETUP_ENV = "TASKLOOM_TEST_SETUP"
_setup_calls = 0


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


def fail_on_poison(param: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """Raise for a task marked ``poison``, return the task's number otherwise."""
    if param.get("poison"):
        raise RuntimeError("poisoned task")
    return {"i": param["i"]}


def exit_now(param: Any, **kwargs: Any) -> None:
    """Call ``sys.exit(3)``, as a script-minded handler might."""
    sys.exit(3)


class UnprintableError(Exception):
    """An exception whose ``__str__`` itself raises."""

    def __str__(self) -> str:
        raise RuntimeError("this exception has no text")


def fail_unprintably(param: Any, **kwargs: Any) -> None:
    """Raise an exception that cannot be turned into a string."""
    raise UnprintableError


def set_up(value: str = "ready") -> None:
    """An initializer (what ``qlib.init()`` is for real code): mark this process as set up."""
    global _setup_calls
    _setup_calls += 1
    os.environ[SETUP_ENV] = value


def setup_seen(param: Any, **kwargs: Any) -> dict[str, Any]:
    """What the process running the task saw of ``set_up``: its value and how often it ran."""
    return {"setup": os.environ.get(SETUP_ENV), "calls": _setup_calls, "pid": os.getpid()}


class _StopOnClaim:
    """A plugin that sends SIGTERM to its own process when it claims a task."""

    @hookimpl
    def taskloom_task_claimed(self, pool: str, task: dict[str, Any]) -> None:
        os.kill(os.getpid(), signal.SIGTERM)


def stop_on_claim() -> None:
    """An initializer: a stop request now lands after each claim, before the handler starts."""
    plugins.register_plugin(_StopOnClaim(), "stop-on-claim")


def runs(log_path: str) -> dict[int, list[int]]:
    """``{task i: [pid of each run]}`` from a run log."""
    out: dict[int, list[int]] = {}
    with open(log_path) as lines:
        for line in lines:
            i, process = line.split()
            out.setdefault(int(i), []).append(int(process))
    return out


def freeze_count(param: Any, **kwargs: Any) -> dict[str, int]:
    """How many objects are frozen out of the cycle collector's scans while the task runs."""
    return {"frozen": gc.get_freeze_count()}
