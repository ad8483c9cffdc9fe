"""The recorder's two ways of writing a run: straight into MLflow's SQLite store, or its client.

A run the recorder writes with SQL must be the run MLflow's client would have written: the
same fields through ``get_run``, found by the same searches, in the same frame from
``mlflow.search_runs``. Every other store, or one whose tables changed, goes through the client.
"""

from __future__ import annotations

import math
import shutil
import sqlite3
import threading
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from taskloom_recorder import tracking
from taskloom_recorder.recorder import MlflowRecorder, RecordingError
from taskloom_recorder.runs import (
    WRITES_VARIABLE,
    ClientRuns,
    SqliteRuns,
    sqlite_layout_known,
    writer,
)

TASK = {"model": {"class": "Ridge", "kwargs": {"alpha": 10.0}},
        "dataset": {"kwargs": {"segments": {"test": ["2020-01-01", "2020-03-31"]}}},
        "tags": {"study": "writers"}}


def predict(param, **kwargs):
    """A prediction Series and metrics, the non-finite ones included."""
    index = pd.date_range("2020-01-01", periods=3, name="datetime")
    return {"pred": pd.Series([0.1, 0.2, 0.3], index=index, name="score"), "ic": 0.04,
            "nan": math.nan, "up": math.inf, "down": -math.inf}


def fail(param, **kwargs):
    raise RuntimeError("no data")


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh SQLite tracking store (its tables made by MLflow) holding experiment ``e``.

    The working directory is the test's own, where MLflow puts the experiment's artifacts.
    """
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    MlflowRecorder("e", tracking_uri=uri).prepare()
    return uri


def record(uri: str, mode: str, handler=predict) -> dict:
    """``handler`` on TASK recorded into ``uri`` with the writes ``mode``; the reference."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(WRITES_VARIABLE, mode)
        return MlflowRecorder("e", tracking_uri=uri).wrap(handler)(TASK)


def same(x: float, y: float) -> bool:
    return x == y or (math.isnan(x) and math.isnan(y))


def search_frame(uri: str, run_id: str) -> pd.Series:
    mlflow.set_tracking_uri(uri)
    try:
        frame = mlflow.search_runs(experiment_names=["e"])
    finally:
        mlflow.set_tracking_uri(None)
    return frame.set_index("run_id").loc[run_id]


def test_the_sqlite_writer_is_used_on_a_sqlite_store_unless_client_writes_are_asked_for(
        store, monkeypatch):
    assert isinstance(writer(store), SqliteRuns)
    monkeypatch.setenv(WRITES_VARIABLE, "client")
    assert isinstance(writer(store), ClientRuns)


def test_a_run_written_with_sql_reads_back_as_the_client_writes_it(store):
    direct = record(store, "auto")
    through_client = record(store, "client")
    client = tracking.client(store)
    runs = {ref["run_id"]: client.get_run(ref["run_id"]) for ref in (direct, through_client)}
    a, b = runs.values()
    for run in (a, b):
        assert run.info.status == "FINISHED" and run.info.lifecycle_stage == "active"
        assert run.info.artifact_uri.endswith(f"/{run.info.run_id}/artifacts")
        assert run.info.start_time <= run.info.end_time
    assert (a.info.user_id, a.info.run_name) == (b.info.user_id, b.info.run_name)
    assert a.info.experiment_id == b.info.experiment_id
    assert a.data.params == b.data.params and a.data.params
    assert a.data.tags == b.data.tags
    assert a.data.metrics.keys() == b.data.metrics.keys() == {"ic", "nan", "up", "down"}
    for key in a.data.metrics:
        assert same(a.data.metrics[key], b.data.metrics[key]), key
        (x,), (y,) = (client.get_metric_history(run_id, key) for run_id in runs)
        assert x.step == y.step == 0 and same(x.value, y.value), key
    assert (direct["artifacts"].keys() == through_client["artifacts"].keys()
            and {"pred.parquet", "task.json"} <= direct["artifacts"].keys())
    assert direct["metrics"] == through_client["metrics"] == {
        "ic": 0.04, "nan": None, "up": None, "down": None}
    # the searches a collector and a user make find both runs
    found = client.search_runs(
        [a.info.experiment_id],
        "params.`model.class` = 'Ridge' and tags.study = 'writers' and metrics.ic > 0.03 "
        "and attributes.status = 'FINISHED' and tags.`taskloom.segment.test.start` = "
        "'2020-01-01'")
    assert {run.info.run_id for run in found} == set(runs)
    rows = [search_frame(store, run_id) for run_id in runs]
    pd.testing.assert_series_equal(
        rows[0].drop(["start_time", "end_time", "artifact_uri"]),
        rows[1].drop(["start_time", "end_time", "artifact_uri"]), check_names=False)


