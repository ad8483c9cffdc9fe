"""The MongoDB store: pools shared by workers on many machines.

Layout, in the database the URL names (``taskloom`` when it names none):

* one collection per pool, named after the pool (as in qlib), with a unique index on ``key``,
  the claim index ``(status, priority desc, seq)`` and an index on ``seq``;
* ``taskloom_pools``: one document per pool ``{_id: name, seq, created_at}``, so that an
  emptied pool is still listed, and ``seq`` is the pool's insertion counter.

A task document is the record itself with ``_id`` an ObjectId (exposed as its hex string) and
an extra integer ``seq``. ObjectIds made by different processes are not strictly ordered, so
creation order (FIFO within a priority) is ``seq``: each insert reserves a block of numbers
with one atomic ``$inc`` on the pool's document. ``def``, ``res`` and history entries are
stored with sorted keys, so embedded-document equality in queries does not depend on the
order in which the caller wrote the keys. Times are floats (BSON doubles round-trip exactly,
unlike BSON datetimes, which keep milliseconds only).

A batch insert is atomic: in a transaction when the server supports them (replica sets and
sharded clusters), otherwise emulated: the documents are inserted in order and, if any
insert fails, the ones this call inserted are deleted again before the error is raised. While
an emulated batch is being written other readers may briefly see part of it.

A claim is one ``find_one_and_update`` with a pipeline update, which appends the lost
attempt's history entry only when it takes over an expired lease. mongomock (which many test
suites adopt as a fake server) rejects that pipeline's ``$type``, so on an adopted mongomock
``Database`` the claim reads the best candidate and then updates it only if it is unchanged
(status, attempt and ``updated_at`` as read), retrying otherwise: a compare-and-set, not a
single server-side step. mongomock's own operations are not atomic between threads, so these
claims also hold a process-wide lock. A real server always takes the pipeline.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from taskloom.backend import (
    RECORD_FIELDS,
    RUNNING,
    And,
    CorruptRecord,
    KeyNotUnique,
    NewTask,
    Pool,
    Record,
    StorageError,
    Store,
    lost_attempt,
    new_record,
)

from taskloom_mongo.translate import object_id, to_filter

POOLS_COLLECTION = "taskloom_pools"
DEFAULT_DATABASE = "taskloom"
#: record fields a document may lack: written by an older taskloom, read as None
OPTIONAL_FIELDS = frozenset({"types"})
#: how often an insert is retried when another process inserted one of its keys meanwhile
INSERT_ATTEMPTS = 5
DUPLICATE_KEY = 11000
#: serialises the claims made on mongomock databases (see the module docstring)
_MONGOMOCK_CLAIMS = threading.Lock()


def _public_url(url: str) -> str:
    """``url`` with its password masked."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


