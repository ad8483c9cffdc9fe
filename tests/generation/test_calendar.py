"""TradingCalendar: constructors, alignment, shifting, truncation and their ValueErrors."""

from __future__ import annotations

import datetime as dt
import importlib.util

import numpy as np
import pandas as pd
import pytest
from taskloom import TradingCalendar
from taskloom.calendar import CalendarError

HAS_EXCHANGE_CALENDARS = importlib.util.find_spec("exchange_calendars") is not None


def T(text: str) -> pd.Timestamp:
    return pd.Timestamp(text)


# --------------------------------------------------------------------------------------------
# Constructors
# --------------------------------------------------------------------------------------------


def test_from_dates_sorts_dedupes_and_accepts_every_date_form():
    cal = TradingCalendar(["2020-01-03", T("2020-01-02"), np.datetime64("2020-01-06"),
                           dt.date(2020, 1, 2), dt.datetime(2020, 1, 7, 15, 30)])
    assert list(cal.days) == [T("2020-01-02"), T("2020-01-03"), T("2020-01-06"), T("2020-01-07")]
    assert len(cal) == 4 and cal.first == T("2020-01-02") and cal.last == T("2020-01-07")
    assert "2020-01-03" in cal and "2020-01-04" not in cal and "not a date" not in cal


def test_from_file_reads_one_date_per_line(tmp_path, golden_calendar):
    assert len(golden_calendar) == 4622
    assert golden_calendar.first == T("2005-01-03") and golden_calendar.last == T("2022-12-30")
    path = tmp_path / "day.txt"
    path.write_text("# trading days\n2020-01-03\n\n2020-01-02  # a comment\n")
    assert TradingCalendar.from_file(path) == TradingCalendar(["2020-01-02", "2020-01-03"])


def test_from_file_names_the_bad_line(tmp_path):
    path = tmp_path / "day.txt"
    path.write_text("2020-01-02\nthirty-first of never\n")
    with pytest.raises(ValueError, match=r"line 2: 'thirty-first of never' is not a date"):
        TradingCalendar.from_file(path)


def test_from_business_days_minus_holidays():
    cal = TradingCalendar.from_business_days("2019-12-23", "2020-01-03",
                                             holidays=["2019-12-25", dt.date(2020, 1, 1)])
    assert [d.strftime("%m-%d") for d in cal.days] == [
        "12-23", "12-24", "12-26", "12-27", "12-30", "12-31", "01-02", "01-03"]


def test_business_days_reproduce_the_golden_calendar(golden_calendar):
    holidays = [f"{year}-{md}" for year in range(2005, 2023)
                for md in ("01-01", "05-01", "10-01", "10-02", "10-03", "12-25")]
    assert TradingCalendar.from_business_days("2005-01-01", "2022-12-31", holidays) == \
        golden_calendar


@pytest.mark.skipif(not HAS_EXCHANGE_CALENDARS,
                    reason="exchange_calendars is not installed (taskloom[calendars])")
def test_from_exchange_code():
    cal = TradingCalendar.from_exchange("XSHG", start="2017-01-01", end="2017-12-31")
    assert cal.first == T("2017-01-03")  # 2017-01-02 was a holiday in Shanghai
    assert T("2017-10-02") not in cal and len(cal) == 244
    with pytest.raises(ValueError, match="unknown exchange code 'NOPE'"):
        TradingCalendar.from_exchange("NOPE")


@pytest.mark.parametrize("days, message", [
    ([], "no trading days"),
    (["2020-01-02", None], "missing"),
    ([pd.Timestamp("2020-01-02", tz="UTC")], "time-zone naive"),
])
def test_invalid_calendars(days, message):
    with pytest.raises(ValueError, match=message):
        TradingCalendar(days)


# --------------------------------------------------------------------------------------------
# Alignment
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("date", ["2008-01-05", T("2008-01-05"), np.datetime64("2008-01-05"),
                                  dt.date(2008, 1, 5), dt.datetime(2008, 1, 5, 16, 0)])
def test_align_accepts_every_date_form(golden_calendar, date):
    assert golden_calendar.align(date, "start") == T("2008-01-07")
    assert golden_calendar.align(date, "end") == T("2008-01-04")


def test_align_open_bounds_and_past_the_end(golden_calendar):
    assert golden_calendar.align(None, "start") is None
    assert golden_calendar.align("2030-01-01", "end") == golden_calendar.last
    assert golden_calendar.align("2000-01-01", "start") == golden_calendar.first
    assert golden_calendar.align(pd.Timestamp("3000-01-01"), "end") == golden_calendar.last
    assert golden_calendar.align("1000-01-01", "start") == golden_calendar.first


