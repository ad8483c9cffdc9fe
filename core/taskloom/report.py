"""A rolling study's outputs: per-model IC statistics, the daily IC series, a plot, parquet files.

The input is what collection gives once each model's windows are stitched: one out-of-sample
prediction series per model and its labels, both indexed by ``(datetime, instrument)``, plus
the test windows each model was trained for. The IC of a date is the cross-sectional
correlation between predictions and labels over the instruments that have both (Pearson for
IC, Spearman for rank IC); a date with fewer than two such instruments has no IC. The summary
gives, per model, the mean IC and rank IC and their ICIR (mean divided by standard deviation),
as qlib's ``SigAnaRecord`` reports them.

pandas is imported at module level (the CLI imports this module only inside a command);
pyarrow and matplotlib are imported by the functions that write parquet and the plot.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from taskloom.errors import InputError

#: the output files :func:`write_outputs` writes in its directory
PREDICTIONS_FILE = "predictions.parquet"
DAILY_IC_FILE = "daily_ic.parquet"
SUMMARY_FILE = "summary.parquet"
PLOT_FILE = "rank_ic.png"
#: the summary's columns, in order
SUMMARY_COLUMNS = ("windows", "test_days", "IC", "ICIR", "Rank IC", "Rank ICIR")


@dataclass(frozen=True)
class Summary:
    """What :func:`write_outputs` computed and where it wrote it.

    ``table`` is indexed by model with :data:`SUMMARY_COLUMNS`; ``daily_ic`` has one row per
    model and date (columns ``model``, ``datetime``, ``instruments``, ``IC``, ``Rank IC``).
    """

    table: pd.DataFrame
    daily_ic: pd.DataFrame
    directory: Path
    predictions: Path
    daily_ic_file: Path
    summary_file: Path
    plot: Path

    @property
    def files(self) -> list[Path]:
        """The files written: the predictions, the daily IC, the summary and the plot."""
        return [self.predictions, self.daily_ic_file, self.summary_file, self.plot]


def daily_ic(pred: pd.Series, label: pd.Series) -> pd.DataFrame:
    """The IC and rank IC of each date between ``pred`` and ``label``, indexed by date.

    Rows where either is NaN are left out; a date keeps a row only if at least two instruments
    remain (column ``instruments`` says how many). A date whose predictions or labels are all
    equal has a NaN correlation.
    """
    frame = pd.DataFrame({"pred": pred, "label": label}).dropna()
    dates = frame.index.get_level_values("datetime")
    counts = frame.groupby(dates).size()
    frame = frame[counts.reindex(dates).to_numpy() >= 2]
    dates = frame.index.get_level_values("datetime")
    ranks = frame.groupby(dates).rank()
    result = pd.DataFrame({
        "instruments": frame.groupby(dates).size(),
        "IC": _correlation_by_date(frame["pred"], frame["label"], dates),
        "Rank IC": _correlation_by_date(ranks["pred"], ranks["label"], dates),
    })
    result.index.name = "datetime"
    return result


def _correlation_by_date(x: pd.Series, y: pd.Series, dates: pd.Index) -> pd.Series:
    """Pearson's correlation of ``x`` and ``y`` within each date; NaN where either is constant."""
    dx = x - x.groupby(dates).transform("mean")
    dy = y - y.groupby(dates).transform("mean")
    frame = pd.DataFrame({"xy": dx * dy, "xx": dx * dx, "yy": dy * dy}, index=x.index)
    sums = frame.groupby(dates).sum()
    constant = (x.groupby(dates).nunique() < 2) | (y.groupby(dates).nunique() < 2)
    corr = sums["xy"] / np.sqrt(sums["xx"] * sums["yy"])
    return corr.mask(constant)


def summarize(daily: Mapping[str, pd.DataFrame], windows: Mapping[str, Sequence[Any]],
              test_days: Mapping[str, int]) -> pd.DataFrame:
    """The summary table: per model its windows, test days, mean IC and rank IC and ICIRs."""
    rows = {}
    for model, ic in daily.items():
        rows[model] = {
            "windows": len(windows.get(model, ())),
            "test_days": test_days[model],
            "IC": ic["IC"].mean(),
            "ICIR": _ir(ic["IC"]),
            "Rank IC": ic["Rank IC"].mean(),
            "Rank ICIR": _ir(ic["Rank IC"]),
        }
    table = pd.DataFrame.from_dict(rows, orient="index", columns=list(SUMMARY_COLUMNS))
    table.index.name = "model"
    return table


def _ir(series: pd.Series) -> float:
    """Mean over standard deviation (NaN when there are fewer than two values or no spread)."""
    std = series.std()
    return float(series.mean() / std) if std and np.isfinite(std) else float("nan")


