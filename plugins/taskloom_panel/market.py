"""A deterministic synthetic market: instruments × trading days with a weak planted signal.

Daily returns are a market factor times each instrument's beta, plus its sector's factor, plus
style factors times its loadings, plus idiosyncratic noise, plus a small predictable part: a
persistent latent alpha (AR(1) across days) moves the next day's return. Signal features are
noisy looks at today's alpha; noise features are unrelated to anything. The label follows
qlib's Alpha158 default ``Ref($close, -2) / Ref($close, -1) - 1``: the return from the next
day's close to the close after it, so a row's label is known two trading days after its date.

The same seed gives the same frame on any machine: every draw comes from one
``numpy.random.default_rng(seed)`` in a fixed order, and the arithmetic is elementwise
additions and multiplications (no BLAS, no transcendental functions, no reductions whose
order could vary).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from taskloom.calendar import TradingCalendar

from taskloom_panel.dataset import INDEX, PanelError, as_panel


def signal_features(n: int) -> list[str]:
    """The names of ``n`` signal feature columns: ``signal_0``, ``signal_1``..."""
    return [f"signal_{k}" for k in range(n)]


def noise_features(n: int) -> list[str]:
    """The names of ``n`` noise feature columns: ``noise_0``, ``noise_1``..."""
    return [f"noise_{k}" for k in range(n)]


#: the signal and noise feature columns at the default ``n_signal`` and ``n_noise``
SIGNAL_FEATURES = tuple(signal_features(4))
NOISE_FEATURES = tuple(noise_features(4))
FEATURES = SIGNAL_FEATURES + NOISE_FEATURES
#: the label column (qlib's ``Ref($close, -2) / Ref($close, -1) - 1``) and the price column
LABEL = "label"
PRICE = "close"


def synthetic_market(
    instruments: int | Sequence[str] = 50,
    start: Any = "2015-01-01",
    end: Any = "2020-12-31",
    calendar: TradingCalendar | None = None,
    seed: int = 0,
    n_signal: int = len(SIGNAL_FEATURES),
    n_noise: int = len(NOISE_FEATURES),
    signal_strength: float = 0.002,
    signal_noise: float = 2.0,
    persistence: float = 0.9,
    n_sectors: int = 5,
    n_styles: int = 2,
) -> pd.DataFrame:
    """A panel indexed by ``(datetime, instrument)`` with features, ``close`` and ``label``.

    ``instruments`` is a count (named ``S0000``, ``S0001``...) or a list of names. The days
    are ``calendar``'s between ``start`` and ``end`` (inclusive), Monday to Friday when no
    calendar is given. ``signal_strength`` is the daily return one standard deviation of
    alpha adds; ``signal_noise`` the standard deviation of the noise on each signal feature
    (alpha has 1); ``persistence`` the alpha's day-to-day autocorrelation. At the defaults a
    linear model on the signal features reaches a mean daily rank IC of about 0.05.
    """
    names = _instrument_names(instruments)
    days = _days(calendar, start, end)
    if not 0 <= persistence < 1:
        raise PanelError(f"persistence must be in [0, 1), got {persistence!r}")
    if n_signal < 0 or n_noise < 0 or n_sectors < 1 or n_styles < 0:
        raise PanelError("n_signal, n_noise and n_styles must be >= 0 and n_sectors >= 1")
    rng = np.random.default_rng(seed)
    n_days, n_inst = len(days), len(names)
    shape = (n_days, n_inst)

    # the instruments' exposures
    beta = 1.0 + 0.2 * rng.standard_normal(n_inst)
    sector = np.arange(n_inst) % n_sectors
    loadings = rng.standard_normal((n_styles, n_inst))
    first_price = rng.uniform(10.0, 200.0, n_inst)

    # the factors and the noise, day by day
    market = 0.01 * rng.standard_normal(n_days)
    sectors = 0.006 * rng.standard_normal((n_days, n_sectors))
    styles = 0.004 * rng.standard_normal((n_styles, n_days))
    idiosyncratic = 0.02 * rng.standard_normal(shape)
    innovations = rng.standard_normal(shape)

    alpha = np.empty(shape)
    alpha[0] = innovations[0]
    kick = math.sqrt(1.0 - persistence * persistence)
    for t in range(1, n_days):
        alpha[t] = persistence * alpha[t - 1] + kick * innovations[t]

    returns = market[:, None] * beta[None, :] + sectors[:, sector] + idiosyncratic
    for k in range(n_styles):
        returns = returns + styles[k][:, None] * loadings[k][None, :]
    returns[1:] = returns[1:] + signal_strength * alpha[:-1]  # yesterday's alpha pays today

    close = np.empty(shape)
    close[0] = first_price
    for t in range(1, n_days):
        close[t] = close[t - 1] * (1.0 + returns[t])
    label = np.full(shape, np.nan)
    label[:-2] = close[2:] / close[1:-1] - 1.0

    columns: dict[str, np.ndarray] = {}
    for name in signal_features(n_signal):
        offset, scale = rng.uniform(-1.0, 1.0), rng.uniform(0.5, 3.0)
        columns[name] = offset + scale * (alpha + signal_noise * rng.standard_normal(shape))
    for name in noise_features(n_noise):
        offset, scale = rng.uniform(-1.0, 1.0), rng.uniform(0.5, 3.0)
        columns[name] = offset + scale * rng.standard_normal(shape)
    columns[PRICE] = close
    columns[LABEL] = label

    index = pd.MultiIndex.from_product([days, names], names=list(INDEX))
    return pd.DataFrame({name: values.reshape(-1) for name, values in columns.items()},
                        index=index)


#: the parquet metadata key under which :func:`write_synthetic_market` records its parameters
PARAMETERS_KEY = b"taskloom_panel.synthetic_market"


def exchange_days(start: Any, end: Any) -> TradingCalendar:
    """Monday to Friday from ``start`` to ``end`` without a US exchange's regular holidays.

    New Year's Day, Martin Luther King Jr. Day, Presidents' Day, Good Friday, Memorial Day,
    Independence Day, Labor Day, Thanksgiving and Christmas, by pandas' holiday rules: a
    calendar that looks like a real one (over 2013-2020 it differs from the NYSE's sessions
    by one unscheduled closure) without a calendar library.
    """
    from pandas.tseries.holiday import (
        AbstractHolidayCalendar,
        GoodFriday,
        Holiday,
        USLaborDay,
        USMartinLutherKingJr,
        USMemorialDay,
        USPresidentsDay,
        USThanksgivingDay,
        nearest_workday,
        sunday_to_monday,
    )

    class ExchangeHolidays(AbstractHolidayCalendar):
        """A US exchange's regular full-day holidays."""

        rules = [
            Holiday("New Year's Day", month=1, day=1, observance=sunday_to_monday),
            USMartinLutherKingJr, USPresidentsDay, GoodFriday, USMemorialDay,
            Holiday("Independence Day", month=7, day=4, observance=nearest_workday),
            USLaborDay, USThanksgivingDay,
            Holiday("Christmas", month=12, day=25, observance=nearest_workday),
        ]

    holidays = ExchangeHolidays().holidays(pd.Timestamp(start), pd.Timestamp(end))
    return TradingCalendar.from_business_days(start, end, holidays=holidays)


