"""A mongomock ``Database`` adopted as storage works for single-process use (qlib users' tests).

mongomock rejects the ``$type`` of the claim's pipeline update, so an adopted mongomock
database claims by compare-and-set instead; a real server keeps the one-step pipeline.
"""

from __future__ import annotations

import mongomock
import pytest
from taskloom import task_key
from taskloom.manager import TaskManager, run_task
from taskloom.record import lost_attempt
from taskloom.stores import get_storage
from taskloom_mongo import MongoStore

T0 = 1_700_000_000.0


@pytest.fixture
def mock_store() -> MongoStore:
    store = get_storage(mongomock.MongoClient().db)
    assert isinstance(store, MongoStore)
    return store


def test_a_mongomock_database_claims_finishes_and_reclaims(mock_store: MongoStore) -> None:
    pool = mock_store.pool("p")
    defs = [{"n": 1}, {"n": 2}]
    first, second = (i for i, _ in pool.insert_many([(task_key(d), d) for d in defs], T0))
    pool.update_many({"_id": second}, {"priority": 1}, T0)
    got = pool.claim(status="waiting", query={}, owner="w1", token="a", lease_seconds=5, now=T0)
    assert got["_id"] == second and got["status"] == "running" and got["attempt"] == 1
    assert got["lease"] == {"owner": "w1", "token": "a", "until": T0 + 5, "started": T0,
                            "from_status": "waiting"}
    again = pool.claim(status="waiting", query={}, owner="w2", token="b", lease_seconds=5,
                       now=T0 + 10)
    assert again["_id"] == second and again["attempt"] == 2
    assert again["attempts"] == [lost_attempt(1, "w1", T0, T0 + 10)]
    assert pool.heartbeat(second, "a", T0 + 99, T0 + 11) is False
    done = pool.finish(second, "b", {"status": "done", "res": 7}, None, T0 + 11)
    assert done["status"] == "done" and done["lease"] is None
    assert pool.claim(status="waiting", query={}, owner="w3", token="c", lease_seconds=5,
                      now=T0 + 12)["_id"] == first
    assert pool.claim(status="waiting", query={}, owner="w3", token="d", lease_seconds=5,
                      now=T0 + 12) is None


def test_run_task_drains_a_pool_on_mongomock(mock_store: MongoStore) -> None:
    tm = TaskManager("p", mock_store)
    tm.create_task([{"x": 1}, {"x": 2}])
    assert run_task(lambda task: task["x"] * 10, "p", storage=mock_store)
    assert sorted(rec["res"] for rec in tm.query()) == [10, 20]


@pytest.mark.mongo
def test_only_mongomock_loses_the_pipeline_claim(mongo_url: str) -> None:
    assert not get_storage(mongomock.MongoClient().db).pipelines
    real = get_storage(mongo_url)
    try:
        assert real.pipelines
    finally:
        real.close()
