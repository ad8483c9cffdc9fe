"""Several real processes claiming from one pool: the cross-process safety check of a backend.

Workers are started with the ``spawn`` method (a fresh interpreter each, as on macOS and
Windows, and safe with pymongo's background threads), open the store from its URL, wait at a
barrier so that they start together, then claim and finish tasks until the pool is empty.
"""

from __future__ import annotations

import multiprocessing
import queue
import time
from typing import Any

from taskloom.storage import get_storage


def _worker(url: str, pool_name: str, owner: str, barrier: Any, results: Any) -> None:
    store = get_storage(url)
    pool = store.pool(pool_name, create=False)
    claimed: list[str] = []
    barrier.wait(timeout=120)
    try:
        while True:
            token = f"{owner}-{len(claimed)}"
            task = pool.claim(status="waiting", query={}, owner=owner, token=token,
                              lease_seconds=600.0, now=time.time())
            if task is None:
                break
            claimed.append(task["_id"])
            pool.finish(task["_id"], token, {"status": "done", "res": owner}, None, time.time())
    finally:
        results.put((owner, claimed))
        store.close()


def claim_in_processes(url: str, pool_name: str, workers: int, timeout: float
                       ) -> dict[str, list[str]]:
    """Run ``workers`` claiming processes against ``url``; returns ``{owner: [claimed ids]}``."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(workers)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_worker, args=(url, pool_name, f"proc{n}", barrier, results))
        for n in range(workers)
    ]
    for proc in procs:
        proc.start()
    out: dict[str, list[str]] = {}
    deadline = time.monotonic() + timeout
    try:
        while len(out) < workers:
            owner, claimed = results.get(timeout=max(0.1, deadline - time.monotonic()))
            out[owner] = claimed
    except queue.Empty as exc:
        raise TimeoutError(f"only {len(out)} of {workers} workers reported in {timeout} s") from exc
    finally:
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
    return out
