"""The MLflow recorder on a real SQLite tracking store: tags, params, artifacts, references."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import taskloom
from taskloom.errors import UnknownNameError
from taskloom.jsontypes import restore
from taskloom.manager import TaskManager, run_task
from taskloom.retry import RetryPolicy
from taskloom_recorder import tracking
from taskloom_recorder.artifacts import read_parquet
from taskloom_recorder.recorder import MlflowRecorder, RecordedHandler, RunKilledError
from taskloom_recorder.runs import WRITES_VARIABLE

TASK = {
    "model": {"class": "LGBModel", "module_path": "qlib.contrib.model.gbdt",
              "kwargs": {"learning_rate": 0.05, "num_leaves": 64}},
    "dataset": {"class": "DatasetH", "kwargs": {"segments": {
        "train": (pd.Timestamp("2015-01-05"), pd.Timestamp("2016-12-30")),
        "valid": ("2017-01-03", "2017-06-30"),
        "test": (pd.Timestamp("2017-07-03"), None),
    }}},
    "tags": {"study": "rolling-250", "horizon": 5},
}


@pytest.fixture(scope="module", params=["auto", "client"], autouse=True)
def writes(request: pytest.FixtureRequest):
    """Every test here runs twice: runs written straight into the SQLite store, then through
    MLflow's client (``taskloom_recorder.runs``)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(WRITES_VARIABLE, request.param)
        yield request.param


def predict(param, **kwargs):
    """A prediction Series and two metrics."""
    index = pd.date_range("2017-07-03", periods=3, name="datetime")
    return {"pred": pd.Series([0.1, 0.2, 0.3], index=index, name="score"), "ic": 0.04,
            "rank_ic": 0.05}


def fail(param, **kwargs):
    raise RuntimeError(f"no data for {param['model']['class']}")


def artifacts_of(client, run_id: str) -> set[str]:
    return {item.path for item in client.list_artifacts(run_id)}


def test_a_recorded_pool_task_is_tagged_logged_and_committed_as_a_reference(
    client, experiment, pool_url
):
    tm = TaskManager("study", pool_url)
    (task_id,) = tm.create_task([TASK])
    assert run_task(predict, "study", storage=pool_url, record=experiment)
    task = tm.re_query(task_id)
    ref = task["res"]
    assert set(ref) == {"run_id", "experiment_id", "experiment", "artifacts", "metrics", "tags"}
    assert ref["experiment"] == experiment
    assert ref["metrics"] == {"ic": 0.04, "rank_ic": 0.05}
    # the reference lists the run's tags outside taskloom's namespace: the task's, qlib's id
    assert ref["tags"] == {"study": "rolling-250", "horizon": "5", "_id in TaskManager": task_id}
    run = client.get_run(ref["run_id"])
    assert run.info.status == "FINISHED"
    assert run.info.experiment_id == ref["experiment_id"]
    tags = run.data.tags
    assert tags["taskloom.pool"] == "study"
    assert tags["taskloom.task_id"] == task_id
    assert tags["taskloom.key"] == task["key"] == taskloom.task_key(TASK)
    assert tags["taskloom.attempt"] == "1"
    assert tags["_id in TaskManager"] == task_id
    assert tags["taskloom.storage"] == pool_url
    assert tags["taskloom.model"] == "LGBModel"
    assert tags["taskloom.segment.train.start"] == "2015-01-05"
    assert tags["taskloom.segment.train.end"] == "2016-12-30"
    assert tags["taskloom.segment.valid.start"] == "2017-01-03"
    assert tags["taskloom.segment.test.start"] == "2017-07-03"
    assert "taskloom.segment.test.end" not in tags  # an open bound has no tag
    assert tags["study"] == "rolling-250" and tags["horizon"] == "5"
    params = run.data.params
    assert params["model.kwargs.learning_rate"] == "0.05"
    assert params["model.class"] == "LGBModel"
    assert params["dataset.kwargs.segments.train"] == '["2015-01-05", "2016-12-30"]'
    assert run.data.metrics == {"ic": 0.04, "rank_ic": 0.05}
    assert set(ref["artifacts"]) == {"pred.parquet", "task.json", "task.types.json"}
    assert artifacts_of(client, ref["run_id"]) == set(ref["artifacts"])
    stored = json.loads(Path(ref["artifacts"]["task.json"]).read_text())
    types = json.loads(Path(ref["artifacts"]["task.types.json"]).read_text())
    assert restore(stored, types) == TASK
    pred = read_parquet(ref["artifacts"]["pred.parquet"])
    pd.testing.assert_series_equal(pred, predict(TASK)["pred"], check_freq=False)