class _Clients:
    """One MongoClient per URL per process, shared by the stores opened with that URL."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[int, Any, int]] = {}  # url -> (pid, client, users)

    def acquire(self, url: str) -> Any:
        import pymongo

        with self._lock:
            pid, client, users = self._entries.get(url, (None, None, 0))
            if pid != os.getpid():  # never use a client inherited through fork()
                client, users = pymongo.MongoClient(url), 0
            self._entries[url] = (os.getpid(), client, users + 1)
            return client

    def release(self, url: str) -> None:
        with self._lock:
            pid, client, users = self._entries.get(url, (None, None, 0))
            if pid != os.getpid():
                return
            if users > 1:
                self._entries[url] = (pid, client, users - 1)
            else:
                del self._entries[url]
                client.close()


_clients = _Clients()


class MongoStore(Store):
    """``mongodb://host/db`` or ``mongodb+srv://...``, or a ready pymongo ``Database``."""

    def __init__(self, *, url: str | None = None, database: Any = None) -> None:
        """Open by ``url`` (a shared, fork-aware client) or wrap a caller's ``database``."""
        self._url = url
        self._pid = os.getpid()
        self._ready: set[str] = set()
        self._transactions: bool | None = None
        #: False on mongomock, whose aggregation lacks what the claim's pipeline update uses
        self.pipelines = True
        if url is not None:
            import pymongo.uri_parser

            try:
                name = pymongo.uri_parser.parse_uri(url)["database"] or DEFAULT_DATABASE
            except Exception as exc:
                raise StorageError(f"bad MongoDB URL {_public_url(url)!r}: {exc}") from exc
            self._name = name
            self._db = _clients.acquire(url)[name]
            self.url = _public_url(url)
        else:
            self._name = database.name
            self._db = database
            self.url = f"mongodb database {database.name!r} (adopted {type(database).__name__})"
            self.pipelines = not type(database).__module__.startswith("mongomock")
            #: a mongomock database lives in this process only
            self.shared_across_processes = self.pipelines

    @classmethod
    def from_url(cls, url: str) -> MongoStore:
        """Open the database a ``mongodb://`` or ``mongodb+srv://`` URL names."""
        return cls(url=url)

    @classmethod
    def adopt(cls, obj: object) -> MongoStore | None:
        """Wrap a ready pymongo-compatible ``Database`` (bring your own client, auth, TLS)."""
        if type(obj).__name__ == "Database" and all(
            callable(getattr(obj, attr, None))
            for attr in ("get_collection", "list_collection_names")
        ):
            return cls(database=obj)
        return None

    @property
    def db(self) -> Any:
        """The pymongo ``Database``; after a fork the URL's client is opened again."""
        if self._url is not None and self._pid != os.getpid():
            self._db = _clients.acquire(self._url)[self._name]
            self._pid = os.getpid()
        return self._db

    @contextmanager
    def errors(self) -> Iterator[None]:
        """Turn pymongo errors into :class:`StorageError` naming this store."""
        from pymongo.errors import PyMongoError

        try:
            yield
        except PyMongoError as exc:
            raise StorageError(f"{self.url}: {exc}") from exc

    def supports_transactions(self) -> bool:
        """Whether the server is a replica set member or mongos (asked once per store)."""
        if self._transactions is None:
            try:
                hello = self.db.client.admin.command("hello")
                self._transactions = "setName" in hello or hello.get("msg") == "isdbgrid"
            except Exception:  # mongomock and other fakes have no "hello": emulate
                self._transactions = False
        return self._transactions

    def ensure_pool(self, name: str, now: float) -> None:
        """Register the pool and create its indexes, once per pool and store object."""
        import pymongo

        if name in self._ready:
            return
        with self.errors():
            self.db[POOLS_COLLECTION].update_one(
                {"_id": name}, {"$setOnInsert": {"seq": 0, "created_at": now}}, upsert=True)
            collection = self.db[name]
            collection.create_index("key", unique=True, name="key_unique")
            collection.create_index(
                [("status", pymongo.ASCENDING), ("priority", pymongo.DESCENDING),
                 ("seq", pymongo.ASCENDING)], name="claim")
            collection.create_index("seq", name="seq")
        self._ready.add(name)

    def check_pool_name(self, name: object) -> str:
        """Also refuse what cannot be a collection name, and the registry's own collection."""
        name = super().check_pool_name(name)
        if name == POOLS_COLLECTION or name.startswith("system.") or "$" in name:
            raise StorageError(
                f"pool name {name!r} cannot be a MongoDB collection name here (no '$', "
                f"not 'system.*', not {POOLS_COLLECTION!r})"
            )
        return name

    def _has_pool(self, name: str) -> bool:
        if name in self._ready:
            return True
        with self.errors():
            return bool(self.db[POOLS_COLLECTION].count_documents({"_id": name}, limit=1))

    def _create_pool(self, name: str, now: float) -> None:
        self.ensure_pool(name, now)

    def _open_pool(self, name: str) -> MongoPool:
        return MongoPool(self, name)

    def _list_pools(self) -> list[str]:
        with self.errors():
            return [doc["_id"] for doc in self.db[POOLS_COLLECTION].find({}, {"_id": 1})]

    def _drop_pool(self, name: str) -> None:
        with self.errors():
            self.db[name].drop()
            self.db[POOLS_COLLECTION].delete_one({"_id": name})
        self._ready.discard(name)

    def close(self) -> None:
        """Release this store's share of the URL's client (an adopted one is left open)."""
        if self._url is not None and self._pid == os.getpid():
            _clients.release(self._url)
            self._url = None



