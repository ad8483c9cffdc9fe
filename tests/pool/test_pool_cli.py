"""The pool commands, run in-process with click's runner on a SQLite store."""

from __future__ import annotations

import time

import pytest
from click.testing import CliRunner, Result
from taskloom.cli import main
from taskloom.manager import TaskManager
from taskloom.retry import RetryPolicy

from pool.pool_cli import run_cli


def cli(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=input)


def one_error_line(result: Result, text: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and text in lines[0], lines


@pytest.fixture
def url(sqlite_url: str) -> str:
    """A store holding pool ``demo``: 2 done, 1 failed (with a traceback), 2 waiting."""
    tm = TaskManager("demo", sqlite_url, retry_policy=RetryPolicy(max_attempts=1))
    tm.create_task([{"model": "lgb", "n": n} for n in range(5)])
    for _ in range(2):
        tm.commit_task_res(tm.fetch_task(), {"ic": 0.1})
    with pytest.raises(ValueError), tm.safe_fetch_task():
        raise ValueError("no data for 2017")
    return sqlite_url


def test_status_shows_counts_progress_and_throughput(url):
    result = cli("status", "demo", "--storage", url)
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): line for line in result.output.splitlines()
            if line.count("│") > 2}
    assert "2" in rows["done"] and "1" in rows["failed"] and "2" in rows["waiting"]
    assert "3/5" in result.output and "tasks/s" in result.output


def test_status_without_a_pool_and_pools_list_every_pool(url):
    TaskManager("other", url).create_task([{"a": 1}])
    for args in (["status"], ["pools"]):
        result = cli(*args, "--storage", url)
        assert result.exit_code == 0 and "demo" in result.output and "other" in result.output


def test_the_default_storage_comes_from_the_environment(url, monkeypatch):
    monkeypatch.setenv("TASKLOOM_STORAGE", url)
    assert "demo" in cli("pools").output


def test_ls_filters_by_status_and_query_and_limits(url):
    failed = cli("ls", "demo", "--storage", url, "--status", "failed")
    assert failed.exit_code == 0 and "ValueError" in failed.output
    assert failed.output.count('"model":"lgb"') == 1
    queried = cli("ls", "demo", "--storage", url, "--query", '{"n": {"$gte": 3}}')
    assert queried.output.count('"model":"lgb"') == 2
    limited = cli("ls", "demo", "--storage", url, "--limit", "2")
    assert "2 of 5 tasks shown" in limited.output


def test_show_prints_the_task_its_attempts_and_traceback(url):
    (task,) = TaskManager("demo", url).query({"status": "failed"})
    result = cli("show", "demo", task["_id"], "--storage", url)
    assert result.exit_code == 0, result.output
    assert '"model": "lgb"' in result.output
    assert "attempts" in result.output and "error" in result.output
    assert "ValueError: no data for 2017" in result.output and "Traceback" in result.output
    one_error_line(cli("show", "demo", "424242", "--storage", url), "424242")


def test_retry_puts_failed_tasks_back(url):
    result = cli("retry", "demo", "--storage", url)
    assert result.exit_code == 0 and "retried 1" in result.output
    assert TaskManager("demo", url).task_stat() == {"done": 2, "waiting": 3}


def test_cancel_asks_before_cancelling_everything(url):
    tm = TaskManager("demo", url)
    declined = cli("cancel", "demo", "--storage", url, input="n\n")
    assert declined.exit_code == 1 and tm.task_stat().get("cancelled") is None
    waiting = [task["_id"] for task in tm.query({"status": "waiting"})]
    assert "cancelled 1" in cli("cancel", "demo", waiting[0], "--storage", url).output
    assert "cancelled 1" in cli("cancel", "demo", "--storage", url, "--yes").output
    assert tm.task_stat() == {"done": 2, "failed": 1, "cancelled": 2}


def test_remove_asks_before_removing_everything(url):
    tm = TaskManager("demo", url)
    declined = cli("remove", "demo", "--storage", url, input="n\n")
    assert declined.exit_code == 1 and "remove all 5 tasks" in declined.output
    assert sum(tm.task_stat().values()) == 5
    assert "removed 2" in cli("remove", "demo", "--storage", url, "--status", "done").output
    assert "removed 3" in cli("remove", "demo", "--storage", url, input="y\n").output
    assert tm.task_stat() == {}


def test_prioritize_accepts_negative_priorities(url):
    tm = TaskManager("demo", url)
    first, second = (task["_id"] for task in tm.query({"status": "waiting"}))
    assert cli("prioritize", "demo", first, "-3", "--storage", url).exit_code == 0
    assert tm.fetch_task()["_id"] == second
    one_error_line(cli("prioritize", "demo", "424242", "1", "--storage", url), "424242")


def test_reap_releases_expired_leases(url):
    TaskManager("demo", url, lease_seconds=0.01).fetch_task()
    time.sleep(0.05)
    result = cli("reap", "demo", "--storage", url)
    assert result.exit_code == 0 and "requeued 1" in result.output
    assert TaskManager("demo", url).task_stat()["waiting"] == 2


def test_wait_exits_1_on_timeout_and_0_when_nothing_is_left(url):
    timed_out = cli("wait", "demo", "--storage", url, "--timeout", "0.1", "--poll", "0.05")
    assert timed_out.exit_code == 1 and "still undone" in timed_out.stderr
    done = cli("wait", "demo", "--storage", url, "--query", '{"status": "done"}')
    assert done.exit_code == 0 and "nothing left to do: 2 done" in done.output


def test_unknown_pool_bad_url_bad_query_and_unknown_handler_are_one_line_exit_2(url):
    for command in (["status", "nope"], ["ls", "nope"], ["wait", "nope"], ["remove", "nope"],
                    ["worker", "nope", "--handler", "noop"]):
        one_error_line(cli(*command, "--storage", url), "unknown pool 'nope'")
    one_error_line(cli("status", "demo", "--storage", "bogus://x"), "bogus")
    one_error_line(cli("ls", "demo", "--storage", url, "--query", "{oops"), "not valid JSON")
    one_error_line(cli("ls", "demo", "--storage", url, "--query", '{"n": {"$regex": 1}}'),
                   "$regex")
    one_error_line(cli("worker", "demo", "--storage", url, "--handler", "nope"),
                   "unknown handler 'nope'")
    one_error_line(cli("worker", "demo", "--storage", url, "--handler", "no.such:module"),
                   "no.such:module")


def test_the_installed_command_reports_a_file_that_is_not_sqlite(tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database" * 100)
    result = run_cli("status", "demo", "--storage", f"sqlite:///{junk}")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "not a SQLite database" in result.stderr