def test_runs_can_be_found_by_window_tags(client, experiment, pool_url):
    tm = TaskManager("windows", pool_url)
    tasks = [{"i": i, "segments": {"test": (f"201{i}-01-01", f"201{i}-12-31")}} for i in range(3)]
    tm.create_task(tasks)
    run_task(lambda param: param["i"], "windows", storage=pool_url, record=experiment)
    exp_id = client.get_experiment_by_name(experiment).experiment_id
    found = client.search_runs([exp_id], "tags.`taskloom.segment.test.start` = '2011-01-01'")
    assert [run.data.metrics for run in found] == [{"result": 1.0}]


def test_recording_outside_a_pool_tags_the_key_only(client, experiment):
    recorded = taskloom.get_recorder("mlflow")(experiment).wrap(predict)
    ref = recorded({"model": {"class": "Linear"}})
    tags = client.get_run(ref["run_id"]).data.tags
    assert tags["taskloom.key"] == taskloom.task_key({"model": {"class": "Linear"}})
    assert tags["taskloom.model"] == "Linear"
    assert not {"taskloom.pool", "taskloom.task_id", "taskloom.attempt"} & set(tags)


def test_mlflow_limits_are_met_by_cutting_batching_and_renaming(client, experiment):
    task = {f"p{i:03d}": i for i in range(300)}
    task.update({"long": "x" * 10_000, "a/b": 1, "odd?key!": 2, "..": 3, "k" * 400: 4,
                 "nested": {"c/d": {"é": 5}}})
    ref = MlflowRecorder(experiment).wrap(lambda param: {"m/x?": 1.5})(task)
    run = client.get_run(ref["run_id"])
    params = run.data.params
    assert len(params) == 306
    assert params["p299"] == "299"
    long = params["long"]
    assert len(long) <= 6000 and long.startswith("x" * 5000)
    assert long.endswith("chars]") and "truncated" in long
    assert params["a_b"] == "1" and params["odd_key_"] == "2" and params["_.."] == "3"
    assert params["nested.c_d.é"] == "5"
    (cut_key,) = [key for key in params if key.startswith("kkk")]
    assert len(cut_key) <= 250 and params[cut_key] == "4"
    assert run.data.metrics == {"m_x_": 1.5}
    assert ref["metrics"] == {"m_x_": 1.5}


@pytest.mark.parametrize(
    ("returned", "artifacts", "metrics"),
    [
        (None, set(), {}),
        (3, set(), {"result": 3.0}),
        (0.25, set(), {"result": 0.25}),
        (pd.DataFrame({"score": [1.0, 2.0]}), {"pred.parquet"}, {}),
        (["a", 1], {"result.json"}, {}),
        ({"frame": pd.DataFrame({"x": [1]}), "s": pd.Series([1, 2]), "cfg": {"a": [1, 2]},
          "names": ["a", "b"], "n": 7, "ok": True, "label": "best"},
         {"frame.parquet", "s.parquet", "cfg.json", "names.json", "ok.json", "label.json"},
         {"n": 7.0}),
    ],
    ids=["none", "int", "float", "frame", "list", "dict"],
)
def test_a_returned_value_is_recorded_by_its_type(client, experiment, returned, artifacts,
                                                  metrics):
    ref = MlflowRecorder(experiment).wrap(lambda param: returned)({"i": 1})
    assert set(ref["artifacts"]) == artifacts | {"task.json"}
    assert ref["metrics"] == metrics
    assert client.get_run(ref["run_id"]).data.metrics == metrics
    for name in artifacts & {"cfg.json", "names.json", "ok.json", "label.json", "result.json"}:
        key = name.removesuffix(".json")
        expected = returned if key == "result" else returned[key]
        assert json.loads(Path(ref["artifacts"][name]).read_text()) == expected


