"""``taskloom demo`` end to end on its small size, its workflow file, and its market file.

The demo runs as a user runs it: the real CLI in a subprocess, worker processes, a SQLite
pool and MLflow's SQLite store, all in a temporary folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from taskloom.demo import SMALL_MARKET, WORKFLOW
from taskloom_panel.market import exchange_days, write_synthetic_market

ROOT = Path(__file__).resolve().parents[2]
#: the small demo's windows: quarterly test windows from 2017-01 to the data's end, 2017-12
SMALL_WINDOWS = 4
MODELS = ["ridge", "gbdt", "noise_only"]


def taskloom(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the ``taskloom`` command line in ``cwd``, with no tracking store from outside."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("MLFLOW_TRACKING_URI", "TASKLOOM_STORAGE")}
    return subprocess.run([sys.executable, "-m", "taskloom", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def finished_runs(directory: Path) -> list[str]:
    """The ids of the FINISHED runs in the demo's MLflow store."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{directory / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("rolling_demo")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    return sorted(run.info.run_id for run in runs if run.info.status == "FINISHED")


@pytest.mark.slow
def test_the_small_demo_predicts_every_test_day_once_and_finds_the_signal(tmp_path):
    directory = tmp_path / "demo"
    first = taskloom("demo", "--dir", str(directory), "--size", "small", "--workers", "2",
                     cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "mlflow ui --backend-store-uri sqlite:///mlflow.db" in first.stdout
    outputs = directory / "outputs"

    days = pd.DatetimeIndex(pd.read_csv(directory / "data" / "calendar.txt", header=None)[0])
    test_days = days[days >= pd.Timestamp("2017-01-01")]
    assert test_days[-1] == days[-1] <= pd.Timestamp(SMALL_MARKET["end"])
    predictions = pd.read_parquet(outputs / "predictions.parquet")
    assert predictions.index.is_unique
    assert set(predictions.columns) == {*MODELS, "label"}
    for model in MODELS:
        predicted = predictions[model].dropna()
        dates = predicted.index.get_level_values("datetime")
        # every test day of the study, every instrument, exactly once (the index is unique)
        assert list(dates.unique()) == list(test_days)
        assert len(predicted) == len(test_days) * SMALL_MARKET["instruments"]

    summary = pd.read_parquet(outputs / "summary.parquet")
    assert summary.loc[MODELS, "windows"].tolist() == [SMALL_WINDOWS] * 3
    assert summary.loc[MODELS, "test_days"].tolist() == [len(test_days)] * 3
    assert summary.loc["ridge", "Rank IC"] > 0.02 and summary.loc["ridge", "Rank ICIR"] > 0.2
    assert summary.loc["gbdt", "Rank IC"] > 0.02
    assert abs(summary.loc["noise_only", "Rank IC"]) < summary.loc["ridge", "Rank IC"] / 2
    daily = pd.read_parquet(outputs / "daily_ic.parquet")
    assert set(daily["model"]) == set(MODELS)
    # the last two days have no label yet (it is the return two days ahead): no IC there
    assert len(daily) == 3 * (len(test_days) - 2)
    png = (outputs / "rank_ic.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 20_000

    runs = finished_runs(directory)
    assert len(runs) == SMALL_WINDOWS * len(MODELS)  # one run per window and model
    market = (directory / "data" / "market.parquet").stat().st_mtime_ns
    again = taskloom("demo", "--dir", str(directory), "--size", "small", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert finished_runs(directory) == runs  # nothing retrained
    assert (directory / "data" / "market.parquet").stat().st_mtime_ns == market
    pd.testing.assert_frame_equal(pd.read_parquet(outputs / "predictions.parquet"), predictions)


@pytest.mark.slow
def test_the_example_script_runs_qlibs_steps_on_the_demo_study(tmp_path):
    script = ROOT / "examples" / "rolling" / "rolling_study.py"
    env = {k: v for k, v in os.environ.items()
           if k not in ("MLFLOW_TRACKING_URI", "TASKLOOM_STORAGE")}
    result = subprocess.run([sys.executable, str(script), "--size", "small"], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert f"generated {SMALL_WINDOWS * len(MODELS)} tasks from 3 templates" in result.stdout
    summary = pd.read_parquet(tmp_path / "outputs" / "summary.parquet")
    assert list(summary.index) == MODELS  # the workflow file's order
    assert summary["windows"].tolist() == [SMALL_WINDOWS] * 3
    assert summary.loc["ridge", "Rank IC"] > 0.02
    assert (tmp_path / "outputs" / "rank_ic.png").stat().st_size > 20_000


def test_write_workflow_copies_the_shipped_file_and_never_overwrites(tmp_path):
    from taskloom.workflow import load_workflow

    target = tmp_path / "my_study.yaml"
    written = taskloom("demo", "--write-workflow", str(target), cwd=tmp_path)
    assert written.returncode == 0, written.stderr
    assert target.read_text() == WORKFLOW.read_text()
    assert f"taskloom run {target}" in written.stdout
    assert [t.label for t in load_workflow(target).templates] == MODELS
    assert not (tmp_path / "taskloom-demo").exists()  # nothing ran

    target.write_text("mine\n")
    refused = taskloom("demo", "--write-workflow", str(target), cwd=tmp_path)
    assert refused.returncode == 2
    assert f"--write-workflow {target}: the file exists" in refused.stderr
    assert target.read_text() == "mine\n"

    nowhere = tmp_path / "missing" / "study.yaml"
    refused = taskloom("demo", "--write-workflow", str(nowhere), cwd=tmp_path)
    assert refused.returncode == 2
    assert f"--write-workflow {nowhere}: cannot write it" in refused.stderr


def test_the_market_file_is_written_once_per_set_of_parameters(tmp_path):
    path, calendar = tmp_path / "data" / "market.parquet", tmp_path / "data" / "calendar.txt"
    kwargs = {"instruments": 5, "start": "2019-11-01", "end": "2020-01-31", "seed": 3}
    write_synthetic_market(path, calendar_file=calendar, **kwargs)
    market = pd.read_parquet(path)
    days = exchange_days("2019-11-01", "2020-01-31").days
    assert list(pd.DatetimeIndex(market["datetime"].unique())) == list(days)
    assert pd.Timestamp("2019-11-28") not in days and pd.Timestamp("2019-12-25") not in days
    assert calendar.read_text().split() == [f"{day:%Y-%m-%d}" for day in days]

    written = path.stat().st_mtime_ns
    write_synthetic_market(path, calendar_file=calendar, **kwargs)
    assert path.stat().st_mtime_ns == written  # the same parameters: left alone
    write_synthetic_market(path, calendar_file=calendar, **{**kwargs, "seed": 4})
    assert path.stat().st_mtime_ns != written
    assert not pd.read_parquet(path).equals(market)
