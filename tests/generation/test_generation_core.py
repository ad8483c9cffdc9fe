"""The core generation contract: TaskGen, task_generator, segment paths, copies, the hook."""

from __future__ import annotations

import copy
from typing import Any

import pandas as pd
import pytest
import taskloom
from taskloom.generation import (
    TaskGen,
    TaskSnapshot,
    extend_handler_end,
    get_segments,
    parse_path,
    set_path,
    task_generator,
)


class Tag(TaskGen):
    """Two copies of a task, tagged ``<name>1`` and ``<name>2`` in ``tags``."""

    def __init__(self, name: str) -> None:
        self.name = name

    def generate(self, task: dict[str, Any]) -> list[dict[str, Any]]:
        return [{**task, "tags": [*task.get("tags", []), f"{self.name}{i}"]} for i in (1, 2)]


def test_taskgen_is_abstract_and_callable():
    with pytest.raises(TypeError):
        TaskGen()  # type: ignore[abstract]
    assert Tag("a")({"x": 1}) == Tag("a").generate({"x": 1})
    assert taskloom.TaskGen is TaskGen and taskloom.task_generator is task_generator


def test_task_generator_is_template_major_and_depth_first():
    out = task_generator([{"t": "a"}, {"t": "b"}], [Tag("A"), Tag("B")])
    assert [(task["t"], task["tags"]) for task in out] == [
        ("a", ["A1", "B1"]), ("a", ["A1", "B2"]), ("a", ["A2", "B1"]), ("a", ["A2", "B2"]),
        ("b", ["A1", "B1"]), ("b", ["A1", "B2"]), ("b", ["A2", "B1"]), ("b", ["A2", "B2"]),
    ]


def test_task_generator_accepts_one_template_one_generator_or_a_plain_callable():
    assert len(task_generator({"t": "a"}, Tag("A"))) == 2
    assert task_generator({"t": "a"}, lambda task: [task, task]) == [{"t": "a"}, {"t": "a"}]
    templates = [{"t": "a"}, {"t": "b"}]
    assert task_generator(templates, []) == templates
    assert task_generator({"t": "a"}, ()) == [{"t": "a"}]


@pytest.mark.parametrize("tasks, generators, message", [
    (["not a task"], [], r"tasks\[0\] must be a task dict"),
    ({"t": 1}, [42], "neither a TaskGen nor callable"),
])
def test_task_generator_rejects_bad_input(tasks, generators, message):
    with pytest.raises(ValueError, match=message):
        task_generator(tasks, generators)


def test_segment_paths():
    task = {"data": {"windows": {"fit": ["2017-01-01", "2017-06-30"]}}}
    assert parse_path("data.windows") == ("data", "windows")
    assert get_segments(task, parse_path("data.windows")) == {"fit": ["2017-01-01", "2017-06-30"]}
    set_path(task, ("data", "windows"), {})
    assert task == {"data": {"windows": {}}}
    with pytest.raises(ValueError, match=r"no segments at 'dataset.kwargs.segments' "
                                         r"\(the task has no key 'dataset'\)"):
        get_segments(task)
    with pytest.raises(ValueError, match="segments path"):
        parse_path("data..windows")
    with pytest.raises(ValueError, match="must be a mapping"):
        get_segments({"s": ["2017-01-01", "2017-02-01"]}, ("s",))


def test_snapshot_copies_are_deep_and_independent():
    task = {"a": {"b": [1, {"c": 2}]}, "d": (3, [4])}
    snapshot = TaskSnapshot(task)
    first, second = snapshot.copy(), snapshot.copy()
    assert first == second == task
    first["a"]["b"][1]["c"] = 99
    first["d"][1].append(5)
    assert second == task == {"a": {"b": [1, {"c": 2}]}, "d": (3, [4])}


def test_snapshot_falls_back_to_deepcopy_for_unpicklable_tasks():
    task = {"func": lambda x: x, "kwargs": {"n": [1]}}
    first, second = TaskSnapshot(task).copy(), TaskSnapshot(task).copy()
    first["kwargs"]["n"].append(2)
    assert second["kwargs"]["n"] == [1] and second["func"] is task["func"]


def test_snapshot_can_omit_a_subtree_without_touching_the_task():
    task = {"dataset": {"kwargs": {"segments": {"test": [1, 2]}, "x": 1}}}
    out = TaskSnapshot(task, omit=("dataset", "kwargs", "segments")).copy()
    assert out == {"dataset": {"kwargs": {"segments": None, "x": 1}}}
    assert task["dataset"]["kwargs"]["segments"] == {"test": [1, 2]}


class Layout(TaskGen):
    segments_path = ("data", "windows")
    test_key = "pred"

    def generate(self, task):
        return [task]


@pytest.mark.parametrize("end_time, test_end, expected", [
    ("2018-06-29", pd.Timestamp("2020-07-31"), pd.Timestamp("2020-07-31")),  # extended
    ("2019-12-29", "2019-12-30", "2019-12-30"),  # a Sunday is before the Monday (deviation 14)
    ("2022-12-30", pd.Timestamp("2020-07-31"), "2022-12-30"),  # never shrinks
    (None, pd.Timestamp("2020-07-31"), None),  # open stays open
    ("2018-06-29", None, None),  # open test window: load everything
])
def test_extend_handler_end_with_a_custom_layout(end_time, test_end, expected):
    task = {"dataset": {"kwargs": {"handler": {"kwargs": {"end_time": end_time,
                                                          "start_time": "2008-01-01"}}}},
            "data": {"windows": {"pred": ("2017-01-03", test_end)}}}
    extend_handler_end(task, Layout())
    kwargs = task["dataset"]["kwargs"]["handler"]["kwargs"]
    assert kwargs == {"end_time": expected, "start_time": "2008-01-01"}


def test_extend_handler_end_leaves_string_handlers_and_missing_windows_alone():
    task = {"dataset": {"kwargs": {"handler": "file://cache.pkl",
                                   "segments": {"test": ("2017-01-03", None)}}}}
    before = copy.deepcopy(task)
    extend_handler_end(task, Layout())
    extend_handler_end(task, TaskGen.__new__(Tag))
    assert task == before


def test_extend_handler_end_names_a_bad_end_time():
    task = {"dataset": {"kwargs": {"handler": {"kwargs": {"end_time": "someday"}},
                                   "segments": {"test": ("2017-01-03", "2017-02-01")}}}}
    with pytest.raises(ValueError, match="handler.kwargs.end_time: 'someday' is not a date"):
        extend_handler_end(task, Tag("x"))
