"""The SQLite store: one file, many pools, safe for many worker processes on one machine.

How it stays safe under concurrency (measured design, see docs/storage.md):

* WAL journal, so readers never block the writer; ``synchronous=NORMAL`` (a commit survives
  a process crash; only a power cut can lose the last transactions);
* a ``busy_timeout`` so a writer waits for the lock instead of failing "database is locked";
* every write is one short ``BEGIN IMMEDIATE`` transaction, and a claim is a single
  ``UPDATE ... WHERE id = (SELECT ... ORDER BY priority DESC, id LIMIT 1) RETURNING ...``:
  two processes can never claim the same row;
* one connection per process and thread; a forked child opens its own.

Do not put the file on a network file system; use the MongoDB backend across machines.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from taskloom.errors import StorageError, UnknownNameError
from taskloom.query import canonical_text, check_changes, check_items, normalize, sorted_keys
from taskloom.storage import RUNNING, WAITING, Pool, Record, Store
from taskloom.taskkey import to_jsonable

from taskloom_sqlite.sql import (
    COLUMNS,
    JSON_FIELDS,
    SCHEMA,
    SCHEMA_VERSION,
    sql_id,
    where,
)

#: seconds a writer waits for the database lock before giving up
BUSY_TIMEOUT = 60.0

_LEASE_CLEARED = ("lease_owner = NULL, lease_token = NULL, lease_until = NULL, "
                  "lease_started = NULL, lease_from_status = NULL")


class SQLiteStore(Store):
    """``sqlite:///relative.db`` or ``sqlite:////absolute.db``: pools in one SQLite file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.url = f"sqlite:///{path}"
        self._local = threading.local()
        with self.write() as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                for statement in SCHEMA.split(";"):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            elif version > SCHEMA_VERSION:
                raise StorageError(
                    f"{path}: schema version {version} was written by a newer taskloom "
                    f"(this one reads version {SCHEMA_VERSION})"
                )

    @classmethod
    def from_url(cls, url: str) -> SQLiteStore:
        """Open (creating if needed) the file a ``sqlite:///`` URL names."""
        prefix = "sqlite:///"
        if not url.startswith(prefix) or len(url) == len(prefix):
            raise StorageError(
                f"bad SQLite URL {url!r}: use sqlite:///relative/path.db or "
                "sqlite:////absolute/path.db"
            )
        raw = url[len(prefix):]
        if raw == ":memory:":
            raise StorageError(
                "sqlite:///:memory: would give every connection its own empty database; "
                "use memory:// for a process-local store"
            )
        return cls(Path(raw).absolute())

    def connection(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use (and again in a forked child)."""
        local = self._local
        if getattr(local, "pid", None) != os.getpid():
            local.conn = self._connect()
            local.pid = os.getpid()
        return local.conn

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None)
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.Error as exc:
            raise self.error(exc) from exc
        return conn

    def error(self, exc: sqlite3.Error) -> StorageError:
        """A :class:`StorageError` for a SQLite error, naming the file."""
        if isinstance(exc, sqlite3.DatabaseError) and "not a database" in str(exc):
            return StorageError(f"{self.path} is not a SQLite database ({exc})")
        return StorageError(f"SQLite store {self.path}: {exc}")

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction, committed on success, rolled back otherwise."""
        conn = self.connection()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise self.error(exc) from exc
        try:
            yield conn
        except BaseException as exc:
            conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise self.error(exc) from exc
            raise
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            conn.execute("ROLLBACK")
            raise self.error(exc) from exc

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of one read-only statement."""
        try:
            return self.connection().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise self.error(exc) from exc

    def pool(self, name: str, create: bool = True) -> SQLitePool:
        """The named pool; registered in the ``pools`` table on first use."""
        if not isinstance(name, str) or not name:
            raise StorageError(f"a pool name is a non-empty string, got {name!r}")
        if not self.read("SELECT 1 FROM pools WHERE name = ?", (name,)):
            if not create:
                raise UnknownNameError("pool", name, self.list_pools())
            with self.write() as conn:
                conn.execute("INSERT OR IGNORE INTO pools (name, created_at) VALUES (?, ?)",
                             (name, time.time()))
        return SQLitePool(self, name)

    def list_pools(self) -> list[str]:
        """Pool names, sorted."""
        return [row[0] for row in self.read("SELECT name FROM pools ORDER BY name")]

    def drop_pool(self, name: str) -> None:
        """Delete a pool's tasks and its entry."""
        with self.write() as conn:
            conn.execute("DELETE FROM tasks WHERE pool = ?", (name,))
            conn.execute("DELETE FROM pools WHERE name = ?", (name,))

    def close(self) -> None:
        """Close this thread's connection (other threads' close when they end)."""
        local = self._local
        if getattr(local, "pid", None) == os.getpid():
            local.conn.close()
            del local.conn, local.pid


class SQLitePool(Pool):
    """A pool: the rows of the ``tasks`` table whose ``pool`` column is its name."""

    def __init__(self, store: SQLiteStore, name: str) -> None:
        self._store = store
        self.name = name

    def _record(self, row: tuple[Any, ...]) -> Record:
        (task_id, key, definition, status, priority, res, created_at, updated_at, not_before,
         attempt, owner, token, until, started, from_status, attempts, error) = row
        lease = None if token is None else {
            "owner": owner, "token": token, "until": until, "started": started,
            "from_status": from_status}
        return {
            "_id": str(task_id), "key": key,
            "def": self._decode(task_id, "def", definition),
            "status": status, "priority": priority,
            "res": self._decode(task_id, "res", res),
            "created_at": created_at, "updated_at": updated_at, "not_before": not_before,
            "attempt": attempt, "lease": lease,
            "attempts": self._decode(task_id, "attempts", attempts),
            "error": self._decode(task_id, "error", error),
        }

    def _decode(self, task_id: int, column: str, text: Any) -> Any:
        if text is None and column in ("res", "error"):
            return None
        try:
            if not isinstance(text, str):
                raise ValueError(f"a {type(text).__name__} value, not JSON text")
            return json.loads(text)
        except ValueError as exc:
            raise StorageError(
                f"{self._store.path}: pool {self.name!r}, task {task_id}: column {column!r} "
                f"is not valid JSON ({exc}); taskloom never unpickles stored data"
            ) from exc

    def insert_many(
        self, items: Sequence[tuple[str, dict[str, Any]]], now: float
    ) -> list[tuple[str, bool]]:
        """Insert missing keys as ``waiting`` tasks in one transaction."""
        checked = check_items(items)
        out = []
        with self._store.write() as conn:
            conn.execute("INSERT OR IGNORE INTO pools (name, created_at) VALUES (?, ?)",
                         (self.name, now))
            known = dict(conn.execute(
                "SELECT key, id FROM tasks WHERE pool = ? AND key IN "
                "(SELECT value FROM json_each(?))",
                (self.name, json.dumps([key for key, _ in checked]))))
            for key, definition in checked:
                if key in known:
                    out.append((str(known[key]), False))
                    continue
                (task_id,) = conn.execute(
                    "INSERT INTO tasks (pool, key, def, status, priority, created_at, "
                    "updated_at, attempt, attempts) VALUES (?, ?, ?, ?, 0, ?, ?, 0, '[]') "
                    "RETURNING id",
                    (self.name, key, canonical_text(definition), WAITING, now, now),
                ).fetchone()
                known[key] = task_id
                out.append((str(task_id), True))
        return out

    def ids_for_keys(self, keys: Sequence[str]) -> dict[str, str]:
        """``{key: id}`` for the keys present, through the unique ``(pool, key)`` index."""
        rows = self._store.read(
            "SELECT key, id FROM tasks WHERE pool = ? AND key IN (SELECT value FROM json_each(?))",
            (self.name, json.dumps(list(keys))))
        return {key: str(task_id) for key, task_id in rows}

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
        """Claim the best claimable task with one ``UPDATE ... RETURNING``."""
        condition, cond_params = where(normalize(query))
        sql = f"""
            UPDATE tasks SET
                attempts = CASE WHEN status = 'running' AND lease_until < ?
                    THEN json_insert(attempts, '$[#]', json_object(
                        'attempt', attempt, 'ended', ?, 'outcome', 'lease expired',
                        'owner', lease_owner, 'started', lease_started))
                    ELSE attempts END,
                status = 'running', attempt = attempt + 1, updated_at = ?,
                lease_owner = ?, lease_token = ?, lease_until = ?, lease_started = ?,
                lease_from_status = ?
            WHERE id = (
                SELECT id FROM (
                    SELECT * FROM (
                        SELECT id, priority FROM tasks
                        WHERE pool = ? AND status = ? AND (not_before IS NULL OR not_before <= ?)
                            AND {condition}
                        ORDER BY priority DESC, id LIMIT 1)
                    UNION ALL
                    SELECT * FROM (
                        SELECT id, priority FROM tasks
                        WHERE pool = ? AND status = 'running' AND lease_until < ?
                            AND lease_from_status = ? AND {condition}
                        ORDER BY priority DESC, id LIMIT 1))
                ORDER BY priority DESC, id LIMIT 1)
            RETURNING {COLUMNS}"""
        params = [now, now, now, owner, token, now + lease_seconds, now, status,
                  self.name, status, now, *cond_params,
                  self.name, now, status, *cond_params]
        with self._store.write() as conn:
            row = conn.execute(sql, params).fetchone()
        return None if row is None else self._record(row)

    def heartbeat(self, task_id: str, token: str, until: float, now: float) -> bool:
        """Extend the lease if ``token`` holds it."""
        with self._store.write() as conn:
            cursor = conn.execute(
                "UPDATE tasks SET lease_until = ?, updated_at = ? "
                "WHERE id = ? AND pool = ? AND status = 'running' AND lease_token = ?",
                (until, now, sql_id(task_id), self.name, token))
        return cursor.rowcount == 1

    def _assignments(self, changes: dict[str, Any]) -> tuple[list[str], list[Any]]:
        sets, params = [], []
        for field, value in changes.items():
            if field == "updated_at":  # every write sets it to ``now``
                continue
            sets.append(f"{field} = ?")
            if field in JSON_FIELDS:
                value = None if value is None and field in ("res", "error") else \
                    canonical_text(value)
            params.append(value)
        return sets, params

    def finish(
        self,
        task_id: str,
        token: str,
        changes: dict[str, Any],
        history: dict[str, Any] | None,
        now: float,
    ) -> Record | None:
        """Fenced end of an attempt: one ``UPDATE`` guarded by the lease token."""
        checked = check_changes(changes)
        entry = sorted_keys(to_jsonable(history)) if history else None
        if entry is not None and "attempts" in checked:
            checked["attempts"] = [*checked["attempts"], entry]
            entry = None
        sets, params = self._assignments(checked)
        if entry is not None:
            sets.append("attempts = json_insert(attempts, '$[#]', json(?))")
            params.append(canonical_text(entry))
        sql = (f"UPDATE tasks SET {', '.join([*sets, _LEASE_CLEARED, 'updated_at = ?'])} "
               "WHERE id = ? AND pool = ? AND status = 'running' AND lease_token = ? "
               f"RETURNING {COLUMNS}")
        with self._store.write() as conn:
            row = conn.execute(sql, [*params, now, sql_id(task_id), self.name, token]).fetchone()
        return None if row is None else self._record(row)

    def counts(self, query: dict[str, Any]) -> dict[str, int]:
        """``{status: n}`` by ``GROUP BY status``; payloads are not decoded."""
        condition, params = where(normalize(query))
        rows = self._store.read(
            f"SELECT status, COUNT(*) FROM tasks WHERE pool = ? AND {condition} GROUP BY status",
            [self.name, *params])
        return dict(rows)

    def find(
        self, query: dict[str, Any], *, limit: int | None = None, skip: int = 0
    ) -> Iterator[Record]:
        """Matching records in id (creation) order; rows are fetched at once, decoded lazily."""
        condition, params = where(normalize(query))
        rows = self._store.read(
            f"SELECT {COLUMNS} FROM tasks WHERE pool = ? AND {condition} "
            "ORDER BY id LIMIT ? OFFSET ?",
            [self.name, *params, -1 if limit is None else limit, skip])
        return (self._record(row) for row in rows)

    def get(self, task_id: str) -> Record | None:
        """The record with this id, or None."""
        rows = self._store.read(f"SELECT {COLUMNS} FROM tasks WHERE id = ? AND pool = ?",
                                (sql_id(task_id), self.name))
        return self._record(rows[0]) if rows else None

    def update_many(self, query: dict[str, Any], changes: dict[str, Any], now: float) -> int:
        """Set fields on matching tasks; a status other than running clears the lease."""
        checked = check_changes(changes)
        condition, cond_params = where(normalize(query))
        sets, params = self._assignments(checked)
        sets.append("updated_at = ?")
        if "status" in checked and checked["status"] != RUNNING:
            sets.append(_LEASE_CLEARED)
        sql = f"UPDATE tasks SET {', '.join(sets)} WHERE pool = ? AND {condition}"
        try:
            with self._store.write() as conn:
                cursor = conn.execute(sql, [*params, now, self.name, *cond_params])
        except StorageError as exc:
            if isinstance(exc.__cause__, sqlite3.IntegrityError) and "key" in checked:
                raise StorageError(f"pool {self.name!r}: task key {checked['key']!r} would "
                                   "not be unique") from exc
            raise
        return cursor.rowcount

    def delete_many(self, query: dict[str, Any]) -> int:
        """Delete matching tasks."""
        condition, params = where(normalize(query))
        with self._store.write() as conn:
            cursor = conn.execute(f"DELETE FROM tasks WHERE pool = ? AND {condition}",
                                  [self.name, *params])
        return cursor.rowcount
