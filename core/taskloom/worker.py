"""Worker processes: claim a task, run its handler, commit, repeat; stop cleanly on a signal.

``taskloom worker`` runs :func:`serve`: one worker loop in this process, or N spawned child
processes that each run one. On SIGTERM or SIGINT a worker stops claiming; if a task is
running, its handler is interrupted and the task is given back at once (its lease released,
not counted as a failed attempt), then the process exits 0. A parent forwards the signal to
its children and waits for them.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from types import FrameType
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from taskloom import registry
from taskloom.manager import TaskManager
from taskloom.retry import RetryPolicy
from taskloom.storage import DONE, WAITING

log = logging.getLogger(__name__)

#: how often an idle worker looks for claimable tasks (and for a stop request)
DEFAULT_POLL_SECONDS = 0.5
#: a worker's lease; it is renewed every third of it while a task runs
DEFAULT_WORKER_LEASE_SECONDS = 60.0


class WorkerConfig(BaseModel):
    """What one ``taskloom worker`` invocation runs; the same for each of its processes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    pool: str = Field(min_length=1)
    storage: str | None = None
    handler: str = Field(min_length=1, description="registered name or module:function")
    concurrency: int = Field(1, ge=1, description="worker processes")
    max_tasks: int | None = Field(None, ge=1, description="tasks per process before exiting")
    idle_exit: float | None = Field(None, ge=0, description="exit after this long with no task")
    lease_seconds: float = Field(DEFAULT_WORKER_LEASE_SECONDS, gt=0)
    poll_seconds: float = Field(DEFAULT_POLL_SECONDS, gt=0)
    query: dict[str, Any] = Field(default_factory=dict)
    before_status: Literal["waiting", "part_done"] = WAITING
    after_status: str = DONE
    stop_on_error: bool = Field(False, description="qlib: the first error ends the worker")
    retry_policy: RetryPolicy = Field(default_factory=RetryPolicy)


class StopRequested(BaseException):
    """Raised inside a running handler when the worker is told to stop.

    A BaseException, so handlers that catch ``Exception`` do not swallow it; the task manager
    gives the task back instead of recording a failed attempt.
    """


class GracefulStop:
    """Turns SIGTERM/SIGINT into "stop claiming, and give back the task that is running"."""

    def __init__(self) -> None:
        self.requested = False
        self._in_task = False

    def install(self) -> None:
        """Handle SIGTERM and SIGINT in this process (main thread only, as Python requires)."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._on_signal)
            signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            return
        self.requested = True
        log.warning("signal %s: stopping", signal.Signals(signum).name)
        if self._in_task:
            raise StopRequested

    def guard(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """``func`` wrapped so that a stop request interrupts it."""

        def guarded(param: Any, **kwargs: Any) -> Any:
            self._in_task = True
            try:
                if self.requested:
                    raise StopRequested
                return func(param, **kwargs)
            finally:
                self._in_task = False

        return guarded

    def sleep(self, seconds: float) -> None:
        """Sleep up to ``seconds``, waking early once a stop is requested."""
        deadline = time.monotonic() + seconds
        while not self.requested and time.monotonic() < deadline:
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))


def open_manager(config: WorkerConfig) -> TaskManager:
    """The worker's TaskManager; an unknown pool or bad URL raises a clear error."""
    return TaskManager(config.pool, config.storage, lease_seconds=config.lease_seconds,
                       retry_policy=config.retry_policy, create=False)


def work(config: WorkerConfig, stop: GracefulStop | None = None) -> Counter[str]:
    """Run one worker loop in this process until told to stop, idle or done with max_tasks.

    Returns how many tasks ended with each outcome (``done``, ``retried``, ``failed``,
    ``lease lost``...). With ``stop_on_error`` the handler's first exception propagates.
    """
    func = registry.resolve_callable(config.handler, "handler")
    tm = open_manager(config)
    stop = stop or GracefulStop()
    guarded = stop.guard(func)
    on_error = "raise" if config.stop_on_error else "retry"
    outcomes: Counter[str] = Counter()
    idle_since = time.monotonic()
    while not stop.requested:
        if config.max_tasks is not None and outcomes.total() >= config.max_tasks:
            break
        try:
            outcome = tm.run_one(guarded, config.query, before_status=config.before_status,
                                 after_status=config.after_status, on_error=on_error)
        except StopRequested:
            outcomes["returned"] += 1
            break
        if outcome is None:
            if config.idle_exit is not None and time.monotonic() - idle_since >= config.idle_exit:
                break
            stop.sleep(config.poll_seconds)
            continue
        outcomes[outcome] += 1
        idle_since = time.monotonic()
    return outcomes


def _run_here(config: WorkerConfig) -> int:
    """One worker loop with signal handling and a summary line; the process's exit code."""
    stop = GracefulStop()
    stop.install()
    try:
        outcomes = work(config, stop)
    except Exception as exc:  # stop_on_error: qlib's "the first error ends the worker"
        print(f"worker {os.getpid()}: stopped on error: {type(exc).__name__}: {exc}",
              file=sys.stderr)
        return 1
    summary = ", ".join(f"{n} {outcome}" for outcome, n in sorted(outcomes.items()))
    print(f"worker {os.getpid()}: {outcomes.total()} tasks ({summary or 'none'})",
          file=sys.stderr)
    return 0


def _child(config: WorkerConfig) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    sys.exit(_run_here(config))


def serve(config: WorkerConfig) -> int:
    """Run ``config.concurrency`` worker loops (child processes when more than one).

    Returns 0 when every loop ended normally (idle, max_tasks or a stop signal), 1 if one
    stopped on an error or died.
    """
    if config.concurrency == 1:
        return _run_here(config)
    context = multiprocessing.get_context("spawn")
    children = [context.Process(target=_child, args=(config,), name=f"taskloom-worker-{i}")
                for i in range(config.concurrency)]

    def forward(signum: int, frame: FrameType | None) -> None:
        for child in children:
            if child.pid is not None and child.is_alive():
                os.kill(child.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for child in children:
        child.start()
    for child in children:
        child.join()
    return 0 if all(child.exitcode == 0 for child in children) else 1
