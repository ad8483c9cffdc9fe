"""Small synthetic markets shared by the training tests (built once per session: they are
deterministic and no test changes them)."""

from __future__ import annotations

import pandas as pd
import pytest
from taskloom_panel import synthetic_market


@pytest.fixture(scope="session")
def market() -> pd.DataFrame:
    """40 instruments over four years of weekdays: enough days for a stable mean IC."""
    return synthetic_market(instruments=40, start="2015-01-01", end="2018-12-31", seed=7)
