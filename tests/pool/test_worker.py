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
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from taskloom.cli import main
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
    assert err.count("attempts (") == 4  # one summary line per process


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
    for stranding in ("running", "waiting", "failed", "cancelled"):
        with pytest.raises(ValueError, match=f"after_status {stranding!r} is not allowed"):
            WorkerConfig(pool="p", handler="noop", after_status=stranding)
    assert WorkerConfig(pool="p", handler="noop", after_status="reviewed").after_status == (
        "reviewed")


def test_work_counts_a_handler_that_calls_sys_exit_as_a_failed_attempt(tmp_path):
    url = f"sqlite:///{tmp_path}/w.db"
    tm = TaskManager("w", url)
    (task_id,) = tm.create_task([{"i": 0}])
    tm.create_task([{"i": 1}])
    config = WorkerConfig(pool="w", storage=url, handler="pool.pool_handlers:exit_now",
                          idle_exit=0, retry_policy={"max_attempts": 2, "backoff_seconds": 0})
    assert work(config) == Counter({"retried": 2, "failed": 2})
    task = tm.re_query(task_id)
    assert task["status"] == "failed" and "sys.exit(3)" in task["error"]["message"]
    assert tm.task_stat() == {"failed": 2}


def test_work_records_an_exception_whose_str_raises_and_carries_on(tmp_path):
    url = f"sqlite:///{tmp_path}/w.db"
    tm = TaskManager("w", url)
    tm.create_task([{"i": 0}, {"i": 1}])
    config = WorkerConfig(pool="w", storage=url, handler="pool.pool_handlers:fail_unprintably",
                          idle_exit=0, retry_policy={"max_attempts": 1})
    assert work(config) == Counter({"failed": 2})
    for task in tm.query():
        assert task["status"] == "failed" and task["lease"] is None
        assert task["error"]["type"] == "pool.pool_handlers.UnprintableError"


def worker_cli(url: str, *args: str):
    """``taskloom worker`` in-process; for arguments refused before any worker starts."""
    return CliRunner().invoke(main, ["worker", "p", "--storage", url, *args])


def test_the_worker_refuses_an_after_status_that_strands_tasks(sqlite_url):
    TaskManager("p", sqlite_url).create_task([{"i": 0}])
    for status in ("running", "waiting", "failed", "cancelled"):
        result = worker_cli(sqlite_url, "--handler", "noop", "--after-status", status)
        assert result.exit_code == 2
        assert "Invalid value for '--after-status'" in result.output and repr(status) in (
            result.output)
    assert TaskManager("p", sqlite_url).task_stat() == {"waiting": 1}


