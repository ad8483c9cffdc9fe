"""Which pool task the current code is running for, so that a recorder can tag its run.

:meth:`taskloom.attempt.Attempts.hold` sets it for the duration of an attempt (and a
``force_release`` child process gets it too); code outside an attempt sees None. A context
variable rather than an argument: the handler's signature stays qlib's ``(param, **kwargs)``.
"""

from __future__ import annotations

import time
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
    #: when the attempt was claimed and when the lease it was claimed with ends (epoch s)
    claimed_at: float | None = None
    lease_until: float | None = None

    def may_be_reclaimed(self) -> bool:
        """Whether another worker may have reclaimed this task by now.

        Not during the first half of the lease the attempt was claimed with: the task can
        be reclaimed only once that lease has expired, and the half left over absorbs clock
        differences between the machines sharing the pool. Without lease times, it may have.
        """
        if self.claimed_at is None or self.lease_until is None:
            return True
        return time.time() >= (self.claimed_at + self.lease_until) / 2


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
