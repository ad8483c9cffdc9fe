"""The SQLite store: one file, many pools, safe for many worker processes on one machine.

How it stays safe under concurrency (measured design, see docs/storage.md):

* WAL journal, so readers never block the writer; ``synchronous=NORMAL`` (a commit survives
  a process crash; only a power cut can lose the last transactions);
* a ``busy_timeout`` so a writer waits for the lock instead of failing "database is locked";
* every write is one short transaction: a write of one statement runs on its own in
  autocommit mode (SQLite takes the write lock when the statement starts, waiting for it as
  ``busy_timeout`` says, and commits when it ends), a longer one in ``BEGIN IMMEDIATE``;
* a claim is a single ``UPDATE ... WHERE id = (SELECT ... ORDER BY priority DESC, id
  LIMIT 1) RETURNING ...``: two processes can never claim the same row;
* one connection per process and thread; a forked child opens its own.

Do not put the file on a network file system; use the MongoDB backend across machines.
"""

from __future__ import annotations

import functools
import json
import os
import sqlite3
import threading
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from taskloom.backend import (
    LEASE_EXPIRED,
    RUNNING,
    And,
    CorruptRecord,
    KeyNotUnique,
    NewTask,
    Node,
    Pool,
    QueryError,
    Record,
    StorageError,
    Store,
    canonical_text,
    new_record,
)

from taskloom_sqlite.sql import (
    COLUMNS,
    JSON_FIELDS,
    NULL_WHEN_NONE,
    SCHEMA,
    SCHEMA_VERSION,
    UPGRADES,
    nesting,
    sql_id,
    where,
)

#: seconds a writer waits for the database lock before giving up
BUSY_TIMEOUT = 60.0
#: parses stored JSON text (see ``_parse``)
_DECODER = json.JSONDecoder()

#: ``(key, id)`` of a pool's tasks whose keys are in a JSON list
_IDS_FOR_KEYS = ("SELECT key, id FROM tasks WHERE pool = ? AND key IN "
                 "(SELECT value FROM json_each(?))")
_LEASE_CLEARED = ("lease_owner = NULL, lease_token = NULL, lease_until = NULL, "
                  "lease_started = NULL, lease_from_status = NULL")

# The claim's parameters are numbered, so that each value is bound once: ?1 now, ?2 the
# lease owner, ?3 its token, ?4 its expiry, ?5 the status claimed, ?6 the pool. The plain
# ``?`` of a query condition take the next numbers, one set per place the condition appears.

#: the best claimable task of a pool that matches ``{condition}``: waiting (or whatever
#: status is claimed) and past its ``not_before``
_CLAIMABLE = """
    SELECT id FROM tasks
    WHERE pool = ?6 AND status = ?5 AND (not_before IS NULL OR not_before <= ?1)
        AND {condition}
    ORDER BY priority DESC, id LIMIT 1"""
#: the best running task of a pool that matches ``{condition}`` whose lease has expired
_EXPIRED = """
    SELECT id FROM tasks
    WHERE pool = ?6 AND status = 'running' AND lease_until < ?1 AND lease_from_status = ?5
        AND {condition}
    ORDER BY priority DESC, id LIMIT 1"""
#: what a claim returns: the columns whose new values it does not set itself (status,
#: ``updated_at`` and the lease are known without reading them back)
_CLAIM_RETURNING = ("id, key, def, types, priority, res, created_at, not_before, attempt, "
                    "attempts, error")
#: what a finish returns: every column but ``updated_at`` and the lease, which it sets
_FINISH_RETURNING = ("id, key, def, types, status, priority, res, created_at, not_before, attempt, "
                     "attempts, error")
#: ``attempts`` with a history entry appended. The history of a task ending its first attempt
#: is ``[]``: the entry's canonical text is then put in brackets as it is, instead of having
#: SQLite parse both texts and write the array out again (which took a tenth of a no-op
#: task's time in the store); a longer history goes through ``json_insert``.
_APPEND_HISTORY = ("CASE WHEN attempts = '[]' THEN '[' || ? || ']' "
                   "ELSE json_insert(attempts, '$[#]', json(?)) END")
