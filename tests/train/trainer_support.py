"""What the trainer tests share: rolling tasks on a small synthetic panel, and a worker
handler that hangs on demand (to be killed mid-training).

Importable both as ``train.trainer_support`` (the tests) and as ``trainer_support`` (the
``taskloom worker`` subprocesses, which get this folder on ``PYTHONPATH``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import taskloom
from taskloom_panel import panel_task

#: set in a worker's environment: the handler writes its pid there and hangs, once
HANG_MARKER_ENV = "TASKLOOM_TEST_HANG_MARKER"
#: rolling step in trading days: the test period 2016-07..2017-12 makes five windows
STEP = 95
RIDGE = {"class": "Ridge", "module_path": "sklearn.linear_model", "kwargs": {"alpha": 10.0}}


def template(path: str, name: str, features: list[str]) -> dict[str, Any]:
    """A qlib-shaped task on the panel file ``path``, tagged with the model's ``name``."""
    return panel_task(path, RIDGE, features,
                      {"train": ("2015-01-01", "2015-12-31"), "valid": ("2016-01-01", "2016-06-30"),
                       "test": ("2016-07-01", None)},
                      tags={"model_name": name})


def rolling_tasks(market, path: str, models: dict[str, list[str]]) -> list[dict[str, Any]]:
    """The rolling windows of each model's template, model by model (qlib's order)."""
    days = market.index.get_level_values("datetime").unique()
    gen = taskloom.get_generator("rolling")(step=STEP, rtype="sliding",
                                           calendar=taskloom.TradingCalendar(days))
    return taskloom.task_generator(
        [template(path, name, features) for name, features in models.items()], gen)


def hang_then_train(task: Any, **kwargs: Any) -> Any:
    """``taskloom.train_values``, except that the first call in a process given
    ``HANG_MARKER_ENV`` writes its pid to that file and hangs until killed."""
    marker = os.environ.get(HANG_MARKER_ENV)
    if marker and not Path(marker).exists():
        Path(marker).write_text(str(os.getpid()))
        while True:
            time.sleep(1)
    return taskloom.train_values(task, **kwargs)


def parent_pid_train(task: Any, experiment_name: str, recorder_name: str | None = None,
                     tracking_uri: str | None = None) -> dict[str, Any]:
    """A train function recording (as metrics) which process ran it, and that one's parent."""
    recorder = taskloom.get_recorder("mlflow")(experiment_name, tracking_uri=tracking_uri)
    return recorder.wrap(_pids)(task)


def _pids(task: Any) -> dict[str, int]:
    return {"pid": os.getpid(), "ppid": os.getppid()}
