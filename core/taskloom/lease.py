"""Lease owners and tokens, and the thread that keeps held leases alive.

Every claim of a task is a lease: the record names an *owner* (``host:pid:random``) and a
random *token*; commits, returns and heartbeats are accepted only with the current token. A
:class:`LeaseKeeper` renews the leases its process holds from one daemon thread, so a task
that runs for hours keeps a short lease and a crashed worker's task is reclaimable soon.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time

from taskloom.storage import Pool

log = logging.getLogger(__name__)


def owner_id() -> str:
    """``host:pid:random``: who holds a lease, readable in ``taskloom show``."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def new_token() -> str:
    """A fresh random lease token (one per claim)."""
    return os.urandom(16).hex()


class LeaseKeeper:
    """Renews every lease registered with :meth:`hold` each ``lease_seconds / 3`` seconds.

    One daemon thread per keeper, started on the first :meth:`hold` and ended once it finds
    nothing to renew, so idle keepers cost nothing. Holding and releasing a lease are dict
    operations: the per-task overhead stays in microseconds. A renewal that the store rejects
    (the lease expired and another worker reclaimed the task, or an administrator reset it)
    marks the lease as lost; :meth:`release` reports it so the caller can refuse to commit.
    """

    def __init__(self, pool: Pool, lease_seconds: float) -> None:
        self._pool = pool
        self._lease_seconds = lease_seconds
        self._held: dict[str, str] = {}  # token -> task id
        self._lost: set[str] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def hold(self, task_id: str, token: str) -> None:
        """Start renewing the lease ``token`` on task ``task_id``."""
        with self._lock:
            self._held[token] = task_id
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"taskloom-lease-{self._pool.name}", daemon=True
                )
                self._thread.start()

    def is_lost(self, token: str) -> bool:
        """Whether a renewal of ``token`` was rejected by the store.

        One set lookup, atomic on its own: the lock would only order it against a renewal
        running at this very moment, which the store's fence decides anyway.
        """
        return token in self._lost

    def release(self, token: str) -> bool:
        """Stop renewing ``token``; returns True if the lease was lost while held."""
        with self._lock:
            self._held.pop(token, None)
            lost = token in self._lost
            self._lost.discard(token)
            return lost

    def _run(self) -> None:
        period = self._lease_seconds / 3
        while True:
            time.sleep(period)
            with self._lock:
                if not self._held:
                    self._thread = None
                    return
                held = list(self._held.items())
            now = time.time()
            for token, task_id in held:
                try:
                    renewed = self._pool.heartbeat(task_id, token, now + self._lease_seconds, now)
                except Exception:  # a store hiccup: keep trying until the lease runs out
                    log.warning("heartbeat of task %s failed", task_id, exc_info=True)
                    continue
                if not renewed:
                    with self._lock:
                        if token in self._held:
                            del self._held[token]
                            self._lost.add(token)
                    log.warning("task %s: lease lost (expired and reclaimed, or reset)", task_id)
