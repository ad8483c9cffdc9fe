"""A task comes back with the types it was submitted with: ``type_map`` and ``restore``."""

from __future__ import annotations

import copy
import datetime as dt
import json
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from taskloom.errors import TaskEncodingError
from taskloom.jsontypes import restore, type_map
from taskloom.taskkey import canonical_text, task_key, to_canonical

T = pd.Timestamp


def same(a: Any, b: Any) -> bool:
    """Equal with the same types all the way down (``==`` alone says ``1 == 1.0 == True``)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, pd.Timestamp) and a.unit != b.unit:
        return False
    if isinstance(a, dt.datetime) and a.utcoffset() != b.utcoffset():
        return False
    if isinstance(a, np.datetime64) and a.dtype != b.dtype:
        return False
    return bool(a == b)


def round_trip(task: Any) -> Any:
    types = type_map(task)
    stored = json.loads(canonical_text(to_canonical(task)))  # what a store gives back
    return restore(stored, json.loads(json.dumps(types)))


def qlib_task() -> dict[str, Any]:
    return {
        "model": {"class": "LGBModel", "kwargs": {"learning_rate": 0.2, "num_leaves": 210,
                                                  "colsample_bytree": 1.0}},
        "dataset": {"kwargs": {
            "handler": {"class": "Alpha158", "kwargs": {"end_time": T("2021-04-20"),
                                                        "instruments": "csi300"}},
            "segments": {"train": (T("2010-02-25"), T("2017-02-17")),
                         "valid": (T("2017-02-20"), T("2019-02-25")),
                         "test": (T("2019-02-26"), None)},
        }},
        "record": [{"class": "SignalRecord", "kwargs": {"model": "<MODEL>"}}],
    }


def test_a_qlib_task_comes_back_with_tuples_of_timestamps():
    task = qlib_task()
    back = round_trip(task)
    assert same(back, task)
    test = back["dataset"]["kwargs"]["segments"]["test"]
    assert {(back["model"]["class"], test): "pred"}  # qlib's rec_key_func: a hashable key


def test_the_type_map_is_small_json_with_pointers():
    types = type_map(qlib_task())
    assert types == {
        "/model/kwargs/colsample_bytree": "float",
        "/dataset/kwargs/handler/kwargs/end_time": "Timestamp[us]",
        "/dataset/kwargs/segments/train": "tuple",
        "/dataset/kwargs/segments/train/0": "Timestamp[us]",
        "/dataset/kwargs/segments/train/1": "Timestamp[us]",
        "/dataset/kwargs/segments/valid": "tuple",
        "/dataset/kwargs/segments/valid/0": "Timestamp[us]",
        "/dataset/kwargs/segments/valid/1": "Timestamp[us]",
        "/dataset/kwargs/segments/test": "tuple",
        "/dataset/kwargs/segments/test/0": "Timestamp[us]",
    }
    assert json.loads(json.dumps(types)) == types


def test_plain_json_has_no_type_map_and_restores_to_a_copy():
    task = {"model": {"kwargs": {"lr": 0.05, "n": 3, "flag": True, "none": None}},
            "segments": {"test": ["2017-01-01", "2017-03-31"]}}
    assert type_map(task) is None
    back = restore(task, None)
    assert back == task and back is not task
    assert back["segments"]["test"] is not task["segments"]["test"]


def test_restore_never_mutates_or_shares_the_canonical_data():
    task = qlib_task()
    stored, types = to_canonical(task), type_map(task)
    before = copy.deepcopy(stored)
    back = restore(stored, types)
    assert stored == before
    assert back["record"] is not stored["record"] and back["record"][0] is not stored["record"][0]
    back["model"]["kwargs"]["num_leaves"] = 1
    assert stored["model"]["kwargs"]["num_leaves"] == 210


def test_the_stored_form_and_key_stay_what_taskkey_gives():
    task = qlib_task()
    stored = to_canonical(task)
    assert stored["dataset"]["kwargs"]["segments"]["test"] == ["2019-02-26", None]
    assert task_key(round_trip(task)) == task_key(task)


@pytest.mark.parametrize(
    ("value", "tag"),
    [
        ((1, 2), "tuple"),
        (1.0, "float"),
        (dt.date(2020, 1, 2), "date"),
        (dt.datetime(2020, 1, 2, 15, 30), "datetime"),
        (dt.datetime(2020, 1, 2, tzinfo=dt.timezone(dt.timedelta(hours=8))), "datetime"),
        (T("2020-01-02").as_unit("ns"), "Timestamp[ns]"),
        (T("2020-01-02 00:00:00.000000001"), "Timestamp[ns]"),
        (T("2020-01-02", tz="UTC"), "Timestamp[us]"),
        (np.int64(7), "numpy.int64"),
        (np.float32(0.1), "numpy.float32"),
        (np.float64(2.0), "numpy.float64"),
        (np.bool_(True), f"numpy.{type(np.bool_(True)).__name__}"),
        (np.datetime64("2020-01-02", "ns"), "numpy.datetime64[ns]"),
        (np.datetime64("2020-01-02T10:00:00.000000001"), "numpy.datetime64[ns]"),
        (np.datetime64("2020-01", "M"), "numpy.datetime64[M]"),
    ],
)
def test_each_type_round_trips_with_its_tag(value, tag):
    task = {"a/b~c": [value]}  # a key that needs escaping in a JSON pointer
    assert type_map(task) == {"/a~1b~0c/0": tag}
    assert same(round_trip(task), task)


def test_a_time_zone_comes_back_as_its_offset():
    task = {"t": T("2020-01-02", tz="Asia/Shanghai")}
    back = round_trip(task)
    assert back["t"] == task["t"] and back["t"].utcoffset() == dt.timedelta(hours=8)


def test_a_task_that_is_a_tuple_gets_the_root_pointer():
    assert type_map((1, 2.0)) == {"": "tuple", "/1": "float"}
    assert same(round_trip((1, 2.0)), (1, 2.0))


@pytest.mark.parametrize(
    ("data", "types", "message"),
    [
        ({"a": [1]}, {"/b": "tuple"}, "types: /b: no such value in the task"),
        ({"a": [1]}, {"/a": "set"}, "types: /a: unknown type tag 'set'"),
        ({"a": [1]}, {"/a": "numpy.load"}, "types: /a: unknown type tag 'numpy.load'"),
        ({"a": [1]}, {"a": "tuple"}, "types: 'a' is not a JSON pointer"),
        ({"a": "x"}, {"/a": "tuple"}, "types: /a: cannot restore 'x' as tuple"),
        ({"a": "x"}, {"/a": "Timestamp[ns]"}, "types: /a: cannot restore 'x' as Timestamp"),
        ({"a": 5}, {"/a": "date"}, "types: /a: cannot restore 5 as date"),
        ({"a": [1]}, {"/a": ["tuple"]}, "types must map JSON pointers to tag strings"),
    ],
)
def test_a_map_that_does_not_fit_is_an_error_naming_the_pointer(data, types, message):
    with pytest.raises(TaskEncodingError, match=message):
        restore(data, types)


def test_non_string_keys_are_named():
    with pytest.raises(TaskEncodingError, match=r"model: key 1 is a int"):
        type_map({"model": {1: [2.0]}})


# --------------------------------------------------------------------------------------------
# The property: restore(canonical(x), type_map(x)) is x, types included
# --------------------------------------------------------------------------------------------

_naive = st.datetimes(min_value=dt.datetime(1800, 1, 1), max_value=dt.datetime(2200, 1, 1))
_offsets = st.sampled_from([dt.UTC, dt.timezone(dt.timedelta(hours=8)),
                            dt.timezone(dt.timedelta(hours=-5, minutes=-30))])
_units = st.sampled_from(["s", "ms", "us", "ns"])

leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=4),
    st.dates(),
    _naive,
    st.builds(lambda d, tz: d.replace(tzinfo=tz), _naive, _offsets),
    st.builds(lambda d, unit, ns: T(d).as_unit(unit) + pd.Timedelta(ns, "ns")
              if unit == "ns" else T(d).as_unit(unit), _naive, _units,
              st.integers(0, 999)),
    st.builds(lambda d, tz: T(d).tz_localize(tz), _naive, _offsets),
    st.integers(-(2**31), 2**31 - 1).map(np.int64),
    st.integers(0, 255).map(np.uint8),
    st.floats(allow_nan=False, allow_infinity=False, width=32).map(np.float32),
    st.floats(allow_nan=False, allow_infinity=False).map(np.float64),
    st.booleans().map(np.bool_),
    st.builds(lambda d, unit: np.datetime64(d).astype(f"datetime64[{unit}]"), _naive,
              st.sampled_from(["D", "s", "ms", "us", "ns"])),
)

tasks = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.lists(children, max_size=3).map(tuple),
        st.dictionaries(st.text(alphabet="ab/~.0", max_size=3), children, max_size=3),
    ),
    max_leaves=10,
)


@given(tasks)
def test_round_trip_restores_every_value_with_its_type(task):
    assert same(round_trip(task), task)


@given(tasks)
def test_round_trip_keeps_the_canonical_form_and_the_key(task):
    back = round_trip(task)
    assert canonical_text(to_canonical(back)) == canonical_text(to_canonical(task))
