"""Process-local pools held in dicts behind one lock per store.

This backend is the executable reference of the storage contract: it evaluates queries with
:func:`taskloom.backend.evaluate` and keeps every record as the plain dict the contract
describes, so the other backends are tested against the same suite it passes. Records are
copied on the way in and on the way out, so no caller ever holds a reference into the store.
"""

from __future__ import annotations

import copy
import itertools
import threading
from collections.abc import Iterator
from typing import Any, ClassVar

from taskloom.backend import (
    RUNNING,
    And,
    KeyNotUnique,
    NewTask,
    Pool,
    Record,
    StorageError,
    Store,
    evaluate,
    lost_attempt,
    new_record,
)


class _StoreData:
    """The shared state behind every ``MemoryStore`` opened with one URL."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.pools: dict[str, dict[str, Record]] = {}
        self.ids = itertools.count(1)


class MemoryPool(Pool):
    """A pool whose records live in an insertion-ordered dict ``{id: record}``."""

    def __init__(self, data: _StoreData, name: str) -> None:
        self._data = data
        self.name = name

    def _records(self) -> dict[str, Record]:
        """This pool's records (none once the pool was dropped)."""
        return self._data.pools.get(self.name, {})

    def _select(self, query: And) -> list[Record]:
        return [rec for rec in self._records().values() if evaluate(rec, query)]

    def _insert(self, items: list[NewTask], now: float) -> list[tuple[str, bool]]:
        with self._data.lock:
            records = self._data.pools.setdefault(self.name, {})  # a dropped pool comes back
            by_key = {rec["key"]: rec["_id"] for rec in records.values()}
            out = []
            for key, definition, types in items:
                if key in by_key:
                    out.append((by_key[key], False))
                    continue
                task_id = str(next(self._data.ids))
                # the def may be the caller's own object: keep a private copy
                record = new_record(key, copy.deepcopy(definition), copy.deepcopy(types), now)
                records[task_id] = {"_id": task_id, **record}
                out.append((task_id, True))
            return out

    def _ids_for_keys(self, keys: list[str]) -> dict[str, str]:
        wanted = set(keys)
        with self._data.lock:
            return {
                rec["key"]: rec["_id"] for rec in self._records().values() if rec["key"] in wanted
            }

    def _claim(
        self, status: str, query: And, lease: dict[str, Any], now: float
    ) -> Record | None:
        with self._data.lock:
            candidates = [rec for rec in self._select(query) if _claimable(rec, status, now)]
            if not candidates:
                return None
            rec = min(candidates, key=lambda r: (-r["priority"], int(r["_id"])))
            old = rec["lease"]
            if rec["status"] == RUNNING and old is not None and old["until"] < now:
                rec["attempts"].append(
                    lost_attempt(rec["attempt"], old["owner"], old["started"], now))
            rec.update(status=str(RUNNING), attempt=rec["attempt"] + 1, lease=dict(lease),
                       updated_at=now)
            return copy.deepcopy(rec)

    def _held(self, task_id: str, token: str) -> Record | None:
        rec = self._records().get(task_id)
        if rec is None or rec["status"] != RUNNING or rec["lease"] is None:
            return None
        return rec if rec["lease"]["token"] == token else None

    def _heartbeat(self, task_id: str, token: str, until: float, now: float) -> bool:
        with self._data.lock:
            rec = self._held(task_id, token)
            if rec is None:
                return False
            rec["lease"]["until"] = until
            rec["updated_at"] = now
            return True

    def _finish(
        self, task_id: str, token: str, sets: dict[str, Any], append: Any
    ) -> Record | None:
        with self._data.lock:
            rec = self._held(task_id, token)
            if rec is None:
                return None
            rec.update(copy.deepcopy(sets))
            if append is not None:
                rec["attempts"] = [*rec["attempts"], copy.deepcopy(append)]
            return copy.deepcopy(rec)

    def _update(self, query: And, sets: dict[str, Any]) -> int:
        with self._data.lock:
            hits = self._select(query)
            if "key" in sets:
                others = [rec for rec in self._records().values() if rec["key"] == sets["key"]]
                if len(hits) > 1 or (others and others != hits):
                    raise KeyNotUnique(sets["key"])
            for rec in hits:
                rec.update(copy.deepcopy(sets))
            return len(hits)

    def _delete(self, query: And) -> int:
        with self._data.lock:
            records = self._records()
            doomed = [rec["_id"] for rec in self._select(query)]
            for task_id in doomed:
                del records[task_id]
            return len(doomed)

    def _counts(self, query: And) -> dict[str, int]:
        out: dict[str, int] = {}
        with self._data.lock:
            for rec in self._select(query):
                out[rec["status"]] = out.get(rec["status"], 0) + 1
        return out

    def _find(self, query: And, limit: int | None, skip: int) -> Iterator[Record]:
        with self._data.lock:
            found = [copy.deepcopy(rec) for rec in self._select(query)]
        end = None if limit is None else skip + limit
        return iter(found[skip:end])

    def _get(self, task_id: str) -> Record | None:
        with self._data.lock:
            return copy.deepcopy(self._records().get(task_id))


def _claimable(rec: Record, status: str, now: float) -> bool:
    if rec["status"] == status and (rec["not_before"] is None or rec["not_before"] <= now):
        return True
    lease = rec["lease"]
    return (
        rec["status"] == RUNNING
        and lease is not None
        and lease["until"] < now
        and lease["from_status"] == status
    )


class MemoryStore(Store):
    """``memory://NAME``: a process-wide store per name, guarded by one lock."""

    shared_across_processes: ClassVar[bool] = False
    _named: ClassVar[dict[str, _StoreData]] = {}
    _named_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, name: str = "") -> None:
        with self._named_lock:
            self._data = self._named.setdefault(name, _StoreData())
        self.url = f"memory://{name}"

    @classmethod
    def from_url(cls, url: str) -> MemoryStore:
        """Open ``memory://NAME`` (``memory://`` is the default store)."""
        scheme, sep, name = url.partition("://")
        if scheme != "memory" or not sep:
            raise StorageError(f"not a memory:// URL: {url!r}")
        return cls(name)

    def _has_pool(self, name: str) -> bool:
        with self._data.lock:
            return name in self._data.pools

    def _create_pool(self, name: str, now: float) -> None:
        with self._data.lock:
            self._data.pools.setdefault(name, {})

    def _open_pool(self, name: str) -> MemoryPool:
        return MemoryPool(self._data, name)

    def _list_pools(self) -> list[str]:
        with self._data.lock:
            return list(self._data.pools)

    def _drop_pool(self, name: str) -> None:
        with self._data.lock:
            self._data.pools.pop(name, None)
