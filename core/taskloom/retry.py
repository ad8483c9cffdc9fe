"""The retry policy: how many failed attempts a task gets and how long it waits in between.

A failed attempt is one whose task function raised (history outcome ``Outcome.ERROR``) or
whose worker vanished so that its lease expired (``Outcome.LEASE_EXPIRED``). Attempts that
ended otherwise (a commit, a task given back on shutdown or by ``return_task``) do not use up
the budget. ``taskloom retry`` gives a failed task a fresh budget and says so in its history
with an entry whose outcome is ``Outcome.RETRY``.
"""

from __future__ import annotations

import random
import traceback
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from taskloom.outcome import Outcome

#: history outcomes that use up an attempt
FAILED_OUTCOMES: frozenset[Outcome] = frozenset({Outcome.ERROR, Outcome.LEASE_EXPIRED})
#: longest traceback text kept on a record (the tail, where the error is)
MAX_TRACEBACK_CHARS = 20_000


class RetryPolicy(BaseModel):
    """Bounded retries with exponential backoff and jitter.

    After the n-th failed attempt the task waits ``backoff_seconds * backoff_factor**(n-1)``
    seconds (at most ``max_backoff_seconds``), shortened by a random fraction up to
    ``jitter`` so that tasks failing together do not come back together. The attempt that
    makes ``max_attempts`` failures marks the task ``failed``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_attempts: int = Field(3, ge=1, description="failed attempts before the task is failed")
    backoff_seconds: float = Field(5.0, ge=0, description="wait after the first failure")
    backoff_factor: float = Field(2.0, ge=1, description="growth of the wait per failure")
    max_backoff_seconds: float = Field(600.0, ge=0, description="upper bound of the wait")
    jitter: float = Field(0.5, ge=0, le=1, description="random fraction cut from the wait")

    def delay(self, failures: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before the next attempt, after ``failures`` failed attempts."""
        base = self.backoff_seconds * self.backoff_factor ** max(failures - 1, 0)
        capped = min(base, self.max_backoff_seconds)
        return capped * (1.0 - self.jitter * (rng or random).random())


def failures(history: Sequence[Mapping[str, Any]]) -> int:
    """Failed attempts in a task's history since its last ``retry`` entry."""
    count = 0
    for entry in history:
        outcome = entry.get("outcome")
        if outcome == Outcome.RETRY:
            count = 0
        elif outcome in FAILED_OUTCOMES:
            count += 1
    return count


def exception_message(exc: BaseException) -> str:
    """``str(exc)``, or a placeholder naming the failure when the exception's ``__str__`` raises.

    A task function's exception is user code: recording its failure must not fail with it.
    """
    try:
        return str(exc)
    except Exception as broken:
        return f"<str() of the exception failed: {type(broken).__name__}>"


def error_info(exc: BaseException) -> dict[str, str]:
    """``{type, message, traceback}`` of an exception, as stored on a record.

    Never raises, even for an exception whose ``__str__`` does (see :func:`exception_message`).
    """
    kind = type(exc)
    name = kind.__qualname__ if kind.__module__ == "builtins" else (
        f"{kind.__module__}.{kind.__qualname__}"
    )
    text = "".join(traceback.format_exception(exc))
    return {"type": name, "message": exception_message(exc),
            "traceback": text[-MAX_TRACEBACK_CHARS:]}
