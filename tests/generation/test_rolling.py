"""The ``rolling`` plugin: registry lookup, worked examples, copies, parameters and errors."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import numpy as np
import pandas as pd
import pytest
import taskloom
from hypothesis import given, settings
from hypothesis import strategies as st
from taskloom import registry

T = pd.Timestamp


def segments_of(task: dict[str, Any]) -> dict[str, Any]:
    return task["dataset"]["kwargs"]["segments"]


def mutable_ids(value: Any, found: set[int] | None = None) -> set[int]:
    """ids of every dict and list reachable from ``value``."""
    found = set() if found is None else found
    if isinstance(value, dict):
        found.add(id(value))
        for item in value.values():
            mutable_ids(item, found)
    elif isinstance(value, list | tuple):
        if isinstance(value, list):
            found.add(id(value))
        for item in value:
            mutable_ids(item, found)
    return found


@pytest.fixture
def rolling(golden_calendar):
    def build(**params: Any) -> Any:
        return taskloom.get_generator("rolling")(calendar=golden_calendar, **params)

    return build


def test_get_generator_goes_through_the_plugin():
    cls = taskloom.get_generator("rolling")
    assert cls.__module__ == "taskloom_rolling.rolling" and issubclass(cls, taskloom.TaskGen)
    assert registry.contributions("generator")["rolling"].provider == "rolling"


def test_worked_example_step_550_sliding(rolling, qlib_template):
    """Spec §4.2 on the golden calendar."""
    tasks = rolling(step=550, rtype="sliding").generate(qlib_template)
    assert [segments_of(t) for t in tasks] == [
        {"train": (T("2008-01-02"), T("2014-12-31")), "valid": (T("2015-01-02"), T("2016-12-30")),
         "test": (T("2017-01-02"), T("2019-02-25"))},
        {"train": (T("2010-02-25"), T("2017-02-17")), "valid": (T("2017-02-20"), T("2019-02-25")),
         "test": (T("2019-02-26"), T("2021-04-20"))},
    ]
    ends = [t["dataset"]["kwargs"]["handler"]["kwargs"]["end_time"] for t in tasks]
    assert ends == ["2020-08-01", T("2021-04-20")]


def test_expanding_keeps_the_train_start_and_trunc_days_cuts_valid(rolling, qlib_template):
    tasks = rolling(step=550, rtype="expanding", trunc_days=2).generate(qlib_template)
    assert segments_of(tasks[1])["train"] == (T("2008-01-02"), T("2017-02-17"))
    assert segments_of(tasks[0])["valid"][1] == T("2016-12-29")
    assert segments_of(tasks[1])["valid"] == (T("2017-02-20"), T("2019-02-22"))


def test_open_test_end_rolls_to_the_calendar_end(rolling, qlib_template):
    segments_of(qlib_template)["test"] = ["2017-01-01", None]
    tasks = rolling(step=550, rtype="sliding").generate(qlib_template)
    assert len(tasks) == 3 and segments_of(tasks[-1])["test"] == (T("2021-04-21"), None)
    assert tasks[-1]["dataset"]["kwargs"]["handler"]["kwargs"]["end_time"] is None


def test_output_segments_are_tuples_of_timestamps(rolling, qlib_template):
    for task in rolling(step=250).generate(qlib_template):
        for start, end in segments_of(task).values():
            assert type(start) is pd.Timestamp and type(end) is pd.Timestamp


def test_input_is_never_mutated(rolling, qlib_template):
    segments_of(qlib_template)["train"] = (T("2008-01-01"), dt.date(2014, 12, 31))
    before = copy.deepcopy(qlib_template)
    ids_before = mutable_ids(qlib_template)
    rolling(step=63, trunc_days=5).generate(qlib_template)
    assert qlib_template == before and mutable_ids(qlib_template) == ids_before


def test_outputs_share_no_mutable_state(rolling, qlib_template):
    tasks = rolling(step=250).generate(qlib_template)
    seen = mutable_ids(qlib_template)
    for task in tasks:
        ids = mutable_ids(task)
        assert not ids & seen
        seen |= ids
    tasks[0]["model"]["kwargs"]["num_leaves"] = 1
    tasks[0]["record"].append("extra")
    tasks[0]["dataset"]["kwargs"]["handler"]["kwargs"]["end_time"] = "1999-01-01"
    tasks[0]["dataset"]["kwargs"]["segments"]["test"] = None
    assert tasks[1]["model"]["kwargs"]["num_leaves"] == 64 and len(tasks[1]["record"]) == 1
    assert tasks[1]["dataset"]["kwargs"]["handler"]["kwargs"]["end_time"] == "2020-08-01"
    assert segments_of(tasks[1])["test"] is not None


def test_task_copy_func_is_honoured(rolling, qlib_template):
    heavy = object()  # e.g. a loaded data handler that must be shared, not copied
    qlib_template["dataset"]["kwargs"]["handler"]["kwargs"]["cache"] = heavy
    calls = []

    def share_leaves(task):
        calls.append(task)
        return copy.deepcopy(task, {id(heavy): heavy})

    tasks = rolling(step=250, task_copy_func=share_leaves).generate(qlib_template)
    assert len(calls) == len(tasks) == 4
    assert all(t["dataset"]["kwargs"]["handler"]["kwargs"]["cache"] is heavy for t in tasks)


def test_the_default_hook_never_writes_into_what_task_copy_func_shares(rolling, qlib_template):
    """A copy function sharing the handler config (the old docs example) must not give every
    window the last window's ``end_time``, nor change the template: generation is pure."""
    handler = qlib_template["dataset"]["kwargs"]["handler"]
    before = copy.deepcopy(qlib_template)
    gen = rolling(step=550, rtype="sliding",
                  task_copy_func=lambda t: copy.deepcopy(t, {id(handler): handler}))
    tasks = gen.generate(qlib_template)
    ends = [t["dataset"]["kwargs"]["handler"]["kwargs"]["end_time"] for t in tasks]
    assert ends == ["2020-08-01", T("2021-04-20")]
    assert qlib_template == before


