"""The canonical task key: equal tasks get equal keys, unencodable values are named errors."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from taskloom import canonical_json, task_key, to_jsonable
from taskloom.errors import TaskEncodingError
from taskloom.taskkey import is_canonical, to_canonical

TASK = {
    "model": {"class": "LGBModel", "kwargs": {"num_leaves": 64, "lr": 0.05}},
    "dataset": {"kwargs": {"segments": {"train": ["2008-01-02", "2014-12-31"]}}},
}


def test_key_ignores_key_order():
    reordered = {
        "dataset": {"kwargs": {"segments": {"train": ["2008-01-02", "2014-12-31"]}}},
        "model": {"kwargs": {"lr": 0.05, "num_leaves": 64}, "class": "LGBModel"},
    }
    assert task_key(TASK) == task_key(reordered)


@pytest.mark.parametrize(
    "start",
    [
        "2008-01-02",
        pd.Timestamp("2008-01-02"),
        dt.date(2008, 1, 2),
        dt.datetime(2008, 1, 2),
        np.datetime64("2008-01-02"),
    ],
)
def test_key_ignores_date_types_and_tuples(start):
    variant = {
        "model": {
            "class": "LGBModel",
            "kwargs": {"num_leaves": np.int64(64), "lr": np.float64(0.05)},
        },
        "dataset": {"kwargs": {"segments": {"train": (start, pd.Timestamp("2014-12-31"))}}},
    }
    assert task_key(variant) == task_key(TASK)


def test_different_tasks_get_different_keys():
    other = json.loads(json.dumps(TASK))
    other["model"]["kwargs"]["num_leaves"] = 32
    assert task_key(other) != task_key(TASK)


def test_key_is_a_stable_hex_digest():
    key = task_key({"a": 1})
    assert len(key) == 64 and int(key, 16) >= 0
    assert key == task_key({"a": 1})


def test_times_keep_their_time_of_day():
    assert to_jsonable(pd.Timestamp("2020-01-02 15:30")) == "2020-01-02T15:30:00"
    assert task_key({"t": pd.Timestamp("2020-01-02 15:30")}) != task_key({"t": "2020-01-02"})


def test_canonical_json_sorts_keys_and_converts():
    assert canonical_json({"b": (1, 2), "a": np.bool_(True)}) == '{"a":true,"b":[1,2]}'


@pytest.mark.parametrize(
    ("task", "path"),
    [
        ({"model": {"kwargs": {"fn": object()}}}, "model.kwargs.fn"),
        ({"segments": {"test": [1.0, float("nan")]}}, "segments.test.1"),
        ({"weights": {1: 0.5}}, "weights"),
        ({"when": pd.NaT}, "when"),
        ({"items": [{"x": {1, 2}}]}, "items.0.x"),
    ],
)
def test_unencodable_values_name_their_path(task, path):
    with pytest.raises(TaskEncodingError) as info:
        task_key(task)
    assert str(info.value).startswith(f"{path}:")


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)  # what stores hold (see below)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=12,
)


def _reverse_key_order(value):
    if isinstance(value, dict):
        return {k: _reverse_key_order(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return tuple(_reverse_key_order(v) for v in value)
    return value


@given(json_values)
def test_key_is_invariant_under_key_order_and_tuples(value):
    assert task_key(_reverse_key_order(value)) == task_key(value)
    assert json.loads(canonical_json(value)) == to_jsonable(value)


# --------------------------------------------------------------------------------------------
# Numbers and dates whose canonical form used to be wrong
# --------------------------------------------------------------------------------------------


def test_integral_floats_get_the_key_of_the_int():
    """Queries treat 1 and 1.0 as equal, so the task key must too."""
    assert task_key({"a": 1.0}) == task_key({"a": 1})
    assert task_key({"a": np.float64(64.0)}) == task_key({"a": 64})
    assert task_key({"a": -0.0}) == task_key({"a": 0})
    assert task_key({"a": 1.5}) != task_key({"a": 1})
    canonical = to_canonical({"lr": 1.0, "big": 1e300, "half": 0.5})
    assert canonical == {"big": 1e300, "half": 0.5, "lr": 1}
    assert type(canonical["lr"]) is int and type(canonical["big"]) is float  # beyond 2**53


def test_an_integral_float_is_not_canonical():
    """A store accepting ``{"a": 1.0}`` as canonical would key it apart from ``{"a": 1}``."""
    assert not is_canonical({"a": 1.0})
    assert is_canonical({"a": 1, "b": 0.5, "c": 1e300})


@pytest.mark.parametrize(
    "midnight",
    [pd.Timestamp("2020-01-01", tz="UTC"), dt.datetime(2020, 1, 1, tzinfo=dt.UTC)],
)
def test_a_timezone_aware_midnight_keeps_its_offset(midnight):
    assert to_jsonable(midnight) == "2020-01-01T00:00:00+00:00"
    shanghai = pd.Timestamp("2020-01-01", tz="Asia/Shanghai")
    assert to_jsonable(shanghai) == "2020-01-01T00:00:00+08:00"
    keys = {task_key({"t": midnight}), task_key({"t": shanghai}), task_key({"t": "2020-01-01"})}
    assert len(keys) == 3


def test_nanoseconds_are_kept():
    """A Timestamp 1 ns after midnight is not that midnight's date."""
    assert to_jsonable(pd.Timestamp("2020-01-01 00:00:00.000000001")) == (
        "2020-01-01T00:00:00.000000001")
    assert to_jsonable(np.datetime64("2020-01-01T10:00:00.000000001")) == (
        "2020-01-01T10:00:00.000000001")


def test_nanosecond_datetime64_values_are_dates_not_integers():
    days = np.array(["2020-01-01", "2020-01-02T15:30"], dtype="datetime64[ns]")
    assert to_jsonable(days) == ["2020-01-01", "2020-01-02T15:30:00"]
    assert to_jsonable(days[0]) == "2020-01-01"
    assert to_jsonable(np.array([["2020-01-01"]], dtype="datetime64[D]")) == [["2020-01-01"]]
    assert task_key({"d": days[0]}) == task_key({"d": "2020-01-01"})


def test_integers_beyond_64_bits_have_no_stored_form_and_the_error_names_the_path():
    assert task_key({"i": 2**63 - 1}) != task_key({"i": -(2**63)})
    with pytest.raises(TaskEncodingError, match=r"model\.kwargs\.seed: 1180591620717411303424 "
                                                r"is outside the 64-bit integer range"):
        task_key({"model": {"kwargs": {"seed": 2**70}}})
