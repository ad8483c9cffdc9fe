"""``taskloom generate``: the window table, JSON lines output, and one-line errors (exit 2)."""

from __future__ import annotations

import importlib.util
import json
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner
from taskloom.cli import main

from .conftest import CALENDAR_FILE, EXAMPLE_TEMPLATE

ROLLING = ["-g", "rolling", "-p", "step=250", "-p", "rtype=sliding", "--calendar",
           str(CALENDAR_FILE)]


def invoke(*args: str):
    return CliRunner().invoke(main, ["generate", *args])


def write_template(tmp_path: Path, task, name: str = "task.yaml") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(task) if name.endswith(".json") else yaml.safe_dump(task))
    return path


def example() -> dict:
    return yaml.safe_load(EXAMPLE_TEMPLATE.read_text())


def test_table_and_json_lines(tmp_path):
    out_file = tmp_path / "tasks.jsonl"
    result = invoke(str(EXAMPLE_TEMPLATE), *ROLLING, "-o", str(out_file))
    assert result.exit_code == 0, result.output
    assert "4 tasks from rolling_lgbm.yaml (rolling)" in result.stdout
    rows = [line for line in result.stdout.splitlines() if line.startswith("│")]
    assert len(rows) == 4
    assert "2008-01-02 .. 2014-12-31" in rows[0] and "2017-01-02 .. 2017-12-20" in rows[0]
    assert "2019-12-09 .. 2020-11-27" in rows[3] and "2020-11-27" in rows[3].split("│")[-2]
    assert f"wrote 4 tasks to {out_file}" in result.stdout
    tasks = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert len(tasks) == 4
    assert tasks[1]["dataset"]["kwargs"]["segments"] == {
        "train": ["2008-12-23", "2015-12-22"], "valid": ["2015-12-23", "2017-12-20"],
        "test": ["2017-12-21", "2018-12-13"]}
    assert tasks[0]["model"] == example()["model"]


def test_json_templates_lists_and_qlib_workflow_configs(tmp_path):
    json_file = write_template(tmp_path, [example(), example()], "tasks.json")
    result = invoke(str(json_file), *ROLLING)
    assert result.exit_code == 0, result.output
    assert "8 tasks" in result.stdout
    workflow = write_template(tmp_path, {"qlib_init": {"region": "cn"}, "task": example()})
    result = invoke(str(workflow), "-g", "multi_horizon", "-p", "horizons=[1, 5, 20]",
                    "--calendar", str(CALENDAR_FILE))
    assert result.exit_code == 0, result.output
    assert "3 tasks" in result.stdout and "2015-01-02 .. 2016-12-22" in result.stdout