def test_segments_are_never_written_into_what_task_copy_func_shares(rolling, qlib_template):
    """Sharing ``dataset.kwargs`` itself must still give each window its own segments."""
    kwargs = qlib_template["dataset"]["kwargs"]
    before = copy.deepcopy(qlib_template)
    gen = rolling(step=550, rtype="sliding", ds_extra_mod_func=None,
                  task_copy_func=lambda t: copy.deepcopy(t, {id(kwargs): kwargs}))
    tasks = gen.generate(qlib_template)
    assert [segments_of(t)["test"][0] for t in tasks] == [T("2017-01-02"), T("2019-02-26")]
    assert qlib_template == before


def test_no_hook_and_a_custom_hook(rolling, qlib_template):
    tasks = rolling(step=250, ds_extra_mod_func=None).generate(qlib_template)
    assert {t["dataset"]["kwargs"]["handler"]["kwargs"]["end_time"] for t in tasks} == {
        "2020-08-01"}
    seen = []
    rolling(step=250, ds_extra_mod_func=lambda task, gen: seen.append(gen.step)).generate(
        qlib_template)
    assert seen == [250] * 4


def test_a_custom_segments_layout(golden_calendar):
    gen = taskloom.get_generator("rolling")(
        step=5, rtype="sliding", calendar=golden_calendar, segments_path="study.windows",
        test_key="pred", train_key="fit")
    template = {"study": {"windows": {"fit": ["2016-01-01", "2016-12-31"],
                                      "pred": ["2017-01-01", "2017-01-31"]}}}
    tasks = gen.generate(template)
    assert [t["study"]["windows"]["pred"][0] for t in tasks] == [
        T("2017-01-02"), T("2017-01-09"), T("2017-01-16"), T("2017-01-23"), T("2017-01-30")]


@pytest.mark.parametrize("test_end", ["2020-07-31", T("2020-07-31"),
                                      np.datetime64("2020-07-31"), dt.date(2020, 7, 31)])
def test_gen_following_tasks_accepts_every_date_form(rolling, qlib_template, test_end):
    gen = rolling(step=250)
    first = gen.generate(qlib_template)[0]
    following = gen.gen_following_tasks(first, test_end)
    assert [segments_of(t)["test"][0] for t in following] == [
        T("2017-12-21"), T("2018-12-14"), T("2019-12-09")]
    assert len(gen.gen_following_tasks(first, None)) == 6
    assert gen.gen_following_tasks(first, "1990-01-01") == []
    with pytest.raises(ValueError, match="test_end: 'soon' is not a date"):
        gen.gen_following_tasks(first, "soon")


