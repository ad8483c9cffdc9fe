"""Which pool task the current code is running for, so that a recorder can tag its run.

:meth:`taskloom.attempt.Attempts.hold` sets it for the duration of an attempt (and a
``force_release`` child process gets it too); code outside an attempt sees None. A context
variable rather than an argument: the handler's signature stays qlib's ``(param, **kwargs)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True)
class RunningTask:
    """The attempt a piece of work belongs to: pool, task id and key, attempt, lease owner."""

    pool: str
    task_id: str
    key: str
    attempt: int
    owner: str
    #: the URL of the store holding the pool, when known
    storage: str | None = None


_CURRENT: ContextVar[RunningTask | None] = ContextVar("taskloom_running_task", default=None)


def current_task() -> RunningTask | None:
    """The pool task being run in this context; None outside an attempt."""
    return _CURRENT.get()


@contextmanager
def running(task: RunningTask | None) -> Iterator[None]:
    """Make ``task`` the current task while the block runs, then restore the previous one."""
    token = _CURRENT.set(task)
    try:
        yield
    finally:
        _CURRENT.reset(token)
