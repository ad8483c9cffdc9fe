"""The ``multi_horizon`` plugin: how the horizon is written, truncation, copies, errors."""

from __future__ import annotations

import copy
from typing import Any

import pandas as pd
import pytest
import taskloom
from taskloom_multihorizon.multihorizon import render_horizon

T = pd.Timestamp


@pytest.fixture
def multi_horizon(golden_calendar):
    def build(**params: Any) -> Any:
        return taskloom.get_generator("multi_horizon")(calendar=golden_calendar, **params)

    return build


def label(task: dict[str, Any]) -> Any:
    return task["dataset"]["kwargs"]["handler"]["kwargs"]["label"]


def test_registered_through_the_plugin():
    cls = taskloom.get_generator("multi_horizon")
    assert cls.__module__ == "taskloom_multihorizon.multihorizon"


def test_default_writes_qlibs_label_and_truncates_by_h_plus_leak(multi_horizon, qlib_template):
    """Spec §4.2: h=5, label_leak_n=2 puts the valid end at 2016-12-22 (7 days before test)."""
    tasks = multi_horizon(horizons=[1, 5]).generate(qlib_template)
    assert [label(t) for t in tasks] == [
        [["Ref($close, -2)/Ref($close, -1) - 1"], ["LABEL0"]],
        [["Ref($close, -6)/Ref($close, -1) - 1"], ["LABEL0"]],
    ]
    segments = tasks[1]["dataset"]["kwargs"]["segments"]
    assert segments == {"train": (T("2008-01-02"), T("2014-12-31")),
                        "valid": (T("2015-01-02"), T("2016-12-22")),
                        "test": (T("2017-01-02"), T("2020-07-31"))}
    assert tasks[1]["dataset"]["kwargs"]["handler"]["kwargs"]["end_time"] == "2020-08-01"


def test_a_callable_setter(multi_horizon, qlib_template):
    def setter(task, horizon):
        task["model"]["kwargs"]["horizon"] = horizon

    tasks = multi_horizon(horizons=[3, 10], horizon_setter=setter).generate(qlib_template)
    assert [t["model"]["kwargs"]["horizon"] for t in tasks] == [3, 10]
    assert "label" not in tasks[0]["dataset"]["kwargs"]["handler"]["kwargs"]


def test_a_path_and_template(multi_horizon, qlib_template):
    gen = multi_horizon(horizons=[20], horizon_path="model.kwargs",
                        horizon_template={"horizon": "{h}", "name": "ret_{h}d_{h+1}"})
    (task,) = gen.generate(qlib_template)
    assert task["model"]["kwargs"] == {"horizon": 20, "name": "ret_20d_21"}


def test_a_subclass_overriding_set_horizon(golden_calendar, qlib_template):
    base = taskloom.get_generator("multi_horizon")

    class Tagged(base):
        def set_horizon(self, task, horizon):
            task["tag"] = f"h{horizon}"

    tasks = Tagged(horizons=[1, 2], calendar=golden_calendar).generate(qlib_template)
    assert [t["tag"] for t in tasks] == ["h1", "h2"]


def test_render_horizon():
    assert render_horizon("{h}", 5) == 5
    assert render_horizon(["Ref($close, -{h+1})", "{h - 1}", 7], 5) == ["Ref($close, -6)", 4, 7]
    assert render_horizon(("{h}d", {"k": "{h+10}"}), 2) == ("2d", {"k": 12})


def test_setter_errors_propagate(multi_horizon):
    with pytest.raises(KeyError, match="handler"):
        multi_horizon(horizons=[5]).generate({"dataset": {"kwargs": {"segments": {}}}})


def test_input_unchanged_and_outputs_independent(multi_horizon, qlib_template):
    before = copy.deepcopy(qlib_template)
    first, second = multi_horizon(horizons=[1, 5]).generate(qlib_template)
    assert qlib_template == before
    label(first)[1].append("LABEL1")
    first["record"].clear()
    assert label(second) == [["Ref($close, -6)/Ref($close, -1) - 1"], ["LABEL0"]]
    assert second["record"] and qlib_template == before


def test_no_horizons_means_no_tasks(multi_horizon):
    assert multi_horizon(horizons=[]).generate({"anything": 1}) == []


@pytest.mark.parametrize("params, message", [
    ({"horizons": [5, -1]}, "horizons must be >= 0"),
    ({"horizons": "5"}, "horizons must be a list"),
    ({"horizons": [2.5]}, "horizons must be an integer"),
    ({"label_leak_n": -2}, "label_leak_n must be >= 0"),
    ({"horizon_setter": print, "horizon_path": "model.kwargs.h"}, "not both"),
])
def test_invalid_parameters(multi_horizon, params, message):
    with pytest.raises(ValueError, match=message):
        multi_horizon(**params)


def test_test_segment_needs_a_start(multi_horizon, qlib_template):
    qlib_template["dataset"]["kwargs"]["segments"]["test"] = [None, "2020-08-01"]
    with pytest.raises(ValueError, match="'test' .* has no start"):
        multi_horizon(horizons=[5]).generate(qlib_template)
