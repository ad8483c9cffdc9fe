"""The statuses a task moves through, as one enum shared by the pool, the manager and the CLI."""

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
