"""The whole recording and collection flow on real parts, as a rolling study runs it.

Rolling tasks for two models go into a SQLite pool; two ``taskloom worker --record``
processes run them, each recording into MLflow's default SQLite store in the working
directory; the recorder collector reads the runs back keyed by (model, test window), and
``rolling_group`` stitches each model's windows into one continuous prediction series.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import taskloom
from taskloom import TradingCalendar
from taskloom.manager import TaskManager
from taskloom_recorder import segment_of, tracking

from collect.rolling_predict import (
    CALENDAR_FILE,
    INSTRUMENTS,
    MODELS,
    expected_score,
    window_days,
)

HERE = Path(__file__).resolve().parent
EXPERIMENT = "rolling_study"

pytestmark = pytest.mark.slow


def template(model: str) -> dict:
    """A qlib-shaped task template whose test segment covers 2019."""
    return {
        "model": {"class": model, "module_path": "rolling_predict"},
        "dataset": {"class": "DatasetH", "kwargs": {"segments": {
            "train": ["2015-01-01", "2017-12-31"],
            "valid": ["2018-01-01", "2018-12-31"],
            "test": ["2019-01-01", "2019-12-31"],
        }}},
    }


def test_two_recording_workers_and_the_collector_give_one_series_per_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    rolling = taskloom.get_generator("rolling")(
        step=40, rtype="sliding", calendar=TradingCalendar.from_file(CALENDAR_FILE))
    tasks = [task for model in MODELS for task in rolling.generate(template(model))]
    url = f"sqlite:///{tmp_path}/pool.db"
    TaskManager("study", url).create_task(tasks)

    env = {k: v for k, v in os.environ.items()
           if k not in ("MLFLOW_TRACKING_URI", "TASKLOOM_STORAGE")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
    worker = subprocess.run(
        [sys.executable, "-m", "taskloom", "worker", "study", "--storage", url,
         "--handler", "rolling_predict:predict_window", "--record", EXPERIMENT,
         "--concurrency", "2", "--idle-exit", "1"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert worker.returncode == 0, worker.stderr
    assert (tmp_path / "mlflow.db").exists()  # MLflow's default store, in the working dir

    assert TaskManager("study", url).task_stat() == {"done": len(tasks)}
    runs = tracking.client().search_runs(
        [tracking.client().get_experiment_by_name(EXPERIMENT).experiment_id])
    assert sorted(run.data.tags["taskloom.task_id"] for run in runs) == sorted(
        {run.data.tags["taskloom.task_id"] for run in runs})  # one run per task
    assert len(runs) == len(tasks)
    assert {run.info.status for run in runs} == {"FINISHED"}

    collector = taskloom.get_collector("recorder")(
        EXPERIMENT,
        process_list=[taskloom.get_processor("rolling_group")()],
        rec_key_func=lambda run: (run.data.tags["taskloom.model"], segment_of(run, "test")),
    )
    preds = collector()["pred"]

    assert set(preds) == {(model,) for model in MODELS}
    test_days = window_days(tasks[0]["dataset"]["kwargs"]["segments"]["test"][0],
                            tasks[-1]["dataset"]["kwargs"]["segments"]["test"][1])
    assert len(test_days) > 250  # the windows cover 2019 and run into 2020
    for (model,), series in preds.items():
        assert isinstance(series, pd.Series)
        assert series.index.is_unique  # every (date, instrument) predicted exactly once
        assert list(series.index.get_level_values("datetime").unique()) == list(test_days)
        assert len(series) == len(test_days) * len(INSTRUMENTS)
        expected = [expected_score(day, inst, model) for day, inst in series.index]
        assert series.tolist() == expected  # each value comes from its own model's window
