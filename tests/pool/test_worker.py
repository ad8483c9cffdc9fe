"""Worker processes on SQLite: draining, graceful stop, zombies and chaos.

Workers run as real ``taskloom worker`` subprocesses. Handlers from ``pool_handlers`` log
every execution, so the tests can tell how often each task actually ran and where.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from taskloom.manager import TaskManager
from taskloom.worker import WorkerConfig, work

from pool import pool_handlers
from pool.pool_cli import cli_env, taskloom_command

pytestmark = pytest.mark.slow


def start_worker(url: str, pool: str, log: Path, *args: str, output: Any = subprocess.PIPE
                 ) -> subprocess.Popen:
    """A ``taskloom worker`` subprocess whose handler logs to ``log``.

    Its stdout and stderr go to ``output`` (pipes by default: read them with communicate).
    """
    return subprocess.Popen(
        taskloom_command("worker", pool, "--storage", url, *args),
        env=cli_env(**{pool_handlers.LOG_ENV: str(log)}),
        stdout=output, stderr=output, text=True,
    )


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def commits(task: dict) -> list[dict]:
    return [entry for entry in task["attempts"] if entry["outcome"] in ("done", "part_done")]


def test_four_worker_processes_drain_2000_tasks_each_committed_exactly_once(sqlite_url, tmp_path):
    tm = TaskManager("big", sqlite_url)
    tm.create_task([{"i": i} for i in range(2000)])
    log = tmp_path / "runs.log"
    worker = start_worker(sqlite_url, "big", log, "--handler", "pool_handlers:record",
                          "-c", "4", "--idle-exit", "1")
    out, err = worker.communicate(timeout=180)
    assert worker.returncode == 0, err
    assert tm.task_stat() == {"done": 2000}
    ran = pool_handlers.runs(str(log))
    assert sorted(ran) == list(range(2000))
    assert all(len(pids) == 1 for pids in ran.values())
    assert len({pid for pids in ran.values() for pid in pids}) >= 2
    for task in tm.query():
        assert task["attempt"] == 1 and len(commits(task)) == 1
        assert task["res"]["i"] == task["def"]["i"]
    assert err.count("tasks (") == 4  # one summary line per process


@pytest.mark.parametrize("concurrency", ["1", "2"])
def test_sigterm_gives_back_the_running_task_and_exits_0(sqlite_url, tmp_path, concurrency):
    tm = TaskManager("term", sqlite_url)
    (task_id,) = tm.create_task([{"i": 0, "seconds": 60}])
    worker = start_worker(sqlite_url, "term", tmp_path / "runs.log", "-c", concurrency,
                          "--handler", "pool_handlers:record_slowly")
    wait_until(lambda: tm.task_stat() == {"running": 1}, 60, "the task to start")
    time.sleep(0.3)  # let the handler get going
    started = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    out, err = worker.communicate(timeout=30)
    assert worker.returncode == 0, err
    assert time.monotonic() - started < 10  # it did not sit out the 60 s task
    task = tm.re_query(task_id)
    assert task["status"] == "waiting" and task["lease"] is None
    assert [entry["outcome"] for entry in task["attempts"]] == ["returned"]


def test_a_frozen_worker_cannot_commit_after_its_task_was_reclaimed(sqlite_url, tmp_path):
    tm = TaskManager("zombie", sqlite_url, lease_seconds=60)
    (task_id,) = tm.create_task([{"i": 0, "seconds": 1.0}])
    zombie = start_worker(sqlite_url, "zombie", tmp_path / "runs.log", "--lease", "0.4",
                          "--handler", "pool_handlers:record_slowly", "--idle-exit", "0")
    wait_until(lambda: tm.task_stat() == {"running": 1}, 60, "the task to start")
    zombie.send_signal(signal.SIGSTOP)  # heartbeat thread frozen too
    try:
        time.sleep(0.6)
        newer = tm.fetch_task()
        assert newer["_id"] == task_id and newer["attempt"] == 2
        tm.commit_task_res(newer, "newer attempt")
    finally:
        zombie.send_signal(signal.SIGCONT)
    out, err = zombie.communicate(timeout=30)
    assert zombie.returncode == 0, err
    assert "lost" in err and "rejected" in err
    task = tm.re_query(task_id)
    assert task["res"] == "newer attempt"
    assert [(e["attempt"], e["outcome"]) for e in task["attempts"]] == [(1, "lease expired"),
                                                                        (2, "done")]


def test_stop_on_error_puts_the_task_back_and_exits_1(sqlite_url, tmp_path):
    tm = TaskManager("poison", sqlite_url)
    tm.create_task([{"i": 0}, {"i": 1}])
    worker = start_worker(sqlite_url, "poison", tmp_path / "runs.log", "--stop-on-error",
                          "--handler", "pool_handlers:fail", "--idle-exit", "0")
    out, err = worker.communicate(timeout=60)
    assert worker.returncode == 1
    assert "stopped on error: RuntimeError" in err
    assert tm.task_stat() == {"waiting": 2}


def test_chaos_killed_and_frozen_workers_lose_no_task_and_no_stale_commit_lands(
    sqlite_url, tmp_path
):
    """SIGKILL and SIGSTOP/SIGCONT workers at random while they drain a pool with short leases.

    At the end every task is done, or failed after its leases expired max_attempts times;
    none is lost, and every committed attempt is one whose lease never expired.
    """
    rng = random.Random(20240601)
    n_tasks, max_attempts = 600, 4
    tm = TaskManager("chaos", sqlite_url)
    tm.create_task([{"i": i, "seconds": rng.uniform(0.02, 0.08)} for i in range(n_tasks)])
    log = tmp_path / "runs.log"
    args = ("--handler", "pool_handlers:record_slowly", "--lease", "0.5", "--idle-exit", "3",
            "--max-attempts", str(max_attempts), "--backoff", "0")
    output = (tmp_path / "workers.out").open("w")
    workers = [start_worker(sqlite_url, "chaos", log, *args, output=output) for _ in range(3)]
    kills = freezes = 0
    chaos_until = time.monotonic() + 8
    deadline = time.monotonic() + 55
    try:
        while time.monotonic() < chaos_until:
            time.sleep(rng.uniform(0.2, 0.6))
            victim = rng.randrange(len(workers))
            if rng.random() < 0.7:
                workers[victim].kill()
                workers[victim].wait()
                workers[victim] = start_worker(sqlite_url, "chaos", log, *args, output=output)
                kills += 1
            else:
                workers[victim].send_signal(signal.SIGSTOP)
                time.sleep(rng.uniform(0.6, 1.2))  # longer than a lease
                workers[victim].send_signal(signal.SIGCONT)
                freezes += 1
        for worker in workers:
            worker.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
        output.close()
    stat = tm.task_stat()
    assert set(stat) <= {"done", "failed"} and sum(stat.values()) == n_tasks, stat
    assert kills >= 5 and freezes >= 1
    ran = Counter(i for i, pids in pool_handlers.runs(str(log)).items() for _ in pids)
    for task in tm.query():
        expired = {e["attempt"] for e in task["attempts"] if e["outcome"] == "lease expired"}
        if task["status"] == "done":
            (commit,) = commits(task)
            assert commit["attempt"] == task["attempt"] and commit["attempt"] not in expired
            assert task["res"]["pid"] == int(commit["owner"].split(":")[1])
            assert ran[task["def"]["i"]] >= 1
        else:
            assert task["error"]["type"] == "LeaseExpired"
            assert len(expired) == max_attempts


def test_work_in_process_stops_after_max_tasks_or_when_idle(tmp_path):
    url = f"sqlite:///{tmp_path}/w.db"
    tm = TaskManager("w", url)
    tm.create_task([{"i": i} for i in range(5)])
    config = WorkerConfig(pool="w", storage=url, handler="noop", max_tasks=3, idle_exit=0)
    assert work(config) == Counter({"done": 3})
    assert work(config.model_copy(update={"max_tasks": None})) == Counter({"done": 2})
    assert tm.task_stat() == {"done": 5}


def test_work_retries_by_default_and_fails_after_max_attempts(tmp_path):
    url = f"sqlite:///{tmp_path}/w.db"
    tm = TaskManager("w", url)
    tm.create_task([{"i": 0}])
    config = WorkerConfig(pool="w", storage=url, handler="pool.pool_handlers:fail", idle_exit=0,
                          retry_policy={"max_attempts": 2, "backoff_seconds": 0})
    assert work(config) == Counter({"retried": 1, "failed": 1})
    assert tm.task_stat() == {"failed": 1}


def test_worker_config_rejects_bad_settings():
    with pytest.raises(ValueError):
        WorkerConfig(pool="p", handler="noop", concurrency=0)
    with pytest.raises(ValueError):
        WorkerConfig(pool="p", handler="noop", before_status="running")
    assert os.environ.get("TASKLOOM_STORAGE") is None
