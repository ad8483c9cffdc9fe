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


def test_a_bug_keeps_its_traceback_instead_of_passing_for_bad_input(url, monkeypatch):
    def broken(self, query=None):
        raise ValueError("a bug in taskloom, not the user's mistake")

    monkeypatch.setattr(TaskManager, "task_stat", broken)
    result = cli("status", "demo", "--storage", url)
    assert result.exit_code == 1 and isinstance(result.exception, ValueError)
    assert "error:" not in result.stderr


def test_unknown_ids_are_named_and_nothing_is_changed(url):
    tm = TaskManager("demo", url)
    (failed,) = (task["_id"] for task in tm.query({"status": "failed"}))
    waiting = next(task["_id"] for task in tm.query({"status": "waiting"}))
    for command, known in (("retry", failed), ("cancel", waiting), ("remove", waiting)):
        result = cli(command, "demo", known, "999", "998", "--storage", url)
        one_error_line(result, "no task with ids '999', '998' in pool 'demo'")
    one_error_line(cli("cancel", "demo", "999", "--storage", url), "no task with id '999'")
    assert tm.task_stat() == {"done": 2, "failed": 1, "waiting": 2}


def test_an_unknown_status_is_a_bad_option_value_listing_the_statuses(url):
    for command in ("ls", "remove"):
        result = cli(command, "demo", "--storage", url, "--status", "bogus")
        one_error_line(result, "Invalid value for '--status': 'bogus' is not one of 'waiting', "
                               "'running', 'part_done', 'done', 'failed', 'cancelled'")
    assert sum(TaskManager("demo", url).task_stat().values()) == 5


@pytest.mark.parametrize("query, message", [
    ('{oops', "Invalid value for '--query': '{oops' is not valid JSON"),
    ('[1, 2]', "Invalid value for '--query': '[1, 2]' is not a JSON object"),
    ("[" * 100_000 + "]" * 100_000, "Invalid value for '--query': the JSON nests too deeply"),
    ('{"$and": [' * 150 + "{}" + "]}" * 150, "deeper than 100 levels"),
    ('{"n": ' + "[" * 150 + "]" * 150 + "}", "field 'n': the value nests deeper than 100 levels"),
    ('{"n": 1180591620717411303424}',
     "field 'n': 1180591620717411303424 is outside the 64-bit integer range"),
    ('{"n": {"$in": [1, -9223372036854775809]}}',
     "field 'n': -9223372036854775809 is outside the 64-bit integer range"),
])
def test_a_bad_query_is_one_error_line(url, query, message):
    for command in ("ls", "cancel", "remove"):
        one_error_line(cli(command, "demo", "--storage", url, "--query", query), message)
    assert sum(TaskManager("demo", url).task_stat().values()) == 5


def test_a_priority_beyond_64_bits_is_a_bad_value(url):
    task_id = next(TaskManager("demo", url).query({"status": "waiting"}))["_id"]
    result = cli("prioritize", "demo", task_id, str(2**70), "--storage", url)
    one_error_line(result, "Invalid value for 'PRIORITY': 1180591620717411303424 is not in")
    assert cli("prioritize", "demo", task_id, str(2**63 - 1), "--storage", url).exit_code == 0


def test_commands_never_create_a_store(tmp_path):
    typo = tmp_path / "typo.db"
    for command in (["status"], ["pools"], ["status", "demo"], ["ls", "demo"],
                    ["show", "demo", "1"], ["cancel", "demo", "1"], ["reap", "demo"],
                    ["wait", "demo"], ["remove", "demo", "1"], ["prioritize", "demo", "1", "2"]):
        result = cli(*command, "--storage", f"sqlite:///{typo}")
        one_error_line(result, f"no such store: {typo} does not exist")
    empty = tmp_path / "empty.db"
    empty.touch()
    one_error_line(cli("pools", "--storage", f"sqlite:///{empty}"), "holds no taskloom pools")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["empty.db"]


def test_sqlite_url_parameters_are_parsed_not_taken_for_the_file_name(url, tmp_path):
    read_only = f"{url}?mode=ro"
    result = cli("ls", "demo", "--storage", read_only, "--status", "failed")
    assert result.exit_code == 0 and "ValueError" in result.output
    one_error_line(cli("cancel", "demo", "--yes", "--storage", read_only),
                   "attempt to write a readonly database")
    one_error_line(cli("pools", "--storage", f"{url}?mod=ro"), "unknown parameter 'mod'")
    one_error_line(cli("pools", "--storage", f"{url}?mode=rx"), "mode=rx is not one of ro, rw, rwc")
    one_error_line(cli("pools", "--storage", f"sqlite:///{tmp_path}/new.db?mode=ro"),
                   "no such store")
    assert TaskManager("demo", url).task_stat().get("cancelled") is None
    assert not [path.name for path in tmp_path.iterdir() if "?" in path.name]


def test_user_data_is_printed_as_typed_not_as_markup(url):
    name = "[red]x[/] :fire:"
    tm = TaskManager(name, url)
    tm.create_task([{"a": 1}])
    for command in (["status", name], ["ls", name], ["pools"]):
        result = cli(*command, "--storage", url)
        assert result.exit_code == 0 and name in result.output, result.output
    result = cli("cancel", name, tm.query().__next__()["_id"], "--storage", url)
    assert "cancelled 1 tasks" in result.output
    one_error_line(cli("ls", "[bold]nope[/]", "--storage", url), "unknown pool '[bold]nope[/]'")


def test_status_says_how_many_finished_tasks_are_done_and_failed(url):
    def finished_line(result: Result) -> str:
        assert result.exit_code == 0, result.output
        return next(" ".join(line.split()) for line in result.output.splitlines()
                    if line.startswith("finished"))

    tm = TaskManager("demo", url)
    tm.cancel()
    assert finished_line(cli("status", "demo", "--storage", url)) == (
        "finished 5/5 (100.0%): 2 done, 1 failed, 2 cancelled")
    tm.remove({"status": {"$ne": "failed"}})
    assert finished_line(cli("status", "demo", "--storage", url)) == (
        "finished 1/1 (100.0%): 0 done, 1 failed")