def write_outputs(preds: Mapping[Any, pd.Series], labels: Mapping[Any, pd.Series],
                  windows: Mapping[Any, Sequence[Sequence[Any]]],
                  directory: str | Path) -> Summary:
    """Compute the per-model statistics and write the outputs of a study into ``directory``.

    ``preds`` and ``labels`` map each model to its stitched series on ``(datetime,
    instrument)`` (a one-column frame, as a parquet artifact may load, counts as its
    column); ``windows`` maps it to its test windows as ``(start, end)`` pairs. A model key
    that is a tuple (a collector's key) is named by its parts joined with ``/``. Writes
    :data:`PREDICTIONS_FILE` (one column per model plus ``label``), :data:`DAILY_IC_FILE`,
    :data:`SUMMARY_FILE` and the plot :data:`PLOT_FILE`, and returns a :class:`Summary`.
    """
    preds = {model_name(key): as_series(value) for key, value in preds.items()}
    labels = {model_name(key): as_series(value) for key, value in labels.items()}
    windows = {model_name(key): list(value) for key, value in windows.items()}
    if not preds:
        raise InputError("write_outputs: no predictions to report")
    missing = sorted(set(preds) - set(labels))
    if missing:
        raise InputError(f"write_outputs: no labels for model(s) {missing}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)

    daily = {model: daily_ic(preds[model], labels[model]) for model in preds}
    test_days = {model: series.index.get_level_values("datetime").nunique()
                 for model, series in preds.items()}
    table = summarize(daily, windows, test_days)
    long_ic = pd.concat(
        [ic.reset_index().assign(model=model) for model, ic in daily.items()], ignore_index=True
    )[["model", "datetime", "instruments", "IC", "Rank IC"]]

    frame = pd.DataFrame({model: series for model, series in preds.items()})
    frame["label"] = pd.concat(list(labels.values())).groupby(level=[0, 1]).first()
    frame.index.names = ["datetime", "instrument"]
    summary = Summary(
        table=table, daily_ic=long_ic, directory=directory,
        predictions=directory / PREDICTIONS_FILE, daily_ic_file=directory / DAILY_IC_FILE,
        summary_file=directory / SUMMARY_FILE, plot=directory / PLOT_FILE,
    )
    frame.sort_index().to_parquet(summary.predictions)
    long_ic.to_parquet(summary.daily_ic_file, index=False)
    table.to_parquet(summary.summary_file)
    plot_rank_ic(daily, windows, summary.plot)
    return summary


def as_series(value: pd.Series | pd.DataFrame) -> pd.Series:
    """A prediction or label as a Series: a frame's first column (qlib's label frame has one)."""
    return value.iloc[:, 0] if isinstance(value, pd.DataFrame) else value


def model_name(key: Any) -> str:
    """A model's name from a collector key: a tuple's parts joined with ``/``, else ``str``."""
    if isinstance(key, tuple):
        return "/".join(str(part) for part in key)
    return str(key)


def plot_rank_ic(daily: Mapping[str, pd.DataFrame],
                 windows: Mapping[str, Sequence[Sequence[Any]]], path: Path) -> Path:
    """Draw each model's cumulative daily rank IC over time into a PNG at ``path``.

    Dotted vertical lines mark where a test window starts (over all models), so a change of
    slope can be matched to a retrain.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(9, 4.5), dpi=100)
    try:
        starts = sorted({pd.Timestamp(window[0]) for value in windows.values()
                         for window in value})
        for start in starts:
            axes.axvline(start, color="0.8", linestyle=":", linewidth=0.8)
        for model, ic in daily.items():
            axes.plot(ic.index, ic["Rank IC"].fillna(0.0).cumsum(), label=model, linewidth=1.4)
        axes.axhline(0.0, color="0.5", linewidth=0.6)
        axes.set_title("Cumulative daily rank IC of the stitched out-of-sample predictions")
        axes.set_ylabel("cumulative rank IC")
        axes.set_xlabel("dotted lines: the first test day of each window (a retrain)")
        axes.legend(loc="upper left", frameon=False)
        axes.grid(axis="y", alpha=0.3)
        figure.tight_layout()
        figure.savefig(path)
    finally:
        plt.close(figure)
    return path


def summary_table(table: pd.DataFrame) -> Any:
    """The summary as a rich table for the terminal: one row per model, four decimals."""
    from rich.table import Table
    from rich.text import Text

    shown = Table(title="out-of-sample IC of the stitched predictions, per model")
    for column in ("model", *SUMMARY_COLUMNS):
        shown.add_column(column, justify="left" if column == "model" else "right")
    for model, row in table.iterrows():
        shown.add_row(Text(str(model)), str(int(row["windows"])), str(int(row["test_days"])),
                      *(f"{row[name]:.4f}" for name in ("IC", "ICIR", "Rank IC", "Rank ICIR")))
    return shown