def test_a_failing_handler_ends_its_run_failed_with_either_writer(store):
    client = tracking.client(store)
    for mode in ("auto", "client"):
        with pytest.raises(RuntimeError, match="no data"):
            record(store, mode, fail)
    runs = client.search_runs([client.get_experiment_by_name("e").experiment_id])
    assert [run.info.status for run in runs] == ["FAILED", "FAILED"]
    assert all({item.path for item in client.list_artifacts(run.info.run_id)}
               >= {"error.txt", "task.json"} for run in runs)


@pytest.mark.parametrize("kind", [SqliteRuns, ClientRuns])
def test_a_writer_reads_a_status_set_by_another_process_and_refuses_a_deleted_run(
        store, kind):
    runs = (SqliteRuns(Path(store[len("sqlite:///"):])) if kind is SqliteRuns
            else ClientRuns(tracking.client(store)))
    client = tracking.client(store)
    experiment_id = client.get_experiment_by_name("e").experiment_id
    made = runs.create(experiment_id, {"k": "v"}, "named")
    assert runs.status(made.run_id) == "RUNNING"
    client.set_terminated(made.run_id, "KILLED")
    assert runs.status(made.run_id) == "KILLED"
    client.delete_run(made.run_id)
    with pytest.raises(MlflowException):
        runs.end(made.run_id, {"p": "1"}, {"m": 1.0}, {}, "FINISHED")
    run = client.get_run(made.run_id)
    assert run.data.params == {} and run.data.metrics == {}  # nothing half-written
    client.delete_experiment(experiment_id)
    with pytest.raises(MlflowException):
        runs.create(experiment_id, {}, "too late")


def test_a_deleted_experiment_is_a_clear_error_with_the_sqlite_writer(store):
    record(store, "auto")
    client = tracking.client(store)
    client.delete_experiment(client.get_experiment_by_name("e").experiment_id)
    with pytest.raises(RecordingError, match="'e' .* is deleted"):
        record(store, "auto")


def test_a_store_whose_run_tables_changed_is_written_through_the_client(store, tmp_path):
    changed = tmp_path / "changed.db"
    shutil.copy(store[len("sqlite:///"):], changed)
    with sqlite3.connect(changed) as connection:
        connection.execute("ALTER TABLE runs ADD COLUMN workspace TEXT")
    assert sqlite_layout_known(Path(store[len("sqlite:///"):]))
    assert not sqlite_layout_known(changed)
    uri = f"sqlite:///{changed}"
    assert isinstance(writer(uri), ClientRuns)
    ref = record(uri, "auto")
    assert tracking.client(uri).get_run(ref["run_id"]).info.status == "FINISHED"


def test_a_bad_writes_mode_is_refused_naming_the_variable_and_value(store, monkeypatch):
    monkeypatch.setenv(WRITES_VARIABLE, "fast")
    with pytest.raises(ValueError, match="TASKLOOM_MLFLOW_WRITES must be 'auto' or 'client', "
                                         "got 'fast'"):
        MlflowRecorder("e", tracking_uri=store).prepare()


def test_threads_recording_at_once_each_write_their_own_runs(store):
    recorder = MlflowRecorder("e", tracking_uri=store)
    refs: list[dict] = []
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for j in range(5):
                refs.append(recorder.wrap(predict)({**TASK, "n": [i, j]}))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    client = tracking.client(store)
    statuses = [client.get_run(ref["run_id"]).info.status for ref in refs]
    assert statuses == ["FINISHED"] * 20


def test_a_store_in_a_folder_with_odd_characters_is_written_directly(tmp_path, monkeypatch):
    folder = tmp_path / "my runs #1"
    folder.mkdir()
    monkeypatch.chdir(folder)
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    ref = MlflowRecorder("e", tracking_uri=uri).wrap(predict)(TASK)
    assert isinstance(writer(uri), SqliteRuns)
    assert tracking.client(uri).get_run(ref["run_id"]).info.status == "FINISHED"
