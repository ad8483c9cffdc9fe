"""The study's outputs: IC numbers checked against scipy date by date, and the files written."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from taskloom.errors import InputError
from taskloom.report import daily_ic, write_outputs

DAYS = pd.bdate_range("2020-01-01", periods=30)
INSTRUMENTS = [f"S{i:02d}" for i in range(12)]


def panel(seed: int, signal: pd.Series | None = None, weight: float = 0.0) -> pd.Series:
    """A random series on (datetime, instrument), plus ``weight`` times ``signal``."""
    index = pd.MultiIndex.from_product([DAYS, INSTRUMENTS], names=["datetime", "instrument"])
    values = pd.Series(np.random.default_rng(seed).standard_normal(len(index)), index=index)
    return values if signal is None else values + weight * signal


def with_gaps(label: pd.Series) -> pd.Series:
    """Holes the IC must step around: scattered NaNs, a day with one label, a constant day."""
    label = label.copy()
    label.iloc[::7] = np.nan
    label.loc[DAYS[3]] = np.nan
    label.loc[(DAYS[3], INSTRUMENTS[0])] = 1.0  # one instrument left: no IC that day
    label.loc[DAYS[5]] = 0.5  # every label equal: the correlation is undefined
    return label


def scipy_ic(pred: pd.Series, label: pd.Series) -> pd.DataFrame:
    """The same numbers computed independently, one date at a time with scipy."""
    rows = {}
    for day in DAYS:
        both = pd.DataFrame({"p": pred.loc[day], "l": label.loc[day]}).dropna()
        if len(both) < 2:
            continue
        if both["l"].nunique() < 2 or both["p"].nunique() < 2:
            rows[day] = (len(both), np.nan, np.nan)
            continue
        rows[day] = (len(both), stats.pearsonr(both["p"], both["l"])[0],
                     stats.spearmanr(both["p"], both["l"])[0])
    return pd.DataFrame.from_dict(rows, orient="index", columns=["instruments", "IC", "Rank IC"])


def test_daily_ic_matches_scipy_date_by_date() -> None:
    label = with_gaps(panel(1))
    pred = panel(2, label.fillna(0.0), 0.8)
    pred.iloc[::11] = np.nan
    ours = daily_ic(pred, label)
    expected = scipy_ic(pred, label)
    assert DAYS[3] not in ours.index  # fewer than two instruments: no row
    assert np.isnan(ours.loc[DAYS[5], "IC"]) and np.isnan(ours.loc[DAYS[5], "Rank IC"])
    assert list(ours.index) == list(expected.index)
    assert ours["instruments"].tolist() == expected["instruments"].tolist()
    np.testing.assert_allclose(ours["IC"], expected["IC"], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ours["Rank IC"], expected["Rank IC"], rtol=1e-10, atol=1e-12)


def test_write_outputs_summarizes_each_model_and_writes_readable_files(tmp_path) -> None:
    label = with_gaps(panel(1))
    preds = {("good",): panel(2, label.fillna(0.0), 1.0), ("noise",): panel(3)}
    labels = {key: label for key in preds}
    windows = {key: [(DAYS[0], DAYS[14]), (DAYS[15], DAYS[29])] for key in preds}

    summary = write_outputs(preds, labels, windows, tmp_path / "out")

    table = summary.table
    assert list(table.index) == ["good", "noise"]
    for key, series in preds.items():
        expected = scipy_ic(series, label)
        row = table.loc[key[0]]
        assert row["windows"] == 2 and row["test_days"] == len(DAYS)
        assert row["IC"] == pytest.approx(expected["IC"].mean())
        assert row["Rank IC"] == pytest.approx(expected["Rank IC"].mean())
        assert row["ICIR"] == pytest.approx(expected["IC"].mean() / expected["IC"].std())
        assert row["Rank ICIR"] == pytest.approx(
            expected["Rank IC"].mean() / expected["Rank IC"].std())
    assert table.loc["good", "Rank IC"] > 0.3 > abs(table.loc["noise", "Rank IC"])

    written = pd.read_parquet(summary.predictions)
    assert list(written.columns) == ["good", "noise", "label"]
    pd.testing.assert_series_equal(written["good"], preds[("good",)].sort_index(),
                                   check_names=False)
    pd.testing.assert_series_equal(written["label"], label.sort_index(), check_names=False)
    ic = pd.read_parquet(summary.daily_ic_file)
    assert set(ic["model"]) == {"good", "noise"}
    assert len(ic) == 2 * len(scipy_ic(preds[("good",)], label))
    pd.testing.assert_frame_equal(pd.read_parquet(summary.summary_file), table)
    png = summary.plot.read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000


def test_write_outputs_refuses_a_model_without_labels(tmp_path) -> None:
    with pytest.raises(InputError, match=r"no labels for model\(s\) \['b'\]"):
        write_outputs({"a": panel(1), "b": panel(2)}, {"a": panel(3)}, {}, tmp_path)