#: A claim: one UPDATE that takes the better of the two candidates by priority, then id.
#: Comparing them is only worth its cost when an expired lease exists at all, which an index
#: probe over the pool's few running rows tells; otherwise the claimable candidate alone is
#: the answer. A reclaim records the lost attempt in the history.
_CLAIM = f"""
UPDATE tasks SET
    attempts = CASE WHEN status = 'running' AND lease_until < ?1
        THEN json_insert(attempts, '$[#]', json_object(
            'attempt', attempt, 'ended', ?1, 'outcome', '{LEASE_EXPIRED}',
            'owner', lease_owner, 'started', lease_started))
        ELSE attempts END,
    status = 'running', attempt = attempt + 1, updated_at = ?1,
    lease_owner = ?2, lease_token = ?3, lease_until = ?4, lease_started = ?1,
    lease_from_status = ?5
WHERE id = CASE
    WHEN EXISTS (SELECT 1 FROM tasks WHERE pool = ?6 AND status = 'running'
                 AND lease_until < ?1 AND lease_from_status = ?5)
    THEN (SELECT id FROM tasks WHERE id IN (({_CLAIMABLE}), ({_EXPIRED}))
          ORDER BY priority DESC, id LIMIT 1)
    ELSE ({_CLAIMABLE})
    END
RETURNING {_CLAIM_RETURNING}"""


@functools.lru_cache(maxsize=128)
def _claim_sql(condition: str) -> str:
    """The claim statement for a query's condition.

    Cached so that the same string object comes back: sqlite3 finds its prepared statement
    by the text, and a new 2 KB string would have to be built and hashed on every claim.
    """
    return _CLAIM.format(condition=condition)


@functools.lru_cache(maxsize=128)
def _set_clause(fields: tuple[str, ...]) -> str:
    """The ``SET`` list for the fields of a primitive's ``sets`` (cached, as are statements).

    Each field takes one parameter, in order, except ``lease``, which is only ever cleared.
    """
    return ", ".join(_LEASE_CLEARED if field == "lease" else f"{field} = ?" for field in fields)


@functools.lru_cache(maxsize=128)
def _finish_sql(fields: tuple[str, ...], append_history: bool, returning: bool) -> str:
    """The fenced UPDATE of :meth:`SQLitePool._finish` that sets ``fields`` (cached likewise).

    Its parameters are the fields' values, the history entry's canonical text twice when
    ``append_history`` (see :data:`_APPEND_HISTORY`), then the id, the pool and the lease
    token. With ``returning`` it gives back the columns of :data:`_FINISH_RETURNING` (what
    ``_finish`` needs; ``_end`` needs only the row count).
    """
    sets = _set_clause(fields)
    if append_history:
        sets += f", attempts = {_APPEND_HISTORY}"
    return (f"UPDATE tasks SET {sets} "
            "WHERE id = ? AND pool = ? AND status = 'running' AND lease_token = ?"
            + (f" RETURNING {_FINISH_RETURNING}" if returning else ""))


def _assignments(sets: Mapping[str, Any]) -> tuple[tuple[str, ...], list[Any]]:
    """The fields of a primitive's ``sets`` and their column values (no value for ``lease``)."""
    params = []
    for field, value in sets.items():
        if field == "lease":
            continue
        if field in JSON_FIELDS:
            value = None if value is None and field in NULL_WHEN_NONE else canonical_text(value)
        params.append(value)
    return tuple(sets), params


def _parse(text: str) -> Any:
    """The value of JSON text, exactly as ``json.loads`` gives it (or fails).

    Stored text is compact canonical JSON: ``raw_decode`` parses it without the two
    whitespace scans that take a third of ``json.loads``'s time on small values. Text that it
    does not parse to its very end (surrounding whitespace, or not JSON) goes to
    ``json.loads``.
    """
    try:
        value, end = _DECODER.raw_decode(text)
        if end == len(text):
            return value
    except ValueError:
        pass
    return json.loads(text)


# URL parsing: ``sqlite:///path?mode=...``

#: the ``?mode=`` values a URL may give: SQLite's own URI modes
URL_MODES: tuple[str, ...] = ("ro", "rw", "rwc")


