"""Killing ``taskloom run`` mid-way, then running it again, finishes the study: no window is
trained twice and none is lost.

The study runs as a subprocess (one worker process, the quickest to start) in its own
session, like a command in a terminal: Ctrl-C sends SIGINT to the whole group; SIGKILL to the
whole group is a crash (tasks stay leased until their lease runs out, then the next run
takes them over).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
from taskloom import TaskManager, study
from taskloom.errors import TaskloomError
from taskloom.workflow import load_workflow

pytestmark = pytest.mark.slow


def start_run(study_dir, sleep: float) -> subprocess.Popen:
    env = {**os.environ, "TASKLOOM_TEST_TRAIN_SLEEP": str(sleep)}
    return subprocess.Popen([sys.executable, "-m", "taskloom", "run", "tiny.yaml",
                             "--workers", "1"],
                            cwd=study_dir, env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def wait_for_done(wf, at_least: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if TaskManager(wf.pool_name, wf.storage_url, create=False).task_stat().get(
                    "done", 0) >= at_least:
                return
        except TaskloomError:
            pass  # the pool does not exist yet
        time.sleep(0.2)
    raise AssertionError(f"fewer than {at_least} tasks done after {timeout} s")


def finished_windows(wf) -> Counter:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=wf.tracking_uri)
    experiment = client.get_experiment_by_name(wf.experiment_name)
    runs = client.search_runs([experiment.experiment_id])
    return Counter((run.data.tags["template"], run.data.tags["taskloom.segment.test.start"])
                   for run in runs if run.info.status == "FINISHED")


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGINT], ids=["sigkill", "ctrl-c"])
def test_a_killed_run_finishes_on_the_next_run_without_training_a_window_twice(study_dir,
                                                                               stop):
    wf = load_workflow(study_dir / "tiny.yaml")
    process = start_run(study_dir, sleep=1.0)
    try:
        wait_for_done(wf, at_least=2)
        os.killpg(process.pid, stop)
        output = process.communicate(timeout=60)[0].decode()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    if stop == signal.SIGINT:
        assert process.returncode == 130, output
        assert "run the same command again" in output
        assert TaskManager(wf.pool_name, wf.storage_url).task_stat().get("running", 0) == 0
    tasks = study.generate(wf)
    assert TaskManager(wf.pool_name, wf.storage_url).task_stat().get("done", 0) < len(tasks)

    again = start_run(study_dir, sleep=0)
    output = again.communicate(timeout=180)[0].decode()
    assert again.returncode == 0, output
    assert TaskManager(wf.pool_name, wf.storage_url).task_stat() == {"done": len(tasks)}
    windows = finished_windows(wf)
    assert len(windows) == len(tasks)  # every window trained...
    assert set(windows.values()) == {1}  # ...exactly once
    assert (study_dir / "outputs" / "predictions.parquet").exists()
