"""Bounded retries: backoff with jitter, the failed state with traceback and history."""

from __future__ import annotations

import random
import time

import pytest
from pydantic import ValidationError
from taskloom.manager import TaskManager, run_task
from taskloom.retry import RetryPolicy, error_info, failures

from pool import pool_handlers


def explode(param, **kwargs):
    raise RuntimeError(f"cannot train {param['name']}")


def test_backoff_grows_exponentially_up_to_its_cap():
    policy = RetryPolicy(backoff_seconds=2, backoff_factor=3, max_backoff_seconds=50, jitter=0)
    assert [policy.delay(n) for n in (1, 2, 3, 4)] == [2, 6, 18, 50]


def test_jitter_shortens_the_wait_by_at_most_its_fraction():
    policy = RetryPolicy(backoff_seconds=10, jitter=0.5)
    rng = random.Random(7)
    delays = [policy.delay(1, rng) for _ in range(200)]
    assert all(5 <= d <= 10 for d in delays) and len(set(delays)) > 100


def test_a_policy_rejects_nonsense():
    with pytest.raises(ValidationError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValidationError):
        RetryPolicy(jitter=1.5)
    with pytest.raises(ValidationError):
        RetryPolicy(max_attemps=3)


def test_failures_count_errors_and_expiries_since_the_last_retry():
    history = [{"outcome": "error"}, {"outcome": "lease expired"}, {"outcome": "returned"},
               {"outcome": "retry"}, {"outcome": "error"}, {"outcome": "done"}]
    assert failures(history) == 1
    assert failures(history[:3]) == 2


def test_error_info_names_the_type_message_and_traceback():
    try:
        explode({"name": "lgb"})
    except RuntimeError as exc:
        info = error_info(exc)
    assert info["type"] == "RuntimeError" and info["message"] == "cannot train lgb"
    assert "in explode" in info["traceback"]


def test_error_info_survives_an_exception_whose_str_raises():
    try:
        pool_handlers.fail_unprintably({})
    except pool_handlers.UnprintableError as exc:
        info = error_info(exc)
    assert info["type"] == "pool.pool_handlers.UnprintableError"
    assert "str() of the exception failed: RuntimeError" in info["message"]
    assert "in fail_unprintably" in info["traceback"]


def test_a_failing_task_waits_out_its_backoff_then_fails_with_traceback_and_history(tm):
    tm.retry_policy = RetryPolicy(max_attempts=3, backoff_seconds=0.2, jitter=0)
    (task_id,) = tm.create_task([{"name": "lgb"}])
    started = time.time()
    assert run_task(explode, tm.task_pool, storage=tm.store, on_error="retry",
                    retry_policy=tm.retry_policy)
    task = tm.re_query(task_id)
    assert task["status"] == "waiting" and task["error"]["type"] == "RuntimeError"
    assert started + 0.2 <= task["not_before"] <= time.time() + 0.2
    assert tm.fetch_task() is None  # not before its backoff

    for wait in (0.25, 0.45):
        time.sleep(wait)
        run_task(explode, tm.task_pool, storage=tm.store, on_error="retry",
                 retry_policy=tm.retry_policy)
    task = tm.re_query(task_id)
    assert task["status"] == "failed" and task["not_before"] is None
    assert task["error"]["message"] == "cannot train lgb"
    assert "in explode" in task["error"]["traceback"]
    assert [e["outcome"] for e in task["attempts"]] == ["error"] * 3
    assert [e["attempt"] for e in task["attempts"]] == [1, 2, 3]
    for entry in task["attempts"]:
        assert entry["owner"] and entry["started"] <= entry["ended"]
        assert entry["error"] == {"type": "RuntimeError", "message": "cannot train lgb"}


def test_qlib_default_stops_at_the_first_error_and_the_task_is_claimable_at_once(tm):
    ids = tm.create_task([{"name": "a"}, {"name": "b"}])
    with pytest.raises(RuntimeError, match="cannot train a"):
        run_task(explode, tm.task_pool, storage=tm.store)
    first, second = tm.re_query(ids[0]), tm.re_query(ids[1])
    assert first["status"] == "waiting" and first["not_before"] is None
    assert second["attempt"] == 0  # the loop ended before it
    assert tm.fetch_task()["_id"] == ids[0]


def test_retry_gives_failed_tasks_a_fresh_budget(tm):
    tm.retry_policy = RetryPolicy(max_attempts=1)
    ids = tm.create_task([{"name": "a"}, {"name": "b"}])
    with pytest.raises(RuntimeError):
        run_task(explode, tm.task_pool, storage=tm.store, retry_policy=tm.retry_policy)
    assert tm.task_stat() == {"failed": 1, "waiting": 1}
    assert tm.retry({"name": "b"}) == 0
    assert tm.retry() == 1
    task = tm.re_query(ids[0])
    assert task["status"] == "waiting" and task["error"] is None
    assert task["attempts"][-1]["outcome"] == "retry"
    run_task(lambda param: "fixed", tm.task_pool, storage=tm.store, retry_policy=tm.retry_policy)
    assert tm.task_stat() == {"done": 2}


def test_safe_fetch_task_counts_an_exception_as_a_failed_attempt(tm):
    tm.retry_policy = RetryPolicy(max_attempts=2)
    (task_id,) = tm.create_task([{"a": 1}])
    for _ in range(2):
        with pytest.raises(ValueError), tm.safe_fetch_task():
            raise ValueError("bad data")
    task = tm.re_query(task_id)
    assert task["status"] == "failed" and task["error"]["message"] == "bad data"


def test_a_commit_clears_the_error_of_earlier_attempts(tm):
    (task_id,) = tm.create_task([{"a": 1}])
    with pytest.raises(ValueError), tm.safe_fetch_task():
        raise ValueError("flaky")
    assert tm.re_query(task_id)["error"]["message"] == "flaky"
    run_task(lambda param: 1, tm.task_pool, storage=tm.store)
    assert tm.re_query(task_id)["error"] is None


def test_a_commit_inside_safe_fetch_task_clears_the_error_of_earlier_attempts(tm):
    (task_id,) = tm.create_task([{"a": 1}])
    with pytest.raises(ValueError), tm.safe_fetch_task():
        raise ValueError("flaky")
    assert tm.re_query(task_id)["error"]["message"] == "flaky"
    with tm.safe_fetch_task() as task:
        tm.commit_task_res(task, 1)
    task = tm.re_query(task_id)
    assert task["status"] == "done" and task["error"] is None
    assert [entry["outcome"] for entry in task["attempts"]] == ["error", "done"]


def test_a_task_manager_has_a_default_policy():
    assert TaskManager("p", "memory://defaults").retry_policy == RetryPolicy()
