"""qlib's names on the generators: ``RollingGen.ROLL_EX/ROLL_SD``, ``gen.ta`` (TimeAdjuster),
``MultiHorizonGenBase(horizon=...)``, and qlib's own ``handler_mod`` running unchanged."""

from __future__ import annotations

import copy
import json
from typing import Any

import pandas as pd
import pytest
import taskloom
from taskloom.calendar import CalendarError, TimeAdjuster, TradingCalendar

T = pd.Timestamp


@pytest.fixture
def rolling_cls() -> Any:
    return taskloom.get_generator("rolling")


@pytest.fixture
def ta(golden_calendar) -> TimeAdjuster:
    return TimeAdjuster(golden_calendar)


def segments_of(task: dict[str, Any]) -> dict[str, Any]:
    return task["dataset"]["kwargs"]["segments"]


# --------------------------------------------------------------------------------------------
# ROLL_EX / ROLL_SD
# --------------------------------------------------------------------------------------------


def test_roll_constants_have_qlibs_values(rolling_cls):
    assert (rolling_cls.ROLL_EX, rolling_cls.ROLL_SD) == ("expanding", "sliding")


def test_roll_constants_work_as_rtype_and_default_is_expanding(rolling_cls, golden_calendar,
                                                               qlib_template):
    """qlib's example passes ``rtype=RollingGen.ROLL_SD``; the default is ROLL_EX, as in qlib."""
    sliding = rolling_cls(step=550, rtype=rolling_cls.ROLL_SD, calendar=golden_calendar)
    default = rolling_cls(step=550, calendar=golden_calendar)
    assert sliding.rtype == "sliding" and default.rtype == rolling_cls.ROLL_EX
    assert segments_of(sliding.generate(qlib_template)[1])["train"][0] == T("2010-02-25")
    assert segments_of(default.generate(qlib_template)[1])["train"][0] == T("2008-01-02")


# --------------------------------------------------------------------------------------------
# gen.ta: qlib's TimeAdjuster over the generator's calendar
# --------------------------------------------------------------------------------------------


def test_generators_expose_a_time_adjuster_over_their_calendar(rolling_cls, golden_calendar):
    gen = rolling_cls(step=20, calendar=golden_calendar)
    mh = taskloom.get_generator("multi_horizon")(calendar=golden_calendar)
    for adjuster in (gen.ta, mh.ta):
        assert isinstance(adjuster, TimeAdjuster) and adjuster.calendar is golden_calendar
    assert (gen.ta.SHIFT_SD, gen.ta.SHIFT_EX) == ("sliding", "expanding")


def test_get_and_max(ta, golden_calendar):
    assert ta.get(0) == T("2005-01-03") and ta.get(3081) == T("2017-01-02")
    assert ta.get(None) is None and ta.get(len(golden_calendar)) is None
    assert ta.max() == T("2022-12-30")
    assert ta.cals.equals(golden_calendar.days)
    with pytest.raises(CalendarError, match="index -1"):
        ta.get(-1)  # qlib wraps around to the last day


@pytest.mark.parametrize(
    ("date", "tp_type", "index"),
    [
        ("2017-01-02", "start", 3081),  # a trading day is its own index either way
        ("2017-01-02", "end", 3081),
        ("2016-12-31", "start", 3081),  # Saturday: forward to Monday...
        ("2016-12-31", "end", 3080),  # ...or back to Friday
        (T("2016-12-31 15:30"), "end", 3080),
        ("1990-01-01", "start", 0),
        ("1990-01-01", "end", -1),  # before the calendar: qlib's bisect answer
        ("2030-01-01", "start", 4622),  # after the calendar: len(calendar)
        ("2030-01-01", "end", 4621),
        (None, "start", None),
    ],
)
def test_align_idx_is_qlibs_bisect(ta, date, tp_type, index):
    assert ta.align_idx(date, tp_type) == index


def test_align_idx_and_align_time_refuse_an_unknown_tp_type(ta):
    for method in (ta.align_idx, ta.align_time):
        with pytest.raises(CalendarError, match="tp_type must be 'start' or 'end', got 'middle'"):
            method("2017-01-02", "middle")


def test_cal_interval_counts_trading_days_and_refuses_none(ta):
    assert ta.cal_interval("2017-01-09", "2017-01-02") == 5
    assert ta.cal_interval("2016-12-31", "2017-01-02") == 0  # Saturday counts as Monday
    assert ta.cal_interval("2017-01-02", T("2017-01-09")) == -5
    with pytest.raises(TypeError, match="time_point_A is None"):
        ta.cal_interval(None, "2017-01-02")
    with pytest.raises(TypeError, match="time_point_B is None"):
        ta.cal_interval("2017-01-02", None)


