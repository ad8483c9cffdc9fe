"""``run`` on a tiny study end to end: two models, rolling windows, two worker processes;
every test date predicted once per model; a second run trains nothing."""

from __future__ import annotations

import threading
import time

import pandas as pd
import pytest
from click.testing import CliRunner
from taskloom import TaskManager, study
from taskloom.cli import main
from taskloom.workflow import WorkflowError, load_workflow

pytestmark = pytest.mark.slow  # worker processes


def finished_runs(wf) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=wf.tracking_uri)
    experiment = client.get_experiment_by_name(wf.experiment_name)
    return [run for run in client.search_runs([experiment.experiment_id])
            if run.info.status == "FINISHED"]


def test_run_stitches_every_test_date_once_per_model_and_a_rerun_trains_nothing(study_dir):
    path = study_dir / "tiny.yaml"  # with the default handler, taskloom.train_values
    path.write_text(path.read_text().replace('handler: "wf_support:train_window", ', ""))
    wf = load_workflow(path)
    assert wf.trainer.handler == "train"
    lines: list[str] = []
    snapshots: list[study.Progress] = []
    result = study.run(wf, progress=snapshots.append, report=lines.append)

    tasks = study.generate(wf)
    test_days = pd.bdate_range("2020-01-01", "2020-05-29")  # the calendar: weekdays
    assert len(tasks) == 2 * -(-len(test_days) // 30)  # two templates, windows of 30 days
    assert result.submitted.new == len(tasks)
    assert result.trained.trained_here == len(tasks) and not result.trained.failures
    assert snapshots[-1].done == len(tasks) and snapshots[-1].remaining == 0

    frame = pd.read_parquet(study_dir / "outputs" / "predictions.parquet")
    assert study_dir.resolve() / "outputs" / "predictions.parquet" in result.outputs
    assert set(frame.columns) == {"ridge", "ols", "label"}
    assert frame.index.is_unique  # every (date, instrument) once
    market = pd.read_parquet(study_dir / "market.parquet").set_index(["datetime", "instrument"])
    assert list(frame.index.get_level_values("datetime").unique()) == list(test_days)
    assert len(frame) == len(test_days) * 12
    assert frame[["ridge", "ols"]].notna().all().all()
    assert frame["label"].dropna().equals(market["label"].reindex(frame.index).dropna())
    assert len(finished_runs(wf)) == len(tasks)
    assert any(f"submitted {len(tasks)} tasks" in line and f"{len(tasks)} new" in line
               for line in lines)

    again = study.run(load_workflow(study_dir / "tiny.yaml"))
    assert again.submitted.new == 0
    assert again.trained.trained_here == 0
    assert len(finished_runs(wf)) == len(tasks)  # no window trained again
    pd.testing.assert_frame_equal(
        pd.read_parquet(study_dir / "outputs" / "predictions.parquet"), frame)
    rerun = CliRunner().invoke(main, ["run", str(study_dir / "tiny.yaml")])
    assert rerun.exit_code == 0, rerun.output
    table = rerun.output[rerun.output.index("out-of-sample IC"):]  # the summary, per model
    assert "Rank IC" in table and "ridge" in table and "ols" in table


def test_failed_windows_are_named_and_reset_clears_pool_and_runs(study_dir):
    path = study_dir / "tiny.yaml"
    path.write_text(path.read_text().replace("wf_support:train_window", "wf_support:fail_window")
                    .replace("lease_seconds: 3", "lease_seconds: 3, max_attempts: 1"))
    wf = load_workflow(path)
    result = CliRunner().invoke(main, ["run", str(path), "--workers", "1"])
    assert result.exit_code == 2
    assert "error: 8 windows failed to train:" in result.output
    assert "ridge test 2020-01-01 .. 2020-02-11" in result.output
    assert "RuntimeError: no model today" in result.output
    assert TaskManager(wf.pool_name, wf.storage_url).task_stat() == {"failed": 8}

    removed, deleted = study.reset(wf)
    assert removed == 8 and deleted == 8  # the failed runs are deleted too
    assert TaskManager(wf.pool_name, wf.storage_url).task_stat() == {}


def test_training_waits_for_a_task_another_machine_holds_restarting_idle_workers(
        study_dir, monkeypatch):
    monkeypatch.setattr(study, "IDLE_EXIT_SECONDS", 1.0)
    wf = load_workflow(study_dir / "tiny.yaml")
    study.prepare(wf)
    tasks = study.generate(wf)
    study.submit(wf, tasks)
    elsewhere = TaskManager(wf.pool_name, wf.storage_url, lease_seconds=600)
    held = elsewhere.fetch_task()  # "another machine" holds one window

    trained: list[study.Trained] = []
    thread = threading.Thread(target=lambda: trained.append(study.train(wf, workers=1)))
    thread.start()
    log = study_dir / "outputs" / "logs" / "worker.log"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and "attempts (" not in (
            log.read_text() if log.exists() else ""):
        time.sleep(0.2)  # until the local worker, idle, has exited once
    assert elsewhere.task_stat() == {"done": len(tasks) - 1, "running": 1}
    elsewhere.return_task(held)  # the other machine gives its window back
    thread.join(timeout=180)

    assert trained and trained[0].counts == {"done": len(tasks)}
    assert trained[0].trained_here == len(tasks)
    assert log.read_text().count("attempts (") >= 2  # the worker was started again


def test_a_delay_trainer_records_every_window_first_then_trains_it_in_that_run(study_dir):
    path = study_dir / "tiny.yaml"
    path.write_text(path.read_text().replace('handler: "wf_support:train_window", ',
                                             "delay: true, "))
    wf = load_workflow(path)
    begin, end = study.stages(wf)
    begin_argv = study.worker_argv(wf, stage=begin)
    assert begin_argv[begin_argv.index("--after-status") + 1] == "part_done"
    assert begin_argv[begin_argv.index("--record") + 1] == "tiny"
    end_argv = study.worker_argv(wf, stage=end)
    assert end_argv[end_argv.index("--before-status") + 1] == "part_done"
    assert "--record" not in end_argv  # the second stage resumes the first stage's runs

    result = study.run(wf)

    tasks = study.generate(wf)
    assert result.trained.trained_here == len(tasks) and not result.trained.failures
    runs = finished_runs(wf)
    assert len(runs) == len(tasks)  # the second stage trained inside the first stage's runs
    assert {run.data.tags["train_status"] for run in runs} == {"end_task_train"}
    frame = pd.read_parquet(study_dir / "outputs" / "predictions.parquet")
    test_days = pd.bdate_range("2020-01-01", "2020-05-29")
    assert frame.index.is_unique
    assert list(frame.index.get_level_values("datetime").unique()) == list(test_days)
    assert frame[["ridge", "ols"]].notna().all().all()

    submitted = CliRunner().invoke(main, ["submit", str(path)])
    assert "stage 1 of 2" in submitted.output and "stage 2 of 2" in submitted.output
    assert "--handler train_end" in submitted.output


def test_delay_refuses_a_custom_handler(study_dir):
    path = study_dir / "tiny.yaml"
    path.write_text(path.read_text().replace("lease_seconds: 3", "lease_seconds: 3, delay: true"))
    with pytest.raises(WorkflowError, match="trainer") as caught:
        load_workflow(path)
    assert "wf_support:train_window" in str(caught.value)
