"""``taskloom generate``: the window table, JSON lines output, and one-line errors (exit 2)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

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
    assert tasks[3]["def"]["dataset"]["kwargs"]["segments"]["test"] == ["2019-12-09", "2020-11-27"]


def test_a_task_without_json_form_writes_no_file(tmp_path):
    out_file = tmp_path / "tasks.jsonl"
    template = tmp_path / "task.yaml"
    template.write_text(yaml.safe_dump(example()) + "tags: !!set {a: null, b: null}\n")
    result = invoke(str(template), *ROLLING, "-o", str(out_file), "--pool", "p",
                    "--storage", f"sqlite:///{tmp_path}/pool.db")
    assert result.exit_code == 2
    assert "tags: set value" in result.stderr
    assert not out_file.exists() and not list(tmp_path.glob(".*.tmp"))
