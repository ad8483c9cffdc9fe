"""Fixtures for the generation tests: the golden conformance file and its calendar."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from taskloom import TradingCalendar

CONFORMANCE_DIR = Path(__file__).resolve().parents[1] / "conformance"
CALENDAR_FILE = CONFORMANCE_DIR / "calendar_day.txt"
REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_TEMPLATE = REPO_ROOT / "examples" / "templates" / "rolling_lgbm.yaml"


@pytest.fixture(scope="session")
def golden_calendar() -> TradingCalendar:
    """The 4622-day synthetic calendar every conformance case uses."""
    return TradingCalendar.from_file(CALENDAR_FILE)


@pytest.fixture
def qlib_template() -> dict[str, Any]:
    """A qlib-style LightGBM/Alpha158 task with train/valid/test segments as strings."""
    return {
        "model": {"class": "LGBModel", "module_path": "qlib.contrib.model.gbdt",
                  "kwargs": {"loss": "mse", "num_leaves": 64}},
        "dataset": {
            "class": "DatasetH",
            "module_path": "qlib.data.dataset",
            "kwargs": {
                "handler": {
                    "class": "Alpha158",
                    "module_path": "qlib.contrib.data.handler",
                    "kwargs": {"start_time": "2008-01-01", "end_time": "2020-08-01",
                               "fit_start_time": "2008-01-01", "fit_end_time": "2014-12-31",
                               "instruments": "csi300"},
                },
                "segments": {"train": ["2008-01-01", "2014-12-31"],
                             "valid": ["2015-01-01", "2016-12-31"],
                             "test": ["2017-01-01", "2020-08-01"]},
            },
        },
        "record": [{"class": "SignalRecord", "module_path": "qlib.workflow.record_temp",
                    "kwargs": {"model": "<MODEL>", "dataset": "<DATASET>"}}],
    }
