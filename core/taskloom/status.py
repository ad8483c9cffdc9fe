"""The statuses a task moves through, as one enum shared by the pool, the manager and the CLI.

:func:`check_after_status` says which of them a task run may end in.
"""

from __future__ import annotations

from enum import StrEnum


class TaskStatus(StrEnum):
    """A task's status; members are strings, so stored records and queries stay plain JSON."""

    WAITING = "waiting"
    RUNNING = "running"
    PART_DONE = "part_done"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


WAITING = TaskStatus.WAITING
RUNNING = TaskStatus.RUNNING
PART_DONE = TaskStatus.PART_DONE
DONE = TaskStatus.DONE
FAILED = TaskStatus.FAILED
CANCELLED = TaskStatus.CANCELLED

STATUSES: tuple[TaskStatus, ...] = tuple(TaskStatus)
#: statuses that ``wait()`` still waits for (qlib counts part_done as undone)
UNDONE: tuple[TaskStatus, ...] = (WAITING, RUNNING, PART_DONE)
#: statuses a task run may not commit into: each has its own meaning to the pool
NOT_AFTER_A_RUN: tuple[TaskStatus, ...] = (WAITING, RUNNING, FAILED, CANCELLED)


def check_after_status(status: object) -> str:
    """``status`` if a task run may end in it; otherwise a ValueError naming the value.

    ``done`` and ``part_done`` are qlib's; any other non-empty string is a custom status that
    nothing claims again (as in qlib). ``waiting`` would run the task again at once,
    ``running`` would leave it under no lease that ``reap`` could free, and ``failed`` and
    ``cancelled`` belong to the retry policy and to ``cancel``.
    """
    if not isinstance(status, str) or not status:
        raise ValueError(f"after_status must be a non-empty string, got {status!r}")
    if status in NOT_AFTER_A_RUN:
        raise ValueError(
            f"after_status {status!r} is not allowed: a run ends in 'done', 'part_done' or a "
            f"custom status, never in {', '.join(repr(str(s)) for s in NOT_AFTER_A_RUN)}"
        )
    return status
