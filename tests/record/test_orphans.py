"""A worker killed mid-task: its run is marked KILLED when the task is reclaimed."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from support.subprocesses import kill_once_hung, worker
from taskloom.manager import TaskManager
from taskloom_recorder import tracking

from record.record_handlers import HANG_MARKER_ENV

#: the folder whose handler modules the worker subprocesses import
HANDLERS = Path(__file__).resolve().parent

pytestmark = pytest.mark.slow


def test_the_run_of_a_killed_worker_is_marked_killed_when_its_task_is_reclaimed(tmp_path: Path):
    pool_url = f"sqlite:///{tmp_path}/pool.db"
    tm = TaskManager("orphans", pool_url)
    (task_id,) = tm.create_task([{"i": 1}])
    marker = tmp_path / "hanging.pid"
    tracking_uri = f"sqlite:///{tmp_path / 'tracking' / 'orphans.db'}"
    args = ("orphans", "--storage", pool_url, "--handler", "record_handlers:hang",
            "--record", "orphans", "--tracking-uri", tracking_uri, "--lease", "1",
            "--idle-exit", "1")
    kill_once_hung(tmp_path, HANDLERS, HANG_MARKER_ENV, marker, *args)
    time.sleep(1.5)  # the lease of the killed worker runs out
    second = worker(tmp_path, HANDLERS, *args, **{HANG_MARKER_ENV: str(marker)})
    out, err = second.communicate(timeout=120)
    assert second.returncode == 0, err
    task = tm.re_query(task_id)
    assert task["status"] == "done" and task["attempt"] == 2
    assert not (tmp_path / "mlflow.db").exists()  # --tracking-uri reached the worker
    client = tracking.client(tracking_uri)
    exp_id = client.get_experiment_by_name("orphans").experiment_id
    runs = client.search_runs([exp_id], order_by=["tags.`taskloom.attempt`"])
    assert [(run.data.tags["taskloom.attempt"], run.info.status) for run in runs] == [
        ("1", "KILLED"), ("2", "FINISHED")]
    assert runs[1].info.run_id == task["res"]["run_id"]
    assert "marked KILLED" in err