def test_align_time(ta):
    assert ta.align_time("2016-12-31") == T("2017-01-02")
    assert ta.align_time("2016-12-31", "end") == T("2016-12-30")
    assert ta.align_time("2030-01-01", "end") == T("2022-12-30")
    assert ta.align_time(None) is None
    with pytest.raises(CalendarError, match="2030-01-01 is after the calendar's last day"):
        ta.align_time("2030-01-01")  # qlib: IndexError
    with pytest.raises(CalendarError, match="1990-01-01 is before the calendar's first day"):
        ta.align_time("1990-01-01", "end")  # qlib: silently the calendar's last day


def test_align_seg_matches_qlibs_docstring_example_on_the_golden_calendar(ta):
    segments = {"train": ("2008-01-01", "2014-12-31"), "valid": ["2015-01-01", "2016-12-31"],
                "test": ("2017-01-01", None)}
    assert ta.align_seg(segments) == {
        "train": (T("2008-01-02"), T("2014-12-31")),
        "valid": (T("2015-01-02"), T("2016-12-30")),
        "test": (T("2017-01-02"), None),
    }
    assert ta.align_seg(["2016-12-31", "2017-01-08"]) == (T("2017-01-02"), T("2017-01-06"))
    with pytest.raises(CalendarError, match="segment 'test': expected a .start, end. pair"):
        ta.align_seg({"test": "2017-01-01"})


def test_truncate(ta):
    # every bound at most idx(test_start) - days: 3081 - 3 = 3078 (2016-12-28)
    assert ta.truncate(("2015-01-02", "2016-12-30"), "2017-01-02", 3) == (
        T("2015-01-02"), T("2016-12-28"))
    assert ta.truncate(("2005-01-03", "2016-12-30"), "2016-12-31", 3)[0] == T("2005-01-03")
    assert ta.truncate((None, "2016-12-30"), "2017-01-02", 3) == (None, T("2016-12-28"))


def test_shift_sliding_expanding_and_the_calendar_end(ta):
    seg = (T("2015-01-02"), T("2016-12-30"))
    assert ta.shift(seg, 5) == (T("2015-01-09"), T("2017-01-06"))
    assert ta.shift(seg, 5, rtype=ta.SHIFT_EX) == (T("2015-01-02"), T("2017-01-06"))
    assert ta.shift(("2022-12-01", "2022-12-30"), 3) == (T("2022-12-06"), None)
    assert ta.shift((None, None), 20) == (None, None)
    with pytest.raises(CalendarError, match="rtype must be 'expanding' or 'sliding', got 'up'"):
        ta.shift(seg, 5, rtype="up")


def test_shift_off_the_calendar_is_a_key_error_as_in_qlib(ta):
    """qlib's rolling loops stop with ``except KeyError``; that code keeps working."""
    with pytest.raises(KeyError) as info:
        ta.shift(("2022-12-29", "2022-12-30"), 5)
    assert isinstance(info.value, ValueError)
    assert str(info.value).startswith("start 2022-12-29 shifted by 5 trading days")


def test_time_adjuster_needs_a_calendar():
    with pytest.raises(CalendarError, match="calendar must be a TradingCalendar, got list"):
        TimeAdjuster(["2020-01-02"])


# --------------------------------------------------------------------------------------------
# qlib's handler_mod, as a user would paste it, runs unchanged as ds_extra_mod_func
# --------------------------------------------------------------------------------------------


def qlib_handler_mod(task: dict, rolling_gen: Any) -> None:
    """qlib's default ``ds_extra_mod_func`` (HEAD, PR #2068), restated by a user."""
    try:
        kwargs = task["dataset"]["kwargs"]["handler"]["kwargs"]
        handler_end = kwargs.get("end_time")
        test_end = task["dataset"]["kwargs"]["segments"][rolling_gen.test_key][1]
        if test_end is None or rolling_gen.ta.cal_interval(handler_end, test_end) < 0:
            kwargs["end_time"] = copy.deepcopy(test_end)
    except KeyError:  # no handler
        pass
    except TypeError:  # a "file://" handler, or end_time None
        pass


def handler_end(task: dict[str, Any]) -> Any:
    return task["dataset"]["kwargs"]["handler"]["kwargs"].get("end_time", "missing")


