"""taskloom.current_task(): the pool task code runs for, here and in force_release children."""

from __future__ import annotations

import os
import time

import pytest
from taskloom import current_task
from taskloom.manager import TaskManager, run_task
from taskloom.running import RunningTask

from record.record_handlers import running_task


def test_there_is_no_current_task_outside_an_attempt():
    assert current_task() is None
    assert running_task({}) is None


@pytest.mark.parametrize("force_release", [False, True], ids=["in-process", "child"])
def test_a_handler_sees_the_task_it_runs_for(pool_url, force_release):
    tm = TaskManager("running", pool_url)
    (task_id,) = tm.create_task([{"i": 1}])
    run_task(running_task, "running", storage=pool_url, force_release=force_release)
    task = tm.re_query(task_id)
    seen = task["res"]
    assert seen["pool"] == "running" and seen["task_id"] == task_id
    assert seen["key"] == task["key"] and seen["attempt"] == 1
    assert seen["owner"] == task["attempts"][-1]["owner"]
    assert seen["storage"] == pool_url
    assert (seen["pid"] != os.getpid()) == force_release
    assert current_task() is None  # reset once the attempt ended


def test_the_current_task_is_reset_when_the_handler_raises(pool_url):
    tm = TaskManager("raising", pool_url)
    tm.create_task([{"i": 1}])

    def boom(param):
        assert current_task() is not None
        raise ValueError("boom")

    with pytest.raises(ValueError):
        run_task(boom, "raising", storage=pool_url)
    assert current_task() is None


def test_a_task_cannot_have_been_reclaimed_in_the_first_half_of_its_lease(pool_url):
    tm = TaskManager("leased", pool_url)
    (task_id,) = tm.create_task([{"i": 1}])
    run_task(running_task, "leased", storage=pool_url, lease_seconds=30.0)
    seen = tm.re_query(task_id)["res"]
    assert seen["lease_until"] - seen["claimed_at"] == pytest.approx(30.0)
    assert seen["may_be_reclaimed"] is False  # the handler ran well within half the lease


def test_past_half_its_lease_or_without_lease_times_a_task_may_have_been_reclaimed():
    now = time.time()
    task = RunningTask("p", "1", "k", 1, "me", claimed_at=now - 16.0, lease_until=now + 14.0)
    assert task.may_be_reclaimed()
    fresh = RunningTask("p", "1", "k", 1, "me", claimed_at=now - 1.0, lease_until=now + 29.0)
    assert not fresh.may_be_reclaimed()
    assert RunningTask("p", "1", "k", 1, "me").may_be_reclaimed()
