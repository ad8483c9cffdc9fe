"""The storage backend contract suite: what every backend must do, as pytest tests.

Subclass :class:`BackendContract` in a test module and override one fixture, ``store_url``:
a URL that opens an empty store for each test (and opens the same store again when asked
twice)::

    import pytest
    from taskloom.testing.backend import BackendContract

    class TestRedisBackend(BackendContract):
        @pytest.fixture
        def store_url(self, tmp_path):
            return f"redis://localhost/{tmp_path.name}"

Every built-in backend runs this suite the same way (``tests/storage/test_contract.py``).
A backend that can hold unreadable data (a row another program wrote) may also override
``corrupt_task``, to run the tests of how a corrupt record is skipped and reported. The
suite is what a backend must do; qlib compatibility of the task manager is pinned elsewhere
(``tests/pool/test_conformance.py``, the qlib parity scenario).
"""

from __future__ import annotations

import datetime as dt
import logging
import multiprocessing
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from taskloom.errors import QueryError, StorageError, TaskEncodingError, UnknownNameError
from taskloom.query import matches
from taskloom.record import lost_attempt
from taskloom.storage import Pool, Store
from taskloom.stores import get_storage
from taskloom.taskkey import task_key

#: ``corrupt_task(store, pool_name, task_id)`` makes a stored task unreadable
CorruptTask = Callable[[Store, str, str], None]

T0 = 1_700_000_000.0

# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def insert(pool: Pool, *defs: dict[str, Any], now: float = T0) -> list[str]:
    """Insert task definitions; returns their ids."""
    return [task_id for task_id, _ in pool.insert_many([(task_key(d), d) for d in defs], now)]


def named(pool: Pool, *names: str, now: float = T0) -> dict[str, str]:
    """Insert ``{"name": n}`` tasks; returns ``{name: id}``."""
    return dict(zip(names, insert(pool, *({"name": n} for n in names), now=now), strict=True))


def claim(pool: Pool, now: float = T0, *, status: str = "waiting", owner: str = "w1",
          token: str = "tok", lease: float = 60.0, query: dict[str, Any] | None = None
          ) -> dict[str, Any] | None:
    return pool.claim(status=status, query=query or {}, owner=owner, token=token,
                      lease_seconds=lease, now=now)


def names(records: Any) -> list[str]:
    return [rec["def"]["name"] for rec in records]



ROWS: list[dict[str, Any]] = [
    {"name": "lgb", "model": {"class": "LGBModel", "kwargs": {"num_leaves": 32, "lr": 0.05}},
     "seg": ["2017-01-03", "2017-12-29"], "h": 1, "flag": True, "note": None},
    {"name": "lgb64", "model": {"class": "LGBModel", "kwargs": {"num_leaves": 64, "lr": 0.1}},
     "seg": ["2018-01-02", "2018-12-28"], "h": 5, "flag": False},
    {"name": "mlp", "model": {"class": "MLP", "kwargs": {"layers": [64, 32]}},
     "seg": ["2017-01-03", "2017-12-29"], "h": "5", "flag": 1},
    {"name": "bare", "model": {"class": "Linear"}, "h": 10.5},
]

TASK_QUERIES: list[tuple[dict[str, Any], set[str]]] = [
    ({}, {"lgb", "lgb64", "mlp", "bare"}),
    ({"model.class": "LGBModel"}, {"lgb", "lgb64"}),
    ({"filter.model.class": "LGBModel"}, {"lgb", "lgb64"}),
    ({"def.model.class": "MLP"}, {"mlp"}),
    ({"model.kwargs.num_leaves": {"$gte": 64}}, {"lgb64"}),
    ({"h": 5}, {"lgb64"}),
    ({"h": "5"}, {"mlp"}),
    ({"h": 10.5}, {"bare"}),
    ({"h": {"$lt": 6}}, {"lgb", "lgb64"}),
    ({"h": {"$gt": "4"}}, {"mlp"}),
    ({"h": {"$gt": 1, "$lte": 10.5}}, {"lgb64", "bare"}),
    ({"h": {"$ne": 1}}, {"lgb64", "mlp", "bare"}),
    ({"flag": True}, {"lgb"}),
    ({"flag": 1}, {"mlp"}),
    ({"flag": {"$in": [False, 1]}}, {"lgb64", "mlp"}),
    ({"flag": {"$nin": [True, False]}}, {"mlp", "bare"}),
    ({"flag": {"$ne": True}}, {"lgb64", "mlp", "bare"}),
    ({"flag": {"$exists": False}}, {"bare"}),
    ({"note": {"$exists": True}}, {"lgb"}),
    ({"note": None}, {"lgb", "lgb64", "mlp", "bare"}),
    ({"note": {"$ne": None}}, set()),
    ({"h": {"$in": [None, 1]}}, {"lgb"}),
    ({"seg": ["2017-01-03", "2017-12-29"]}, {"lgb", "mlp"}),
    ({"seg": ["2017-12-29", "2017-01-03"]}, set()),
    ({"seg": {"$ne": ["2017-01-03", "2017-12-29"]}}, {"lgb64", "bare"}),
    ({"seg.0": "2018-01-02"}, {"lgb64"}),
    ({"seg.0": dt.date(2018, 1, 2)}, {"lgb64"}),
    ({"seg.1": {"$gte": "2017-12-01", "$lt": "2018-01-01"}}, {"lgb", "mlp"}),
    ({"seg.5": {"$exists": True}}, set()),
    ({"model.class.x": {"$exists": True}}, set()),
    ({"no.such.path": {"$exists": False}}, {"lgb", "lgb64", "mlp", "bare"}),
    ({"model": {"kwargs": {"lr": 0.05, "num_leaves": 32}, "class": "LGBModel"}}, {"lgb"}),
    ({"model.kwargs": {"$in": [{"layers": [64, 32]}, {"num_leaves": 64, "lr": 0.1}]}},
     {"mlp", "lgb64"}),
    ({"model.kwargs.layers": [64, 32]}, {"mlp"}),
    ({"model.kwargs.layers.1": 32}, {"mlp"}),
    ({"model.class": {"$in": ("MLP", "Linear")}}, {"mlp", "bare"}),
    ({"seg": {"$exists": True}, "h": {"$ne": 1}}, {"lgb64", "mlp"}),
    ({"$or": [{"h": 1}, {"model.class": "Linear"}]}, {"lgb", "bare"}),
    ({"$and": [{"model.class": "LGBModel"}, {"h": {"$gt": 1}}]}, {"lgb64"}),
    ({"filter": {"name": "bare", "model": {"class": "Linear"}, "h": 10.5}}, {"bare"}),
]




