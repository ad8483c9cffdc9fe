"""``Pool.end_and_claim`` (one attempt's end and the next claim as one step): its input checks
and the worker loop that uses it, on the memory store (the primitives' default) and on SQLite
(one transaction). What every backend must do with it is in the contract suite
(``taskloom.testing.backend``)."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from taskloom import get_storage, task_key
from taskloom.errors import StorageError
from taskloom.manager import TaskManager
from taskloom.storage import Pool
from taskloom.worker import GracefulStop, WorkerConfig, work

T0 = 1_700_000_000.0


@pytest.fixture(params=["memory", "sqlite"])
def pool(request: pytest.FixtureRequest, tmp_path: Path) -> Pool:
    if request.param == "memory":
        return get_storage(f"memory://end-claim-{uuid.uuid4().hex[:8]}").pool("p")
    return get_storage(f"sqlite:///{tmp_path}/end-claim.db").pool("p")


def _insert(pool: Pool, *names: str) -> list[str]:
    defs = [{"name": name} for name in names]
    return [task_id for task_id, _ in pool.insert_many([(task_key(d), d) for d in defs], T0)]


def _claim(pool: Pool, token: str) -> dict[str, Any]:
    task = pool.claim(status="waiting", query={}, owner="w1", token=token, lease_seconds=60,
                      now=T0)
    assert task is not None
    return task


def _end_and_claim(pool: Pool, task_id: str, token: str, **claim: Any) -> Any:
    args: dict[str, Any] = {"status": "waiting", "query": {}, "owner": "w1",
                            "new_token": "t2", "lease_seconds": 60, "now": T0 + 1, **claim}
    return pool.end_and_claim(task_id, token, {"status": "done", "res": {"r": 1}},
                              {"attempt": 1, "outcome": "done"}, **args)


@pytest.mark.parametrize(("bad", "message"), [
    ({"lease_seconds": 0}, "lease_seconds must be a positive number"),
    ({"new_token": ""}, "token must be a non-empty string"),
])
def test_bad_input_is_refused_before_anything_is_written(
    pool: Pool, bad: dict[str, Any], message: str
) -> None:
    _insert(pool, "a", "b")
    first = _claim(pool, "t1")
    with pytest.raises(StorageError, match=message):
        _end_and_claim(pool, first["_id"], "t1", **bad)
    assert pool.counts({}) == {"running": 1, "waiting": 1}


class StopAfter(GracefulStop):
    """A stop request made by the handler itself, once it has run ``n`` tasks."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.left = n

    def guard(self, func: Callable[..., Any]) -> Callable[..., Any]:
        guarded = super().guard(func)

        def counting(param: Any, **kwargs: Any) -> Any:
            result = guarded(param, **kwargs)
            self.left -= 1
            self.requested = self.left == 0
            return result

        return counting


@pytest.fixture
def manager(tmp_path: Path) -> TaskManager:
    tm = TaskManager("w", f"sqlite:///{tmp_path}/w.db")
    tm.create_task([{"i": i} for i in range(4)])
    return tm


def _config(tm: TaskManager, **options: Any) -> WorkerConfig:
    return WorkerConfig(pool="w", storage=tm.store.url, handler="noop", idle_exit=0, **options)


def test_the_last_task_a_worker_may_run_claims_no_next_one(manager: TaskManager) -> None:
    assert work(_config(manager, max_tasks=2)) == Counter({"done": 2})
    untouched = list(manager.query({"status": "waiting"}))
    assert [(t["def"]["i"], t["attempt"], t["attempts"]) for t in untouched] == [
        (2, 0, []), (3, 0, [])]


def test_a_task_claimed_with_the_commit_before_a_stop_is_given_back(
    manager: TaskManager
) -> None:
    assert work(_config(manager), StopAfter(1)) == Counter({"done": 1})
    by_i = {t["def"]["i"]: t for t in manager.query()}
    assert by_i[0]["status"] == "done"
    assert by_i[1]["status"] == "waiting"  # claimed with task 0's commit, never run
    assert [entry["outcome"] for entry in by_i[1]["attempts"]] == ["returned"]
    assert (by_i[2]["attempt"], by_i[3]["attempt"]) == (0, 0)
    assert work(_config(manager)) == Counter({"done": 3})