def _parse_url(url: str) -> tuple[Path, str]:
    """The absolute path and the open mode a ``sqlite:///`` URL names.

    A ``?`` starts URL parameters, so ``sqlite:///x.db?mode=ro`` is the file ``x.db`` opened
    read-only (never a file named ``x.db?mode=ro``); ``mode`` is the only parameter, and an
    unknown one is a ``StorageError`` naming it.
    """
    prefix = "sqlite:///"
    raw, _, query = url[len(prefix):].partition("?")
    if not url.startswith(prefix) or not raw:
        raise StorageError(
            f"bad SQLite URL {url!r}: use sqlite:///relative/path.db or "
            "sqlite:////absolute/path.db"
        )
    if raw == ":memory:":
        raise StorageError(
            "sqlite:///:memory: would give every connection its own empty database; "
            "use memory:// for a process-local store"
        )
    params = urllib.parse.parse_qs(query, keep_blank_values=True)
    unknown = sorted(set(params) - {"mode"})
    if unknown:
        raise StorageError(f"SQLite URL {url!r}: unknown parameter {unknown[0]!r}; "
                           f"the only one is mode={'|'.join(URL_MODES)}")
    modes = params.get("mode", ["rwc"])
    if len(modes) != 1 or modes[0] not in URL_MODES:
        raise StorageError(f"SQLite URL {url!r}: mode={'&mode='.join(modes)} is not one of "
                           f"{', '.join(URL_MODES)}")
    return Path(raw).absolute(), modes[0]