#: tasks whose ``v`` values the boundary queries hit exactly (``n`` tells them apart); no
#: list values, as MongoDB would look inside them (the documented non-portable corner)
BOUNDARY_ROWS: list[dict[str, Any]] = [
    {"n": 0, "v": 1}, {"n": 1, "v": 1.5}, {"n": 2, "v": 2}, {"n": 3, "v": "a"},
    {"n": 4, "v": "b"}, {"n": 5, "v": True}, {"n": 6, "v": None}, {"n": 7},
    {"n": 9, "v": {"k": 1}}, {"n": 10, "v": 0}, {"n": 11, "v": False},
]
#: each operator with an operand equal to a stored value (random queries rarely hit one)
BOUNDARY_QUERIES: list[dict[str, Any]] = [
    *({"v": {op: value}} for op in ("$lt", "$lte", "$gt", "$gte")
      for value in (1, 1.0, 1.5, 2, 0, "a", "b")),
    *({"v": {"$ne": value}} for value in (1, 1.5, "a", True, False, 0, None, {"k": 1})),
    *({"v": {"$in": values}} for values in (
        [1], [1.0], [1.5, "a"], ["b"], [True], [0], [False], [None], [{"k": 1}],
        [1, True], [])),
    *({"v": {"$nin": values}} for values in ([1], [True, None], ["a", 1.5])),
    {"v": {"$gte": 1, "$lte": 1}}, {"v": {"$gt": 1, "$lt": 2}}, {"v": {"$gte": "a", "$lt": "b"}},
]

# --------------------------------------------------------------------------------------------
# several real processes claiming from one pool
# --------------------------------------------------------------------------------------------


def _claim_worker(url: str, pool_name: str, owner: str, barrier: Any, results: Any) -> None:
    """Claim and finish tasks until the pool is empty; report the claimed ids."""
    store = get_storage(url)
    pool = store.pool(pool_name, create=False)
    claimed: list[str] = []
    barrier.wait(timeout=120)
    try:
        while True:
            token = f"{owner}-{len(claimed)}"
            task = pool.claim(status="waiting", query={}, owner=owner, token=token,
                              lease_seconds=600.0, now=time.time())
            if task is None:
                break
            claimed.append(task["_id"])
            pool.finish(task["_id"], token, {"status": "done", "res": owner}, None, time.time())
    finally:
        results.put((owner, claimed))
        store.close()


def claim_in_processes(url: str, pool_name: str, workers: int, timeout: float
                       ) -> dict[str, list[str]]:
    """Run ``workers`` claiming processes against ``url``; returns ``{owner: [claimed ids]}``.

    Workers are started with ``spawn`` (a fresh interpreter each, safe with client threads),
    open the store from its URL and wait at a barrier, so that they all start together.
    """
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(workers)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_claim_worker, args=(url, pool_name, f"proc{n}", barrier, results))
        for n in range(workers)
    ]
    for proc in procs:
        proc.start()
    out: dict[str, list[str]] = {}
    deadline = time.monotonic() + timeout
    try:
        while len(out) < workers:
            owner, claimed = results.get(timeout=max(0.1, deadline - time.monotonic()))
            out[owner] = claimed
    except queue.Empty as exc:
        raise TimeoutError(f"only {len(out)} of {workers} workers reported in {timeout} s") from exc
    finally:
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
    return out


