"""The trainers end to end on real parts: a synthetic panel on disk, rolling tasks for a model
on the signal features and one on noise, trained through SQLite and MongoDB pools with worker
processes, recorded in an MLflow store, collected and stitched by window."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import taskloom
from support.subprocesses import kill_once_hung, worker
from taskloom.manager import TaskManager
from taskloom.retry import RetryPolicy
from taskloom.trainer import TrainingError
from taskloom_panel import LABEL, NOISE_FEATURES, SIGNAL_FEATURES, synthetic_market, write_panel
from taskloom_recorder import tracking
from taskloom_recorder.collector import segment_of

from train.metrics import mean_rank_ic
from train.trainer_support import HANG_MARKER_ENV, parent_pid_train, rolling_tasks

#: the folder whose handler modules the worker subprocesses import
HANDLERS = Path(__file__).resolve().parent

MODELS = {"signal": list(SIGNAL_FEATURES), "noise": list(NOISE_FEATURES)}
TEST_START = pd.Timestamp("2016-07-01")


@pytest.fixture(scope="module")
def market() -> pd.DataFrame:
    """20 instruments over three years: small, and still enough days for a stable mean IC."""
    return synthetic_market(instruments=20, start="2015-01-01", end="2017-12-31", seed=11)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory):
    """The module's working directory: the panel file and one MLflow store (costly to create)."""
    directory = tmp_path_factory.mktemp("trainers")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(directory)
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        patch.delenv("TASKLOOM_STORAGE", raising=False)
        yield directory


@pytest.fixture(scope="module")
def tracking_uri(workdir: Path) -> str:
    """The module's MLflow store, created before any worker process could race to create it."""
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    taskloom.get_recorder("mlflow")("Default", tracking_uri=uri).prepare()
    return uri


@pytest.fixture(scope="module")
def tasks(market: pd.DataFrame, workdir: Path) -> list[dict]:
    """The rolling windows of both models (five each), on the panel written to parquet."""
    path = str(write_panel(market, workdir / "market.parquet"))
    return rolling_tasks(market, path, MODELS)


@pytest.fixture
def experiment(request: pytest.FixtureRequest) -> str:
    """An experiment (and pool) name of this test's own."""
    return request.node.name.replace("[", "-").rstrip("]")


def collect(experiment: str, tracking_uri: str) -> dict[str, pd.Series]:
    """The recorded predictions of the experiment, one stitched series per model."""
    collector = taskloom.get_collector("recorder")(
        experiment, process_list=taskloom.get_processor("rolling_group")(),
        rec_key_func=lambda run: (run.data.tags["model_name"], segment_of(run, "test")),
        tracking_uri=tracking_uri)
    return {key[0]: pred if isinstance(pred, pd.Series) else pred.squeeze("columns")
            for key, pred in collector()["pred"].items()}


def check_study(preds: dict[str, pd.Series], market: pd.DataFrame) -> None:
    """Each model predicts every test day exactly once; the signal shows, the noise does not."""
    assert sorted(preds) == ["noise", "signal"]
    days = market.index.get_level_values("datetime").unique()
    for pred in preds.values():
        assert pred.index.is_unique
        assert list(pred.index.get_level_values("datetime").unique()) == list(
            days[days >= TEST_START])
    assert mean_rank_ic(preds["signal"], market[LABEL]) > 0.03
    assert abs(mean_rank_ic(preds["noise"], market[LABEL])) < 0.02


