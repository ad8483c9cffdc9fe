"""The storage contract: public ``Store``/``Pool`` methods built once on a few primitives.

A *store* (a SQLite file, a MongoDB database, a process-local dict) holds named *pools*; a
pool holds task records. The public methods of :class:`Pool` and :class:`Store` are concrete
*template methods*: they validate their input, apply the rules every backend shares (the
lease is cleared when a status leaves ``running``, a duplicate key is reported the same way,
a corrupt record is skipped and reported) and then call a handful of abstract primitives
(``_insert``, ``_claim``, ``_heartbeat``, ``_finish``, ``_update``, ``_delete``, ``_counts``,
``_find``, ``_get``, ``_ids_for_keys``; ``_has_pool``, ``_create_pool``, ``_open_pool``,
``_list_pools``, ``_drop_pool``) that receive checked input. A backend implements only the
primitives, in the spirit of huey's ``BaseStorage``; ``_end`` and ``_end_and_claim`` are
optional ones, with defaults built on ``_finish`` and ``_claim``. The contract stays small
and atomic:

* insert-if-absent by task key, a whole batch atomically;
* claim one task (highest priority first, FIFO within a priority, only tasks whose
  ``not_before`` has passed, also reclaiming running tasks whose lease expired);
* heartbeat and finish, both *fenced*: only the holder of the current lease token succeeds;
* counts by status without decoding payloads, queries, unguarded updates and deletes.

The :class:`taskloom.TaskManager` builds qlib's API, leases, retries and failure records on
top, and :mod:`taskloom.testing.backend` is the suite that checks a backend keeps it.

Task record (what every read returns; a plain JSON-compatible dict)::

    {
      "_id": "17",                     # opaque string id, unique in the store
      "key": "<sha256 hex>",           # taskloom.task_key(def); unique in the pool
      "def": {...},                    # the task definition, canonical JSON data
      "types": None | {...},           # JSON given at insert (a type map), returned as is
      "status": "waiting",             # see TaskStatus; backends accept any string
      "priority": 0,                   # higher is claimed first; never-set means 0
      "res": None,                     # JSON result, None when there is none
      "created_at": 1700000000.0,      # epoch seconds (floats everywhere: no tz, no ms cuts)
      "updated_at": 1700000000.0,
      "not_before": None,              # epoch seconds; not claimable before it (retry backoff)
      "attempt": 0,                    # how many times the task was claimed
      "lease": None | {"owner": str, "token": str, "until": float,
                       "started": float, "from_status": str},
      "attempts": [ {...}, ... ],      # history entries appended by finish() and reclaims
      "error": None | {"type": str, "message": str, "traceback": str},
    }

Queries are a Mongo-style subset over these records, validated by :mod:`taskloom.query`.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

from taskloom.errors import StorageError, UnknownNameError
from taskloom.query import And, Cond, NewTask, check_changes, check_items, normalize
from taskloom.record import (  # noqa: F401 - re-exported: the contract speaks of these
    LEASE_EXPIRED,
    RECORD_FIELDS,
    CorruptRecord,
    Record,
    lost_attempt,
    new_record,
)
from taskloom.status import (  # noqa: F401 - re-exported: the contract speaks of these
    CANCELLED,
    DONE,
    FAILED,
    PART_DONE,
    RUNNING,
    STATUSES,
    UNDONE,
    WAITING,
    TaskStatus,
)
from taskloom.taskkey import is_canonical, to_canonical

log = logging.getLogger(__name__)

#: the ``error.type`` of a task that a claim found corrupt and marked failed
CORRUPT_RECORD = "CorruptRecord"


class KeyNotUnique(Exception):
    """Raised by an update primitive when the unique task-key index rejects the change."""


def _check_text(field: str, value: Any) -> str:
    if type(value) is str and value:  # the common case first: these run on every claim
        return value
    if not isinstance(value, str) or not value:
        raise StorageError(f"{field} must be a non-empty string, got {value!r:.80}")
    return str(value)  # a TaskStatus becomes its plain value


def _check_number(field: str, value: Any, *, positive: bool = False) -> float:
    if (type(value) is float or type(value) is int) and (not positive or value > 0):
        return value
    kind = "a positive number" if positive else "a number"
    raise StorageError(f"{field} must be {kind}, got {value!r:.80}")


def _check_count(field: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise StorageError(f"{field} must be an integer >= 0, got {value!r:.80}")
    return value


def _claim_input(
    status: Any, query: Any, owner: Any, token: Any, lease_seconds: Any, now: Any
) -> tuple[str, And, dict[str, Any]]:
    """The checked status, query tree and new lease of :meth:`Pool.claim`."""
    status = _check_text("status", status)
    node = normalize(query)
    now = _check_number("now", now)
    lease = {"owner": _check_text("owner", owner), "token": _check_text("token", token),
             "until": now + _check_number("lease_seconds", lease_seconds, positive=True),
             "started": now, "from_status": status}
    return status, node, lease


def _finish_input(
    changes: dict[str, Any], history: dict[str, Any] | None, now: float
) -> tuple[dict[str, Any], Any]:
    """The checked ``sets`` and history entry of :meth:`Pool.finish` and :meth:`Pool.end`."""
    now = _check_number("now", now)
    sets = check_changes(changes)
    sets["lease"], sets["updated_at"] = None, now
    entry = None
    if history:
        entry = history if is_canonical(history) else to_canonical(history)
    if entry is not None and "attempts" in sets:
        sets["attempts"], entry = [*sets["attempts"], entry], None
    return sets, entry


class Pool(ABC):
    """One named pool of task records inside a store. All methods are safe across processes.

    The public methods check their input and call the primitives (the abstract ``_`` methods)
    with checked data: a normalised query tree, canonical JSON values, plain strings.
    """

    name: str

    # ----------------------------------------------------------------------------------------
    # the public contract (template methods)
    # ----------------------------------------------------------------------------------------

    def insert_many(self, items: Sequence[Sequence[Any]], now: float) -> list[tuple[str, bool]]:
        """Insert ``(key, def)`` or ``(key, def, types)`` items as ``waiting`` unless present.

        Returns ``(id, created)`` aligned with ``items``; a key repeated inside the batch
        resolves to one id (created once, with its first def). The batch is atomic: on any
        error nothing is inserted. The whole batch is checked first with
        :func:`taskloom.query.check_items`: a key that is not a non-empty string raises
        :class:`~taskloom.errors.StorageError`, a def with no JSON form
        :class:`~taskloom.errors.TaskEncodingError`. ``types`` (None or a JSON dict) is stored
        as given and is not part of the key. Inserting through the handle of a pool that was
        dropped meanwhile creates the pool again.
        """
        now = _check_number("now", now)
        checked = check_items(items)
        first: dict[str, NewTask] = {}
        for item in checked:
            first.setdefault(item[0], item)
        inserted = dict(zip(first, self._insert(list(first.values()), now) if first else [],
                            strict=True))
        out = []
        for key, _, _ in checked:
            task_id, created = inserted[key]
            out.append((task_id, created))
            inserted[key] = (task_id, False)  # a key repeated in the batch is created once
        return out

    def ids_for_keys(self, keys: Sequence[str]) -> dict[str, str]:
        """``{key: id}`` for the keys that exist in the pool (an indexed lookup)."""
        wanted = list(dict.fromkeys(keys))
        for key in wanted:
            _check_text("a task key", key)
        return self._ids_for_keys(wanted) if wanted else {}

    def claim(
        self,
        *,
        status: str,
        query: dict[str, Any] | And,
        owner: str,
        token: str,
        lease_seconds: float,
        now: float,
    ) -> Record | None:
        """Atomically claim one task and return it as stored after the claim, or None.

        Candidates match ``query`` and either have ``status`` == ``status`` and a
        ``not_before`` that is None or ``<= now``, or are ``running`` with an expired lease
        (``lease.until < now``) whose ``lease.from_status`` == ``status``. The highest
        ``priority`` wins, then creation order. The claimed record gets ``status="running"``,
        ``attempt += 1`` and ``lease = {owner, token, until: now + lease_seconds,
        started: now, from_status: status}``. When an expired lease is reclaimed, the history
        entry :func:`~taskloom.record.lost_attempt` for the lost attempt is appended to
        ``attempts`` first. ``updated_at`` becomes ``now``.

        ``query`` applies to both kinds of candidates, so a query that pins ``status`` also
        decides whether expired leases can be reclaimed. A claimed task that cannot be read
        (corrupt stored data) is never handed out: it is marked ``failed`` with an error of
        type ``CorruptRecord`` naming the row and the field, logged, and the claim goes on
        to the next candidate.
        """
        status, node, lease = _claim_input(status, query, owner, token, lease_seconds, now)
        return self._readable_claim(self._claim(status, node, lease, now), status, node, lease,
                                    now)

    def _readable_claim(self, got: Record | CorruptRecord | None, status: str, node: And,
                        lease: dict[str, Any], now: float) -> Record | None:
        """A claim's result; a corrupt task is marked failed and the claim goes on."""
        while isinstance(got, CorruptRecord):
            self._fail_corrupt(got, lease["token"], now)
            got = self._claim(status, node, lease, now)
        return got

    def _fail_corrupt(self, bad: CorruptRecord, token: str, now: float) -> None:
        """Mark a task that a claim found unreadable ``failed``, fenced by the claim's token."""
        message = self._corrupt_message(bad)
        log.error("%s; marked failed", message)
        held = And((Cond(("_id",), "$eq", bad.task_id), Cond(("status",), "$eq", str(RUNNING)),
                    Cond(("lease", "token"), "$eq", token)))
        error = {"type": CORRUPT_RECORD, "message": message, "traceback": ""}
        if not self._update(held, {"status": str(FAILED), "error": error, "lease": None,
                                   "updated_at": now}):
            raise StorageError(f"{message}; it could not be marked failed")

    def _corrupt_message(self, bad: CorruptRecord) -> str:
        return (f"pool {self.name!r}: task {bad.task_id} is corrupt ({bad.problem}); "
                "taskloom never unpickles stored data")

    def heartbeat(self, task_id: str, token: str, until: float, now: float) -> bool:
        """Extend the lease to ``until`` if ``token`` still holds it; False changes nothing.

        "Holds" means the task is ``running`` with this lease token, even if ``until`` has
        passed, as long as nobody reclaimed it. ``updated_at`` becomes ``now``.
        """
        token = _check_text("token", token)
        until, now = _check_number("until", until), _check_number("now", now)
        if not isinstance(task_id, str):
            return False
        return self._heartbeat(task_id, token, until, now)

    def finish(
        self,
        task_id: str,
        token: str,
        changes: dict[str, Any],
        history: dict[str, Any] | None,
        now: float,
    ) -> Record | None:
        """Fenced end of an attempt: apply ``changes`` only if ``token`` holds the lease.

        ``changes`` sets top-level record fields (``status``, ``res``, ``error``,
        ``not_before``...), validated by :func:`taskloom.query.check_changes` before anything
        is written. The lease is cleared, ``history`` (if given) is appended to ``attempts``
        (after ``changes``, should they set ``attempts``) and ``updated_at`` becomes ``now``.
        Returns the record after the change, or None when the task is not ``running`` under
        that token (nothing is changed then).
        """
        token = _check_text("token", token)
        sets, entry = _finish_input(changes, history, now)
        if not isinstance(task_id, str):
            return None
        got = self._finish(task_id, token, sets, entry)
        if isinstance(got, CorruptRecord):
            raise StorageError(self._corrupt_message(got))
        return got

    def end(
        self,
        task_id: str,
        token: str,
        changes: dict[str, Any],
        history: dict[str, Any] | None,
        now: float,
    ) -> bool:
        """:meth:`finish` without reading the record back: True if ``token`` held the lease.

        The same checks and the same write, for callers that only need to know whether the
        fence let it through (a worker's commit when no lifecycle hook observes the task):
        a backend may then skip returning and decoding the record.
        """
        token = _check_text("token", token)
        sets, entry = _finish_input(changes, history, now)
        if not isinstance(task_id, str):
            return False
        return self._end(task_id, token, sets, entry)

    def end_and_claim(
        self,
        task_id: str,
        token: str,
        changes: dict[str, Any],
        history: dict[str, Any] | None,
        *,
        status: str,
        query: dict[str, Any] | And,
        owner: str,
        new_token: str,
        lease_seconds: float,
        now: float,
    ) -> tuple[bool, Record | None]:
        """:meth:`end` one attempt, then :meth:`claim` the next task: ``(ended, claimed)``.

        For a worker that goes straight on to its next task. The same checks and the same
        effects as the two calls (the claim happens whether or not ``token`` held the lease;
        ``new_token`` is the new lease's), but a backend may do both in one transaction: the
        SQLite store then takes its lock and commits once instead of twice.
        """
        token = _check_text("token", token)
        sets, entry = _finish_input(changes, history, now)
        status, node, lease = _claim_input(status, query, owner, new_token, lease_seconds, now)
        if not isinstance(task_id, str):
            return False, self._readable_claim(self._claim(status, node, lease, now), status,
                                               node, lease, now)
        ended, got = self._end_and_claim(task_id, token, sets, entry, status, node, lease, now)
        return ended, self._readable_claim(got, status, node, lease, now)

    def counts(self, query: dict[str, Any]) -> dict[str, int]:
        """``{status: n}`` over matching tasks, by indexed aggregation (no payload decoding)."""
        return self._counts(normalize(query))

    def find(
        self, query: dict[str, Any], *, limit: int | None = None, skip: int = 0
    ) -> Iterator[Record]:
        """Matching records in creation order; ``limit=0`` yields nothing.

        A stored task that cannot be read is skipped and logged (a warning naming the pool,
        the task and the field), so one bad row does not hide the others; ``skip`` and
        ``limit`` count it like any row.
        """
        node = normalize(query)
        skip = _check_count("skip", skip)
        if limit is not None and _check_count("limit", limit) == 0:
            return iter(())
        return self._readable(self._find(node, limit, skip))

    def _readable(self, found: Iterator[Record | CorruptRecord]) -> Iterator[Record]:
        for record in found:
            if isinstance(record, CorruptRecord):
                log.warning("%s; skipped", self._corrupt_message(record))
            else:
                yield record

    def get(self, task_id: str) -> Record | None:
        """The record with this id, or None (also for ids that are malformed for the backend).

        A task that cannot be read raises :class:`~taskloom.errors.StorageError` naming it.
        """
        if not isinstance(task_id, str):
            return None
        got = self._get(task_id)
        if isinstance(got, CorruptRecord):
            raise StorageError(self._corrupt_message(got))
        return got

    def update_many(self, query: dict[str, Any], changes: dict[str, Any], now: float) -> int:
        """Unguarded ``$set`` of top-level record fields on matching tasks; returns the count.

        This is for administrative changes (qlib's ``reset_status``, ``prioritize``, ``retry``,
        ``cancel``). Setting ``status`` to anything but ``running`` also clears the lease.
        ``changes`` are validated as in :meth:`finish`; ``updated_at`` becomes ``now``. The
        count is of *matching* tasks, also those the change leaves as they were. Giving a task
        a ``key`` another task of the pool has raises :class:`~taskloom.errors.StorageError`.
        """
        node = normalize(query)
        sets = {**check_changes(changes), "updated_at": _check_number("now", now)}
        if "status" in sets and sets["status"] != RUNNING:
            sets["lease"] = None
        try:
            return self._update(node, sets)
        except KeyNotUnique as exc:
            raise StorageError(
                f"pool {self.name!r}: task key {sets['key']!r} would not be unique") from exc

    def delete_many(self, query: dict[str, Any]) -> int:
        """Delete matching tasks; returns how many. An empty query empties the pool."""
        return self._delete(normalize(query))

    # ----------------------------------------------------------------------------------------
    # the primitives a backend implements
    # ----------------------------------------------------------------------------------------

    @abstractmethod
    def _insert(self, items: list[NewTask], now: float) -> list[tuple[str, bool]]:
        """Insert each ``(key, def, types)`` whose key is absent, as :func:`new_record`.

        Keys are distinct; defs and types are canonical JSON data (possibly the caller's own
        objects: copy what you keep). Returns ``(id, created)`` aligned with ``items``. All or
        nothing; recreates the pool if it was dropped.
        """

    @abstractmethod
    def _ids_for_keys(self, keys: list[str]) -> dict[str, str]:
        """``{key: id}`` for those of the (distinct, non-empty) ``keys`` present."""

    @abstractmethod
    def _claim(
        self, status: str, query: And, lease: dict[str, Any], now: float
    ) -> Record | CorruptRecord | None:
        """In one atomic step, take the best candidate (see :meth:`claim`) and set its lease.

        ``lease`` is the new lease, ready to store. Return the record after the claim, a
        :class:`CorruptRecord` if it cannot be read (the claim stays done), or None.
        """

    @abstractmethod
    def _heartbeat(self, task_id: str, token: str, until: float, now: float) -> bool:
        """Set ``lease.until`` and ``updated_at`` if the task is running under ``token``."""

    @abstractmethod
    def _finish(
        self, task_id: str, token: str, sets: dict[str, Any], append: Any
    ) -> Record | CorruptRecord | None:
        """If the task is running under ``token``: write ``sets``, then append ``append``.

        ``sets`` holds canonical values of record fields, ``"lease": None`` and
        ``updated_at`` among them; ``append`` is a history entry for ``attempts`` or None.
        Returns the record after the change, or None (nothing changed) when not held.
        """

    def _end(self, task_id: str, token: str, sets: dict[str, Any], append: Any) -> bool:
        """:meth:`_finish` without the record: True if the task was running under ``token``.

        Optional: the default calls :meth:`_finish`; a backend whose write can skip
        returning the row overrides it.
        """
        return self._finish(task_id, token, sets, append) is not None

    def _end_and_claim(
        self, task_id: str, token: str, sets: dict[str, Any], append: Any, status: str,
        query: And, lease: dict[str, Any], now: float,
    ) -> tuple[bool, Record | CorruptRecord | None]:
        """:meth:`_end`, then :meth:`_claim`; optional, a backend may do both in one transaction."""
        return (self._end(task_id, token, sets, append),
                self._claim(status, query, lease, now))

    @abstractmethod
    def _update(self, query: And, sets: dict[str, Any]) -> int:
        """Write ``sets`` (as in :meth:`_finish`) on every matching task; how many matched.

        ``"lease": None`` in ``sets`` clears the lease. Raise :class:`KeyNotUnique`, changing
        nothing, when a new ``key`` would collide.
        """

    @abstractmethod
    def _delete(self, query: And) -> int:
        """Delete the matching tasks; how many."""

    @abstractmethod
    def _counts(self, query: And) -> dict[str, int]:
        """``{status: n}`` over matching tasks, without decoding payloads."""

    @abstractmethod
    def _find(
        self, query: And, limit: int | None, skip: int
    ) -> Iterator[Record | CorruptRecord]:
        """Matching records in creation order after ``skip``, at most ``limit`` (never 0)."""

    @abstractmethod
    def _get(self, task_id: str) -> Record | CorruptRecord | None:
        """The record with this id; None also for an id the backend could not have issued."""