class BackendContract:
    """The contract tests; subclass it as ``Test...`` and override the ``store_url`` fixture."""

    @pytest.fixture
    def store_url(self) -> Any:
        """The URL of an empty store for one test: the one fixture a backend overrides.

        Anything :func:`taskloom.get_storage` accepts will do (a client object it adopts, for
        instance), as long as opening it twice gives the same data.
        """
        pytest.fail("override the store_url fixture in your BackendContract subclass")

    @pytest.fixture
    def store(self, store_url: Any) -> Iterator[Store]:
        """The store, closed after the test."""
        opened = get_storage(store_url)
        try:
            yield opened
        finally:
            opened.close()

    @pytest.fixture
    def pool(self, store: Store) -> Pool:
        """An empty pool named ``tasks``."""
        return store.pool("tasks")

    @pytest.fixture
    def corrupt_task(self) -> CorruptTask:
        """Override to make a stored task unreadable; by default those tests are skipped."""
        pytest.skip("this backend's test class does not say how to corrupt a stored task")

    # --------------------------------------------------------------------------------------------
    # insert-if-absent
    # --------------------------------------------------------------------------------------------


    def test_insert_returns_aligned_ids_and_reuses_existing_keys(self, pool: Pool) -> None:
        a, b = {"name": "a"}, {"name": "b"}
        first = pool.insert_many([(task_key(a), a), (task_key(b), b), (task_key(a), a)], T0)
        assert first[0] == (first[2][0], True)
        assert first[1][1] is True and first[2][1] is False
        assert first[0][0] != first[1][0]
        again = pool.insert_many([(task_key(b), b), (task_key({"name": "c"}), {"name": "c"})], T0)
        assert again[0] == (first[1][0], False)
        assert again[1][1] is True
        assert pool.counts({}) == {"waiting": 3}


    def test_new_record_has_the_documented_shape(self, pool: Pool) -> None:
        definition = {"model": {"kwargs": {"b": 2, "a": 1}, "class": "M"}, "seg": ["x", "y"]}
        (task_id,) = insert(pool, definition)
        assert pool.get(task_id) == {
            "_id": task_id, "key": task_key(definition), "def": definition, "types": None,
            "status": "waiting",
            "priority": 0, "res": None, "created_at": T0, "updated_at": T0, "not_before": None,
            "attempt": 0, "lease": None, "attempts": [], "error": None,
        }


    def test_batch_with_unencodable_item_inserts_nothing(self, pool: Pool) -> None:
        items = [(task_key({"n": 1}), {"n": 1}), ("k-bad", {"n": object()}),
                 (task_key({"n": 3}), {"n": 3})]
        with pytest.raises(TaskEncodingError, match="item 1"):
            pool.insert_many(items, T0)
        assert pool.counts({}) == {}
        assert list(pool.find({})) == []


    def test_batch_with_bad_key_inserts_nothing(self, pool: Pool) -> None:
        with pytest.raises(StorageError, match="item 1"):
            pool.insert_many([("k1", {"n": 1}), ("", {"n": 2})], T0)
        assert pool.ids_for_keys(["k1"]) == {}


    def test_ids_for_keys_lists_only_existing_keys(self, pool: Pool) -> None:
        ids = named(pool, "a", "b")
        wanted = [task_key({"name": "a"}), task_key({"name": "b"}), "absent"]
        assert pool.ids_for_keys(wanted) == {wanted[0]: ids["a"], wanted[1]: ids["b"]}


    def test_ids_are_distinct_opaque_strings(self, pool: Pool) -> None:
        ids = list(named(pool, "a", "b", "c").values())
        assert all(isinstance(task_id, str) and task_id for task_id in ids)
        assert len(set(ids)) == 3


    @pytest.mark.parametrize("bad_id", ["", "nope", "0123456789abcdef01234567", "-1", "99999999"])
    def test_unknown_or_malformed_ids_match_nothing(self, pool: Pool, bad_id: str) -> None:
        named(pool, "a")
        assert pool.get(bad_id) is None
        assert list(pool.find({"_id": bad_id})) == []
        assert pool.counts({"_id": {"$in": [bad_id]}}) == {}
        assert pool.heartbeat(bad_id, "tok", T0 + 1, T0) is False
        assert pool.finish(bad_id, "tok", {"status": "done"}, None, T0) is None


    def test_same_key_in_two_pools_is_two_tasks(self, store: Store) -> None:
        one, two = store.pool("one"), store.pool("two")
        (id1,) = insert(one, {"name": "a"})
        (id2,) = insert(two, {"name": "a"})
        assert id1 != id2
        assert one.counts({}) == two.counts({}) == {"waiting": 1}


    # --------------------------------------------------------------------------------------------
    # claim
    # --------------------------------------------------------------------------------------------


    def test_claim_takes_highest_priority_then_creation_order(self, pool: Pool) -> None:
        ids = named(pool, "a", "b", "c", "d", "e", "f")
        pool.update_many({"_id": ids["c"]}, {"priority": 5}, T0)
        pool.update_many({"_id": {"$in": [ids["e"], ids["b"]]}}, {"priority": 2}, T0)
        pool.update_many({"_id": ids["f"]}, {"priority": 2.5}, T0)
        pool.update_many({"_id": ids["a"]}, {"priority": -1}, T0)
        order = [claim(pool, token=f"t{i}") for i in range(6)]
        assert names(order) == ["c", "f", "b", "e", "d", "a"]
        assert claim(pool) is None


    def test_claim_returns_the_record_as_stored_after_the_claim(self, pool: Pool) -> None:
        (task_id,) = insert(pool, {"name": "a"})
        got = claim(pool, T0 + 5, owner="host:1", token="tk", lease=30)
        assert got is not None
        assert got["status"] == "running" and got["attempt"] == 1
        assert got["lease"] == {"owner": "host:1", "token": "tk", "until": T0 + 35,
                                "started": T0 + 5, "from_status": "waiting"}
        assert got["updated_at"] == T0 + 5
        assert pool.get(task_id) == got


    def test_claim_skips_tasks_whose_not_before_is_in_the_future(self, pool: Pool) -> None:
        ids = named(pool, "later", "now")
        pool.update_many({"_id": ids["later"]}, {"not_before": T0 + 10, "priority": 9}, T0)
        assert names([claim(pool, T0, token="1")]) == ["now"]
        assert claim(pool, T0 + 9.5) is None
        assert names([claim(pool, T0 + 10, token="2")]) == ["later"]


    def test_claim_respects_the_query_and_the_status(self, pool: Pool) -> None:
        ids = named(pool, "a", "b", "c")
        pool.update_many({"_id": ids["c"]}, {"status": "part_done"}, T0)
        assert names([claim(pool, query={"name": {"$in": ["b", "c"]}})]) == ["b"]
        assert claim(pool, query={"name": "c"}) is None
        got = claim(pool, status="part_done", token="t2")
        assert names([got]) == ["c"]
        assert got["lease"]["from_status"] == "part_done"
        assert names([claim(pool, token="t3")]) == ["a"]


    def test_claim_with_status_running_takes_a_running_task(self, pool: Pool) -> None:
        (task_id,) = insert(pool, {"name": "a"})
        claim(pool, token="first")
        got = claim(pool, T0 + 1, status="running", token="second")
        assert got is not None and got["_id"] == task_id
        assert got["attempt"] == 2 and got["lease"]["token"] == "second"
        assert pool.heartbeat(task_id, "first", T0 + 100, T0 + 2) is False


    def test_expired_lease_is_reclaimed_with_a_history_entry(self, pool: Pool) -> None:
        (task_id,) = insert(pool, {"name": "a"})
        claim(pool, T0, owner="w1", token="old", lease=10)
        assert claim(pool, T0 + 10, owner="w2", token="new") is None  # until == now: still held
        got = claim(pool, T0 + 11, owner="w2", token="new", lease=10)
        assert got is not None and got["_id"] == task_id
        assert got["attempt"] == 2
        assert got["lease"] == {"owner": "w2", "token": "new", "until": T0 + 21, "started": T0 + 11,
                                "from_status": "waiting"}
        assert got["attempts"] == [{"attempt": 1, "owner": "w1", "started": T0, "ended": T0 + 11,
                                    "outcome": "lease expired"}]


    def test_expired_lease_is_reclaimed_only_for_its_from_status(self, pool: Pool) -> None:
        ids = named(pool, "a")
        pool.update_many({"_id": ids["a"]}, {"status": "part_done"}, T0)
        claim(pool, T0, status="part_done", token="old", lease=5)
        assert claim(pool, T0 + 100, status="waiting") is None
        got = claim(pool, T0 + 100, status="part_done", token="new")
        assert got is not None and got["lease"]["from_status"] == "part_done"


    def test_expired_lease_competes_by_priority(self, pool: Pool) -> None:
        ids = named(pool, "low", "high")
        pool.update_many({"_id": ids["high"]}, {"priority": 3}, T0)
        assert names([claim(pool, T0, token="a", lease=5)]) == ["high"]
        assert names([claim(pool, T0 + 6, token="b")]) == ["high"]
        assert names([claim(pool, T0 + 6, token="c")]) == ["low"]


    def test_claim_on_an_empty_pool_returns_none(self, pool: Pool) -> None:
        assert claim(pool) is None


    # --------------------------------------------------------------------------------------------
    # heartbeat and finish (fenced)
    # --------------------------------------------------------------------------------------------


    def test_heartbeat_extends_only_the_current_lease(self, pool: Pool) -> None:
        (task_id,) = insert(pool, {"name": "a"})
        claim(pool, T0, token="tk", lease=10)
        assert pool.heartbeat(task_id, "tk", T0 + 50, T0 + 5) is True
        assert pool.get(task_id)["lease"]["until"] == T0 + 50
        before = pool.get(task_id)
        assert pool.heartbeat(task_id, "stale", T0 + 99, T0 + 6) is False
        assert pool.get(task_id) == before
        assert claim(pool, T0 + 40, token="x") is None  # the extended lease still holds


    def test_heartbeat_on_a_task_that_is_not_running_fails(self, pool: Pool) -> None:
        (task_id,) = insert(pool, {"name": "a"})
        assert pool.heartbeat(task_id, "tk", T0 + 50, T0) is False
        assert pool.get(task_id)["lease"] is None


    def test_finish_applies_changes_clears_lease_and_appends_history(self, pool: Pool) -> None:
        (task_id,) = insert(pool, {"name": "a"})
        claim(pool, T0, owner="w1", token="tk")
        entry = {"attempt": 1, "owner": "w1", "started": T0, "ended": T0 + 3, "outcome": "ok"}
        done = pool.finish(task_id, "tk", {"status": "done", "res": {"ic": 0.05, "v": [1, 2]}},
                           entry, T0 + 3)
        assert done is not None
        assert done["status"] == "done" and done["res"] == {"ic": 0.05, "v": [1, 2]}
        assert done["lease"] is None and done["attempts"] == [entry]
        assert done["updated_at"] == T0 + 3 and done["attempt"] == 1
        assert pool.get(task_id) == done


    def test_finish_can_requeue_with_error_and_backoff(self, pool: Pool) -> None:
        (task_id,) = insert(pool, {"name": "a"})
        claim(pool, T0, token="tk")
        error = {"type": "ValueError", "message": "boom", "traceback": "Traceback ..."}
        back = pool.finish(task_id, "tk", {"status": "waiting", "error": error,
                                           "not_before": T0 + 30}, None, T0 + 1)
        assert back["error"] == error and back["attempts"] == []
        assert claim(pool, T0 + 29) is None
        assert claim(pool, T0 + 30, token="t2")["attempt"] == 2


    def test_finish_with_a_stale_token_changes_nothing(self, pool: Pool) -> None:
        (task_id,) = insert(pool, {"name": "a"})
        claim(pool, T0, token="old", lease=5)
        claim(pool, T0 + 6, token="new")
        before = pool.get(task_id)
        assert pool.finish(task_id, "old", {"status": "done", "res": 1}, {"x": 1}, T0 + 7) is None
        assert pool.get(task_id) == before
        assert pool.finish(task_id, "new", {"status": "done"}, None, T0 + 8)["status"] == "done"
        assert pool.finish(task_id, "new", {"status": "failed"}, None, T0 + 9) is None
        assert pool.get(task_id)["status"] == "done"


    def test_finish_rejects_fields_the_store_manages(self, pool: Pool) -> None:
        (task_id,) = insert(pool, {"name": "a"})
        claim(pool, T0, token="tk")
        for field in ("_id", "lease", "created_at", "unknown"):
            with pytest.raises(QueryError, match=field):
                pool.finish(task_id, "tk", {field: "x"}, None, T0)
        assert pool.get(task_id)["status"] == "running"


    def test_end_writes_what_finish_writes_and_says_whether_the_token_held(
        self, pool: Pool
    ) -> None:
        a, b = insert(pool, {"name": "a"}, {"name": "b"})
        claim(pool, T0, owner="w1", token="ta")
        claim(pool, T0, owner="w1", token="tb")
        entry = {"attempt": 1, "owner": "w1", "started": T0, "ended": T0 + 3, "outcome": "ok"}
        changes = {"status": "done", "res": {"ic": 0.05, "v": [1, 2]}}
        assert pool.end(a, "stale", changes, entry, T0 + 3) is False
        assert pool.get(a)["status"] == "running"
        assert pool.end(a, "ta", changes, entry, T0 + 3) is True
        finished = pool.finish(b, "tb", changes, entry, T0 + 3)
        ended = pool.get(a)
        assert {**ended, "_id": b, "key": finished["key"], "def": finished["def"]} == finished
        assert pool.end(a, "ta", {"status": "failed"}, None, T0 + 4) is False
        with pytest.raises(QueryError, match="lease"):
            pool.end(b, "tb", {"lease": None}, None, T0)


    def test_end_and_claim_ends_the_held_attempt_and_claims_the_next_task(
        self, pool: Pool
    ) -> None:
        ids = named(pool, "a", "b", "c")
        claim(pool, T0, token="t1")
        entry = {"attempt": 1, "outcome": "done"}
        ended, following = pool.end_and_claim(
            ids["a"], "t1", {"status": "done", "res": {"r": 1}}, entry, status="waiting",
            query={}, owner="w1", new_token="t2", lease_seconds=60, now=T0 + 1)
        assert ended is True
        assert following is not None and following["_id"] == ids["b"]
        assert (following["status"], following["attempt"]) == ("running", 1)
        assert following["lease"] == {"owner": "w1", "token": "t2", "until": T0 + 61,
                                      "started": T0 + 1, "from_status": "waiting"}
        done = pool.get(ids["a"])
        assert (done["status"], done["res"], done["lease"]) == ("done", {"r": 1}, None)
        assert done["attempts"] == [entry] and done["updated_at"] == T0 + 1
        assert pool.counts({}) == {"done": 1, "running": 1, "waiting": 1}


    def test_end_and_claim_with_a_lost_lease_ends_nothing_but_still_claims(
        self, pool: Pool
    ) -> None:
        ids = named(pool, "a", "b")
        claim(pool, T0, token="t1")
        ended, following = pool.end_and_claim(
            ids["a"], "stale", {"status": "done"}, None, status="waiting", query={},
            owner="w1", new_token="t2", lease_seconds=60, now=T0 + 1)
        assert ended is False
        assert following is not None and following["_id"] == ids["b"]
        held = pool.get(ids["a"])
        assert (held["status"], held["lease"]["token"], held["attempts"]) == ("running", "t1", [])


    def test_end_and_claim_keeps_to_its_query_and_may_claim_nothing(self, pool: Pool) -> None:
        ids = named(pool, "a", "b")
        claim(pool, T0, token="t1")
        assert pool.end_and_claim(
            ids["a"], "t1", {"status": "done"}, None, status="waiting", query={"name": "z"},
            owner="w1", new_token="t2", lease_seconds=60, now=T0 + 1) == (True, None)
        assert pool.counts({}) == {"done": 1, "waiting": 1}


    # --------------------------------------------------------------------------------------------
    # counts, find, get
    # --------------------------------------------------------------------------------------------


    def test_counts_by_status_with_a_query(self, pool: Pool) -> None:
        ids = named(pool, "a", "b", "c", "d")
        pool.update_many({"_id": {"$in": [ids["a"], ids["b"]]}}, {"status": "done"}, T0)
        pool.update_many({"_id": ids["c"]}, {"status": "failed"}, T0)
        assert pool.counts({}) == {"done": 2, "failed": 1, "waiting": 1}
        assert pool.counts({"name": {"$in": ["a", "c", "d"]}}) == {
            "done": 1, "failed": 1, "waiting": 1}
        assert pool.counts({"name": "zzz"}) == {}


    @pytest.fixture
    def rows(self, pool: Pool) -> dict[str, str]:
        """The ROWS tasks, with lgb at priority 5 and mlp done with a result."""
        ids = dict(zip([row["name"] for row in ROWS], insert(pool, *ROWS), strict=True))
        pool.update_many({"_id": ids["lgb"]}, {"priority": 5}, T0)
        pool.update_many({"_id": ids["mlp"]}, {"status": "done", "res": {"score": 0.7}}, T0 + 1)
        return ids


    @pytest.mark.parametrize(("query", "expected"), TASK_QUERIES, ids=lambda v: repr(v)[:60])
    def test_find_on_task_fields(self, pool: Pool, rows: dict[str, str], query: dict[str, Any],
                                 expected: set[str]) -> None:
        assert set(names(pool.find(query))) == expected
        assert sum(pool.counts(query).values()) == len(expected)


    def test_find_on_record_fields(self, pool: Pool, rows: dict[str, str]) -> None:
        def found(query: dict[str, Any]) -> set[str]:
            return set(names(pool.find(query)))

        everyone = {"lgb", "lgb64", "mlp", "bare"}
        assert found({"priority": {"$gt": 0}}) == {"lgb"}
        assert found({"priority": 0}) == {"lgb64", "mlp", "bare"}
        assert found({"status": "done"}) == {"mlp"}
        assert found({"status": {"$in": ["waiting"]}}) == {"lgb", "lgb64", "bare"}
        assert found({"res.score": {"$gte": 0.5}}) == {"mlp"}
        assert found({"res": None}) == {"lgb", "lgb64", "bare"}
        assert found({"res": {"score": 0.7}}) == {"mlp"}
        assert found({"updated_at": {"$gt": T0}}) == {"mlp"}
        assert found({"created_at": T0, "attempt": 0, "lease": None}) == everyone
        assert found({"error": {"$exists": True}}) == everyone
        assert found({"error.type": {"$exists": True}}) == set()
        assert found({"not_before": None}) == everyone
        assert found({"key": task_key(ROWS[0])}) == {"lgb"}
        assert found({"_id": rows["bare"]}) == {"bare"}
        assert found({"_id": {"$in": [rows["lgb"], rows["mlp"], "junk"]}}) == {"lgb", "mlp"}
        assert found({"_id": {"$ne": rows["bare"]}}) == {"lgb", "lgb64", "mlp"}
        assert found({"_id": {"$nin": [rows["bare"], "junk"]}}) == {"lgb", "lgb64", "mlp"}


    def test_find_on_lease_fields(self, pool: Pool) -> None:
        named(pool, "a", "b")
        claim(pool, T0, owner="w9", token="tk", lease=10)
        assert names(pool.find({"lease.owner": "w9"})) == ["a"]
        assert names(pool.find({"lease.until": {"$lt": T0 + 11}})) == ["a"]
        assert names(pool.find({"lease": {"$ne": None}})) == ["a"]
        assert names(pool.find({"lease.token": {"$exists": False}})) == ["b"]


    def test_find_returns_creation_order_with_skip_and_limit(self, pool: Pool) -> None:
        named(pool, *"abcde")
        pool.update_many({"name": "c"}, {"priority": 9}, T0)
        assert names(pool.find({})) == list("abcde")
        assert names(pool.find({}, skip=1, limit=2)) == ["b", "c"]
        assert names(pool.find({}, skip=4)) == ["e"]
        assert names(pool.find({}, limit=0)) == []


    def test_stored_values_round_trip_exactly(self, pool: Pool) -> None:
        definition = {"f": 0.1, "big": 2**53 + 1, "neg": -1e-7, "s": "é ✓ \"q\" \\", "t": True,
                      "n": None, "nested": {"z": [], "a": {}}}
        (task_id,) = insert(pool, definition, now=1_700_000_000.123456)
        claim(pool, 1_700_000_000.987654, token="tk", lease=0.000123)
        result = {"pred": [0.1 + 0.2, 1 / 3], "when": 1_700_000_001.000001}
        pool.finish(task_id, "tk", {"status": "done", "res": result}, None, 1_700_000_002.5)
        got = pool.get(task_id)
        assert got["def"] == definition and got["res"] == result
        assert got["created_at"] == 1_700_000_000.123456
        assert got["updated_at"] == 1_700_000_002.5
        assert isinstance(got["def"]["big"], int) and got["def"]["big"] == 2**53 + 1
        assert next(pool.find({"f": 0.1}))["_id"] == task_id
        assert next(pool.find({"s": "é ✓ \"q\" \\"}))["_id"] == task_id


    # --------------------------------------------------------------------------------------------
    # update_many, delete_many
    # --------------------------------------------------------------------------------------------


    def test_update_many_counts_matches_and_clears_the_lease(self, pool: Pool) -> None:
        ids = named(pool, "a", "b", "c")
        claim(pool, T0, token="tk")
        assert pool.update_many({"name": {"$in": ["a", "b"]}}, {"status": "waiting"}, T0 + 1) == 2
        got = pool.get(ids["a"])
        assert got["status"] == "waiting" and got["lease"] is None and got["updated_at"] == T0 + 1
        assert pool.heartbeat(ids["a"], "tk", T0 + 99, T0 + 2) is False
        assert pool.update_many({"name": "c"}, {"priority": 3}, T0 + 1) == 1
        assert pool.update_many({"name": "c"}, {"priority": 3}, T0 + 1) == 1  # a no-op still counts
        assert pool.update_many({"name": "zzz"}, {"priority": 3}, T0 + 1) == 0


    def test_update_many_to_running_keeps_the_lease(self, pool: Pool) -> None:
        (task_id,) = insert(pool, {"name": "a"})
        claim(pool, T0, token="tk")
        pool.update_many({}, {"status": "running", "priority": 2}, T0 + 1)
        assert pool.get(task_id)["lease"]["token"] == "tk"


    def test_update_many_rejects_bad_changes_and_changes_nothing(self, pool: Pool) -> None:
        ids = named(pool, "a")
        before = pool.get(ids["a"])
        with pytest.raises(QueryError, match="_id"):
            pool.update_many({}, {"priority": 1, "_id": "x"}, T0)
        with pytest.raises(TaskEncodingError, match="res"):
            pool.update_many({}, {"priority": 1, "res": {"x": object()}}, T0)
        assert pool.get(ids["a"]) == before


    def test_update_many_that_would_duplicate_a_key_fails(self, pool: Pool) -> None:
        ids = named(pool, "a", "b")
        with pytest.raises(StorageError, match="key"):
            pool.update_many({"name": "b"}, {"key": task_key({"name": "a"})}, T0)
        assert pool.get(ids["b"])["key"] == task_key({"name": "b"})


    def test_delete_many(self, pool: Pool, store: Store) -> None:
        ids = named(pool, "a", "b", "c")
        assert pool.delete_many({"name": {"$in": ["a", "b"]}}) == 2
        assert pool.get(ids["a"]) is None
        assert pool.ids_for_keys([task_key({"name": "a"})]) == {}
        assert pool.delete_many({"name": "a"}) == 0
        assert pool.delete_many({}) == 1
        assert pool.counts({}) == {}
        assert "tasks" in store.list_pools()
        (again,) = insert(pool, {"name": "a"})
        assert again != ids["a"]


    # --------------------------------------------------------------------------------------------
    # pools and stores
    # --------------------------------------------------------------------------------------------


    def test_pools_are_listed_until_dropped(self, store: Store) -> None:
        assert store.list_pools() == []
        store.pool("b")
        insert(store.pool("a"), {"name": "x"})
        assert sorted(store.list_pools()) == ["a", "b"]
        store.drop_pool("a")
        assert store.list_pools() == ["b"]
        assert store.pool("a").counts({}) == {}
        store.drop_pool("never-existed")


    def test_unknown_pool_without_create_raises(self, store: Store) -> None:
        store.pool("known")
        with pytest.raises(UnknownNameError, match="known"):
            store.pool("unknown", create=False)
        assert store.pool("known", create=False).name == "known"


    def test_data_survives_reopening_the_store(self, store_url: Any, store: Store) -> None:
        ids = named(store.pool("p"), "a", "b")
        claim(store.pool("p"), T0, token="tk")
        store.close()
        again = get_storage(store_url)
        try:
            assert again.list_pools() == ["p"]
            pool = again.pool("p", create=False)
            assert pool.get(ids["a"])["lease"]["token"] == "tk"
            assert pool.counts({}) == {"running": 1, "waiting": 1}
            assert pool.insert_many([(task_key({"name": "b"}), {"name": "b"})], T0) == [
                (ids["b"], False)]
        finally:
            again.close()


    @pytest.mark.parametrize("query", [
        {"h": {"$regex": "x"}}, {"$nor": [{}]}, {"h": {"$in": 5}}, {"h": {"$exists": 1}},
        {"h": {"$lt": [1]}}, {"h": {"$gt": None}}, {"$or": []}, ["h"], {"a..b": 1},
    ])
    def test_every_operation_rejects_an_invalid_query(self, pool: Pool, query: Any) -> None:
        named(pool, "a")
        calls = [
            lambda: list(pool.find(query)),
            lambda: pool.counts(query),
            lambda: claim(pool, query=query),
            lambda: pool.update_many(query, {"priority": 1}, T0),
            lambda: pool.delete_many(query),
        ]
        for call in calls:
            with pytest.raises(QueryError):
                call()
        assert pool.counts({}) == {"waiting": 1}
        assert next(pool.find({}))["priority"] == 0


    # --------------------------------------------------------------------------------------------
    # concurrency
    # --------------------------------------------------------------------------------------------


    def test_threads_claim_each_task_once(self, store: Store) -> None:
        pool = store.pool("tasks")
        ids = set(insert(pool, *({"i": i} for i in range(40))))
        claimed: list[str] = []
        lock = threading.Lock()

        def worker(n: int) -> None:
            while (task := claim(pool, T0, owner=f"t{n}", token=f"t{n}")) is not None:
                with lock:
                    claimed.append(task["_id"])

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(claimed) == sorted(ids)


    @pytest.mark.slow
    def test_processes_claim_each_task_once(self, store_url: str, store: Store) -> None:
        if not store.shared_across_processes:
            pytest.skip(f"{store.url} is private to one process")
        pool = store.pool("tasks")
        ids = set(insert(pool, *({"i": i} for i in range(300))))
        per_worker = claim_in_processes(store_url, "tasks", workers=4, timeout=120)
        claimed = [task_id for got in per_worker.values() for task_id in got]
        assert sorted(claimed) == sorted(ids)
        assert pool.counts({}) == {"done": 300}
        assert {rec["attempt"] for rec in pool.find({})} == {1}

    # ----------------------------------------------------------------------------------------
    # the stored task is the store's own copy; types are kept as given
    # ----------------------------------------------------------------------------------------

    def test_changing_the_callers_objects_afterwards_changes_nothing_stored(
            self, pool: Pool) -> None:
        definition = {"name": "a", "seg": ["2017-01-03", "2017-12-29"], "model": {"lr": 0.1}}
        types = {"seg": "tuple"}
        (task_id,) = [i for i, _ in pool.insert_many(
            [(task_key(definition), definition, types)], T0)]
        definition["seg"].append("2018-01-02")
        definition["model"]["lr"] = 9.0
        types["seg"] = "list"
        result = {"pred": [1, 2]}
        claim(pool, T0, token="tk")
        pool.finish(task_id, "tk", {"status": "done", "res": result}, None, T0 + 1)
        result["pred"].append(3)
        error = {"type": "E", "message": "m", "traceback": ""}
        pool.update_many({"_id": task_id}, {"error": error}, T0 + 2)
        error["type"] = "changed"
        got = pool.get(task_id)
        assert got["def"] == {"name": "a", "seg": ["2017-01-03", "2017-12-29"],
                              "model": {"lr": 0.1}}
        assert got["types"] == {"seg": "tuple"}
        assert got["res"] == {"pred": [1, 2]} and got["error"]["type"] == "E"
        got["def"]["name"] = "mutated by a reader"
        assert pool.get(task_id)["def"]["name"] == "a"

    def test_types_are_stored_at_insert_and_returned_by_every_read(self, pool: Pool) -> None:
        types = {"seg": {"kind": "tuple"}, "start": {"kind": "Timestamp"}}
        a, b = {"name": "a"}, {"name": "b"}
        got = pool.insert_many([(task_key(a), a, types), (task_key(b), b)], T0)
        (id_a, _), (id_b, _) = got
        assert pool.get(id_a)["types"] == types and pool.get(id_b)["types"] is None
        assert {rec["_id"]: rec["types"] for rec in pool.find({})} == {id_a: types, id_b: None}
        claimed = claim(pool, T0, token="tk")
        assert claimed["_id"] == id_a and claimed["types"] == types
        done = pool.finish(id_a, "tk", {"status": "done"}, None, T0 + 1)
        assert done["types"] == types
        assert names(pool.find({"types.seg.kind": "tuple"})) == ["a"]
        assert names(pool.find({"types": None})) == ["b"]

    def test_types_are_not_part_of_the_key(self, pool: Pool) -> None:
        a = {"name": "a"}
        first = pool.insert_many([(task_key(a), a, {"x": "tuple"})], T0)
        again = pool.insert_many([(task_key(a), a, {"x": "list"})], T0)
        assert again == [(first[0][0], False)]
        assert pool.get(first[0][0])["types"] == {"x": "tuple"}

    def test_types_that_are_not_a_dict_are_refused(self, pool: Pool) -> None:
        with pytest.raises(StorageError, match=r"item 0: types must be a dict or None.*'tuple'"):
            pool.insert_many([("k1", {"n": 1}, "tuple")], T0)
        assert pool.counts({}) == {}

    # ----------------------------------------------------------------------------------------
    # which expired lease a claim takes
    # ----------------------------------------------------------------------------------------

    def test_a_claim_takes_only_the_expired_lease_of_its_own_status(self, pool: Pool) -> None:
        ids = named(pool, "from_part_done", "from_waiting")
        pool.update_many({"_id": ids["from_part_done"]}, {"status": "part_done"}, T0)
        claim(pool, T0, status="part_done", owner="w1", token="a", lease=5)
        claim(pool, T0, status="waiting", owner="w2", token="b", lease=5)
        got = claim(pool, T0 + 10, status="waiting", owner="w3", token="c")
        assert got is not None and got["_id"] == ids["from_waiting"]
        assert got["attempts"] == [lost_attempt(1, "w2", T0, T0 + 10)]
        assert claim(pool, T0 + 10, status="waiting", token="d") is None
        other = pool.get(ids["from_part_done"])
        assert other["lease"]["token"] == "a" and other["attempts"] == []

    # ----------------------------------------------------------------------------------------
    # the backend selects what the reference matcher selects, at the boundaries
    # ----------------------------------------------------------------------------------------

    @pytest.mark.parametrize("query", BOUNDARY_QUERIES, ids=lambda q: repr(q)[:60])
    def test_values_equal_to_a_stored_value_select_what_the_matcher_selects(
            self, pool: Pool, query: dict[str, Any]) -> None:
        insert(pool, *BOUNDARY_ROWS)
        records = list(pool.find({}))
        expected = [rec["def"]["n"] for rec in records if matches(rec, query)]
        assert [rec["def"]["n"] for rec in pool.find(query)] == expected
        assert sum(pool.counts(query).values()) == len(expected)

    # ----------------------------------------------------------------------------------------
    # a corrupt stored task is skipped and reported, never handed out
    # ----------------------------------------------------------------------------------------

    def test_find_skips_a_corrupt_task_and_logs_it(self, store: Store, pool: Pool,
                                                   corrupt_task: CorruptTask,
                                                   caplog: pytest.LogCaptureFixture) -> None:
        ids = named(pool, "a", "bad", "c")
        corrupt_task(store, pool.name, ids["bad"])
        with caplog.at_level(logging.WARNING, logger="taskloom.storage"):
            assert names(pool.find({})) == ["a", "c"]
        assert f"pool 'tasks': task {ids['bad']} is corrupt" in caplog.text
        assert pool.counts({}) == {"waiting": 3}
        with pytest.raises(StorageError, match=f"task {ids['bad']} is corrupt"):
            pool.get(ids["bad"])

    def test_a_claim_marks_a_corrupt_task_failed_and_takes_the_next(
            self, store: Store, pool: Pool, corrupt_task: CorruptTask,
            caplog: pytest.LogCaptureFixture) -> None:
        ids = named(pool, "bad", "good")
        corrupt_task(store, pool.name, ids["bad"])
        with caplog.at_level(logging.ERROR, logger="taskloom.storage"):
            got = claim(pool, T0, token="tk", lease=10_000)
        assert got is not None and got["_id"] == ids["good"]
        assert f"task {ids['bad']} is corrupt" in caplog.text
        assert claim(pool, T0 + 1000, token="again") is None  # failed, not waiting or running
        assert pool.counts({}) == {"failed": 1, "running": 1}
        assert pool.counts({"error.type": "CorruptRecord", "lease": None}) == {"failed": 1}
        prefix = f"pool 'tasks': task {ids['bad']} is corrupt ("
        starts_with_prefix = {"$gte": prefix, "$lt": prefix + "\U0010ffff"}  # no decoding
        assert pool.counts({"_id": ids["bad"], "error.message": starts_with_prefix}) == {
            "failed": 1}

    # ----------------------------------------------------------------------------------------
    # input is checked once, before the backend sees it
    # ----------------------------------------------------------------------------------------

    @pytest.mark.parametrize(("call", "message"), [
        (lambda p: claim(p, status=""), "status must be a non-empty string, got ''"),
        (lambda p: claim(p, owner=None), "owner must be a non-empty string, got None"),
        (lambda p: claim(p, token=""), "token must be a non-empty string, got ''"),
        (lambda p: claim(p, lease=0), "lease_seconds must be a positive number, got 0"),
        (lambda p: claim(p, now="soon"), "now must be a number, got 'soon'"),
        (lambda p: p.heartbeat("1", "", T0, T0), "token must be a non-empty string"),
        (lambda p: p.finish("1", "tk", {}, None, None), "now must be a number, got None"),
        (lambda p: list(p.find({}, limit=-1)), "limit must be an integer >= 0, got -1"),
        (lambda p: list(p.find({}, skip=1.5)), "skip must be an integer >= 0, got 1.5"),
        (lambda p: p.ids_for_keys(["k", ""]), "a task key must be a non-empty string"),
        (lambda p: p.insert_many([("k", {})], "now"), "now must be a number, got 'now'"),
    ], ids=lambda v: v if isinstance(v, str) else "")
    def test_bad_arguments_are_refused_naming_the_field_and_value(
            self, pool: Pool, call: Callable[[Pool], Any], message: str) -> None:
        named(pool, "a")
        before = list(pool.find({}))
        with pytest.raises(StorageError, match=message.replace("(", r"\(")):
            call(pool)
        assert list(pool.find({})) == before

    @pytest.mark.parametrize("name", ["", None, "a\0b"])
    def test_bad_pool_names_are_refused(self, store: Store, name: Any) -> None:
        with pytest.raises(StorageError, match="pool name"):
            store.pool(name)
        assert store.list_pools() == []