def test_qlibs_handler_mod_extends_the_handler_like_the_default(rolling_cls, golden_calendar,
                                                                qlib_template):
    gen = rolling_cls(step=550, rtype=rolling_cls.ROLL_SD, ds_extra_mod_func=qlib_handler_mod,
                      calendar=golden_calendar)
    tasks = gen.generate(qlib_template)
    assert [handler_end(t) for t in tasks] == ["2020-08-01", T("2021-04-20")]
    default = rolling_cls(step=550, rtype=rolling_cls.ROLL_SD, calendar=golden_calendar)
    assert tasks == default.generate(qlib_template)


def test_qlibs_handler_mod_open_end_and_no_end_time(rolling_cls, golden_calendar, qlib_template):
    segments_of(qlib_template)["test"] = ["2017-01-01", None]
    gen = rolling_cls(step=550, ds_extra_mod_func=qlib_handler_mod, calendar=golden_calendar)
    assert handler_end(gen.generate(qlib_template)[-1]) is None  # open window: load everything
    segments_of(qlib_template)["test"] = ["2017-01-01", "2020-08-01"]
    qlib_template["dataset"]["kwargs"]["handler"]["kwargs"]["end_time"] = None
    # cal_interval(None, ...) raises TypeError, which handler_mod swallows: unbounded stays so
    assert [handler_end(t) for t in gen.generate(qlib_template)] == [None, None]
    del qlib_template["dataset"]["kwargs"]["handler"]["kwargs"]["end_time"]
    assert [handler_end(t) for t in gen.generate(qlib_template)] == ["missing", "missing"]


# --------------------------------------------------------------------------------------------
# MultiHorizonGenBase(horizon=...)
# --------------------------------------------------------------------------------------------


def test_multi_horizon_takes_qlibs_horizon_keyword(golden_calendar, qlib_template):
    cls = taskloom.get_generator("multi_horizon")
    gen = cls(horizon=[1, 5], label_leak_n=2, calendar=golden_calendar)
    assert gen.horizon == [1, 5] and gen.horizons is gen.horizon
    assert gen.generate(qlib_template) == cls(horizons=[1, 5], calendar=golden_calendar
                                              ).generate(qlib_template)
    assert cls(calendar=golden_calendar).horizon == [5]  # qlib's default
    positional = cls([20], calendar=golden_calendar)
    assert positional.horizon == [20]


def test_multi_horizon_horizon_attribute_is_validated_and_live(golden_calendar, qlib_template):
    gen = taskloom.get_generator("multi_horizon")(horizon=(1,), calendar=golden_calendar)
    gen.horizon = [2, 3]
    assert [t["dataset"]["kwargs"]["handler"]["kwargs"]["label"][0][0]
            for t in gen.generate(qlib_template)] == ["Ref($close, -3)/Ref($close, -1) - 1",
                                                      "Ref($close, -4)/Ref($close, -1) - 1"]
    with pytest.raises(CalendarError, match="horizon must be >= 0, got -1"):
        gen.horizon = [-1]


def test_multi_horizon_refuses_both_spellings(golden_calendar):
    with pytest.raises(ValueError, match=r"horizons or qlib's horizon, not both \(horizons=\[1\]"):
        taskloom.get_generator("multi_horizon")(horizons=[1], horizon=[2],
                                                calendar=golden_calendar)


def test_time_adjuster_type_is_exported_lazily():
    assert taskloom.TimeAdjuster is TimeAdjuster
    assert TradingCalendar is taskloom.TradingCalendar


# --------------------------------------------------------------------------------------------
# qlib's rolling example, collection step: the test segment as a dict key after storage
# --------------------------------------------------------------------------------------------


def test_generated_tasks_survive_json_storage_with_their_types(rolling_cls, golden_calendar,
                                                               qlib_template):
    """qlib's ``rec_key`` returns ``(model class, test segment)`` and the collector uses it as
    a dict key; a task read back as canonical JSON plus its type map must still allow that."""
    from taskloom.jsontypes import restore, type_map
    from taskloom.taskkey import canonical_text, to_canonical

    gen = rolling_cls(step=250, rtype=rolling_cls.ROLL_SD, calendar=golden_calendar)
    tasks = gen.generate(qlib_template)
    stored = [(canonical_text(to_canonical(t)), json.dumps(type_map(t))) for t in tasks]
    back = [restore(json.loads(text), json.loads(types)) for text, types in stored]
    assert back == tasks

    def rec_key(task: dict[str, Any]) -> tuple[str, Any]:
        return task["model"]["class"], task["dataset"]["kwargs"]["segments"]["test"]

    collected = {rec_key(task): i for i, task in enumerate(back)}
    assert list(collected) == [rec_key(task) for task in tasks]
    assert next(iter(collected))[1] == (T("2017-01-02"), T("2017-12-20"))