class Store(ABC):
    """A storage backend instance: one database holding many pools.

    Subclasses are registered by URL scheme through ``taskloom_register_storage``.
    """

    #: human-readable URL of this store (no password)
    url: str
    #: True when separate processes opening the same URL see the same data
    shared_across_processes: ClassVar[bool] = True

    @classmethod
    @abstractmethod
    def from_url(cls, url: str) -> Store:
        """Open the store a URL names; a bad URL raises :class:`taskloom.errors.StorageError`."""

    @classmethod
    def open_existing(cls, url: str) -> Store:
        """Open the store a URL names only if it exists: a missing one is a ``StorageError``.

        What read-only and administrative commands use, so that a mistyped URL is an error
        instead of a new empty store. The default is :meth:`from_url`, right for backends that
        create nothing when opened (a MongoDB database appears on its first write).
        """
        return cls.from_url(url)

    @classmethod
    def adopt(cls, obj: object) -> Store | None:
        """Wrap a ready client object (e.g. a pymongo ``Database``), or None if not ours."""
        return None

    def check_pool_name(self, name: Any) -> str:
        """Refuse a pool name this store cannot hold; a backend with more rules extends this.

        Every backend refuses what is not a non-empty string or holds a NUL character.
        """
        if not isinstance(name, str) or not name or "\0" in name:
            raise StorageError(
                f"a pool name is a non-empty string without NUL characters, got {name!r:.80}")
        return name

    def pool(self, name: str, create: bool = True) -> Pool:
        """The named pool; created (with its indexes) on first use unless ``create`` is False.

        With ``create=False`` an unknown pool raises :class:`taskloom.errors.UnknownNameError`.
        """
        name = self.check_pool_name(name)
        if not self._has_pool(name):
            if not create:
                raise UnknownNameError("pool", name, self.list_pools())
            self._create_pool(name, time.time())
        return self._open_pool(name)

    def list_pools(self) -> list[str]:
        """Names of the pools in this store, sorted (a pool emptied by deletes still exists)."""
        return sorted(self._list_pools())

    def drop_pool(self, name: str) -> None:
        """Remove a pool and every task in it; a pool that does not exist is no error."""
        self._drop_pool(self.check_pool_name(name))

    def close(self) -> None:  # noqa: B027 - optional for backends without connections
        """Release connections; the default does nothing."""

    @abstractmethod
    def _has_pool(self, name: str) -> bool:
        """Whether the pool exists (a True answer may be cached)."""

    @abstractmethod
    def _create_pool(self, name: str, now: float) -> None:
        """Create the pool and its indexes; must do nothing if another process just did."""

    @abstractmethod
    def _open_pool(self, name: str) -> Pool:
        """A handle on the existing pool ``name``."""

    @abstractmethod
    def _list_pools(self) -> list[str]:
        """The names of the pools, in any order."""

    @abstractmethod
    def _drop_pool(self, name: str) -> None:
        """Delete the pool and its tasks, if it exists."""
