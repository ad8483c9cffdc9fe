"""Real worker processes recording into one default SQLite tracking store at the same time."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from support.subprocesses import worker
from taskloom.manager import TaskManager
from taskloom_recorder import tracking

#: the folder whose handler modules the worker subprocesses import
HANDLERS = Path(__file__).resolve().parent

pytestmark = pytest.mark.slow


def test_four_worker_processes_record_40_tasks_into_the_default_sqlite_store(tmp_path: Path):
    pool_url = f"sqlite:///{tmp_path}/pool.db"
    tm = TaskManager("conc", pool_url)
    ids = tm.create_task([{"i": i} for i in range(40)])
    proc = worker(tmp_path, HANDLERS, "conc", "--storage", pool_url,
                  "--handler", "record_handlers:predict",
                  "--record", "conc", "-c", "4", "--idle-exit", "2")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "locked" not in err and "Traceback" not in err, err
    assert tm.task_stat() == {"done": 40}
    client = tracking.client(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("conc")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    assert Counter(run.info.status for run in runs) == {"FINISHED": 40}
    by_task = Counter(run.data.tags["taskloom.task_id"] for run in runs)
    assert by_task == dict.fromkeys(ids, 1)
    processes = {run.data.tags["mlflow.runName"] for run in runs}
    assert len(processes) == 40
    for task in tm.query():
        ref = task["res"]
        run = client.get_run(ref["run_id"])
        assert run.data.tags["taskloom.task_id"] == task["_id"]
        assert ref["metrics"] == {"ic": task["def"]["i"] / 100}
        assert Path(ref["artifacts"]["pred.parquet"]).is_file()
