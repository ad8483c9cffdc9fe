"""Callables the workflow tests name in their workflow files, importable by worker processes.

``write_market`` is a ``prepare:`` step writing a small synthetic market; ``train_window`` is
a recorder-free training handler (build model and dataset, fit, predict the test segment,
return the predictions and labels to record). ``fail_window`` fails every task.
"""

from __future__ import annotations

import os
import time
from typing import Any

import taskloom
from taskloom_panel import LABEL, synthetic_market, write_panel


def write_market(path: str, instruments: int, start: str, end: str) -> None:
    """Write the synthetic market panel to ``path`` (skipped when it is there already)."""
    if not os.path.exists(path):
        write_panel(synthetic_market(instruments=instruments, start=start, end=end), path)


def train_window(task: dict[str, Any]) -> dict[str, Any]:
    """Fit the task's model on its dataset; the test predictions and their labels.

    ``TASKLOOM_TEST_TRAIN_SLEEP`` seconds of sleep first make tasks slow enough to kill a
    study mid-way.
    """
    time.sleep(float(os.environ.get("TASKLOOM_TEST_TRAIN_SLEEP", "0")))
    model = taskloom.instantiate(task["model"], config_path="model")
    dataset = taskloom.instantiate(task["dataset"], config_path="dataset")
    model.fit(dataset)
    pred = model.predict(dataset, segment="test")
    label = dataset.prepare("test", col_set="label")[LABEL].reindex(pred.index)
    return {"pred": pred, "label": label}


def fail_window(task: dict[str, Any]) -> None:
    """A handler whose every attempt fails."""
    raise RuntimeError("no model today")
