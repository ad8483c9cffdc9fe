"""MongoDB-only behaviour, over a real socket (SecantusDB, or TASKLOOM_TEST_MONGO_URI).

Pins what a real server does and a fake would not: embedded-document equality is field-order
sensitive, duplicate keys raise, a no-op update modifies nothing, oversized documents fail
mid-batch, clients do not survive fork().
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from typing import Any

import pymongo
import pytest
from bson import Binary, ObjectId
from support.mongo import MongoServer
from taskloom import get_storage, task_key
from taskloom.errors import StorageError
from taskloom.storage import Pool
from taskloom_mongo import MongoStore

pytestmark = pytest.mark.mongo

T0 = 1_700_000_000.0


@pytest.fixture
def mongo(mongo_url: str) -> Iterator[MongoStore]:
    store = get_storage(mongo_url)
    assert isinstance(store, MongoStore)
    try:
        yield store
    finally:
        store.close()


@pytest.fixture
def raw(mongo_server: MongoServer, mongo: MongoStore) -> Iterator[Any]:
    """A plain pymongo handle on the store's database, to look behind the backend."""
    client: pymongo.MongoClient = pymongo.MongoClient(mongo_server.uri)
    try:
        yield client[mongo.db.name]
    finally:
        client.close()


def _insert(pool: Pool, *defs: dict[str, Any]) -> list[str]:
    return [i for i, _ in pool.insert_many([(task_key(d), d) for d in defs], T0)]


def test_a_ready_database_object_is_adopted_and_left_open(
    mongo_server: MongoServer, mongo_url: str
) -> None:
    client: pymongo.MongoClient = pymongo.MongoClient(mongo_server.uri)
    database = client[mongo_url.rsplit("/", 1)[1]]
    store = get_storage(database)
    assert isinstance(store, MongoStore)
    (task_id,) = _insert(store.pool("p"), {"a": 1})
    assert store.pool("p").claim(status="waiting", query={}, owner="o", token="t",
                                 lease_seconds=5, now=T0)["_id"] == task_id
    store.close()
    assert database["p"].count_documents({}) == 1  # the caller's client still works
    client.close()


def test_url_database_defaults_and_password_masking() -> None:
    store = MongoStore.from_url("mongodb://u:s3cret@127.0.0.1:1/?serverSelectionTimeoutMS=1")
    assert store.db.name == "taskloom"
    assert "s3cret" not in store.url and "u:***@" in store.url
    store.close()
    named = MongoStore.from_url("mongodb://127.0.0.1:1/pools_db?serverSelectionTimeoutMS=1")
    assert named.db.name == "pools_db"
    named.close()


def test_bad_url_and_unreachable_server_are_storage_errors() -> None:
    with pytest.raises(StorageError, match="bad MongoDB URL"):
        get_storage("mongodb://:::/x")
    store = get_storage("mongodb://127.0.0.1:1/x?serverSelectionTimeoutMS=200")
    with pytest.raises(StorageError, match="127.0.0.1:1"):
        store.pool("p")
    store.close()


@pytest.mark.parametrize("name", ["taskloom_pools", "a$b", "system.x", ""])
def test_pool_names_that_cannot_be_collections_are_refused(mongo: MongoStore, name: str) -> None:
    with pytest.raises(StorageError):
        mongo.pool(name)


def test_documents_hold_sorted_payloads_float_times_and_a_seq(mongo: MongoStore, raw: Any) -> None:
    definition = {"z": 1, "model": {"kwargs": {"lr": 0.1, "depth": 3}, "class": "M"}}
    (task_id,) = _insert(mongo.pool("p"), definition)
    doc = raw["p"].find_one({"_id": ObjectId(task_id)})
    assert list(doc["def"]) == ["model", "z"]
    assert list(doc["def"]["model"]["kwargs"]) == ["depth", "lr"]
    assert isinstance(doc["created_at"], float) and doc["seq"] == 1
    assert doc["priority"] == 0
    # the server compares embedded documents field by field in order ...
    unsorted = {"kwargs": {"lr": 0.1, "depth": 3}, "class": "M"}
    assert raw["p"].count_documents({"def.model": unsorted}) == 0
    # ... so the backend must canonicalise the query for key order not to matter
    assert [r["_id"] for r in mongo.pool("p").find({"model": unsorted})] == [task_id]
    assert set(raw.list_collection_names()) == {"p", "taskloom_pools"}
    assert mongo.list_pools() == ["p"]


