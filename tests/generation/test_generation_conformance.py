"""Every case of ``tests/conformance/qlib_generation.json``, one test id each.

The comparison follows the conformance README literally: dates in the output become
``'YYYY-MM-DD'``, tuples become lists, then ``==``; an expected error must be raised (an
instance of the named class, subclasses count) with ``message_contains`` in ``str(exc)``,
compared case-insensitively.
"""

from __future__ import annotations

import builtins
import copy
import datetime as dt
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import taskloom
from taskloom.generation import extend_handler_end, get_segments

FIXTURE_FILE = Path(__file__).resolve().parents[1] / "conformance" / "qlib_generation.json"
FIXTURES = json.loads(FIXTURE_FILE.read_text(encoding="utf-8"))
CASES = FIXTURES["cases"]


def normalise(value: Any) -> Any:
    """The README's normalisation: dates to ISO day strings, tuples to lists, recursively."""
    if isinstance(value, pd.Timestamp | dt.date):
        return pd.Timestamp(value).strftime("%Y-%m-%d")
    if isinstance(value, np.datetime64):
        return pd.Timestamp(value).strftime("%Y-%m-%d")
    if isinstance(value, dict):
        return {key: normalise(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [normalise(item) for item in value]
    return value


_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _steps(path: str) -> list[str | int]:
    return [key if key else int(index) for key, index in _STEP.findall(path)]


def apply_input_types(data: Any, types: dict[str, str] | None) -> Any:
    """Pass the Python types qlib's harness used (tuples, Timestamps) at the recorded paths."""
    for path, kind in sorted((types or {}).items(), key=lambda item: -len(_steps(item[0]))):
        *parents, last = _steps(path)
        node = data
        for step in parents:
            node = node[step]
        if kind == "tuple":
            node[last] = tuple(node[last])
        elif kind == "Timestamp":
            node[last] = pd.Timestamp(node[last])
        else:
            raise AssertionError(f"unknown input type {kind!r}")
    return data




def make_hook(name: str | None, train_key: str) -> Callable[..., Any] | None:
    """The ``ds_extra_mod`` named in the fixture (see the file's ``hooks`` section)."""
    if name is None:
        return None
    if name == "default":
        return extend_handler_end
    if name == "fit_window_then_default":

        def fit_window_then_default(task: dict[str, Any], gen: Any) -> None:
            start, end = get_segments(task, gen.segments_path)[train_key]
            handler_kwargs = task["dataset"]["kwargs"]["handler"]["kwargs"]
            handler_kwargs["fit_start_time"], handler_kwargs["fit_end_time"] = start, end
            extend_handler_end(task, gen)

        return fit_window_then_default
    if name == "raise_runtime_error":

        def raise_runtime_error(task: dict[str, Any], gen: Any) -> None:
            raise RuntimeError("boom from ds_extra_mod_func")

        return raise_runtime_error
    raise AssertionError(f"unknown ds_extra_mod {name!r}")


def make_generator(spec: dict[str, Any], calendar: taskloom.TradingCalendar) -> taskloom.TaskGen:
    """A generator built through the plugin registry from a fixture's parameters."""
    if spec["generator"] in ("rolling", "gen_following_tasks"):
        return taskloom.get_generator("rolling")(
            step=spec["step"],
            rtype=spec["rtype"],
            trunc_days=spec.get("trunc_days"),
            train_key=spec["train_key"],
            test_key=spec["test_key"],
            ds_extra_mod_func=make_hook(spec["ds_extra_mod"], spec["train_key"]),
            calendar=calendar,
        )
    if spec["generator"] == "multi_horizon":
        setter = spec["horizon_setter"]
        return taskloom.get_generator("multi_horizon")(
            horizons=spec["horizons"],
            label_leak_n=spec["label_leak_n"],
            test_key=spec["test_key"],
            horizon_path=setter["path"],
            horizon_template=setter["value_template"],
            calendar=calendar,
        )
    raise AssertionError(f"unknown generator {spec['generator']!r}")


def _test_end(value: str | None, kind: str) -> Any:
    if kind == "Timestamp":
        return pd.Timestamp(value)
    if kind == "datetime64":
        return np.datetime64(value)
    if kind in ("str", "NoneType"):
        return value
    raise AssertionError(f"unknown test_end_type {kind!r}")


def run_case(case: dict[str, Any], calendar: taskloom.TradingCalendar) -> Any:
    """Call what the case describes and return its result (a task list or an op's value)."""
    params = case["params"]
    data = apply_input_types(copy.deepcopy(case["input"]), case.get("input_types"))
    generator = case["generator"]
    if generator in ("rolling", "multi_horizon"):
        gen = make_generator({"generator": generator, **params}, calendar)
        before = copy.deepcopy(data)
        tasks = gen.generate(data)
        assert normalise(data) == normalise(before), "generate() mutated its input"
        return tasks
    if generator == "gen_following_tasks":
        gen = make_generator({"generator": generator, **params}, calendar)
        test_end = _test_end(data["test_end"], params["test_end_type"])
        return gen.gen_following_tasks(data["task"], test_end)
    if generator == "task_generator":
        gens = [make_generator(spec, calendar) for spec in params["generators"]]
        return taskloom.task_generator(data, gens)
    if generator == "calendar_op":
        return run_calendar_op(params, data, calendar)
    raise AssertionError(f"unknown generator {generator!r}")


def run_calendar_op(params: dict[str, Any], data: dict[str, Any],
                    calendar: taskloom.TradingCalendar) -> Any:
    """One unit-level calendar operation."""
    op = params["op"]
    if op == "align":
        return calendar.align(data["date"], params["as"])
    if op == "align_segments":
        return calendar.align_segments(data["segments"])
    if op == "shift":
        return calendar.shift(data["segment"], params["step"], params["rtype"])
    if op == "truncate":
        return calendar.truncate(data["segment"], data["test_start"], params["days"])
    if op == "trunc_segments":
        return calendar.trunc_segments(data["segments"], params["days"], params["test_key"])
    if op == "extend_handler_end":
        gen = taskloom.get_generator("rolling")(test_key=params["test_key"], calendar=calendar)
        task = data["task"]
        extend_handler_end(task, gen)
        return task
    raise AssertionError(f"unknown calendar op {op!r}")


@pytest.mark.parametrize("case", CASES, ids=[case["id"] for case in CASES])
def test_conformance_case(case: dict[str, Any], golden_calendar: taskloom.TradingCalendar):
    expect = case["expect"]
    if "error" in expect:
        error_class = getattr(builtins, expect["error"])
        with pytest.raises(error_class) as info:
            run_case(case, golden_calendar)
        assert expect["message_contains"].lower() in str(info.value).lower()
        return
    result = normalise(run_case(case, golden_calendar))
    expected = expect["tasks"] if "tasks" in expect else expect["value"]
    assert result == expected


def test_every_case_is_collected():
    assert len(CASES) == FIXTURES["meta"]["n_cases"] == 495
    assert len({case["id"] for case in CASES}) == 495