@pytest.mark.parametrize("name", ["score", None, 7, ("a", 1)], ids=["str", "none", "int", "tuple"])
def test_a_series_round_trips_through_the_parquet_convention(experiment, name):
    series = pd.Series([0.5, -1.0], index=pd.Index(["a", "b"], name="code"), name=name)
    ref = MlflowRecorder(experiment).wrap(lambda param: {"pred": series})({"i": 1})
    back = read_parquet(ref["artifacts"]["pred.parquet"])
    pd.testing.assert_series_equal(back, series)
    assert back.attrs == {}


def test_a_bare_dataframe_comes_back_as_a_dataframe(experiment):
    frame = pd.DataFrame({"score": [1.0, 2.0], "label": [0, 1]},
                         index=pd.date_range("2020-01-01", periods=2))
    ref = MlflowRecorder(experiment).wrap(lambda param: frame)({"i": 1})
    pd.testing.assert_frame_equal(read_parquet(ref["artifacts"]["pred.parquet"]), frame,
                                  check_freq=False)


def test_a_failing_handler_fails_its_run_with_the_traceback_and_the_pool_retries(
    client, experiment, pool_url
):
    tm = TaskManager("failing", pool_url)
    (task_id,) = tm.create_task([TASK])
    run_task(fail, "failing", storage=pool_url, record=experiment, on_error="retry",
             retry_policy=RetryPolicy(max_attempts=2, backoff_seconds=0))
    task = tm.re_query(task_id)
    assert task["status"] == "failed" and task["error"]["type"] == "RuntimeError"
    exp_id = client.get_experiment_by_name(experiment).experiment_id
    runs = client.search_runs([exp_id], order_by=["tags.`taskloom.attempt`"])
    assert [(run.info.status, run.data.tags["taskloom.attempt"]) for run in runs] == [
        ("FAILED", "1"), ("FAILED", "2")]
    for run in runs:
        assert "error.txt" in artifacts_of(client, run.info.run_id)
        text = Path(client.download_artifacts(run.info.run_id, "error.txt")).read_text()
        assert "Traceback" in text and "RuntimeError: no data for LGBModel" in text
        assert run.data.params["model.class"] == "LGBModel"


def change_my_task(param, **kwargs):
    """A handler that changes the task it was given (the run records the task as given)."""
    param["model"]["class"] = "Changed"
    param["tags"].clear()
    return 1.0


def test_the_task_recorded_is_the_one_given_whatever_the_handler_does_to_it(
        client, experiment):
    task = json.loads(json.dumps(TASK, default=str))
    ref = MlflowRecorder(experiment).wrap(change_my_task)(task)
    recorded = json.loads(Path(client.download_artifacts(ref["run_id"], "task.json")).read_text())
    assert recorded["model"]["class"] == "LGBModel" and recorded["tags"] == TASK["tags"]


def test_a_run_whose_task_files_cannot_be_written_fails_naming_why(client, experiment,
                                                                   monkeypatch):
    def disk_full(files, directory):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("taskloom_recorder.recorder._write_files", disk_full)
    with pytest.raises(OSError, match="No space left"):
        MlflowRecorder(experiment).wrap(predict)(TASK)
    exp_id = client.get_experiment_by_name(experiment).experiment_id
    (run,) = client.search_runs([exp_id])
    assert run.info.status == "FAILED"
    text = Path(client.download_artifacts(run.info.run_id, "error.txt")).read_text()
    assert "No space left on device" in text


def kill_my_run(param, **kwargs):
    """What a newer attempt does to this stalled one: mark its RUNNING run KILLED.

    A newer attempt exists only once the lease this one was claimed with could have expired,
    so the handler also runs past the first half of that lease.
    """
    task = taskloom.current_task()
    time.sleep(max(0.0, (task.claimed_at + task.lease_until) / 2 - time.time()) + 0.05)
    assert task.may_be_reclaimed()
    client = tracking.client()
    exp_id = client.get_experiment_by_name(param["experiment"]).experiment_id
    (run,) = client.search_runs([exp_id], f"tags.`taskloom.task_id` = '{task.task_id}'")
    client.set_terminated(run.info.run_id, "KILLED")
    return 1.0