@pytest.mark.parametrize("date, kind", [("2023-01-02", "start"), ("2004-12-31", "end")])
def test_align_outside_the_calendar_names_calendar_and_date(golden_calendar, date, kind):
    with pytest.raises(CalendarError) as info:
        golden_calendar.align(date, kind)
    assert isinstance(info.value, ValueError)
    assert "calendar" in str(info.value) and date in str(info.value)


def test_align_segment_names_the_segment(golden_calendar):
    with pytest.raises(ValueError, match=r"segment .valid.: start 2023-03-01 is after the cal"):
        golden_calendar.align_segment(["2023-03-01", "2023-12-31"], "valid")
    with pytest.raises(ValueError, match=r"segment 'test': end 'soon' is not a date"):
        golden_calendar.align_segment(["2017-01-01", "soon"], "test")


def test_a_segment_without_trading_days_is_rejected(golden_calendar):
    with pytest.raises(ValueError,
                       match=r"segment 'valid': no trading day between 2008-01-05 and 2008-01-06"):
        golden_calendar.align_segments({"valid": ("2008-01-05", "2008-01-06")})


@pytest.mark.parametrize("bad", ["2017-01-01", ["2017-01-01"], 5, ("a", "b", "c")])
def test_align_segments_rejects_non_pairs(golden_calendar, bad):
    with pytest.raises(ValueError, match="segment"):
        golden_calendar.align_segments(bad)


def test_align_segments_keeps_keys_and_returns_tuples(golden_calendar):
    out = golden_calendar.align_segments({"train": ["2008-01-01", "2014-12-31"],
                                          "test": ("2017-01-01", None)})
    assert out == {"train": (T("2008-01-02"), T("2014-12-31")), "test": (T("2017-01-02"), None)}


# --------------------------------------------------------------------------------------------
# Shift and truncate
# --------------------------------------------------------------------------------------------


def test_shift_sliding_expanding_and_open_end(golden_calendar):
    cal = golden_calendar
    seg = ["2017-01-03", "2017-12-29"]
    assert cal.shift(seg, 250) == cal.shift(tuple(seg), 250, "sliding")
    assert cal.shift(seg, 250, "expanding")[0] == T("2017-01-03")
    assert cal.shift(["2022-12-01", "2022-12-30"], 20) == (T("2022-12-29"), None)


@pytest.mark.parametrize("segment, step, rtype, message", [
    (["2022-12-29", "2022-12-30"], 2, "sliding", "start 2022-12-29 shifted by 2 trading days"),
    (["2005-01-10", "2005-02-28"], -10, "sliding", "calendar"),
    (["2017-01-03", "2017-12-29"], 20, "slide", "rtype"),
    (["2017-01-03", "2017-12-29"], 2.5, "sliding", "step"),
])
def test_shift_errors(golden_calendar, segment, step, rtype, message):
    with pytest.raises(ValueError, match=message):
        golden_calendar.shift(segment, step, rtype)


def test_truncate_keeps_index_zero_and_open_bounds(golden_calendar):
    cal = golden_calendar
    assert cal.truncate(["2005-01-03", "2016-12-30"], "2017-01-03", 2) == (
        T("2005-01-03"), T("2016-12-30"))
    assert cal.truncate([None, "2016-12-30"], "2017-01-03", 5) == (None, T("2016-12-27"))
    with pytest.raises(ValueError, match="truncation leaves no trading day"):
        cal.truncate(["2005-01-03", "2005-01-04"], "2005-01-04", 5, name="train")
    with pytest.raises(ValueError, match="days must be >= 0"):
        cal.truncate(["2005-01-03", "2005-01-04"], "2006-01-04", -1)


def test_trunc_segments_returns_a_new_dict_and_leaves_test_alone(golden_calendar):
    segments = {"train": ["2008-01-01", "2014-12-31"], "valid": ["2015-01-01", "2016-12-31"],
                "test": ["2017-01-01", "2020-08-01"]}
    out = golden_calendar.trunc_segments(segments, 2)
    assert out["valid"] == (T("2015-01-02"), T("2016-12-29"))
    assert out["test"] is segments["test"]
    assert segments["valid"] == ["2015-01-01", "2016-12-31"]
    with pytest.raises(ValueError, match="'test' .* has no start"):
        golden_calendar.trunc_segments({"test": [None, "2017-01-01"]}, 2)
    with pytest.raises(ValueError, match="'pred' .* is missing"):
        golden_calendar.trunc_segments(segments, 2, test_key="pred")


def test_stamp_refuses_negative_indices(golden_calendar):
    assert golden_calendar.stamp(0) == golden_calendar.first
    assert golden_calendar.stamp(len(golden_calendar)) is None
    with pytest.raises(ValueError, match="calendar"):
        golden_calendar.stamp(-1)