@pytest.mark.parametrize("mutate, args, message", [
    (lambda t: t["dataset"]["kwargs"].pop("segments"), ROLLING,
     "no segments at 'dataset.kwargs.segments'"),
    (lambda t: t["dataset"]["kwargs"]["segments"].update(test=["2017-01-01", "later"]), ROLLING,
     "segment 'test': end 'later' is not a date"),
    (lambda t: t["dataset"]["kwargs"]["segments"].update(valid="2015"), ROLLING,
     "segment 'valid': expected a (start, end) pair"),
    (lambda t: None, ["-g", "rolling", "-p", "step=0", "--calendar", str(CALENDAR_FILE)],
     "step must be >= 1"),
    (lambda t: None, ["-g", "rolling", "-p", "stpe=20", "--calendar", str(CALENDAR_FILE)],
     "generator 'rolling' has no parameter 'stpe'"),
    (lambda t: None, ["-g", "rolling", "-p", "step"], "'--param': 'step': expected KEY=VALUE"),
    (lambda t: None, ["-g", "rolling"], "needs a trading calendar"),
    (lambda t: None, ["-g", "rollin", "--calendar", str(CALENDAR_FILE)],
     "unknown generator 'rollin'"),
    (lambda t: None, [*ROLLING, "--exchange", "XSHG"], "not both"),
    (lambda t: None, ["-g", "multi_horizon", "-p", "horizon_path=5", "--calendar",
                      str(CALENDAR_FILE)], "horizon_path must be dotted keys"),
])
def test_invalid_input_is_one_error_line_and_exit_2(tmp_path, mutate, args, message):
    task = example()
    mutate(task)
    result = invoke(str(write_template(tmp_path, task)), *args)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error:") and message in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize("text, message", [
    ("model: [unclosed", "not valid YAML"),
    ("- just a string\n", "[0] must be a task mapping, got str"),
    ("42\n", "top level must be a task mapping, got int"),
])
def test_malformed_template_files(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    result = invoke(str(path), *ROLLING)
    assert result.exit_code == 2 and message in result.stderr, result.output
    missing = invoke(str(tmp_path / "nope.yaml"), *ROLLING)
    assert missing.exit_code == 2 and "cannot read it" in missing.stderr


@pytest.mark.skipif(importlib.util.find_spec("exchange_calendars") is None,
                    reason="exchange_calendars is not installed (taskloom[calendars])")
def test_exchange_calendar():
    result = invoke(str(EXAMPLE_TEMPLATE), "-g", "rolling", "-p", "step=550", "-p",
                    "rtype=sliding", "--exchange", "XSHG")
    assert result.exit_code == 0, result.output
    # Spec §4.1: on XSHG the first 550-day test window ends 2019-04-08.
    assert "2017-01-03 .. 2019-04-08" in result.stdout


def test_console_script_end_to_end(tmp_path):
    out_file = tmp_path / "tasks.jsonl"
    result = subprocess.run(
        [sys.executable, "-m", "taskloom", "generate", str(EXAMPLE_TEMPLATE), *ROLLING, "-o",
         str(out_file)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert len(out_file.read_text().splitlines()) == 4


def test_submit_to_a_pool_is_idempotent(tmp_path):
    from taskloom import TaskManager

    storage = f"sqlite:///{tmp_path}/pool.db"
    first = invoke(str(EXAMPLE_TEMPLATE), *ROLLING, "--pool", "study", "--storage", storage)
    assert first.exit_code == 0, first.output
    assert "4 new, 0 already there" in first.stdout
    again = invoke(str(EXAMPLE_TEMPLATE), *ROLLING, "--pool", "study", "--storage", storage)
    assert "0 new, 4 already there" in again.stdout
    tasks = list(TaskManager("study", storage=storage).query())
    assert [t["status"] for t in tasks] == ["waiting"] * 4
    test = tasks[3]["def"]["dataset"]["kwargs"]["segments"]["test"]
    assert test == (pd.Timestamp("2019-12-09"), pd.Timestamp("2020-11-27"))  # as generated
    stored = TaskManager("study", storage=storage).pool.get(tasks[3]["_id"])
    assert stored["def"]["dataset"]["kwargs"]["segments"]["test"] == ["2019-12-09", "2020-11-27"]


def test_a_task_without_json_form_writes_no_file(tmp_path):
    out_file = tmp_path / "tasks.jsonl"
    template = tmp_path / "task.yaml"
    template.write_text(yaml.safe_dump(example()) + "tags: !!set {a: null, b: null}\n")
    result = invoke(str(template), *ROLLING, "-o", str(out_file), "--pool", "p",
                    "--storage", f"sqlite:///{tmp_path}/pool.db")
    assert result.exit_code == 2
    assert "tags: set value" in result.stderr
    assert not out_file.exists() and not list(tmp_path.glob(".*.tmp"))


def test_output_through_a_symlink_replaces_the_target_and_keeps_its_mode(tmp_path):
    target = tmp_path / "real" / "tasks.jsonl"
    target.parent.mkdir()
    target.write_text("old\n")
    target.chmod(0o640)
    link = tmp_path / "link.jsonl"
    link.symlink_to(target)
    result = invoke(str(EXAMPLE_TEMPLATE), *ROLLING, "-o", str(link))
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and link.resolve() == target
    assert len(target.read_text().splitlines()) == 4
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert sorted(p.name for p in target.parent.iterdir()) == ["tasks.jsonl"]


def test_output_to_a_fifo_is_written_in_place(tmp_path):
    fifo = tmp_path / "tasks.fifo"
    os.mkfifo(fifo)
    received: list[str] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_text()), daemon=True)
    reader.start()
    result = invoke(str(EXAMPLE_TEMPLATE), *ROLLING, "-o", str(fifo))
    reader.join(timeout=30)
    assert result.exit_code == 0, result.output
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    assert len(received[0].splitlines()) == 4


def test_output_to_dev_stdout_writes_the_open_file_instead_of_replacing_it(tmp_path):
    captured = tmp_path / "captured.txt"
    with captured.open("w") as stdout:
        subprocess.run([sys.executable, "-m", "taskloom", "generate", str(EXAMPLE_TEMPLATE),
                        *ROLLING, "-o", "/dev/stdout"], stdout=stdout, timeout=120, check=True)
    text = captured.read_text()
    assert "4 tasks from rolling_lgbm.yaml" in text
    assert sum(line.startswith("{") for line in text.splitlines()) == 4


@pytest.mark.parametrize("output, message", [
    ("missing/tasks.jsonl", "directory {tmp}/missing does not exist"),
    (".", "Invalid value for '--output'"),
])
def test_an_unusable_output_path_is_named_and_nothing_is_written(tmp_path, output, message):
    storage = f"sqlite:///{tmp_path}/pool.db"
    result = invoke(str(EXAMPLE_TEMPLATE), *ROLLING, "-o", str(tmp_path / output),
                    "--pool", "p", "--storage", storage)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message.format(tmp=tmp_path) in lines[0]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("storage, message", [
    ("bogus://x", "unknown storage scheme 'bogus'"),
    ("sqlite:///{tmp}/no/such/dir/pool.db", "unable to open database file"),
    ("memory://", "Invalid value for '--storage': memory:// lives only as long as this command"),
])
def test_a_store_that_cannot_take_the_tasks_leaves_no_output_file(tmp_path, storage, message):
    out_file = tmp_path / "tasks.jsonl"
    result = invoke(str(EXAMPLE_TEMPLATE), *ROLLING, "-o", str(out_file), "--pool", "p",
                    "--storage", storage.format(tmp=tmp_path))
    assert result.exit_code == 2 and message in result.stderr, result.output
    assert list(tmp_path.iterdir()) == []


def test_unreadable_template_and_calendar_files_are_named(tmp_path):
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes(yaml.safe_dump(example()).encode() + b"# caf\xe9\n")
    result = invoke(str(latin1), *ROLLING)
    assert result.exit_code == 2, result.output
    assert f"error: template {latin1}: not UTF-8 text (byte 0xe9 at offset" in result.stderr
    calendar = tmp_path / "days.txt"
    calendar.write_bytes(CALENDAR_FILE.read_bytes() + b"# \xff\n")
    result = invoke(str(EXAMPLE_TEMPLATE), "-g", "rolling", "--calendar", str(calendar))
    assert result.exit_code == 2, result.output
    assert f"error: calendar {calendar}: not UTF-8 text (byte 0xff at offset" in result.stderr
    missing = tmp_path / "missing.txt"
    result = invoke(str(EXAMPLE_TEMPLATE), "-g", "rolling", "--calendar", str(missing))
    assert result.exit_code == 2, result.output
    assert f"error: calendar {missing}: cannot read it (No such file" in result.stderr
    for args in ([str(tmp_path), *ROLLING], [str(EXAMPLE_TEMPLATE), "-g", "rolling",
                                             "--calendar", str(tmp_path)]):
        result = invoke(*args)
        assert result.exit_code == 2 and f"'{tmp_path}' is a directory" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_files_with_a_utf8_byte_order_mark_are_read(tmp_path):
    template = tmp_path / "bom.json"
    template.write_bytes(b"\xef\xbb\xbf" + json.dumps(example()).encode())
    calendar = tmp_path / "bom.txt"
    calendar.write_bytes(b"\xef\xbb\xbf" + CALENDAR_FILE.read_bytes())
    result = invoke(str(template), "-g", "rolling", "-p", "step=250", "-p", "rtype=sliding",
                    "--calendar", str(calendar))
    assert result.exit_code == 0, result.output
    assert "4 tasks from bom.json" in result.stdout


def test_template_data_and_file_names_are_printed_as_typed(tmp_path):
    task = example()
    segments = task["dataset"]["kwargs"]["segments"]
    segments["[red]oos[/]"] = segments["test"]
    template = write_template(tmp_path, task, "[bold]t.yaml")  # "[/]" would be a directory
    out_file = tmp_path / "[u]out.jsonl"
    result = invoke(str(template), *ROLLING, "-o", str(out_file))
    assert result.exit_code == 0, result.output
    for text in ("from [bold]t.yaml", "[red]oos[/]", f"wrote 4 tasks to {out_file}"):
        assert text in result.stdout.replace("\n", ""), text
