"""Retry a tracking-store call that SQLite refused with "database is locked".

MLflow's SQL store gives every SQLite session a busy timeout, so a writer normally waits its
turn. SQLite still answers at once with ``database is locked``, whatever the timeout, when two
transactions each hold a lock the other needs (one reading and wanting to write, one writing):
waiting could not help one of them, so it is refused. That transaction was rolled back, so
doing it again is safe and, once the other one has committed, succeeds. Several worker
processes recording into the one default SQLite store meet this, so every store call the
recorder makes goes through :func:`retrying`.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

#: give up after this long of refusals in a row (MLflow's own busy timeout is 20 s per call)
RETRY_SECONDS = 120.0
#: the first wait; it doubles with each refusal, up to MAX_WAIT_SECONDS, with jitter
FIRST_WAIT_SECONDS = 0.05
MAX_WAIT_SECONDS = 2.0


def is_locked(exc: BaseException) -> bool:
    """True for SQLite's "database is locked" / "database table is locked", however wrapped."""
    seen: set[int] = set()
    error: BaseException | None = exc
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if "is locked" in str(error):
            return True
        error = error.__cause__ or error.__context__
    return False


def retrying(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``call(*args, **kwargs)``, done again after a short random wait while SQLite is locked."""
    deadline = time.monotonic() + RETRY_SECONDS
    wait = FIRST_WAIT_SECONDS
    while True:
        try:
            return call(*args, **kwargs)
        except Exception as exc:
            if not is_locked(exc) or time.monotonic() + wait > deadline:
                raise
            log.debug("tracking store locked in %s; retrying in ~%.2fs",
                      getattr(call, "__name__", call), wait)
        time.sleep(wait * random.uniform(0.5, 1.5))
        wait = min(wait * 2, MAX_WAIT_SECONDS)
