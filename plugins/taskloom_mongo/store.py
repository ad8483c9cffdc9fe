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
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from taskloom.errors import StorageError, UnknownNameError
from taskloom.query import check_changes, check_items, normalize
from taskloom.storage import RECORD_FIELDS, RUNNING, WAITING, Pool, Record, Store
from taskloom.taskkey import to_canonical

from taskloom_mongo.translate import object_id, to_filter

POOLS_COLLECTION = "taskloom_pools"
DEFAULT_DATABASE = "taskloom"
#: how often an insert is retried when another process inserted one of its keys meanwhile
INSERT_ATTEMPTS = 5
DUPLICATE_KEY = 11000


def _public_url(url: str) -> str:
    """``url`` with its password masked."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _check_pool_name(name: str) -> None:
    if not isinstance(name, str) or not name:
        raise StorageError(f"a pool name is a non-empty string, got {name!r}")
    if name == POOLS_COLLECTION or name.startswith("system.") or "$" in name or "\0" in name:
        raise StorageError(
            f"pool name {name!r} cannot be a MongoDB collection name here (no '$', no NUL, "
            f"not 'system.*', not {POOLS_COLLECTION!r})"
        )


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

    def pool(self, name: str, create: bool = True) -> MongoPool:
        """The named pool; registered with its indexes on first use unless ``create`` is False."""
        _check_pool_name(name)
        if create:
            self.ensure_pool(name, time.time())
        else:
            with self.errors():
                known = self.db[POOLS_COLLECTION].count_documents({"_id": name}, limit=1)
            if not known:
                raise UnknownNameError("pool", name, self.list_pools())
        return MongoPool(self, name)

    def list_pools(self) -> list[str]:
        """Pool names from ``taskloom_pools``, sorted."""
        with self.errors():
            return sorted(doc["_id"] for doc in self.db[POOLS_COLLECTION].find({}, {"_id": 1}))

    def drop_pool(self, name: str) -> None:
        """Drop the pool's collection and its ``taskloom_pools`` entry."""
        _check_pool_name(name)
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

    def _record(self, doc: dict[str, Any]) -> Record:
        missing = sorted(RECORD_FIELDS - doc.keys())
        if missing:
            raise StorageError(
                f"{self._store.url}: document {doc.get('_id')} in collection {self.name!r} is "
                f"not a taskloom task (missing {', '.join(missing)})")
        for field in ("def", "res"):
            if isinstance(doc[field], bytes):
                raise StorageError(
                    f"{self._store.url}: document {doc['_id']} in collection {self.name!r} "
                    f"holds binary {field!r} (a qlib pickle?); taskloom never unpickles "
                    "stored data")
        return {field: str(doc["_id"]) if field == "_id" else doc[field]
                for field in RECORD_FIELDS}

    def insert_many(
        self, items: Sequence[tuple[str, dict[str, Any]]], now: float
    ) -> list[tuple[str, bool]]:
        """Insert missing keys as ``waiting`` tasks, atomically (see the module docstring)."""
        from bson.errors import BSONError
        from pymongo.errors import PyMongoError

        checked = check_items(items)
        self._store.ensure_pool(self.name, now)
        for _ in range(INSERT_ATTEMPTS):
            try:
                return self._insert_once(checked, now)
            except (PyMongoError, BSONError) as exc:  # BSONError: e.g. a document too large
                if not _is_duplicate_key(exc):  # else another process inserted one of our keys
                    raise StorageError(f"{self._store.url}: insert into {self.name!r} "
                                       f"failed, nothing inserted: {exc}") from exc
        raise StorageError(f"{self._store.url}: insert into {self.name!r} kept colliding with "
                           "concurrent inserts of the same keys; nothing inserted")

    def _insert_once(self, checked: list[tuple[str, Any]], now: float) -> list[tuple[str, bool]]:
        from bson import ObjectId
        from pymongo import ReturnDocument

        known = self.ids_for_keys(list(dict.fromkeys(key for key, _ in checked)))
        fresh: dict[str, Any] = {}
        for key, definition in checked:
            if key not in known and key not in fresh:
                fresh[key] = definition
        created: set[str] = set()
        if fresh:
            counter = self._store.db[POOLS_COLLECTION].find_one_and_update(
                {"_id": self.name},
                {"$inc": {"seq": len(fresh)}, "$setOnInsert": {"created_at": now}},
                upsert=True, return_document=ReturnDocument.AFTER)
            first = counter["seq"] - len(fresh) + 1
            docs = [{"_id": ObjectId(), "seq": first + n, **_new_record(key, definition, now)}
                    for n, (key, definition) in enumerate(fresh.items())]
            self._write_all(docs)
            for doc in docs:
                known[doc["key"]] = str(doc["_id"])
                created.add(doc["key"])
        out = []
        for key, _ in checked:
            out.append((known[key], key in created))
            created.discard(key)  # a key repeated in the batch is created once
        return out

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

    def ids_for_keys(self, keys: Sequence[str]) -> dict[str, str]:
        """``{key: id}`` for the keys present, through the unique ``key`` index."""
        with self._store.errors():
            found = self._coll.find({"key": {"$in": list(keys)}}, {"key": 1})
            return {doc["key"]: str(doc["_id"]) for doc in found}

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
        """Claim the best claimable task with one ``find_one_and_update`` (pipeline update)."""
        import pymongo

        claimable = {"$or": [
            {"status": status, "$or": [{"not_before": None}, {"not_before": {"$lte": now}}]},
            {"status": RUNNING, "lease.until": {"$lt": now}, "lease.from_status": status},
        ]}
        expired = {"$and": [
            {"$eq": ["$status", RUNNING]},
            {"$eq": [{"$type": "$lease"}, "object"]},
            {"$lt": ["$lease.until", now]},
        ]}
        lost = {"attempt": "$attempt", "ended": now, "outcome": "lease expired",
                "owner": "$lease.owner", "started": "$lease.started"}
        lease = {"from_status": status, "owner": owner, "started": now, "token": token,
                 "until": now + lease_seconds}
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
                {"$and": [to_filter(normalize(query)), claimable]}, update,
                sort=[("priority", pymongo.DESCENDING), ("seq", pymongo.ASCENDING)],
                return_document=pymongo.ReturnDocument.AFTER)
        return None if doc is None else self._record(doc)

    def _held(self, task_id: str, token: str) -> dict[str, Any] | None:
        oid = object_id(task_id)
        if oid is None:
            return None
        return {"_id": oid, "status": RUNNING, "lease.token": token}

    def heartbeat(self, task_id: str, token: str, until: float, now: float) -> bool:
        """Extend the lease if ``token`` holds it (matched, not modified, decides)."""
        held = self._held(task_id, token)
        if held is None:
            return False
        with self._store.errors():
            result = self._coll.update_one(
                held, {"$set": {"lease.until": until, "updated_at": now}})
        return result.matched_count == 1

    def finish(
        self,
        task_id: str,
        token: str,
        changes: dict[str, Any],
        history: dict[str, Any] | None,
        now: float,
    ) -> Record | None:
        """Fenced end of an attempt: one ``find_one_and_update`` guarded by the lease token."""
        from pymongo import ReturnDocument

        checked = check_changes(changes)
        held = self._held(task_id, token)
        if held is None:
            return None
        update: dict[str, Any] = {"$set": {**checked, "lease": None, "updated_at": now}}
        if history:
            entry = to_canonical(history)
            if "attempts" in checked:
                update["$set"]["attempts"] = [*checked["attempts"], entry]
            else:
                update["$push"] = {"attempts": entry}
        with self._store.errors():
            doc = self._coll.find_one_and_update(
                held, update, return_document=ReturnDocument.AFTER)
        return None if doc is None else self._record(doc)

    def counts(self, query: dict[str, Any]) -> dict[str, int]:
        """``{status: n}`` with a ``$group`` aggregation; payloads are not decoded."""
        pipeline = [{"$match": to_filter(normalize(query))},
                    {"$group": {"_id": "$status", "n": {"$sum": 1}}}]
        with self._store.errors():
            return {row["_id"]: row["n"] for row in self._coll.aggregate(pipeline)}

    def find(
        self, query: dict[str, Any], *, limit: int | None = None, skip: int = 0
    ) -> Iterator[Record]:
        """Matching records in ``seq`` (creation) order, streamed from a cursor."""
        mongo_filter = to_filter(normalize(query))
        if limit == 0:
            return iter(())
        with self._store.errors():
            cursor = self._coll.find(mongo_filter).sort("seq", 1).skip(skip).limit(limit or 0)
        return self._stream(cursor)

    def _stream(self, cursor: Any) -> Iterator[Record]:
        with self._store.errors():
            for doc in cursor:
                yield self._record(doc)

    def get(self, task_id: str) -> Record | None:
        """The record with this id, or None (also for strings that are not ObjectIds)."""
        oid = object_id(task_id)
        if oid is None:
            return None
        with self._store.errors():
            doc = self._coll.find_one({"_id": oid})
        return None if doc is None else self._record(doc)

    def update_many(self, query: dict[str, Any], changes: dict[str, Any], now: float) -> int:
        """``$set`` on matching tasks; returns how many matched (a no-op still counts)."""
        from pymongo.errors import DuplicateKeyError

        checked = check_changes(changes)
        sets = {**checked, "updated_at": now}
        if "status" in checked and checked["status"] != RUNNING:
            sets["lease"] = None
        try:
            with self._store.errors():
                result = self._coll.update_many(to_filter(normalize(query)), {"$set": sets})
        except StorageError as exc:
            if isinstance(exc.__cause__, DuplicateKeyError):
                raise StorageError(f"pool {self.name!r}: task key {checked.get('key')!r} would "
                                   "not be unique") from exc
            raise
        return result.matched_count

    def delete_many(self, query: dict[str, Any]) -> int:
        """Delete matching tasks."""
        with self._store.errors():
            return self._coll.delete_many(to_filter(normalize(query))).deleted_count


def _new_record(key: str, definition: Any, now: float) -> dict[str, Any]:
    return {"key": key, "def": definition, "status": WAITING, "priority": 0, "res": None,
            "created_at": now, "updated_at": now, "not_before": None, "attempt": 0,
            "lease": None, "attempts": [], "error": None}


def _is_duplicate_key(exc: Exception) -> bool:
    details = getattr(exc, "details", None) or {}
    codes = [error.get("code") for error in details.get("writeErrors", [])]
    return DUPLICATE_KEY in codes or getattr(exc, "code", None) == DUPLICATE_KEY