def test_a_run_killed_by_a_newer_attempt_stays_killed(client, experiment, pool_url):
    tm = TaskManager("stalled", pool_url)
    (task_id,) = tm.create_task([{"experiment": experiment}])
    with pytest.raises(RunKilledError, match=f"task {task_id} attempt 1 was marked KILLED"):
        run_task(kill_my_run, "stalled", storage=pool_url, record=experiment, lease_seconds=1.0)
    exp_id = client.get_experiment_by_name(experiment).experiment_id
    (run,) = client.search_runs([exp_id])
    assert run.info.status == "KILLED" and run.data.metrics == {}


def test_a_failing_handler_raises_its_own_exception(experiment):
    with pytest.raises(RuntimeError, match="no data for X"):
        MlflowRecorder(experiment).wrap(fail)({"model": {"class": "X"}})


def test_a_result_without_a_json_form_fails_the_run_naming_the_artifact(client, experiment):
    with pytest.raises(taskloom.errors.TaskloomError, match="artifact 'obj.json'"):
        MlflowRecorder(experiment).wrap(lambda param: {"obj": object()})({"i": 1})
    exp_id = client.get_experiment_by_name(experiment).experiment_id
    (run,) = client.search_runs([exp_id])
    assert run.info.status == "FAILED"


@pytest.mark.parametrize("returned", [{"task": {"a": 1}}, {"a/b": [1], "a_b": [2]}],
                         ids=["task", "same-file"])
def test_a_returned_key_never_overwrites_another_artifact(experiment, returned):
    with pytest.raises(taskloom.errors.TaskloomError, match="would overwrite"):
        MlflowRecorder(experiment).wrap(lambda param: returned)({"i": 1})


def test_prepare_is_race_safe(client, experiment):
    ids, errors = [], []

    def prepare():
        try:
            recorder = MlflowRecorder(experiment)
            recorder.prepare()
            ids.append(recorder.experiment_id())
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=prepare) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(set(ids)) == 1 and ids[0] == client.get_experiment_by_name(experiment).experiment_id


def test_a_deleted_experiment_is_a_clear_error(client, experiment):
    MlflowRecorder(experiment).prepare()
    client.delete_experiment(client.get_experiment_by_name(experiment).experiment_id)
    with pytest.raises(taskloom.errors.TaskloomError, match=f"experiment '{experiment}'.*deleted"):
        MlflowRecorder(experiment).prepare()


def test_an_experiment_deleted_while_a_process_records_is_a_clear_error(client, experiment):
    recorder = MlflowRecorder(experiment)
    recorder.wrap(predict)(TASK)  # the process now knows the experiment's id
    client.delete_experiment(client.get_experiment_by_name(experiment).experiment_id)
    with pytest.raises(taskloom.errors.TaskloomError, match=f"experiment '{experiment}'.*deleted"):
        MlflowRecorder(experiment).wrap(predict)(TASK)


def test_an_unknown_recorder_lists_the_known_ones(pool_url):
    TaskManager("unknown", pool_url)
    with pytest.raises(UnknownNameError, match="mlflow"):
        run_task(predict, "unknown", storage=pool_url, record="e", recorder="nope")


def test_a_recorded_handler_pickles_without_its_client(experiment):
    import pickle

    recorder = MlflowRecorder(experiment)
    recorder.prepare()
    copy = pickle.loads(pickle.dumps(recorder.wrap(predict)))
    assert isinstance(copy, RecordedHandler)
    assert copy.recorder.tracking_uri == recorder.tracking_uri
    assert copy.recorder._client is None


def test_a_param_without_a_json_form_is_refused_before_a_run_is_made(client, experiment):
    recorder = MlflowRecorder(experiment)
    with pytest.raises(taskloom.errors.TaskEncodingError, match="obj"):
        recorder.wrap(predict)({"obj": object()})
    assert client.search_runs([recorder.experiment_id()]) == []


def test_the_default_sqlite_store_is_switched_to_write_ahead_logging(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    taskloom.get_recorder("mlflow")("wal-check").prepare()
    with sqlite3.connect(tmp_path / "mlflow.db") as connection:
        (mode,) = connection.execute("PRAGMA journal_mode").fetchone()
    assert mode == "wal"