def test_heartbeat_with_an_unchanged_lease_still_succeeds(mongo: MongoStore) -> None:
    pool = mongo.pool("p")
    (task_id,) = _insert(pool, {"a": 1})
    pool.claim(status="waiting", query={}, owner="o", token="t", lease_seconds=5, now=T0)
    assert pool.heartbeat(task_id, "t", T0 + 50, T0 + 1) is True
    assert pool.heartbeat(task_id, "t", T0 + 50, T0 + 1) is True  # modified_count is 0 here


@pytest.mark.parametrize("transactions", [True, False], ids=["transaction", "emulated"])
def test_a_failing_batch_leaves_nothing_behind(mongo: MongoStore, raw: Any,
                                               transactions: bool) -> None:
    if transactions and not mongo.supports_transactions():
        pytest.skip("this server has no transactions")
    mongo._transactions = transactions
    pool = mongo.pool("p")
    huge = {"blob": "x" * (17 * 1024 * 1024)}
    items = [(task_key({"n": 1}), {"n": 1}), (task_key(huge), huge),
             (task_key({"n": 3}), {"n": 3})]
    with pytest.raises(StorageError, match="nothing inserted"):
        pool.insert_many(items, T0)
    assert raw["p"].count_documents({}) == 0


@pytest.mark.parametrize("transactions", [True, False], ids=["transaction", "emulated"])
def test_a_key_inserted_concurrently_resolves_to_the_existing_task(
    mongo: MongoStore, raw: Any, monkeypatch: pytest.MonkeyPatch, transactions: bool
) -> None:
    if transactions and not mongo.supports_transactions():
        pytest.skip("this server has no transactions")
    mongo._transactions = transactions
    pool = mongo.pool("p")
    (existing,) = _insert(pool, {"n": 2})
    real = pool._ids_for_keys
    stale = iter([{}])  # the first lookup misses the task another process just inserted
    monkeypatch.setattr(pool, "_ids_for_keys", lambda keys: next(stale, None) or real(keys))
    got = pool.insert_many([(task_key({"n": 1}), {"n": 1}), (task_key({"n": 2}), {"n": 2})], T0)
    assert got[1] == (existing, False) and got[0][1] is True
    assert raw["p"].count_documents({}) == 2


def test_qlib_documents_with_pickles_are_refused_not_unpickled(mongo: MongoStore,
                                                               raw: Any) -> None:
    pool = mongo.pool("p")
    _insert(pool, {"a": 1})
    raw["p"].insert_one({"def": Binary(b"\x80\x04pickle"), "filter": {"a": 2},
                         "status": "waiting"})
    assert pool.counts({}) == {"waiting": 2}
    doc = raw["p"].find_one({"filter": {"a": 2}})
    with pytest.raises(StorageError, match=f"task {doc['_id']} is corrupt .*not a taskloom task"):
        pool.get(str(doc["_id"]))
    assert [rec["def"] for rec in pool.find({})] == [{"a": 1}]  # the qlib document is skipped
    # complete the record, keep the pickle
    raw["p"].replace_one({"_id": doc["_id"]}, {
        **{f: None for f in ("res", "error", "lease", "not_before")}, "key": "k2",
        "def": Binary(b"\x80\x04pickle"), "status": "waiting", "priority": 0,
        "created_at": T0, "updated_at": T0, "attempt": 0, "attempts": [], "seq": 9})
    with pytest.raises(StorageError, match="never unpickles"):
        pool.get(str(doc["_id"]))


def _claim_in_child(store: MongoStore, result: Any) -> None:
    got = store.pool("p").claim(status="waiting", query={}, owner="child", token="c",
                                lease_seconds=60, now=T0)
    result.put(None if got is None else got["_id"])


def test_a_forked_child_opens_its_own_client(mongo: MongoStore) -> None:
    first, second = _insert(mongo.pool("p"), {"n": 1}, {"n": 2})
    ctx = multiprocessing.get_context("fork")
    result = ctx.Queue()
    child = ctx.Process(target=_claim_in_child, args=(mongo, result))
    child.start()
    assert result.get(timeout=60) == first
    child.join(timeout=30)
    assert child.exitcode == 0
    assert mongo.pool("p").claim(status="waiting", query={}, owner="parent", token="p",
                                 lease_seconds=60, now=T0)["_id"] == second
