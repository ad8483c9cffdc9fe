"""The storage contract every backend implements, and opening a store by URL.

A *store* (a SQLite file, a MongoDB database, a process-local dict) holds named *pools*; a
pool holds task records. The contract is deliberately small and atomic so that one backend
conformance suite (``tests/storage/``) can pin the same semantics on every backend:

* insert-if-absent by task key, a whole batch atomically;
* claim one task (highest priority first, FIFO within a priority, only tasks whose
  ``not_before`` has passed, also reclaiming running tasks whose lease expired);
* heartbeat and finish, both *fenced*: only the holder of the current lease token succeeds;
* counts by status without decoding payloads, queries, unguarded updates and deletes.

The :class:`taskloom.TaskManager` builds qlib's API, leases, retries and failure records on top.

Task record (what every read returns; a plain JSON-compatible dict)::

    {
      "_id": "17",                     # opaque string id, unique in the store
      "key": "<sha256 hex>",           # taskloom.task_key(def); unique in the pool
      "def": {...},                    # the task definition, canonical JSON data
      "status": "waiting",             # see STATUSES; backends accept any string
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

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

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

#: record fields that a query addresses directly; every other root path is a task field
RECORD_FIELDS: frozenset[str] = frozenset(
    {
        "_id",
        "key",
        "def",
        "status",
        "priority",
        "res",
        "created_at",
        "updated_at",
        "not_before",
        "attempt",
        "lease",
        "attempts",
        "error",
    }
)

Record = dict[str, Any]


class Pool(ABC):
    """One named pool of task records inside a store. All methods are safe across processes."""

    name: str

    @abstractmethod
    def insert_many(
        self, items: Sequence[tuple[str, dict[str, Any]]], now: float
    ) -> list[tuple[str, bool]]:
        """Insert ``(key, def)`` pairs as ``waiting`` unless a task with that key exists.

        Returns ``(id, created)`` aligned with ``items``; a key repeated inside the batch
        resolves to one id (created once). The batch is atomic: on any error nothing is
        inserted. ``def`` is already canonical JSON data. The whole batch is checked first with
        :func:`taskloom.query.check_items`: a key that is not a non-empty string raises
        :class:`~taskloom.errors.StorageError`, a def with no JSON form
        :class:`~taskloom.errors.TaskEncodingError`. Inserting through the handle of a pool
        that was dropped meanwhile creates the pool again.
        """

    @abstractmethod
    def ids_for_keys(self, keys: Sequence[str]) -> dict[str, str]:
        """``{key: id}`` for the keys that exist in the pool (an indexed lookup)."""

    @abstractmethod
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
        """Atomically claim one task and return it as stored after the claim, or None.

        Candidates match ``query`` and either have ``status`` == ``status`` and a
        ``not_before`` that is None or ``<= now``, or are ``running`` with an expired lease
        (``lease.until < now``) whose ``lease.from_status`` == ``status``. The highest
        ``priority`` wins, then creation order. The claimed record gets ``status="running"``,
        ``attempt += 1`` and ``lease = {owner, token, until: now + lease_seconds,
        started: now, from_status: status}``. When an expired lease is reclaimed, a history
        entry ``{"attempt", "owner", "started", "ended": now, "outcome": "lease expired"}`` for
        the lost attempt is appended to ``attempts`` first. ``updated_at`` becomes ``now``.

        ``query`` applies to both kinds of candidates, so a query that pins ``status`` also
        decides whether expired leases can be reclaimed.
        """

    @abstractmethod
    def heartbeat(self, task_id: str, token: str, until: float, now: float) -> bool:
        """Extend the lease to ``until`` if ``token`` still holds it; False changes nothing.

        "Holds" means the task is ``running`` with this lease token, even if ``until`` has
        passed, as long as nobody reclaimed it. ``updated_at`` becomes ``now``.
        """

    @abstractmethod
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

    @abstractmethod
    def counts(self, query: dict[str, Any]) -> dict[str, int]:
        """``{status: n}`` over matching tasks, by indexed aggregation (no payload decoding)."""

    @abstractmethod
    def find(
        self, query: dict[str, Any], *, limit: int | None = None, skip: int = 0
    ) -> Iterator[Record]:
        """Matching records in creation order; ``limit=0`` yields nothing."""

    @abstractmethod
    def get(self, task_id: str) -> Record | None:
        """The record with this id, or None (also for ids that are malformed for the backend)."""

    @abstractmethod
    def update_many(self, query: dict[str, Any], changes: dict[str, Any], now: float) -> int:
        """Unguarded ``$set`` of top-level record fields on matching tasks; returns the count.

        This is for administrative changes (qlib's ``reset_status``, ``prioritize``, ``retry``,
        ``cancel``). Setting ``status`` to anything but ``running`` also clears the lease.
        ``changes`` are validated as in :meth:`finish`; ``updated_at`` becomes ``now``. The
        count is of *matching* tasks, also those the change leaves as they were. Giving a task
        a ``key`` another task of the pool has raises :class:`~taskloom.errors.StorageError`.
        """

    @abstractmethod
    def delete_many(self, query: dict[str, Any]) -> int:
        """Delete matching tasks; returns how many. An empty query empties the pool."""


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

    @abstractmethod
    def pool(self, name: str, create: bool = True) -> Pool:
        """The named pool; created (with its indexes) on first use unless ``create`` is False.

        With ``create=False`` an unknown pool raises :class:`taskloom.errors.UnknownNameError`.
        """

    @abstractmethod
    def list_pools(self) -> list[str]:
        """Names of the pools in this store (a pool emptied by deletes still exists)."""

    @abstractmethod
    def drop_pool(self, name: str) -> None:
        """Remove a pool and every task in it."""

    def close(self) -> None:  # noqa: B027 - optional for backends without connections
        """Release connections; the default does nothing."""


DEFAULT_STORAGE_URL = "sqlite:///taskloom.db"


def get_storage(target: str | Store | object | None = None, *, create: bool = True) -> Store:
    """Open a store from a URL (``memory://``, ``sqlite:///path``, ``mongodb://...``).

    ``None`` means the embedded default (``TASKLOOM_STORAGE`` or ``sqlite:///taskloom.db`` in
    the working directory). A :class:`Store` is returned as is; any other object is offered to
    every registered backend's :meth:`Store.adopt` (a pymongo ``Database``, for instance).
    With ``create=False`` a URL naming a store that does not exist yet is a ``StorageError``
    (:meth:`Store.open_existing`) instead of a new empty store.
    """
    import os

    from taskloom import registry
    from taskloom.errors import StorageError, UnknownNameError

    if target is None:
        target = os.environ.get("TASKLOOM_STORAGE") or DEFAULT_STORAGE_URL
    if isinstance(target, Store):
        return target
    backends = registry.contributions("storage scheme")
    if isinstance(target, str):
        scheme, sep, _ = target.partition("://")
        if not sep:
            raise StorageError(
                f"storage URL {target!r} has no scheme; use one of "
                + ", ".join(f"{s}://" for s in sorted(backends))
            )
        if scheme not in backends:
            raise UnknownNameError("storage scheme", scheme, list(backends))
        backend = backends[scheme].obj
        return backend.from_url(target) if create else backend.open_existing(target)
    for item in backends.values():
        store = item.obj.adopt(target)
        if store is not None:
            return store
    raise StorageError(
        f"no storage backend accepts a {type(target).__name__} object; pass a URL with one of "
        + ", ".join(f"{s}://" for s in sorted(backends))
    )
