"""synthetic_market: deterministic for a seed, prices and labels consistent, a planted signal."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import taskloom
from taskloom_panel import (
    FEATURES,
    LABEL,
    NOISE_FEATURES,
    PRICE,
    SIGNAL_FEATURES,
    PanelError,
    read_panel,
    synthetic_market,
    write_panel,
)

from train.metrics import mean_rank_ic


def frame_hash(frame: pd.DataFrame) -> int:
    """One number for the whole frame: its index, columns and every value."""
    values = pd.util.hash_pandas_object(frame, index=True).to_numpy()
    return hash((tuple(frame.columns), values.tobytes()))


def test_the_same_seed_gives_the_same_frame_and_another_seed_another():
    kwargs = {"instruments": 8, "start": "2019-01-01", "end": "2019-06-30"}
    first = synthetic_market(seed=5, **kwargs)
    assert frame_hash(synthetic_market(seed=5, **kwargs)) == frame_hash(first)
    assert frame_hash(synthetic_market(seed=6, **kwargs)) != frame_hash(first)


def test_the_panel_layout(market):
    assert market.index.names == ["datetime", "instrument"]
    assert market.index.is_monotonic_increasing and market.index.is_unique
    assert list(market.columns) == [*FEATURES, PRICE, LABEL]
    assert SIGNAL_FEATURES == ("signal_0", "signal_1", "signal_2", "signal_3")
    assert NOISE_FEATURES == ("noise_0", "noise_1", "noise_2", "noise_3")
    assert market.index.get_level_values("instrument").nunique() == 40
    assert market[list(FEATURES)].notna().all().all() and (market[PRICE] > 0).all()


def test_the_label_is_the_return_from_the_next_close_to_the_one_after(market):
    close = market[PRICE].unstack("instrument")
    label = market[LABEL].unstack("instrument")
    expected = close.shift(-2) / close.shift(-1) - 1
    pd.testing.assert_frame_equal(label, expected, rtol=1e-12)
    assert label.iloc[-2:].isna().all().all() and label.iloc[:-2].notna().all().all()


def test_the_days_come_from_the_calendar_between_start_and_end():
    cal = taskloom.TradingCalendar(["2020-01-02", "2020-01-03", "2020-01-06", "2020-01-08",
                                    "2020-01-09", "2020-01-10"])
    frame = synthetic_market(instruments=["ZZ", "AA"], start="2020-01-03", end="2020-01-09",
                             calendar=cal)
    days = frame.index.get_level_values("datetime").unique()
    assert list(days.strftime("%Y-%m-%d")) == ["2020-01-03", "2020-01-06", "2020-01-08",
                                               "2020-01-09"]
    assert list(frame.index.get_level_values("instrument").unique()) == ["AA", "ZZ"]
    weekdays = synthetic_market(instruments=2, start="2020-01-01", end="2020-01-31")
    assert weekdays.index.get_level_values("datetime").nunique() == 23


def test_feature_counts_follow_the_parameters():
    frame = synthetic_market(instruments=3, start="2020-01-01", end="2020-01-31",
                             n_signal=1, n_noise=2)
    assert list(frame.columns) == ["signal_0", "noise_0", "noise_1", PRICE, LABEL]


def test_the_planted_signal_is_in_the_signal_features_and_not_in_the_noise(market):
    label = market[LABEL]
    for name in SIGNAL_FEATURES:
        assert mean_rank_ic(market[name], label) > 0.02, name
    for name in NOISE_FEATURES:
        assert abs(mean_rank_ic(market[name], label)) < 0.01, name


@pytest.mark.parametrize("name", ["market.parquet", "market.csv"])
def test_a_market_written_to_a_file_reads_back_the_same(tmp_path, name):
    frame = synthetic_market(instruments=5, start="2020-01-01", end="2020-03-31", seed=2)
    back = read_panel(write_panel(frame, tmp_path / name))
    pd.testing.assert_frame_equal(back, frame, check_index_type=False, rtol=1e-15)
    assert np.array_equal(back.index.get_level_values("instrument"),
                          frame.index.get_level_values("instrument"))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"instruments": 0}, "instruments must be >= 1"),
        ({"instruments": ["A", "A"]}, "distinct names"),
        ({"persistence": 1.0}, r"persistence must be in \[0, 1\)"),
        ({"start": "2020-01-01", "end": "2020-01-02"}, "at least 3 trading days"),
    ],
)
def test_bad_parameters_are_named(kwargs, message):
    with pytest.raises(PanelError, match=message):
        synthetic_market(**{"start": "2020-01-01", "end": "2020-02-28", **kwargs})
