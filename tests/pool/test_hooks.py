"""The lifecycle hooks fire with the stored record at each step of a task's life."""

from __future__ import annotations

import pytest
from taskloom import hookimpl
from taskloom.manager import run_task
from taskloom.retry import RetryPolicy


class Observer:
    """Records every lifecycle hook call."""

    def __init__(self) -> None:
        self.events: list[tuple] = []
        self.leases: list[dict] = []

    @hookimpl
    def taskloom_task_claimed(self, pool, task):
        self.events.append(("claimed", pool, task["_id"], task["status"], task["attempt"]))
        self.leases.append(task["lease"])

    @hookimpl
    def taskloom_task_finished(self, pool, task, status):
        self.events.append(("finished", pool, task["_id"], status, task["res"]))

    @hookimpl
    def taskloom_task_failed(self, pool, task, error):
        self.events.append(("failed", pool, task["_id"], task["status"], error["type"],
                            error["message"], "Traceback" in error["traceback"]))

    @hookimpl
    def taskloom_task_retried(self, pool, task, error, delay):
        self.events.append(("retried", pool, task["_id"], task["status"], error["type"], delay))


@pytest.fixture
def observer(register_plugin) -> Observer:
    seen = Observer()
    register_plugin(seen)
    return seen


def boom(param, **kwargs):
    raise KeyError("missing column")


def test_hook_taskloom_task_claimed(tm, observer):
    (task_id,) = tm.create_task([{"a": 1}])
    task = tm.fetch_task()
    assert observer.events == [("claimed", tm.task_pool, task_id, "running", 1)]
    # an observer sees the lease but not its token, which is the claimer's alone
    assert observer.leases == [{k: v for k, v in task["lease"].items() if k != "token"}]


def test_hook_taskloom_task_finished(tm, observer):
    (task_id,) = tm.create_task([{"a": 1}])
    run_task(lambda param: {"ic": 0.1}, tm.task_pool, storage=tm.store, after_status="part_done")
    assert observer.events[-1] == ("finished", tm.task_pool, task_id, "part_done", {"ic": 0.1})


def test_hook_taskloom_task_retried(tm, observer):
    (task_id,) = tm.create_task([{"a": 1}])
    policy = RetryPolicy(max_attempts=2, backoff_seconds=30, jitter=0)
    run_task(boom, tm.task_pool, storage=tm.store, on_error="retry", retry_policy=policy)
    assert observer.events[-1] == ("retried", tm.task_pool, task_id, "waiting", "KeyError", 30)


def test_hook_taskloom_task_failed(tm, observer):
    (task_id,) = tm.create_task([{"a": 1}])
    policy = RetryPolicy(max_attempts=1)
    run_task(boom, tm.task_pool, storage=tm.store, on_error="retry", retry_policy=policy)
    assert observer.events[-1] == ("failed", tm.task_pool, task_id, "failed", "KeyError",
                                   "'missing column'", True)
    assert [event[0] for event in observer.events] == ["claimed", "failed"]