@pytest.mark.parametrize(("source", "shown"), [
    (None, "ModuleNotFoundError: No module named 'handler_module_"),
    ("def train(param:\n", "SyntaxError"),
    ("raise RuntimeError('needs a GPU')\n", "RuntimeError: needs a GPU"),
    ("train = 5\n", "is not callable (it is the int 5)"),
    ("x = 1\n", "has no 'train'"),
])
def test_the_worker_says_why_a_handler_cannot_be_loaded(sqlite_url, tmp_path, monkeypatch,
                                                       source, shown):
    TaskManager("p", sqlite_url).create_task([{"i": 0}])
    module = f"handler_module_{uuid.uuid4().hex[:8]}"
    if source is not None:
        (tmp_path / f"{module}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    for option in ("--handler", "--init"):
        args = (["--handler", f"{module}:train"] if option == "--handler"
                else ["--handler", "noop", "--init", f"{module}:train"])
        result = worker_cli(sqlite_url, *args)
        assert result.exit_code == 2, result.output
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith(f"error: {option} '{module}:train'") and shown in line, line
    assert TaskManager("p", sqlite_url).task_stat() == {"waiting": 1}


def test_the_worker_checks_its_query_before_starting(sqlite_url):
    TaskManager("p", sqlite_url).create_task([{"i": 0}])
    result = worker_cli(sqlite_url, "--handler", "noop", "--query", '{"$regex": 1}')
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error:") and "$regex" in line
    assert TaskManager("p", sqlite_url).task_stat() == {"waiting": 1}


def test_a_worker_never_creates_a_store(tmp_path):
    typo = tmp_path / "typo.db"
    result = worker_cli(f"sqlite:///{typo}", "--handler", "noop")
    assert result.exit_code == 2
    assert "no such store" in result.stderr and str(typo) in result.stderr
    assert not typo.exists()


def test_a_stop_after_the_claim_gives_the_task_back_before_the_handler_runs(sqlite_url,
                                                                            tmp_path):
    tm = TaskManager("early", sqlite_url)
    (task_id,) = tm.create_task([{"i": 0}])
    log = tmp_path / "runs.log"
    worker = start_worker(sqlite_url, "early", log, "--handler", "pool_handlers:record",
                          "--init", "pool_handlers:stop_on_claim", "--idle-exit", "5")
    out, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err
    assert "1 attempts (1 returned)" in err
    task = tm.re_query(task_id)
    assert task["status"] == "waiting" and task["lease"] is None
    assert [entry["outcome"] for entry in task["attempts"]] == ["returned"]
    assert not log.exists()  # the handler never ran


def test_init_runs_once_in_each_worker_process_before_its_first_task(sqlite_url, tmp_path):
    tm = TaskManager("init", sqlite_url)
    tm.create_task([{"i": i} for i in range(40)])
    worker = start_worker(sqlite_url, "init", tmp_path / "runs.log", "-c", "2",
                          "--handler", "pool_handlers:setup_seen",
                          "--init", "pool_handlers:set_up", "--idle-exit", "1")
    out, err = worker.communicate(timeout=120)
    assert worker.returncode == 0, err
    seen = [task["res"] for task in tm.query()]
    assert len(seen) == 40 and all(s["setup"] == "ready" and s["calls"] == 1 for s in seen)
    assert worker.pid not in {s["pid"] for s in seen}


def test_the_parent_exits_non_zero_when_one_of_its_workers_fails(sqlite_url, tmp_path):
    tm = TaskManager("mixed", sqlite_url)
    (poison,) = tm.create_task([{"poison": True}])
    tm.create_task([{"i": i} for i in range(20)])
    worker = start_worker(sqlite_url, "mixed", tmp_path / "runs.log", "-c", "2",
                          "--handler", "pool_handlers:fail_on_poison", "--stop-on-error",
                          "--max-attempts", "1", "--idle-exit", "1")
    out, err = worker.communicate(timeout=120)
    assert worker.returncode == 1, err
    assert err.count("stopped on error: RuntimeError") == 1  # one child failed ...
    assert err.count("attempts (") == 1  # ... and the other ended normally
    assert "exited with code 1" in err
    assert tm.re_query(poison)["status"] == "failed"
    assert tm.task_stat() == {"failed": 1, "done": 20}


def child_pids(parent: int) -> set[int]:
    """The ids of the live processes whose parent is ``parent`` (from /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
                found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_sigterm_while_the_children_start_stops_them_all_and_exits_0(sqlite_url, tmp_path):
    tm = TaskManager("boot", sqlite_url)
    tm.create_task([{"i": i, "seconds": 60} for i in range(4)])
    worker = start_worker(sqlite_url, "boot", tmp_path / "runs.log", "-c", "2",
                          "--handler", "pool_handlers:record_slowly")
    wait_until(lambda: len(child_pids(worker.pid)) >= 2, 60, "the children to be started")
    children = child_pids(worker.pid)
    worker.send_signal(signal.SIGTERM)
    out, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err
    wait_until(lambda: not any(alive(pid) for pid in children), 10, "the children to end")
    assert tm.task_stat() == {"waiting": 4}


def test_the_parent_names_a_worker_that_was_killed_and_exits_non_zero(sqlite_url, tmp_path):
    tm = TaskManager("killed", sqlite_url)
    tm.create_task([{"i": i, "seconds": 60} for i in range(2)])
    worker = start_worker(sqlite_url, "killed", tmp_path / "runs.log", "-c", "2",
                          "--handler", "pool_handlers:record_slowly")
    wait_until(lambda: tm.task_stat() == {"running": 2}, 60, "both tasks to start")
    victim, survivor = (int(task["lease"]["owner"].split(":")[1]) for task in tm.query())
    os.kill(victim, signal.SIGKILL)
    time.sleep(0.3)
    worker.send_signal(signal.SIGTERM)
    out, err = worker.communicate(timeout=60)
    assert worker.returncode == 1
    assert f"worker process {victim} was killed by signal SIGKILL" in err
    assert f"worker process {survivor}" not in err and not alive(survivor)
