"""task_train and its split form on the synthetic panel, recorded in a real MLflow sqlite store."""

from __future__ import annotations

import copy
import os
import subprocess
import sys

import pandas as pd
import pytest
import taskloom
from taskloom.manager import TaskManager, run_task
from taskloom.train import STATUS_KEY, train_values
from taskloom_panel import LABEL, SIGNAL_FEATURES, synthetic_market, write_panel
from taskloom_recorder.artifacts import read_parquet

SEGMENTS = {"train": ("2019-01-01", "2019-09-30"), "valid": ("2019-10-01", "2019-12-31"),
            "test": ("2020-01-01", "2020-12-31")}


@pytest.fixture(scope="module")
def market() -> pd.DataFrame:
    """20 instruments over two years of weekdays."""
    return synthetic_market(instruments=20, start="2019-01-01", end="2020-12-31", seed=11)


@pytest.fixture(scope="module")
def task(market, tmp_path_factory) -> dict:
    """A qlib-shaped task over the market written as parquet, with both shipped templates."""
    path = write_panel(market, tmp_path_factory.mktemp("market") / "market.parquet")
    return {
        "model": {"class": "SklearnModel", "module_path": "taskloom_panel",
                  "kwargs": {"estimator": {"class": "sklearn.linear_model:Ridge",
                                           "kwargs": {"alpha": 0.5}}}},
        "dataset": {"class": "PanelDataset", "module_path": "taskloom_panel",
                    "kwargs": {"handler": str(path), "segments": SEGMENTS,
                               "feature_columns": list(SIGNAL_FEATURES),
                               "normalize": "zscore"}},
        "record": [{"class": "SignalRecord", "kwargs": {"model": "<MODEL>",
                                                        "dataset": "<DATASET>"}},
                   {"class": "SigAnaRecord", "kwargs": {"ana_long_short": True}}],
    }


def test_train_values_predicts_exactly_the_test_segment_with_its_label(market, task):
    before = copy.deepcopy(task)
    values = train_values(task)
    test = market.loc[pd.IndexSlice["2020-01-01":"2020-12-31", :], :]
    pred = values["pred"]
    assert pred.index.equals(test.index)
    assert values["label"].index.equals(pred.index)
    pd.testing.assert_series_equal(values["label"][LABEL], test[LABEL])
    assert values["IC"] > 0.02 and values["sig_analysis"].shape[0] == 262
    assert task == before  # placeholders were filled in a copy


class WeightedModel:
    """Records what ``fit`` was given; predicts zeros on the test rows."""

    def fit(self, dataset, reweighter=None):
        self.reweighter = reweighter

    def predict(self, dataset, segment="test"):
        rows = dataset.prepare(segment, col_set="feature").index
        return pd.Series(float(self.reweighter == "by_cap"), index=rows, name="score")


class LabelFreeDataset:
    """A dataset with features only: asking it for the label fails as a missing column."""

    def __init__(self, frame):
        self.frame = frame

    def prepare(self, segment, col_set="feature", data_key="infer"):
        if col_set == "label":
            raise KeyError("label")
        return self.frame.loc[pd.IndexSlice["2020-01-01":, :], list(SIGNAL_FEATURES)]


def test_a_reweighter_reaches_a_fit_that_takes_it_and_a_missing_label_is_none(market):
    values = train_values({"model": {"class": WeightedModel},
                           "dataset": {"class": LabelFreeDataset, "kwargs": {"frame": market}},
                           "reweighter": "by_cap", "record": {"class": "SignalRecord"}})
    assert (values["pred"] == 1.0).all()
    assert set(values) == {"pred"}


class OldStyleDataset(LabelFreeDataset):
    """A dataset whose ``prepare`` has no ``data_key`` (qlib's plain DataHandler datasets)."""

    def prepare(self, segments, col_set="feature"):
        if col_set == "label":
            return self.frame.loc[pd.IndexSlice["2020-01-01":, :], [LABEL]]
        return super().prepare(segments, col_set)


def test_the_label_of_a_dataset_without_data_key_is_read_without_it(market):
    values = train_values({"model": {"class": WeightedModel},
                           "dataset": {"class": OldStyleDataset, "kwargs": {"frame": market}}})
    assert (values["pred"] == 0.0).all()  # no reweighter in the task: fit got None
    test = market.loc[pd.IndexSlice["2020-01-01":, :], LABEL]
    pd.testing.assert_series_equal(values["label"][LABEL], test)


def test_task_train_records_a_finished_run_with_signal_and_analysis(client, experiment, task):
    ref = taskloom.task_train(task, experiment, recorder_name="ridge-2020")
    run = client.get_run(ref["run_id"])
    assert run.info.status == "FINISHED" and run.info.run_name == "ridge-2020"
    assert {"pred.parquet", "label.parquet", "sig_analysis.parquet", "task.json",
            "task.types.json"} <= set(ref["artifacts"])
    assert set(run.data.metrics) >= {"IC", "ICIR", "Rank IC", "Rank ICIR",
                                     "Long-Short Ann Return"}
    assert ref["metrics"]["IC"] == pytest.approx(run.data.metrics["IC"])
    assert ref["metrics"]["IC"] > 0
    pred = read_parquet(ref["artifacts"]["pred.parquet"])
    assert isinstance(pred, pd.Series)
    assert pred.index.get_level_values("datetime").min() == pd.Timestamp("2020-01-01")
    assert run.data.params["model.kwargs.estimator.kwargs.alpha"] == "0.5"


