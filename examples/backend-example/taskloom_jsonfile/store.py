"""Pools in one JSON file, read and rewritten whole under an exclusive file lock.

Every operation locks ``<file>.lock`` (``fcntl.flock``), loads the file, works on plain
dicts and, if it changed anything, writes a new file and renames it into place. That makes
each primitive atomic across threads and processes on one machine: fine for an example or a
few hundred tasks, slow for more. Queries are evaluated in Python with the reference matcher.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

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

Result = TypeVar("Result")


class JSONFileStore(Store):
    """``jsonfile:///absolute/path.json``: the file holds ``{"next_id", "pools"}``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.url = f"jsonfile://{path}"
        self._threads = threading.Lock()  # flock does not exclude threads of one process

    @classmethod
    def from_url(cls, url: str) -> JSONFileStore:
        """Open ``jsonfile:///absolute/path.json`` (the directory must exist)."""
        prefix = "jsonfile:///"
        if not url.startswith(prefix) or len(url) == len(prefix):
            raise StorageError(f"bad jsonfile URL {url!r}: use jsonfile:///absolute/path.json")
        path = Path(url[len("jsonfile://"):])
        if not path.parent.is_dir():
            raise StorageError(f"jsonfile store {path}: the directory does not exist")
        return cls(path)

    def locked(self, work: Callable[[dict[str, Any]], Result], *, write: bool) -> Result:
        """Run ``work`` on the file's data under the lock; save the data if ``write``."""
        with self._threads, open(f"{self.path}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                data = json.loads(self.path.read_text()) if self.path.exists() else {
                    "next_id": 1, "pools": {}}
                result = work(data)
                if write:
                    temporary = self.path.with_suffix(".tmp")
                    temporary.write_text(json.dumps(data))
                    os.replace(temporary, self.path)
                return result
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _has_pool(self, name: str) -> bool:
        return self.locked(lambda data: name in data["pools"], write=False)

    def _create_pool(self, name: str, now: float) -> None:
        self.locked(lambda data: data["pools"].setdefault(name, []), write=True)

    def _open_pool(self, name: str) -> JSONFilePool:
        return JSONFilePool(self, name)

    def _list_pools(self) -> list[str]:
        return self.locked(lambda data: list(data["pools"]), write=False)

    def _drop_pool(self, name: str) -> None:
        self.locked(lambda data: data["pools"].pop(name, None), write=True)


class JSONFilePool(Pool):
    """A pool: a list of records, in creation order, in the store's file."""

    def __init__(self, store: JSONFileStore, name: str) -> None:
        self._store = store
        self.name = name

    def _records(self, data: dict[str, Any]) -> list[Record]:
        return data["pools"].get(self.name, [])

    def _select(self, data: dict[str, Any], query: And) -> list[Record]:
        return [rec for rec in self._records(data) if evaluate(rec, query)]

    def _insert(self, items: list[NewTask], now: float) -> list[tuple[str, bool]]:
        def insert(data: dict[str, Any]) -> list[tuple[str, bool]]:
            records = data["pools"].setdefault(self.name, [])
            by_key = {rec["key"]: rec["_id"] for rec in records}
            out = []
            for key, definition, types in items:
                if key in by_key:
                    out.append((by_key[key], False))
                    continue
                task_id = str(data["next_id"])
                data["next_id"] += 1
                records.append({"_id": task_id, **new_record(key, definition, types, now)})
                out.append((task_id, True))
            return out

        return self._store.locked(insert, write=True)

    def _ids_for_keys(self, keys: list[str]) -> dict[str, str]:
        wanted = set(keys)
        return self._store.locked(lambda data: {
            rec["key"]: rec["_id"] for rec in self._records(data) if rec["key"] in wanted
        }, write=False)

    def _claim(self, status: str, query: And, lease: dict[str, Any], now: float) -> Record | None:
        def claim(data: dict[str, Any]) -> Record | None:
            candidates = [rec for rec in self._select(data, query)
                          if _claimable(rec, status, now)]
            if not candidates:
                return None
            rec = min(candidates, key=lambda r: (-r["priority"], int(r["_id"])))
            old = rec["lease"]
            if rec["status"] == RUNNING and old is not None and old["until"] < now:
                rec["attempts"].append(
                    lost_attempt(rec["attempt"], old["owner"], old["started"], now))
            rec.update(status=RUNNING, attempt=rec["attempt"] + 1, lease=lease, updated_at=now)
            return rec

        return self._store.locked(claim, write=True)

    def _held(self, data: dict[str, Any], task_id: str, token: str) -> Record | None:
        for rec in self._records(data):
            if rec["_id"] == task_id:
                held = rec["status"] == RUNNING and (rec["lease"] or {}).get("token") == token
                return rec if held else None
        return None

    def _heartbeat(self, task_id: str, token: str, until: float, now: float) -> bool:
        def heartbeat(data: dict[str, Any]) -> bool:
            rec = self._held(data, task_id, token)
            if rec is not None:
                rec["lease"]["until"], rec["updated_at"] = until, now
            return rec is not None

        return self._store.locked(heartbeat, write=True)

    def _finish(self, task_id: str, token: str, sets: dict[str, Any], append: Any
                ) -> Record | None:
        def finish(data: dict[str, Any]) -> Record | None:
            rec = self._held(data, task_id, token)
            if rec is not None:
                rec.update(sets)
                if append is not None:
                    rec["attempts"].append(append)
            return rec

        return self._store.locked(finish, write=True)

    def _update(self, query: And, sets: dict[str, Any]) -> int:
        def update(data: dict[str, Any]) -> int:
            hits = self._select(data, query)
            if "key" in sets:
                others = [rec for rec in self._records(data) if rec["key"] == sets["key"]]
                if len(hits) > 1 or (others and others != hits):
                    raise KeyNotUnique(sets["key"])
            for rec in hits:
                rec.update(sets)
            return len(hits)

        return self._store.locked(update, write=True)

    def _delete(self, query: And) -> int:
        def delete(data: dict[str, Any]) -> int:
            records = self._records(data)
            kept = [rec for rec in records if not evaluate(rec, query)]
            doomed = len(records) - len(kept)
            records[:] = kept
            return doomed

        return self._store.locked(delete, write=True)

    def _counts(self, query: And) -> dict[str, int]:
        def counts(data: dict[str, Any]) -> dict[str, int]:
            out: dict[str, int] = {}
            for rec in self._select(data, query):
                out[rec["status"]] = out.get(rec["status"], 0) + 1
            return out

        return self._store.locked(counts, write=False)

    def _find(self, query: And, limit: int | None, skip: int) -> Iterator[Record]:
        found = self._store.locked(lambda data: self._select(data, query), write=False)
        return iter(found[skip:None if limit is None else skip + limit])

    def _get(self, task_id: str) -> Record | None:
        def get(data: dict[str, Any]) -> Record | None:
            return next((rec for rec in self._records(data) if rec["_id"] == task_id), None)

        return self._store.locked(get, write=False)


def _claimable(rec: Record, status: str, now: float) -> bool:
    if rec["status"] == status and (rec["not_before"] is None or rec["not_before"] <= now):
        return True
    lease = rec["lease"]
    return (rec["status"] == RUNNING and lease is not None and lease["until"] < now
            and lease["from_status"] == status)
