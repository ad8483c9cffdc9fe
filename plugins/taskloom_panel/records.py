"""The record templates that ship: the signal (predictions and labels) and its analysis (IC).

They follow the protocol of :mod:`taskloom.recordtemplates`: built from a task's ``record``
entry by their bare names (``{"class": "SigAnaRecord"}``, registered by this plugin), they
return the values to record instead of writing them. qlib's ``SignalRecord`` and
``SigAnaRecord`` write through a qlib Recorder; these two replace them under the same names
and metric names.

pandas is imported inside the functions: the plugin's ``__init__`` imports this module to
register the classes, and the CLI must stay quick.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from taskloom.errors import TaskloomError

if TYPE_CHECKING:
    import pandas as pd

#: the level of the predictions' index the analysis groups by (qlib's)
DATE_LEVEL = "datetime"


class RecordError(TaskloomError, ValueError):
    """A record template cannot analyse what training gave it (no label, no date level...)."""


class SignalRecord:
    """The test predictions and the label on their index, as ``pred`` and ``label``.

    Recorded as the artifacts ``pred.parquet`` and ``label.parquet`` (no label artifact when
    the dataset has no label). ``model`` and ``dataset`` are accepted as qlib's are, unused.
    """

    def __init__(self, model: Any = None, dataset: Any = None) -> None:
        self.model = model
        self.dataset = dataset

    def generate(self, *, pred: Any, label: Any, **context: Any) -> dict[str, Any]:
        """``{"pred": pred, "label": label}`` (without ``label`` when it is None)."""
        return {"pred": pred} if label is None else {"pred": pred, "label": label}


class SigAnaRecord:
    """Signal analysis: the per-day IC and rank IC of the predictions, and their summary.

    Returns the metrics ``IC``, ``ICIR``, ``Rank IC`` and ``Rank ICIR`` (qlib's names: the
    mean over days of the Pearson and the Spearman correlation between prediction and label
    across instruments, and each mean divided by its standard deviation), and the per-day
    series as the artifact ``sig_analysis.parquet`` (columns ``ic`` and ``rank_ic``). With
    ``ana_long_short``, also the daily ``long_short`` return (half the top ``quantile`` of
    predictions' mean label minus the bottom one's) and ``long_avg`` (every instrument's
    mean label), with the metrics ``Long-Short Ann Return``/``Sharpe`` and
    ``Long-Avg Ann Return``/``Sharpe``, annualised by ``ann_scaler`` days. ``label_col`` picks
    the label column of a label frame: a position, or a name.
    """

    def __init__(self, ana_long_short: bool = False, ann_scaler: int = 252,
                 label_col: int | str = 0, quantile: float = 0.2) -> None:
        if not 0 < quantile <= 0.5:
            raise RecordError(f"SigAnaRecord quantile: expected a fraction in (0, 0.5], "
                              f"got {quantile!r}")
        self.ana_long_short = ana_long_short
        self.ann_scaler = ann_scaler
        self.label_col = label_col
        self.quantile = quantile

    def generate(self, *, pred: Any, label: Any, **context: Any) -> dict[str, Any]:
        """The IC metrics and the per-day ``sig_analysis`` frame (see the class docstring)."""
        if label is None:
            raise RecordError("SigAnaRecord needs the test label, and the dataset gave none; "
                              "use SignalRecord alone for a dataset without a label")
        scores = _column(pred, 0, "pred")
        labels = _column(label, self.label_col, "label")
        daily = daily_ic(scores, labels)
        metrics = {
            "IC": daily["ic"].mean(),
            "ICIR": information_ratio(daily["ic"]),
            "Rank IC": daily["rank_ic"].mean(),
            "Rank ICIR": information_ratio(daily["rank_ic"]),
        }
        if self.ana_long_short:
            returns = long_short_returns(scores, labels, self.quantile)
            daily = daily.join(returns)
            root = math.sqrt(self.ann_scaler)
            metrics.update({
                "Long-Short Ann Return": returns["long_short"].mean() * self.ann_scaler,
                "Long-Short Ann Sharpe": information_ratio(returns["long_short"]) * root,
                "Long-Avg Ann Return": returns["long_avg"].mean() * self.ann_scaler,
                "Long-Avg Ann Sharpe": information_ratio(returns["long_avg"]) * root,
            })
        return {**{name: float(value) for name, value in metrics.items()},
                "sig_analysis": daily}


def daily_ic(pred: pd.Series, label: pd.Series) -> pd.DataFrame:
    """Per day: the Pearson (``ic``) and Spearman (``rank_ic``) correlation across instruments.

    ``pred`` and ``label`` are on a ``(datetime, instrument)`` index. A row where either is
    NaN is left out; a day with fewer than two rows left, or on which either side is
    constant, has NaN (no correlation is defined). Every day of ``pred`` is in the result.
    """
    import pandas as pd

    pairs = _pairs(pred, label)
    ranks = pairs.groupby(level=DATE_LEVEL).rank()
    days = pred.index.get_level_values(DATE_LEVEL).unique().sort_values()
    return pd.DataFrame({"ic": _pearson_by_day(pairs), "rank_ic": _pearson_by_day(ranks)},
                        index=days)


def long_short_returns(pred: pd.Series, label: pd.Series, quantile: float) -> pd.DataFrame:
    """Per day: ``long_short`` = (top-quantile mean label − bottom-quantile mean label) / 2,
    and ``long_avg`` = the mean label of every instrument.

    The top and bottom are the ``int(n × quantile)`` instruments with the highest and lowest
    prediction among the ``n`` with both values that day (none when that is 0: NaN).
    """
    import pandas as pd

    pairs = _pairs(pred, label)
    rows = []
    for day, group in pairs.groupby(level=DATE_LEVEL):
        count = int(len(group) * quantile)
        ordered = group.sort_values("pred", kind="stable")["label"]
        spread = ((ordered.iloc[-count:].mean() - ordered.iloc[:count].mean()) / 2
                  if count else math.nan)
        rows.append((day, spread, ordered.mean()))
    frame = pd.DataFrame(rows, columns=[DATE_LEVEL, "long_short", "long_avg"])
    days = pred.index.get_level_values(DATE_LEVEL).unique().sort_values()
    return frame.set_index(DATE_LEVEL).reindex(days)


def information_ratio(series: pd.Series) -> float:
    """The mean over the standard deviation (ddof 1) of the non-NaN values; NaN if undefined."""
    values = series.dropna()
    spread = values.std()
    if len(values) < 2 or not spread > 0:
        return math.nan
    return float(values.mean() / spread)


def _pearson_by_day(pairs: pd.DataFrame) -> pd.Series:
    """The Pearson correlation of the ``pred`` and ``label`` columns within each day."""
    import numpy as np
    import pandas as pd

    by_day = pairs.groupby(level=DATE_LEVEL)
    centred = pairs - by_day.transform("mean")
    sums = pd.DataFrame({
        "pl": centred["pred"] * centred["label"],
        "pp": centred["pred"] ** 2,
        "ll": centred["label"] ** 2,
    }).groupby(level=DATE_LEVEL).sum()
    # a constant side would be 0/0, or rounding noise over rounding noise: NaN either way
    spread = by_day.max() - by_day.min()
    defined = (spread["pred"] > 0) & (spread["label"] > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = sums["pl"] / np.sqrt(sums["pp"] * sums["ll"])
    return corr.where(defined)


def _pairs(pred: pd.Series, label: pd.Series) -> pd.DataFrame:
    """The rows where both ``pred`` and ``label`` are known, as columns ``pred`` and ``label``."""
    import pandas as pd

    if DATE_LEVEL not in (pred.index.names or []):
        raise RecordError(f"the predictions' index has no {DATE_LEVEL!r} level (its levels are "
                          f"{list(pred.index.names)}); the signal analysis groups by day")
    if not pred.index.is_unique:
        raise RecordError("the predictions' index has duplicate (datetime, instrument) rows")
    pairs = pd.DataFrame({"pred": pred, "label": label.reindex(pred.index)})
    return pairs.dropna()


def _column(value: Any, column: int | str, what: str) -> pd.Series:
    """A Series as is; a DataFrame's column ``column`` (a position or a name)."""
    import pandas as pd

    if isinstance(value, pd.Series):
        return value
    if not isinstance(value, pd.DataFrame):
        raise RecordError(f"SigAnaRecord {what}: expected a pandas Series or DataFrame, got "
                          f"{type(value).__name__}")
    if isinstance(column, int) and column not in value.columns:
        if not -value.shape[1] <= column < value.shape[1]:
            raise RecordError(f"SigAnaRecord label_col: position {column} is out of range for "
                              f"a {what} frame of {value.shape[1]} column(s)")
        return value.iloc[:, column]
    if column not in value.columns:
        raise RecordError(f"SigAnaRecord label_col: no column {column!r} in the {what} frame "
                          f"(its columns are {list(value.columns)})")
    return value[column]