class BrokenModel:
    def fit(self, dataset):
        raise RuntimeError("the optimiser diverged")


def test_a_failing_training_fails_its_run_and_raises(client, experiment, task):
    with pytest.raises(RuntimeError, match="the optimiser diverged"):
        taskloom.task_train({**task, "model": {"class": "train.test_task_train:BrokenModel"}},
                            experiment)
    (run,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert run.info.status == "FAILED"
    assert "error.txt" in {item.path for item in client.list_artifacts(run.info.run_id)}


def test_begin_then_end_trains_in_the_same_run(client, experiment, task):
    begun = taskloom.begin_task_train(task, experiment)
    run = client.get_run(begun["run_id"])
    assert run.info.status == "FINISHED" and run.data.tags[STATUS_KEY] == "begin_task_train"
    assert set(begun["artifacts"]) == {"task.json", "task.types.json"}
    assert begun["metrics"] == {}

    ended = taskloom.end_task_train(begun, experiment)
    assert ended["run_id"] == begun["run_id"]
    run = client.get_run(begun["run_id"])
    assert run.info.status == "FINISHED" and run.data.tags[STATUS_KEY] == "end_task_train"
    assert {"task.json", "pred.parquet", "label.parquet", "sig_analysis.parquet"} <= set(
        ended["artifacts"])
    assert ended["metrics"]["Rank IC"] == pytest.approx(run.data.metrics["Rank IC"])
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    assert len(client.search_runs([experiment_id])) == 1


def test_end_task_train_refuses_a_run_of_another_experiment(experiment, task):
    begun = taskloom.begin_task_train(task, experiment)
    with pytest.raises(taskloom.errors.TaskloomError, match=f"run {begun['run_id']} belongs"):
        taskloom.end_task_train(begun, experiment + "-other")


def test_the_pool_runs_task_train_and_the_delay_stages(client, experiment, task, tmp_path):
    url = f"sqlite:///{tmp_path}/pool.db"
    tm = TaskManager("study", url)
    (whole,) = tm.create_task([task])
    assert run_task(taskloom.task_train, "study", storage=url, experiment_name=experiment)
    ref = tm.re_query(whole)["res"]
    run = client.get_run(ref["run_id"])
    assert run.info.status == "FINISHED" and run.data.tags["taskloom.task_id"] == whole

    delayed = TaskManager("delayed", url)
    (task_id,) = delayed.create_task([task])
    run_task(taskloom.begin_task_train, "delayed", storage=url, after_status="part_done",
             experiment_name=experiment)
    begun = delayed.re_query(task_id)
    assert begun["status"] == "part_done"
    run_task(taskloom.end_task_train, "delayed", storage=url, before_status="part_done",
             experiment_name=experiment)
    ended = delayed.re_query(task_id)
    assert ended["status"] == "done" and ended["res"]["run_id"] == begun["res"]["run_id"]
    assert "pred.parquet" in ended["res"]["artifacts"]


def test_a_failing_end_stage_fails_the_resumed_run_and_a_retry_resumes_it_again(
    client, experiment, task
):
    broken = {**task, "model": {"class": "train.test_task_train:BrokenModel"}}
    begun = taskloom.begin_task_train(broken, experiment)
    for _ in range(2):
        with pytest.raises(RuntimeError, match="the optimiser diverged"):
            taskloom.end_task_train(begun, experiment)
        run = client.get_run(begun["run_id"])
        assert run.info.status == "FAILED" and run.data.tags[STATUS_KEY] == "begin_task_train"
    assert "error.txt" in {item.path for item in client.list_artifacts(begun["run_id"])}


@pytest.mark.slow
def test_the_built_in_train_handler_under_worker_record_makes_what_task_train_makes(
    client, experiment, task, tracking_dir, tmp_path
):
    url = f"sqlite:///{tmp_path}/pool.db"
    tm = TaskManager("cli-train", url)
    (task_id,) = tm.create_task([task])
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI",
                                                              "TASKLOOM_STORAGE")}
    done = subprocess.run(
        [sys.executable, "-m", "taskloom", "worker", "cli-train", "--storage", url,
         "--handler", "train", "--record", experiment, "--idle-exit", "0.5"],
        cwd=tracking_dir, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    ref = tm.re_query(task_id)["res"]
    run = client.get_run(ref["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.tags["taskloom.task_id"] == str(task_id)
    assert {"pred.parquet", "label.parquet", "sig_analysis.parquet"} <= set(ref["artifacts"])
    assert ref["metrics"]["IC"] > 0