@pytest.mark.parametrize("params, message", [
    ({"step": 0}, "step must be >= 1"),
    ({"step": -20}, "step must be >= 1"),
    ({"step": True}, "step must be an integer"),
    ({"step": "20"}, "step must be an integer"),
    ({"rtype": "slide"}, "rtype must be 'expanding' or 'sliding'"),
    ({"trunc_days": -1}, "trunc_days must be >= 0"),
    ({"train_key": "test"}, "train_key and test_key must differ"),
    ({"task_copy_func": "deepcopy"}, "task_copy_func must be callable"),
])
def test_invalid_parameters(rolling, params, message):
    with pytest.raises(ValueError, match=message):
        rolling(**params)


def test_a_calendar_is_required():
    cls = taskloom.get_generator("rolling")
    with pytest.raises(TypeError):
        cls(step=20)
    with pytest.raises(ValueError, match="calendar must be a TradingCalendar"):
        cls(step=20, calendar=["2020-01-02"])


@pytest.mark.parametrize("segments, message", [
    ({"train": ["2008-01-01", "2014-12-31"]}, r"segment 'test' \(the test key\) is missing"),
    ({"test": [None, "2020-08-01"]}, r"segment 'test' \(the test key\) has no start"),
    ({"test": ["2023-02-01", None]}, "segment 'test': start 2023-02-01 is after the calendar"),
    ({"train": ["2000-01-01", "2004-06-30"], "test": ["2017-01-01", None]},
     "segment 'train': end 2004-06-30 is before the calendar"),
    ({"train": "2008-01-01", "test": ["2017-01-01", None]}, "segment 'train': expected a"),
])
def test_invalid_segments_name_the_segment(rolling, qlib_template, segments, message):
    qlib_template["dataset"]["kwargs"]["segments"] = segments
    with pytest.raises(ValueError, match=message):
        rolling(step=20).generate(qlib_template)


def test_missing_segments_name_the_path(rolling):
    with pytest.raises(ValueError, match="no segments at 'dataset.kwargs.segments'"):
        rolling(step=20).generate({"dataset": {"kwargs": {}}})


def test_trunc_days_before_the_calendar_start(rolling, qlib_template):
    qlib_template["dataset"]["kwargs"]["segments"] = {"train": ["2005-01-03", "2005-01-05"],
                                                      "test": ["2005-01-06", "2005-02-01"]}
    with pytest.raises(ValueError, match="segment 'train': truncation leaves no trading day"):
        rolling(step=20, trunc_days=10).generate(qlib_template)


@settings(max_examples=60, deadline=None)
@given(step=st.integers(1, 400), test_start=st.integers(300, 4600), length=st.integers(0, 900),
       rtype=st.sampled_from(["sliding", "expanding"]), trunc=st.none() | st.integers(0, 30))
def test_windows_follow_the_closed_form(golden_calendar, step, test_start, length, rtype, trunc):
    days = golden_calendar.days
    n = len(days)
    test_end = min(test_start + length, n - 1)
    segments = {"train": (days[test_start - 300], days[test_start - 60]),
                "valid": (days[test_start - 59], days[test_start - 1]),
                "test": (days[test_start], days[test_end])}
    gen = taskloom.get_generator("rolling")(step=step, rtype=rtype, trunc_days=trunc,
                                            calendar=golden_calendar)
    tasks = gen.generate({"dataset": {"kwargs": {"segments": segments}}})
    assert len(tasks) == (test_end - test_start) // step + 1

    def index(day):
        return None if day is None else days.get_loc(day)

    cut = min(test_start - 1, test_start - trunc) if trunc is not None else test_start - 1
    for i, task in enumerate(tasks):
        seg = {key: tuple(index(d) for d in pair) for key, pair in segments_of(task).items()}
        end = test_start + (i + 1) * step - 1
        assert seg["test"] == (test_start + i * step, end if end < n else None)
        train_start = test_start - 300 + (0 if rtype == "expanding" else i * step)
        assert seg["train"][0] == train_start
        valid_end = cut + i * step
        assert seg["valid"] == (test_start - 59 + i * step, valid_end if valid_end < n else None)