class MongoPool(Pool):
    """A pool: one collection of task documents."""

    def __init__(self, store: MongoStore, name: str) -> None:
        self._store = store
        self.name = name

    @property
    def _coll(self) -> Any:
        return self._store.db[self.name]

    def _record(self, doc: dict[str, Any]) -> Record | CorruptRecord:
        """The record a document holds, or what makes it unreadable (a qlib document...)."""
        missing = sorted(RECORD_FIELDS - OPTIONAL_FIELDS - doc.keys())
        if missing:
            return CorruptRecord(str(doc["_id"]), f"document in collection {self.name!r} is not "
                                                  f"a taskloom task: no {', '.join(missing)}")
        for field in ("def", "res"):
            if isinstance(doc[field], bytes):
                return CorruptRecord(str(doc["_id"]), f"document field {field!r} is binary "
                                                      "(a qlib pickle?)")
        return {field: str(doc["_id"]) if field == "_id" else doc.get(field)
                for field in RECORD_FIELDS}

    def _insert(self, items: list[NewTask], now: float) -> list[tuple[str, bool]]:
        """Insert missing keys atomically (see the module docstring), retrying on races."""
        from bson.errors import BSONError
        from pymongo.errors import PyMongoError

        self._store.ensure_pool(self.name, now)
        for _ in range(INSERT_ATTEMPTS):
            try:
                return self._insert_once(items, now)
            except (PyMongoError, BSONError) as exc:  # BSONError: e.g. a document too large
                if not _is_duplicate_key(exc):  # else another process inserted one of our keys
                    raise StorageError(f"{self._store.url}: insert into {self.name!r} "
                                       f"failed, nothing inserted: {exc}") from exc
        raise StorageError(f"{self._store.url}: insert into {self.name!r} kept colliding with "
                           "concurrent inserts of the same keys; nothing inserted")

    def _insert_once(self, items: list[NewTask], now: float) -> list[tuple[str, bool]]:
        from bson import ObjectId
        from pymongo import ReturnDocument

        known = self._ids_for_keys([key for key, _, _ in items])
        fresh = [item for item in items if item[0] not in known]
        if fresh:
            counter = self._store.db[POOLS_COLLECTION].find_one_and_update(
                {"_id": self.name},
                {"$inc": {"seq": len(fresh)}, "$setOnInsert": {"created_at": now}},
                upsert=True, return_document=ReturnDocument.AFTER)
            first = counter["seq"] - len(fresh) + 1
            docs = [{"_id": ObjectId(), "seq": first + n, **new_record(key, definition, types, now)}
                    for n, (key, definition, types) in enumerate(fresh)]
            self._write_all(docs)
        created = {doc["key"]: str(doc["_id"]) for doc in docs} if fresh else {}
        return [(known[key], False) if key in known else (created[key], True)
                for key, _, _ in items]

    def _write_all(self, docs: list[dict[str, Any]]) -> None:
        if self._store.supports_transactions():
            client = self._store.db.client
            with client.start_session() as session:
                session.with_transaction(lambda s: self._coll.insert_many(docs, session=s))
            return
        try:
            self._coll.insert_many(docs, ordered=True)
        except BaseException:
            self._coll.delete_many({"_id": {"$in": [doc["_id"] for doc in docs]}})
            raise

    def _ids_for_keys(self, keys: list[str]) -> dict[str, str]:
        with self._store.errors():
            found = self._coll.find({"key": {"$in": keys}}, {"key": 1})
            return {doc["key"]: str(doc["_id"]) for doc in found}

    def _claim(
        self, status: str, query: And, lease: dict[str, Any], now: float
    ) -> Record | CorruptRecord | None:
        """Claim the best candidate: one pipeline ``find_one_and_update`` on a real server."""
        import pymongo

        claimable = {"$and": [to_filter(query), {"$or": [
            {"status": status, "$or": [{"not_before": None}, {"not_before": {"$lte": now}}]},
            {"status": RUNNING, "lease.until": {"$lt": now}, "lease.from_status": status},
        ]}]}
        order = [("priority", pymongo.DESCENDING), ("seq", pymongo.ASCENDING)]
        if not self._store.pipelines:
            return self._claim_by_compare_and_set(claimable, order, lease, now)
        expired = {"$and": [
            {"$eq": ["$status", RUNNING]},
            {"$eq": [{"$type": "$lease"}, "object"]},
            {"$lt": ["$lease.until", now]},
        ]}
        lost = lost_attempt("$attempt", "$lease.owner", "$lease.started", now)
        update = [{"$set": {
            "attempts": {"$cond": [expired, {"$concatArrays": ["$attempts", [lost]]},
                                   "$attempts"]},
            "status": RUNNING,
            "attempt": {"$add": ["$attempt", 1]},
            "updated_at": now,
            "lease": {"$literal": lease},
        }}]
        with self._store.errors():
            doc = self._coll.find_one_and_update(
                claimable, update, sort=order, return_document=pymongo.ReturnDocument.AFTER)
        return None if doc is None else self._record(doc)

    def _claim_by_compare_and_set(
        self, claimable: dict[str, Any], order: list[tuple[str, int]], lease: dict[str, Any],
        now: float,
    ) -> Record | CorruptRecord | None:
        """The claim without a pipeline update (mongomock): read, then update if unchanged."""
        from pymongo import ReturnDocument

        with _MONGOMOCK_CLAIMS, self._store.errors():
            while True:
                found = list(self._coll.find(claimable).sort(order).limit(1))
                if not found:
                    return None
                doc = found[0]
                update: dict[str, Any] = {"$set": {"status": RUNNING, "updated_at": now,
                                                   "lease": lease}, "$inc": {"attempt": 1}}
                old = doc.get("lease")
                if doc.get("status") == RUNNING and isinstance(old, dict) and old["until"] < now:
                    update["$push"] = {"attempts": lost_attempt(
                        doc["attempt"], old["owner"], old["started"], now)}
                unchanged = {field: doc.get(field)
                             for field in ("_id", "status", "attempt", "updated_at")}
                claimed = self._coll.find_one_and_update(
                    unchanged, update, return_document=ReturnDocument.AFTER)
                if claimed is not None:
                    return self._record(claimed)

    def _held(self, task_id: str, token: str) -> dict[str, Any] | None:
        oid = object_id(task_id)
        if oid is None:
            return None
        return {"_id": oid, "status": RUNNING, "lease.token": token}

    def _heartbeat(self, task_id: str, token: str, until: float, now: float) -> bool:
        """Extend the lease if ``token`` holds it (matched, not modified, decides)."""
        held = self._held(task_id, token)
        if held is None:
            return False
        with self._store.errors():
            result = self._coll.update_one(
                held, {"$set": {"lease.until": until, "updated_at": now}})
        return result.matched_count == 1

    def _finish(
        self, task_id: str, token: str, sets: dict[str, Any], append: Any
    ) -> Record | CorruptRecord | None:
        """Fenced end of an attempt: one ``find_one_and_update`` guarded by the lease token."""
        from pymongo import ReturnDocument

        held = self._held(task_id, token)
        if held is None:
            return None
        update: dict[str, Any] = {"$set": sets}
        if append is not None:
            update["$push"] = {"attempts": append}
        with self._store.errors():
            doc = self._coll.find_one_and_update(
                held, update, return_document=ReturnDocument.AFTER)
        return None if doc is None else self._record(doc)

    def _update(self, query: And, sets: dict[str, Any]) -> int:
        """``$set`` on matching tasks; returns how many matched (a no-op still counts)."""
        from pymongo.errors import DuplicateKeyError

        try:
            with self._store.errors():
                result = self._coll.update_many(to_filter(query), {"$set": sets})
        except StorageError as exc:
            if isinstance(exc.__cause__, DuplicateKeyError):
                raise KeyNotUnique(sets.get("key")) from exc
            raise
        return result.matched_count

    def _delete(self, query: And) -> int:
        with self._store.errors():
            return self._coll.delete_many(to_filter(query)).deleted_count

    def _counts(self, query: And) -> dict[str, int]:
        """``{status: n}`` with a ``$group`` aggregation; payloads are not decoded."""
        pipeline = [{"$match": to_filter(query)},
                    {"$group": {"_id": "$status", "n": {"$sum": 1}}}]
        with self._store.errors():
            return {row["_id"]: row["n"] for row in self._coll.aggregate(pipeline)}

    def _find(
        self, query: And, limit: int | None, skip: int
    ) -> Iterator[Record | CorruptRecord]:
        """Matching records in ``seq`` (creation) order, streamed from a cursor."""
        with self._store.errors():
            cursor = self._coll.find(to_filter(query)).sort("seq", 1).skip(skip).limit(
                limit or 0)
        return self._stream(cursor)

    def _stream(self, cursor: Any) -> Iterator[Record | CorruptRecord]:
        with self._store.errors():
            for doc in cursor:
                yield self._record(doc)

    def _get(self, task_id: str) -> Record | CorruptRecord | None:
        oid = object_id(task_id)
        if oid is None:
            return None
        with self._store.errors():
            doc = self._coll.find_one({"_id": oid})
        return None if doc is None else self._record(doc)


def _is_duplicate_key(exc: Exception) -> bool:
    details = getattr(exc, "details", None) or {}
    codes = [error.get("code") for error in details.get("writeErrors", [])]
    return DUPLICATE_KEY in codes or getattr(exc, "code", None) == DUPLICATE_KEY
