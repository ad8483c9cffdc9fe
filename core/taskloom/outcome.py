"""How an attempt at a task ended: the outcomes in a task's history and in a worker's counts."""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    """An attempt's outcome; members are strings, so history entries stay plain JSON.

    A commit is not listed: its history outcome, and what a run reports, is the status the
    task was committed with (``done``, ``part_done`` or a custom one).
    """

    #: history: the task function raised; a failed attempt
    ERROR = "error"
    #: history, written by the store when it reclaims the task: the worker vanished or
    #: stalled; a failed attempt
    LEASE_EXPIRED = "lease expired"
    #: history: given back uncounted (an interruption, a worker's stop, ``return_task``)
    RETURNED = "returned"
    #: history: ``TaskManager.retry`` gave a failed task a fresh attempt budget
    RETRY = "retry"
    #: run result: the error was recorded and the task will run again
    RETRIED = "retried"
    #: run result: the error used up the attempt budget; the task is ``failed``
    FAILED = "failed"
    #: run result: the lease was gone (reclaimed, reset or cancelled); nothing was recorded
    LEASE_LOST = "lease lost"