def write_synthetic_market(path: str | os.PathLike[str], *, start: Any = "2015-01-01",
                           end: Any = "2020-12-31", calendar: str = "exchange",
                           calendar_file: str | os.PathLike[str] | None = None,
                           **parameters: Any) -> Path:
    """Write :func:`synthetic_market` to a parquet file, and its trading days to a text file.

    A workflow's ``prepare:`` step calls this before any task reads the market (with
    :func:`~taskloom_panel.read_panel`). ``calendar`` is ``"exchange"`` (:func:`exchange_days`),
    ``"weekdays"``, or the path of a calendar file (one date per line); ``calendar_file``, if
    given, receives the market's days one per line, for the workflow's own ``calendar:``.
    ``parameters`` are :func:`synthetic_market`'s other keywords. The parameters are kept in
    the parquet file's metadata: a file already made from the same ones is left alone, so a
    study that runs again does not rewrite its data. Both files are written to a temporary
    name and renamed, so no reader sees half a file. Returns the market's path.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    if calendar == "exchange":
        days = exchange_days(start, end)
    elif calendar == "weekdays":
        days = TradingCalendar.from_business_days(start, end)
    else:
        days = TradingCalendar.from_file(calendar)
    digest = hashlib.sha256(days.days.asi8.tobytes()).hexdigest()
    signature = json.dumps({"start": start, "end": end, "days": digest, **parameters},
                           sort_keys=True, default=str).encode()
    if calendar_file is not None:
        text = "".join(f"{day:%Y-%m-%d}\n" for day in days.days)
        _replace(Path(calendar_file), lambda partial: partial.write_text(text))
    try:
        if (pq.read_schema(path).metadata or {}).get(PARAMETERS_KEY) == signature:
            return path
    except (OSError, pa.ArrowException):
        pass  # missing, or not a parquet file we can read: write it anew
    market = synthetic_market(start=start, end=end, calendar=days, **parameters)
    table = pa.Table.from_pandas(as_panel(market).reset_index(), preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                           PARAMETERS_KEY: signature})
    _replace(path, lambda partial: pq.write_table(table, partial))
    return path


def _replace(path: Path, write: Callable[[Path], object]) -> None:
    """Call ``write`` on a temporary path beside ``path``, then rename it onto ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    write(partial)
    os.replace(partial, path)


def _instrument_names(instruments: int | Sequence[str]) -> list[str]:
    """Instrument names from a count or a list, checked."""
    if isinstance(instruments, int):
        if instruments < 1:
            raise PanelError(f"instruments must be >= 1, got {instruments}")
        return [f"S{i:04d}" for i in range(instruments)]
    names = [str(name) for name in instruments]
    if not names or len(set(names)) != len(names):
        raise PanelError("instruments must be a non-empty list of distinct names")
    return sorted(names)


def _days(calendar: TradingCalendar | None, start: Any, end: Any) -> pd.DatetimeIndex:
    """The trading days from ``start`` to ``end``: the calendar's, or Monday to Friday."""
    if calendar is None:
        calendar = TradingCalendar.from_business_days(start, end)
    first, last = calendar.align_indices((start, end), "market")
    days = calendar.days[first or 0:None if last is None else last + 1]
    if len(days) < 3:
        raise PanelError(f"the market needs at least 3 trading days, got {len(days)}")
    return days