class SQLiteStore(Store):
    """``sqlite:///relative.db`` or ``sqlite:////absolute.db``: pools in one SQLite file.

    ``?mode=ro`` opens an existing store read-only, ``?mode=rw`` read-write without creating it;
    the default, ``rwc``, creates the file and its schema when missing (SQLite's URI modes).
    """

    def __init__(self, path: Path, mode: str = "rwc") -> None:
        self.path = path
        self.mode = mode
        self.url = f"sqlite:///{path}" + ("" if mode == "rwc" else f"?mode={mode}")
        self._local = threading.local()
        if mode != "rwc":
            self._check_existing()
            return
        with self.write() as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                for statement in SCHEMA.split(";"):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            elif version < SCHEMA_VERSION:
                for old in range(version, SCHEMA_VERSION):
                    conn.execute(UPGRADES[old])
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            elif version > SCHEMA_VERSION:
                raise self._newer_schema(version)

    def _check_existing(self) -> None:
        """For the modes that never create: the file must exist and hold a taskloom schema."""
        if not self.path.exists():
            raise StorageError(f"no such store: {self.path} does not exist")
        if not self.path.is_file():
            raise StorageError(f"no such store: {self.path} is not a file")
        version = self.read("PRAGMA user_version")[0][0]
        if version == 0:
            raise StorageError(f"no such store: {self.path} holds no taskloom pools")
        if version > SCHEMA_VERSION:
            raise self._newer_schema(version)

    def _newer_schema(self, version: int) -> StorageError:
        return StorageError(
            f"{self.path}: schema version {version} was written by a newer taskloom "
            f"(this one reads version {SCHEMA_VERSION})"
        )

    @classmethod
    def from_url(cls, url: str) -> SQLiteStore:
        """Open the file a ``sqlite:///`` URL names, creating it unless ``?mode=`` says not to."""
        path, mode = _parse_url(url)
        return cls(path, mode)

    @classmethod
    def open_existing(cls, url: str) -> SQLiteStore:
        """Open the store a ``sqlite:///`` URL names; a missing file is a ``StorageError``."""
        path, mode = _parse_url(url)
        return cls(path, "rw" if mode == "rwc" else mode)

    def connection(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use (and again in a forked child)."""
        local = self._local
        if getattr(local, "pid", None) != os.getpid():
            local.conn = self._connect()
            local.pid = os.getpid()
        return local.conn

    def _connect(self) -> sqlite3.Connection:
        try:
            uri = f"file:{urllib.parse.quote(str(self.path))}?mode={self.mode}"
            conn = sqlite3.connect(uri, timeout=BUSY_TIMEOUT, isolation_level=None, uri=True)
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
            if self.mode == "rwc":  # a store that exists has its journal mode (WAL persists)
                conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.Error as exc:
            raise self.error(exc) from exc
        return conn

    def error(self, exc: sqlite3.Error, query: Node | None = None) -> StorageError | QueryError:
        """A :class:`StorageError` for a SQLite error, naming the file.

        A statement built from a ``query`` that SQLite cannot parse because it nests too
        deeply ("parser stack overflow") is the query's fault: a :class:`QueryError` says how
        deep it nests and what to do instead.
        """
        if isinstance(exc, sqlite3.DatabaseError) and "not a database" in str(exc):
            return StorageError(f"{self.path} is not a SQLite database ({exc})")
        if query is not None and "parser stack overflow" in str(exc):
            return QueryError(
                f"the query nests $and/$or {nesting(query)} levels deep, more than the SQLite "
                f"store can translate ({exc}); merge nested $and (or nested $or) levels, or "
                "split the query in several"
            )
        return StorageError(f"SQLite store {self.path}: {exc}")

    @contextmanager
    def write(self, query: Node | None = None) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction, committed on success, rolled back otherwise.

        ``query`` is the query its statements were built from, if any (see :meth:`error`).
        """
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
                raise self.error(exc, query) from exc
            raise
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            conn.execute("ROLLBACK")
            raise self.error(exc) from exc

    def write_one(
        self, sql: str, params: Sequence[Any], query: Node | None = None
    ) -> tuple[list[tuple[Any, ...]], int]:
        """Run one write statement as its own transaction; its rows and its row count.

        In autocommit mode the statement takes the write lock when it starts (waiting for it
        like ``BEGIN IMMEDIATE``) and commits when it ends, so it is exactly as atomic as
        ``BEGIN IMMEDIATE``, the statement, ``COMMIT``, with two round trips fewer and the
        lock held only while SQLite works. All rows are fetched: a ``RETURNING`` statement
        ends, and commits, only once its last row has been read. ``query`` is the query the
        statement was built from, if any (see :meth:`error`).
        """
        try:
            cursor = self.connection().execute(sql, params)
            rows = cursor.fetchall()
        except sqlite3.Error as exc:
            raise self.error(exc, query) from exc
        return rows, cursor.rowcount

    def read(
        self, sql: str, params: Sequence[Any] = (), query: Node | None = None
    ) -> list[tuple[Any, ...]]:
        """Rows of one read-only statement; ``query`` as for :meth:`write_one`."""
        try:
            return self.connection().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise self.error(exc, query) from exc

    def _has_pool(self, name: str) -> bool:
        return bool(self.read("SELECT 1 FROM pools WHERE name = ?", (name,)))

    def _create_pool(self, name: str, now: float) -> None:
        self.write_one("INSERT OR IGNORE INTO pools (name, created_at) VALUES (?, ?)", (name, now))

    def _open_pool(self, name: str) -> SQLitePool:
        return SQLitePool(self, name)

    def _list_pools(self) -> list[str]:
        return [row[0] for row in self.read("SELECT name FROM pools")]

    def _drop_pool(self, name: str) -> None:
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
        #: the last claim query tree and its SQL condition: a worker loop claims with one
        #: tree again and again, and a trainer's lists every task id of its study
        self._last_claim: tuple[And, tuple[str, list[Any]]] | None = None

    def _record(
        self, row: tuple[Any, ...], written: Mapping[str, Any] | None = None
    ) -> Record | CorruptRecord:
        """The record a row of :data:`COLUMNS` holds, or what makes it unreadable.

        ``written`` holds JSON fields that the statement returning the row has just stored
        (canonical data, equal to what decoding their text gives back); they are taken as
        they are instead of being parsed again.
        """
        (task_id, key, definition, types, status, priority, res, created_at, updated_at,
         not_before, attempt, owner, token, until, started, from_status, attempts, error) = row
        lease = None if token is None else {
            "owner": owner, "token": token, "until": until, "started": started,
            "from_status": from_status}
        written = written or {}
        try:
            return {
                "_id": str(task_id), "key": key,
                "def": written["def"] if "def" in written else _decode("def", definition),
                "types": written["types"] if "types" in written else _decode("types", types),
                "status": status, "priority": priority,
                "res": written["res"] if "res" in written else _decode("res", res),
                "created_at": created_at, "updated_at": updated_at, "not_before": not_before,
                "attempt": attempt, "lease": lease,
                "attempts": written["attempts"] if "attempts" in written else
                _decode("attempts", attempts),
                "error": written["error"] if "error" in written else _decode("error", error),
            }
        except ValueError as exc:
            return CorruptRecord(str(task_id), f"{exc} in {self._store.path}")

    def _insert(self, items: list[NewTask], now: float) -> list[tuple[str, bool]]:
        """Insert missing keys in one transaction.

        The new rows go in with one ``executemany``; their ids are then read back through
        the ``(pool, key)`` index, like those of the keys that were there already.
        """
        rows = []
        with self._store.write() as conn:
            conn.execute("INSERT OR IGNORE INTO pools (name, created_at) VALUES (?, ?)",
                         (self.name, now))
            known = dict(conn.execute(_IDS_FOR_KEYS,
                                      (self.name, json.dumps([key for key, _, _ in items]))))
            for key, definition, types in items:
                if key not in known:
                    rec = new_record(key, definition, types, now)
                    rows.append((self.name, key, canonical_text(definition),
                                 None if types is None else canonical_text(types),
                                 rec["status"], rec["priority"], now, now, rec["attempt"],
                                 canonical_text(rec["attempts"])))
            if rows:
                conn.executemany(
                    "INSERT INTO tasks (pool, key, def, types, status, priority, created_at, "
                    "updated_at, attempt, attempts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
                fresh = [row[1] for row in rows]
                known.update(conn.execute(_IDS_FOR_KEYS, (self.name, json.dumps(fresh))))
        created = {row[1] for row in rows}
        return [(str(known[key]), key in created) for key, _, _ in items]

    def _ids_for_keys(self, keys: list[str]) -> dict[str, str]:
        rows = self._store.read(_IDS_FOR_KEYS, (self.name, json.dumps(keys)))
        return {key: str(task_id) for key, task_id in rows}

    def _claim(
        self, status: str, query: And, lease: dict[str, Any], now: float
    ) -> Record | CorruptRecord | None:
        """Claim the best claimable task with one ``UPDATE ... RETURNING`` (see ``_CLAIM``)."""
        rows, _ = self._store.write_one(*self._claim_statement(status, query, lease, now),
                                        query)
        return self._claimed(rows, status, lease, now)

    def _claim_statement(
        self, status: str, query: And, lease: dict[str, Any], now: float
    ) -> tuple[str, list[Any]]:
        """The claim's SQL (see ``_CLAIM``) and its parameters."""
        last = self._last_claim
        if last is not None and last[0] is query:
            condition, cond_params = last[1]
        else:
            condition, cond_params = where(query)
            self._last_claim = (query, (condition, cond_params))
        return _claim_sql(condition), [now, lease["owner"], lease["token"], lease["until"],
                                       status, self.name, *cond_params * 3]

    def _claimed(
        self, rows: list[tuple[Any, ...]], status: str, lease: dict[str, Any], now: float
    ) -> Record | CorruptRecord | None:
        """The record a claim's returned rows stand for, or None when it claimed nothing."""
        if not rows:
            return None
        (task_id, key, definition, types, priority, res, created_at, not_before, attempt,
         attempts, error) = rows[0]
        return self._record((task_id, key, definition, types, RUNNING, priority, res,
                             created_at, now, not_before, attempt, lease["owner"],
                             lease["token"], lease["until"], now, status, attempts, error))

    def _heartbeat(self, task_id: str, token: str, until: float, now: float) -> bool:
        _, count = self._store.write_one(
            "UPDATE tasks SET lease_until = ?, updated_at = ? "
            "WHERE id = ? AND pool = ? AND status = 'running' AND lease_token = ?",
            (until, now, sql_id(task_id), self.name, token))
        return count == 1

    def _finish(
        self, task_id: str, token: str, sets: dict[str, Any], append: Any
    ) -> Record | CorruptRecord | None:
        """Fenced end of an attempt: one ``UPDATE`` guarded by the lease token."""
        fields, params = _assignments(sets)
        if append is not None:
            params += [canonical_text(append)] * 2
        rows, _ = self._store.write_one(_finish_sql(fields, append is not None, True),
                                        [*params, sql_id(task_id), self.name, token])
        if not rows:
            return None
        (row_id, key, definition, types, status, priority, res, created_at, not_before,
         attempt, attempts, error) = rows[0]
        return self._record((row_id, key, definition, types, status, priority, res,
                             created_at, sets["updated_at"], not_before, attempt, None, None,
                             None, None, None, attempts, error),
                            {f: v for f, v in sets.items() if f in JSON_FIELDS})

    def _end(self, task_id: str, token: str, sets: dict[str, Any], append: Any) -> bool:
        """The fenced ``UPDATE`` of :meth:`_finish` with no ``RETURNING``: nothing to decode."""
        _, count = self._store.write_one(*self._end_statement(task_id, token, sets, append))
        return count == 1

    def _end_statement(
        self, task_id: str, token: str, sets: dict[str, Any], append: Any
    ) -> tuple[str, list[Any]]:
        """The SQL of :meth:`_end` and its parameters."""
        fields, params = _assignments(sets)
        if append is not None:
            params += [canonical_text(append)] * 2
        return (_finish_sql(fields, append is not None, False),
                [*params, sql_id(task_id), self.name, token])

    def _end_and_claim(
        self, task_id: str, token: str, sets: dict[str, Any], append: Any, status: str,
        query: And, lease: dict[str, Any], now: float,
    ) -> tuple[bool, Record | CorruptRecord | None]:
        """The UPDATE of :meth:`_end` and the claim in one ``BEGIN IMMEDIATE`` transaction.

        One lock and one commit instead of two, and the pages both change (the claim index,
        neighbouring rows) go to the WAL once: measured 15-20% less SQLite time per task.
        """
        with self._store.write(query) as conn:
            ended = conn.execute(*self._end_statement(task_id, token, sets, append)).rowcount
            rows = conn.execute(*self._claim_statement(status, query, lease, now)).fetchall()
        return ended == 1, self._claimed(rows, status, lease, now)

    def _update(self, query: And, sets: dict[str, Any]) -> int:
        condition, cond_params = where(query)
        fields, params = _assignments(sets)
        sql = f"UPDATE tasks SET {_set_clause(fields)} WHERE pool = ? AND {condition}"
        try:
            _, count = self._store.write_one(sql, [*params, self.name, *cond_params], query)
        except StorageError as exc:
            if isinstance(exc.__cause__, sqlite3.IntegrityError) and "key" in sets:
                raise KeyNotUnique(sets["key"]) from exc
            raise
        return count

    def _delete(self, query: And) -> int:
        condition, params = where(query)
        _, count = self._store.write_one(f"DELETE FROM tasks WHERE pool = ? AND {condition}",
                                         [self.name, *params], query)
        return count

    def _counts(self, query: And) -> dict[str, int]:
        """``{status: n}`` by ``GROUP BY status``; payloads are not decoded."""
        condition, params = where(query)
        rows = self._store.read(
            f"SELECT status, COUNT(*) FROM tasks WHERE pool = ? AND {condition} GROUP BY status",
            [self.name, *params], query)
        return dict(rows)

    def _find(
        self, query: And, limit: int | None, skip: int
    ) -> Iterator[Record | CorruptRecord]:
        """Matching rows in id (creation) order; fetched at once, decoded lazily."""
        condition, params = where(query)
        rows = self._store.read(
            f"SELECT {COLUMNS} FROM tasks WHERE pool = ? AND {condition} "
            "ORDER BY id LIMIT ? OFFSET ?",
            [self.name, *params, -1 if limit is None else limit, skip], query)
        return (self._record(row) for row in rows)

    def _get(self, task_id: str) -> Record | CorruptRecord | None:
        rows = self._store.read(f"SELECT {COLUMNS} FROM tasks WHERE id = ? AND pool = ?",
                                (sql_id(task_id), self.name))
        return self._record(rows[0]) if rows else None


def _decode(column: str, text: Any) -> Any:
    """The value of a JSON column; a ValueError naming the column if it is not JSON text."""
    if text is None and column in NULL_WHEN_NONE:
        return None
    if text == "[]":  # the history of every task that has not ended an attempt yet
        return []
    try:
        if not isinstance(text, str):
            raise ValueError(f"a {type(text).__name__} value, not JSON text")
        return _parse(text)
    except ValueError as exc:
        raise ValueError(f"column {column!r} is not valid JSON ({exc})") from exc
