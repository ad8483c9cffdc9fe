"""The recorder hook, and recording chosen on the worker command line (no MLflow needed)."""

from __future__ import annotations

import uuid

import pytest
import taskloom
from click.testing import CliRunner
from taskloom import hookimpl
from taskloom.cli import main
from taskloom.manager import TaskManager, run_task
from taskloom.recording import Recorder
from taskloom.worker import WorkerConfig, work
from taskloom_recorder.retry import is_locked, retrying


class ListRecorder:
    """Records each call as a dict in a list shared by every instance."""

    runs: list[dict] = []
    prepared: list[str] = []

    def __init__(self, experiment: str, **options):
        self.experiment = experiment
        self.options = options

    def prepare(self) -> None:
        self.prepared.append(self.experiment)

    def wrap(self, handler):
        def recorded(param, **kwargs):
            task = taskloom.current_task()
            self.runs.append({"experiment": self.experiment, "param": param,
                              "task_id": task and task.task_id, "options": self.options,
                              "value": handler(param, **kwargs)})
            return {"run": len(self.runs)}
        return recorded


@pytest.fixture
def list_recorder(register_plugin):
    class Plugin:
        @hookimpl
        def taskloom_register_recorders(self, register):
            register("list", ListRecorder)

    register_plugin(Plugin())
    ListRecorder.runs.clear()
    ListRecorder.prepared.clear()
    return ListRecorder


def test_hook_taskloom_register_recorders(list_recorder):
    assert taskloom.get_recorder("list") is ListRecorder
    assert isinstance(ListRecorder("e"), Recorder)
    url = f"memory://rec-{uuid.uuid4().hex}"
    tm = TaskManager("p", url)
    (task_id,) = tm.create_task([{"i": 3}])
    run_task(lambda param: param["i"] * 2, "p", storage=url, record="exp", recorder="list",
             tracking_uri="somewhere://x")
    assert ListRecorder.prepared == ["exp"]
    assert ListRecorder.runs == [{"experiment": "exp", "param": {"i": 3}, "task_id": task_id,
                                  "options": {"tracking_uri": "somewhere://x"}, "value": 6}]
    assert tm.re_query(task_id)["res"] == {"run": 1}


def test_a_worker_records_with_the_recorder_it_is_given(list_recorder):
    url = f"memory://rec-{uuid.uuid4().hex}"
    tm = TaskManager("p", url)
    tm.create_task([{"i": 1}, {"i": 2}])
    config = WorkerConfig(pool="p", storage=url, handler="record.record_handlers:running_task",
                          record="exp", recorder="list", idle_exit=0, poll_seconds=0.01)
    assert work(config)["done"] == 2
    assert sorted(run["param"]["i"] for run in ListRecorder.runs) == [1, 2]
    assert [run["options"] for run in ListRecorder.runs] == [{}, {}]
    assert all(run["value"]["pool"] == "p" for run in ListRecorder.runs)


def test_the_worker_refuses_an_unknown_recorder_naming_the_known_ones(tmp_path):
    url = f"sqlite:///{tmp_path}/pool.db"
    TaskManager("p", url)
    result = CliRunner().invoke(main, ["worker", "p", "--storage", url, "--handler", "noop",
                                       "--record", "exp", "--recorder", "nope"])
    assert result.exit_code == 2
    assert "unknown recorder 'nope'" in result.output and "mlflow" in result.output


def test_the_worker_refuses_a_tracking_uri_without_record(tmp_path):
    url = f"sqlite:///{tmp_path}/pool.db"
    TaskManager("p", url)
    result = CliRunner().invoke(main, ["worker", "p", "--storage", url, "--handler", "noop",
                                       "--tracking-uri", "sqlite:///x.db"])
    assert result.exit_code == 2 and "needs --record" in result.output


def test_the_worker_help_shows_the_recording_options():
    result = CliRunner().invoke(main, ["worker", "--help"])
    assert "--record EXPERIMENT" in result.output
    assert "--recorder NAME" in result.output and "--tracking-uri URI" in result.output


def test_a_locked_store_is_retried_and_other_errors_are_not():
    import sqlite3

    calls = []

    def locked_twice():
        calls.append(1)
        if len(calls) < 3:
            try:
                raise sqlite3.OperationalError("database is locked")
            except sqlite3.OperationalError as exc:
                raise RuntimeError("wrapped by the store") from exc
        return "ok"

    assert retrying(locked_twice) == "ok" and len(calls) == 3

    def broken():
        calls.append(1)
        raise ValueError("no such table")

    calls.clear()
    with pytest.raises(ValueError):
        retrying(broken)
    assert len(calls) == 1
    assert not is_locked(ValueError("database is fine"))
