"""Leases: expiry and reclaim, fencing of late commits, heartbeats, and reaping."""

from __future__ import annotations

import threading
import time

import pytest
from taskloom.errors import LeaseLostError
from taskloom.lease import LeaseKeeper
from taskloom.manager import TaskManager
from taskloom.retry import RetryPolicy
from taskloom.storage import Store

SHORT = 0.3


def manager(store: Store, pool: str, lease: float = SHORT, **kwargs) -> TaskManager:
    return TaskManager(pool, store, lease_seconds=lease, **kwargs)


def test_a_fetch_is_a_lease_with_owner_token_and_expiry(tm):
    tm.create_task([{"a": 1}])
    before = time.time()
    task = tm.fetch_task()
    lease = task["lease"]
    host, pid, _ = lease["owner"].split(":")
    assert pid.isdigit() and host
    assert len(lease["token"]) >= 16 and lease["from_status"] == "waiting"
    assert before + tm.lease_seconds <= lease["until"] <= time.time() + tm.lease_seconds
    assert task["attempt"] == 1


def test_an_expired_lease_is_claimed_again_and_the_zombie_cannot_commit(store):
    zombie = manager(store, "p")
    (task_id,) = zombie.create_task([{"a": 1}])
    stale = zombie.fetch_task()
    assert manager(store, "p").fetch_task() is None  # still leased
    time.sleep(SHORT + 0.1)
    worker = manager(store, "p", lease=60)
    fresh = worker.fetch_task()
    assert fresh["_id"] == task_id and fresh["attempt"] == 2
    assert fresh["attempts"][-1]["outcome"] == "lease expired"
    assert fresh["attempts"][-1]["owner"] == stale["lease"]["owner"]

    for late in (lambda: zombie.commit_task_res(stale, "stale result"),
                 lambda: zombie.return_task(stale),
                 lambda: zombie.renew(stale)):
        with pytest.raises(LeaseLostError, match=f"task {task_id}.*lost"):
            late()
    current = worker.re_query(task_id)
    assert current["status"] == "running" and current["res"] is None
    # the fresh attempt's lease, as a reader sees it (the token is the claimer's alone)
    assert current["lease"] == {k: v for k, v in fresh["lease"].items() if k != "token"}
    worker.commit_task_res(fresh, "fresh result")
    assert worker.re_query(task_id)["res"] == "fresh result"


def test_the_heartbeat_keeps_a_long_task_leased(store):
    tm = manager(store, "p")
    (task_id,) = tm.create_task([{"a": 1}])
    rival = manager(store, "p")
    with tm.safe_fetch_task() as task:
        deadline = time.time() + 4 * SHORT
        while time.time() < deadline:
            assert rival.fetch_task() is None
            time.sleep(SHORT / 4)
        tm.commit_task_res(task, "done after 4 leases")
    assert tm.re_query(task_id)["status"] == "done"


def test_an_administrative_reset_takes_the_task_from_its_worker(store):
    tm = manager(store, "p")
    (task_id,) = tm.create_task([{"a": 1}])
    admin = manager(store, "p")
    with tm.safe_fetch_task() as task:
        admin.reset_waiting()
        admin.reset_status({}, "running")  # running again, but under nobody's lease
        with pytest.raises(LeaseLostError):
            tm.commit_task_res(task, "result")
    assert admin.re_query(task_id)["res"] is None


def test_the_keeper_reports_a_lease_whose_renewal_was_rejected(store):
    tm = manager(store, "p")
    tm.create_task([{"a": 1}, {"a": 2}])
    kept, lost = tm.fetch_task(), tm.fetch_task()
    keeper = LeaseKeeper(tm.pool, SHORT)
    keeper.hold(kept["_id"], kept["lease"]["token"])
    keeper.hold(lost["_id"], lost["lease"]["token"])
    tm.reset_waiting({"_id": lost["_id"]})
    time.sleep(SHORT * 0.6)
    assert keeper.is_lost(lost["lease"]["token"])
    assert keeper.release(lost["lease"]["token"]) is True
    assert keeper.release(kept["lease"]["token"]) is False
    assert tm.re_query(kept["_id"])["lease"]["until"] > kept["lease"]["until"]


def test_renew_extends_a_fetched_lease(store):
    tm = manager(store, "p")
    tm.create_task([{"a": 1}])
    task = tm.fetch_task()
    time.sleep(SHORT * 0.7)
    tm.renew(task)
    time.sleep(SHORT * 0.7)
    assert manager(store, "p").fetch_task() is None
    tm.commit_task_res(task, 1)


def test_reap_requeues_expired_tasks_to_their_status_and_leaves_live_leases(store):
    tm = manager(store, "p")
    ids = tm.create_task([{"a": 1}, {"a": 2}, {"a": 3}])
    tm.commit_task_res(tm.fetch_task({"_id": ids[1]}), {"stage": 1}, status="part_done")
    tm.fetch_task({"_id": ids[0]})
    tm.fetch_task({"_id": ids[1]}, status="part_done")
    time.sleep(SHORT + 0.1)
    manager(store, "p", lease=60).fetch_task({"_id": ids[2]})  # a live lease
    assert tm.reap() == {"requeued": 2, "failed": 0}
    first, second, third = (tm.re_query(i) for i in ids)
    assert (first["status"], second["status"], third["status"]) == ("waiting", "part_done",
                                                                     "running")
    assert first["attempt"] == 1 and first["lease"] is None
    assert first["attempts"][-1]["outcome"] == "lease expired"
    assert second["res"] == {"stage": 1}


def test_a_task_whose_leases_expire_max_attempts_times_ends_failed(store):
    policy = RetryPolicy(max_attempts=3)
    tm = manager(store, "p", lease=0.1, retry_policy=policy)
    (task_id,) = tm.create_task([{"a": 1}])
    for attempt in (1, 2, 3):
        assert tm.fetch_task()["attempt"] == attempt  # and then the worker "dies"
        time.sleep(0.15)
    assert tm.fetch_task() is None
    task = tm.re_query(task_id)
    assert task["status"] == "failed" and task["attempt"] == 3
    assert task["error"]["type"] == "LeaseExpired" and "max_attempts=3" in task["error"]["message"]
    assert [e["outcome"] for e in task["attempts"]] == ["lease expired"] * 3


def test_reap_fails_a_task_that_used_its_attempts_on_expired_leases(store):
    tm = manager(store, "p", lease=0.1, retry_policy=RetryPolicy(max_attempts=1))
    (task_id,) = tm.create_task([{"a": 1}])
    tm.fetch_task()
    time.sleep(0.15)
    assert tm.reap() == {"requeued": 0, "failed": 1}
    assert tm.re_query(task_id)["error"]["type"] == "LeaseExpired"


def test_only_one_of_many_threads_claims_each_task(store):
    tm = manager(store, "p", lease=60)
    tm.create_task([{"n": i} for i in range(40)])
    claimed: list[str] = []
    lock = threading.Lock()

    def drain() -> None:
        own = TaskManager("p", store, lease_seconds=60)
        while (task := own.fetch_task()) is not None:
            with lock:
                claimed.append(task["_id"])

    threads = [threading.Thread(target=drain) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(claimed) == len(set(claimed)) == 40
