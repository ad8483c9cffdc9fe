"""A task comes back from the pool with the types it was submitted with, on every backend.

qlib's rolling example keys its recorders by the test segment (``rec_key_func`` returns
``task["dataset"]["kwargs"]["segments"]["test"]``), which needs a tuple of Timestamps, not the
list of strings that JSON storage would give back. The stored definition itself stays plain,
queryable JSON under the same task key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import taskloom
from taskloom.manager import TaskManager, run_task
from taskloom.stores import get_storage

CALENDAR = Path(__file__).resolve().parents[1] / "conformance" / "calendar_day.txt"


def rolling_tasks() -> list[dict[str, Any]]:
    """Rolling windows over a qlib-shaped template whose segments are tuples of Timestamps."""
    template = {
        "model": {"class": "LGBModel", "kwargs": {"learning_rate": 0.05, "subsample": 1.0}},
        "dataset": {"class": "DatasetH", "kwargs": {
            "handler": {"class": "Alpha158", "kwargs": {"start_time": pd.Timestamp("2008-01-02"),
                                                        "end_time": pd.Timestamp("2017-12-29")}},
            "segments": {
                "train": (pd.Timestamp("2008-01-02"), pd.Timestamp("2014-12-31")),
                "valid": (pd.Timestamp("2015-01-05"), pd.Timestamp("2016-12-30")),
                "test": (pd.Timestamp("2017-01-03"), pd.Timestamp("2017-12-29")),
            },
        }},
    }
    calendar = taskloom.TradingCalendar.from_file(CALENDAR)
    generator = taskloom.get_generator("rolling")(step=120, rtype="sliding", calendar=calendar)
    tasks = generator.generate(template)
    assert len(tasks) >= 2
    return tasks


def test_every_read_gives_back_the_submitted_types(tm: TaskManager):
    tasks = rolling_tasks()
    tm.create_task(tasks)
    queried = [record["def"] for record in tm.query()]
    assert queried == tasks
    test = queried[0]["dataset"]["kwargs"]["segments"]["test"]
    assert isinstance(test, tuple) and all(isinstance(day, pd.Timestamp) for day in test)
    assert isinstance(queried[0]["model"]["kwargs"]["subsample"], float)
    first = next(iter(tm.query()))
    assert tm.re_query(first["_id"])["def"] == tasks[0]
    fetched = tm.fetch_task()
    assert fetched is not None and fetched["def"] == tasks[0]
    assert isinstance(fetched["def"]["dataset"]["kwargs"]["segments"]["test"], tuple)


def test_the_stored_definition_stays_plain_json_under_the_same_key(tm: TaskManager):
    tasks = rolling_tasks()
    tm.create_task(tasks)
    stored = list(tm.pool.find({}))
    assert [record["key"] for record in stored] == [taskloom.task_key(task) for task in tasks]
    test = stored[0]["def"]["dataset"]["kwargs"]["segments"]["test"]
    assert test == [str(day.date()) for day in tasks[0]["dataset"]["kwargs"]["segments"]["test"]]
    start = test[0]
    assert [r["def"] for r in tm.query({"dataset.kwargs.segments.test.0": start})] == [tasks[0]]
    # resubmitting the same tasks with strings for dates finds them: the key ignores types
    plain = [taskloom.to_jsonable(task) for task in tasks]
    assert tm.create_task(plain) == [record["_id"] for record in stored]


def recorded_segment(task: dict[str, Any]) -> dict[str, Any]:
    """A task function in qlib's style: it needs the test segment's real types."""
    start, end = task["dataset"]["kwargs"]["segments"]["test"]
    return {"days": int((end - start).days), "start": str(start.date())}


def test_task_functions_and_rec_key_funcs_get_tuples_of_timestamps(tm: TaskManager):
    tasks = rolling_tasks()
    tm.create_task(tasks)
    assert run_task(recorded_segment, tm.task_pool, storage=tm.store)
    # qlib's rec_key_func: the test segment as a dict key
    by_segment = {record["def"]["dataset"]["kwargs"]["segments"]["test"]: record["res"]
                  for record in tm.query({"status": "done"})}
    assert len(by_segment) == len(tasks)
    first = tasks[0]["dataset"]["kwargs"]["segments"]["test"]
    assert by_segment[first]["start"] == str(first[0].date())


def test_types_survive_reopening_the_store(sqlite_url: str):
    tasks = rolling_tasks()
    TaskManager("typed", sqlite_url).create_task(tasks)
    reopened = TaskManager("typed", get_storage(sqlite_url))
    assert [record["def"] for record in reopened.query()] == tasks
