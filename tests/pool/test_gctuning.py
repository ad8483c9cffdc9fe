"""Loops over many tasks keep what they set up out of the cycle collector's full scans."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest
from taskloom.gctuning import SetupFrozen
from taskloom.manager import TaskManager
from taskloom.worker import WorkerConfig, work

from pool import pool_handlers


@pytest.fixture(autouse=True)
def nothing_frozen() -> Iterator[None]:
    """Each test starts and ends with no frozen objects and the collector on."""
    assert gc.get_freeze_count() == 0 and gc.isenabled()
    yield
    gc.unfreeze()
    gc.enable()


def test_settled_freezes_what_is_alive_once_and_the_block_end_unfreezes_it():
    with SetupFrozen() as setup:
        assert gc.get_freeze_count() == 0  # nothing before the loop has settled
        setup.settled()
        frozen = gc.get_freeze_count()
        assert frozen > 1000
        made = [[] for _ in range(100)]
        setup.settled()  # a second call freezes nothing new
        assert gc.get_freeze_count() <= frozen and made  # freed objects leave it
    assert gc.get_freeze_count() == 0


def test_the_block_unfreezes_when_the_loop_raises():
    with pytest.raises(RuntimeError), SetupFrozen() as setup:
        setup.settled()
        raise RuntimeError("task loop broke")
    assert gc.get_freeze_count() == 0


def test_a_process_that_froze_objects_itself_or_turned_the_collector_off_is_left_alone():
    gc.freeze()
    users = gc.get_freeze_count()
    with SetupFrozen() as setup:
        made = [[] for _ in range(1000)]
        setup.settled()
        assert gc.get_freeze_count() <= users and made  # what the loop made is not frozen
    assert gc.get_freeze_count() > 0  # the process's own freeze stays
    gc.unfreeze()
    gc.disable()
    with SetupFrozen() as setup:
        setup.settled()
        assert gc.get_freeze_count() == 0


def test_run_claimable_freezes_after_the_first_task_until_the_loop_ends(tmp_path: Path):
    tm = TaskManager("gc", f"sqlite:///{tmp_path}/p.db")
    tm.create_task([{"n": n} for n in range(3)])
    assert tm.run_claimable(pool_handlers.freeze_count) == 3
    frozen = [task["res"]["frozen"] for task in tm.query({"status": "done"})]
    assert frozen[0] == 0 and frozen[1] > 1000 and frozen[2] > 1000
    assert gc.get_freeze_count() == 0


def test_a_worker_loop_freezes_after_the_first_task_until_it_ends(tmp_path: Path):
    url = f"sqlite:///{tmp_path}/p.db"
    tm = TaskManager("gc", url)
    tm.create_task([{"n": n} for n in range(3)])
    config = WorkerConfig(pool="gc", storage=url, handler="pool.pool_handlers:freeze_count",
                          idle_exit=0)
    assert work(config) == {"done": 3}
    frozen = [task["res"]["frozen"] for task in tm.query({"status": "done"})]
    assert frozen[0] == 0 and frozen[1] > 1000
    assert gc.get_freeze_count() == 0