def runs_of(experiment: str, tracking_uri: str) -> list:
    client = tracking.client(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    return [] if found is None else client.search_runs([found.experiment_id])


def worker_args(experiment: str, pool_url: str, tracking_uri: str, *extra: str) -> tuple:
    """``taskloom worker`` arguments training the trainer's tasks as the trainer does."""
    return (experiment, "--storage", pool_url, "--handler", "train",
            "--record", experiment, "--tracking-uri", tracking_uri, *extra)


@pytest.mark.slow
def test_trainer_rm_with_two_workers_trains_a_rolling_study_end_to_end(
        market, tasks, workdir, tracking_uri, experiment):
    pool_url = f"sqlite:///{workdir / (experiment + '.db')}"
    tm = TaskManager(experiment, pool_url)
    workers = [worker(workdir, HANDLERS, *worker_args(experiment, pool_url, tracking_uri,
                                            "--idle-exit", "3")) for _ in range(2)]
    trainer = taskloom.TrainerRM(experiment, storage=pool_url, tracking_uri=tracking_uri)
    tm.create_task(tasks[:1])
    deadline = time.monotonic() + 60
    while not tm.task_stat().get("done"):  # a worker is up and training before train() starts
        assert time.monotonic() < deadline
        time.sleep(0.05)
    references = trainer.train(tasks)
    for process in workers:
        _, err = process.communicate(timeout=60)
        assert process.returncode == 0, err

    assert len(references) == len(tasks)
    records = {task["_id"]: task for task in tm.query()}
    assert {task["status"] for task in records.values()} == {"done"}
    ids = tm.create_task(tasks)  # the same tasks resolve to their ids, in order
    assert [ref["run_id"] for ref in references] == [records[i]["res"]["run_id"] for i in ids]
    owners = {task["attempts"][-1]["owner"].split(":")[1] for task in records.values()}
    assert str(os.getpid()) in owners and len(owners) >= 2  # the trainer and a worker

    runs = {run.info.run_id: run for run in runs_of(experiment, tracking_uri)}
    assert len(runs) == len(tasks)
    for task_id, ref in zip(ids, references, strict=True):
        tags = runs[ref["run_id"]].data.tags
        assert tags["train_status"] == "begin_task_train"
        assert tags["_id in TaskManager"] == task_id
    check_study(collect(experiment, tracking_uri), market)


def test_trainer_r_trains_in_process_and_end_train_tags_the_runs(
        market, tasks, tracking_uri, experiment):
    trainer = taskloom.TrainerR(experiment, tracking_uri=tracking_uri)
    assert not trainer.is_delay() and not trainer.has_worker()
    references = trainer(tasks)  # train, then end_train
    assert [set(ref) >= {"run_id", "artifacts"} for ref in references] == [True] * len(tasks)
    runs = runs_of(experiment, tracking_uri)
    assert {run.data.tags["train_status"] for run in runs} == {"end_task_train"}
    check_study(collect(experiment, tracking_uri), market)
    with pytest.raises(NotImplementedError, match="no worker"):
        trainer.worker()


@pytest.mark.slow
def test_trainer_r_call_in_subproc_runs_each_task_in_one_fresh_process(tasks, tracking_uri,
                                                                         experiment):
    trainer = taskloom.TrainerR(experiment, train_func=parent_pid_train, call_in_subproc=True,
                                tracking_uri=tracking_uri)
    references = trainer.train(tasks[:2])
    # qlib nested the k-th task k processes deep (bug B10): here each child's parent is us
    assert [ref["metrics"]["ppid"] for ref in references] == [os.getpid()] * 2
    assert len({ref["metrics"]["pid"] for ref in references} | {os.getpid()}) == 3


def test_delay_trainer_rm_records_first_and_trains_in_end_train(
        market, tasks, workdir, tracking_uri, experiment):
    pool_url = f"sqlite:///{workdir / (experiment + '.db')}"
    trainer = taskloom.DelayTrainerRM(experiment, storage=pool_url, tracking_uri=tracking_uri)
    assert trainer.is_delay() and trainer.has_worker()
    begun = trainer.train(tasks)
    tm = TaskManager(experiment, pool_url)
    assert tm.task_stat() == {"part_done": len(tasks)}
    assert all("pred.parquet" not in ref["artifacts"] for ref in begun)
    with pytest.raises(KeyError):
        collect(experiment, tracking_uri)  # nothing predicted yet

    finished = trainer.end_train(begun)
    assert tm.task_stat() == {"done": len(tasks)}
    assert [ref["run_id"] for ref in finished] == [ref["run_id"] for ref in begun]
    assert all("pred.parquet" in ref["artifacts"] for ref in finished)
    runs = runs_of(experiment, tracking_uri)
    assert len(runs) == len(tasks)
    assert {run.data.tags["train_status"] for run in runs} == {"end_task_train"}
    check_study(collect(experiment, tracking_uri), market)
    assert trainer.end_train(finished) == finished  # done tasks are not trained again


def test_delay_trainer_rm_end_train_waits_for_a_worker_still_finishing(
        tasks, workdir, tracking_uri, experiment):
    """qlib read the results at once (bug B7); end_train returns when every task is done."""
    pool_url = f"sqlite:///{workdir / (experiment + '.db')}"
    trainer = taskloom.DelayTrainerRM(experiment, storage=pool_url, tracking_uri=tracking_uri,
                                      skip_run_task=True)
    begun = trainer.train(tasks[:2])  # the begin stage always runs here
    helper = threading.Thread(target=lambda: (time.sleep(1.0), trainer.worker()))
    helper.start()
    finished = trainer.end_train(begun)  # skip_run_task: only the helper finishes them
    helper.join()
    assert all("pred.parquet" in ref["artifacts"] for ref in finished)
    assert TaskManager(experiment, pool_url).task_stat() == {"done": 2}


@pytest.mark.mongo
def test_trainer_rm_on_mongodb(market, tasks, mongo_url, tracking_uri, experiment):
    trainer = taskloom.TrainerRM(experiment, storage=mongo_url, tracking_uri=tracking_uri)
    references = trainer.train(tasks)
    assert TaskManager(experiment, mongo_url).task_stat() == {"done": len(tasks)}
    assert len({ref["run_id"] for ref in references}) == len(tasks)
    check_study(collect(experiment, tracking_uri), market)


@pytest.mark.slow
def test_a_window_whose_worker_is_killed_is_retrained_and_recorded_once(
        market, tasks, workdir, tracking_uri, experiment):
    pool_url = f"sqlite:///{workdir / (experiment + '.db')}"
    tm = TaskManager(experiment, pool_url)
    (hung_id,) = tm.create_task(tasks[:1])
    marker = workdir / f"{experiment}.pid"
    args = (experiment, "--storage", pool_url, "--handler", "trainer_support:hang_then_train",
            "--record", experiment, "--tracking-uri", tracking_uri, "--lease", "1")
    kill_once_hung(workdir, HANDLERS, HANG_MARKER_ENV, marker, *args)

    references = taskloom.TrainerRM(experiment, storage=pool_url,
                                    tracking_uri=tracking_uri).train(tasks)
    hung = tm.re_query(hung_id)
    assert hung["status"] == "done" and hung["attempt"] == 2
    runs = runs_of(experiment, tracking_uri)
    statuses = sorted(run.info.status for run in runs
                      if run.data.tags["taskloom.task_id"] == hung_id)
    assert statuses == ["FINISHED", "KILLED"]
    assert references[0]["run_id"] == hung["res"]["run_id"]
    check_study(collect(experiment, tracking_uri), market)  # the KILLED run is not collected


def test_training_again_returns_the_stored_references_without_training(
        tasks, workdir, tracking_uri, experiment):
    pool_url = f"sqlite:///{workdir / (experiment + '.db')}"
    trainer = taskloom.TrainerRM(experiment, storage=pool_url, tracking_uri=tracking_uri)
    first = trainer.train(tasks[:3])
    again = trainer.train(tasks[:3])
    assert again == first
    assert len(runs_of(experiment, tracking_uri)) == 3
    assert trainer.train([]) == []


def test_a_failing_window_makes_train_raise_naming_it(tasks, workdir, tracking_uri,
                                                        experiment):
    pool_url = f"sqlite:///{workdir / (experiment + '.db')}"
    broken = [dict(task) for task in tasks[:3]]
    broken[1] = {**broken[1], "model": {**broken[1]["model"], "kwargs": {
        "estimator": {"class": "Ridge", "module_path": "sklearn.linear_model",
                      "kwargs": {"alpha": "much"}}}}}
    trainer = taskloom.TrainerRM(experiment, storage=pool_url, tracking_uri=tracking_uri,
                                 retry_policy=RetryPolicy(max_attempts=2, backoff_seconds=0))
    with pytest.raises(TrainingError) as caught:
        trainer.train(broken)
    start, end = broken[1]["dataset"]["kwargs"]["segments"]["test"]
    message = str(caught.value)
    window = f"SklearnModel test {pd.Timestamp(start):%Y-%m-%d}..{pd.Timestamp(end):%Y-%m-%d}"
    assert window in message and "1 of 3 tasks failed" in message
    assert "alpha" in message  # the error itself, from the failed attempt
    assert caught.value.references[1] is None and None not in (
        caught.value.references[0], caught.value.references[2])
    task = TaskManager(experiment, pool_url).re_query(list(caught.value.failures)[0])
    assert task["status"] == "failed" and task["attempt"] == 2
    statuses = sorted(run.info.status for run in runs_of(experiment, tracking_uri))
    assert statuses == ["FAILED", "FAILED", "FINISHED", "FINISHED"]



def test_with_skip_run_task_train_waits_for_workers_to_train_every_task(
        tasks, workdir, tracking_uri, experiment):
    pool_url = f"sqlite:///{workdir / (experiment + '.db')}"
    trainer = taskloom.TrainerRM(experiment, storage=pool_url, tracking_uri=tracking_uri,
                                 skip_run_task=True)
    tm = TaskManager(experiment, pool_url)

    def work_once_submitted() -> None:
        while tm.task_stat().get("waiting", 0) < 2:
            time.sleep(0.05)
        trainer.worker()

    helper = threading.Thread(target=work_once_submitted)
    helper.start()
    references = trainer.train(tasks[:2])  # trains nothing itself: the helper does
    helper.join()
    assert all("pred.parquet" in ref["artifacts"] for ref in references)
    assert tm.task_stat() == {"done": 2}


def test_without_an_experiment_name_runs_go_to_qlibs_default_experiment(tasks, tracking_uri):
    (reference,) = taskloom.TrainerR(tracking_uri=tracking_uri).train(tasks[0])
    assert reference["experiment"] == "Experiment"
