"""A task function for the rolling-flow test, importable by worker subprocesses.

It stands in for a model: for the task's test window it returns one score per trading day
and instrument, computed from the date, the instrument and the task's model name, so the
test can tell which window and which model produced every collected value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from taskloom import TradingCalendar

CALENDAR_FILE = Path(__file__).resolve().parents[1] / "conformance" / "calendar_day.txt"
INSTRUMENTS = ("SH600000", "SH600519", "SZ000001")
MODELS = {"Ridge": 1.0, "Boost": 2.0}


def expected_score(day: pd.Timestamp, instrument: str, model: str) -> float:
    """The score :func:`predict_window` gives ``instrument`` on ``day`` under ``model``."""
    return MODELS[model] * 1e6 + day.toordinal() + INSTRUMENTS.index(instrument) / 10


def window_days(start: Any, end: Any) -> pd.DatetimeIndex:
    """The calendar's trading days from ``start`` to ``end`` (inclusive; None = open)."""
    days = pd.DatetimeIndex(TradingCalendar.from_file(CALENDAR_FILE).days)
    first = days[0] if start is None else pd.Timestamp(start)
    last = days[-1] if end is None else pd.Timestamp(end)
    return days[(days >= first) & (days <= last)]


def predict_window(task: dict[str, Any], **_: Any) -> pd.Series:
    """One score per (trading day, instrument) of the task's test segment."""
    start, end = task["dataset"]["kwargs"]["segments"]["test"]
    model = task["model"]["class"]
    index = pd.MultiIndex.from_product([window_days(start, end), INSTRUMENTS],
                                       names=["datetime", "instrument"])
    scores = [expected_score(day, inst, model) for day, inst in index]
    return pd.Series(scores, index=index, name="score")
