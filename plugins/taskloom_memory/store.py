"""Process-local pools held in dicts behind one lock per store.

This backend is the executable reference of the storage contract: it evaluates queries with
:func:`taskloom.query.matches` and keeps every record as the plain dict the contract
describes, so the other backends are tested against the same suite it passes.
"""

from __future__ import annotations

import copy
import itertools
import threading
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

from taskloom.errors import StorageError, UnknownNameError
from taskloom.query import And, check_changes, check_items, evaluate, normalize
from taskloom.storage import RUNNING, WAITING, Pool, Record, Store
from taskloom.taskkey import to_canonical


class _StoreData:
    """The shared state behind every ``MemoryStore`` opened with one URL."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.pools: dict[str, dict[str, Record]] = {}
        self.ids = itertools.count(1)


def _check_pool_name(name: str) -> None:
    if not isinstance(name, str) or not name:
        raise StorageError(f"a pool name is a non-empty string, got {name!r}")


class MemoryPool(Pool):
    """A pool whose records live in an insertion-ordered dict ``{id: record}``."""

    def __init__(self, data: _StoreData, name: str) -> None:
        self._data = data
        self.name = name

    def _records(self) -> dict[str, Record]:
        """This pool's records (none once the pool was dropped)."""
        return self._data.pools.get(self.name, {})

    def _select(self, node: And) -> Iterator[Record]:
        return (rec for rec in self._records().values() if evaluate(rec, node))

    def insert_many(
        self, items: Sequence[tuple[str, dict[str, Any]]], now: float
    ) -> list[tuple[str, bool]]:
        """Insert missing keys as ``waiting`` tasks (see :meth:`Pool.insert_many`)."""
        checked = check_items(items)
        with self._data.lock:
            records = self._data.pools.setdefault(self.name, {})  # a dropped pool comes back
            by_key = {rec["key"]: rec["_id"] for rec in records.values()}
            out = []
            for key, definition in checked:
                if key in by_key:
                    out.append((by_key[key], False))
                    continue
                task_id = str(next(self._data.ids))
                # check_items may hand back the caller's own object: keep a private copy
                records[task_id] = _new_record(task_id, key, copy.deepcopy(definition), now)
                by_key[key] = task_id
                out.append((task_id, True))
            return out

    def ids_for_keys(self, keys: Sequence[str]) -> dict[str, str]:
        """``{key: id}`` for the keys present in the pool."""
        wanted = set(keys)
        with self._data.lock:
            return {
                rec["key"]: rec["_id"] for rec in self._records().values() if rec["key"] in wanted
            }

    def claim(
        self,
        *,
        status: str,
        query: dict[str, Any],
        owner: str,
        token: str,
        lease_seconds: float,
        now: float,
    ) -> Record | None:
        """Claim the best claimable task (see :meth:`Pool.claim`)."""
        node = normalize(query)
        with self._data.lock:
            candidates = [
                rec for rec in self._select(node) if _claimable(rec, status, now)
            ]
            if not candidates:
                return None
            rec = min(candidates, key=lambda r: (-r["priority"], int(r["_id"])))
            lease = rec["lease"]
            if rec["status"] == RUNNING and lease is not None and lease["until"] < now:
                rec["attempts"].append(
                    {"attempt": rec["attempt"], "owner": lease["owner"],
                     "started": lease["started"], "ended": now, "outcome": "lease expired"}
                )
            rec["status"] = RUNNING
            rec["attempt"] += 1
            rec["lease"] = {"owner": owner, "token": token, "until": now + lease_seconds,
                            "started": now, "from_status": status}
            rec["updated_at"] = now
            return copy.deepcopy(rec)

    def _held(self, task_id: str, token: str) -> Record | None:
        rec = self._records().get(task_id)
        if rec is None or rec["status"] != RUNNING or rec["lease"] is None:
            return None
        return rec if rec["lease"]["token"] == token else None

    def heartbeat(self, task_id: str, token: str, until: float, now: float) -> bool:
        """Extend the lease if ``token`` holds it."""
        with self._data.lock:
            rec = self._held(task_id, token)
            if rec is None:
                return False
            rec["lease"]["until"] = until
            rec["updated_at"] = now
            return True

    def finish(
        self,
        task_id: str,
        token: str,
        changes: dict[str, Any],
        history: dict[str, Any] | None,
        now: float,
    ) -> Record | None:
        """Fenced end of an attempt (see :meth:`Pool.finish`)."""
        checked = check_changes(changes)
        entry = to_canonical(history) if history else None
        with self._data.lock:
            rec = self._held(task_id, token)
            if rec is None:
                return None
            rec.update(checked)
            rec["lease"] = None
            if entry is not None:
                rec["attempts"] = [*rec["attempts"], entry]
            rec["updated_at"] = now
            return copy.deepcopy(rec)

    def counts(self, query: dict[str, Any]) -> dict[str, int]:
        """``{status: n}`` over matching tasks."""
        node = normalize(query)
        out: dict[str, int] = {}
        with self._data.lock:
            for rec in self._select(node):
                out[rec["status"]] = out.get(rec["status"], 0) + 1
        return out

    def find(
        self, query: dict[str, Any], *, limit: int | None = None, skip: int = 0
    ) -> Iterator[Record]:
        """Copies of the matching records in creation order."""
        node = normalize(query)
        with self._data.lock:
            found = [copy.deepcopy(rec) for rec in self._select(node)]
        end = None if limit is None else skip + limit
        return iter(found[skip:end])

    def get(self, task_id: str) -> Record | None:
        """A copy of the record with this id, or None."""
        with self._data.lock:
            rec = self._records().get(task_id) if isinstance(task_id, str) else None
            return copy.deepcopy(rec)

    def update_many(self, query: dict[str, Any], changes: dict[str, Any], now: float) -> int:
        """Set fields on every matching task (see :meth:`Pool.update_many`)."""
        node = normalize(query)
        checked = check_changes(changes)
        clears_lease = "status" in checked and checked["status"] != RUNNING
        with self._data.lock:
            hits = list(self._select(node))
            if "key" in checked:
                self._check_new_key(checked["key"], hits)
            for rec in hits:
                rec.update(copy.deepcopy(checked))
                if clears_lease:
                    rec["lease"] = None
                rec["updated_at"] = now
            return len(hits)

    def _check_new_key(self, key: str, hits: list[Record]) -> None:
        others = [rec for rec in self._records().values() if rec["key"] == key]
        if len(hits) > 1 or (others and others != hits):
            raise StorageError(f"pool {self.name!r}: task key {key!r} would not be unique")

    def delete_many(self, query: dict[str, Any]) -> int:
        """Delete matching tasks."""
        node = normalize(query)
        with self._data.lock:
            records = self._records()
            doomed = [rec["_id"] for rec in self._select(node)]
            for task_id in doomed:
                del records[task_id]
            return len(doomed)


def _new_record(task_id: str, key: str, definition: Any, now: float) -> Record:
    return {"_id": task_id, "key": key, "def": definition, "status": WAITING, "priority": 0,
            "res": None, "created_at": now, "updated_at": now, "not_before": None,
            "attempt": 0, "lease": None, "attempts": [], "error": None}


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

    def pool(self, name: str, create: bool = True) -> MemoryPool:
        """The named pool, created on first use unless ``create`` is False."""
        _check_pool_name(name)
        with self._data.lock:
            if name not in self._data.pools:
                if not create:
                    raise UnknownNameError("pool", name, list(self._data.pools))
                self._data.pools[name] = {}
        return MemoryPool(self._data, name)

    def list_pools(self) -> list[str]:
        """Pool names, sorted."""
        with self._data.lock:
            return sorted(self._data.pools)

    def drop_pool(self, name: str) -> None:
        """Remove a pool and its tasks."""
        with self._data.lock:
            self._data.pools.pop(name, None)
