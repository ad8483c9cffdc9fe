"""``PanelDataset``: a ``(datetime, instrument)`` panel cut into segments, as qlib's DatasetH.

The panel comes from a parquet or CSV file, a DataFrame, or a config that builds either. Its
columns are features and one label. ``prepare`` answers qlib's questions with qlib's shapes:
one segment name gives a frame, a list of names gives a list of frames, a ``(start, end)``
pair or a slice gives the rows between those days. Bounds are days, inclusive; ``None`` is
open. Normalisation, when asked for, is fitted on the train segment only and applied to every
segment, so nothing from the valid or test period leaks into the features.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from taskloom.errors import TaskloomError
from taskloom.instantiate import instantiate

#: the panel's index levels, in order (qlib's names)
INDEX = ("datetime", "instrument")
#: column sets, as qlib's DataHandler names them
CS_ALL, CS_FEATURE, CS_LABEL = "__all", "feature", "label"
#: data keys, as qlib's DataHandlerLP names them
DK_RAW, DK_INFER, DK_LEARN = "raw", "infer", "learn"
#: normalisations fitted on the fit segment (default train) and those computed per day
FITTED_NORMALIZERS = ("zscore", "robust_zscore")
DAILY_NORMALIZERS = ("cs_zscore", "cs_rank")
#: a robust z-score is clipped to this many scaled MADs, as qlib's RobustZScoreNorm does
ROBUST_CLIP = 3.0
_MAD_TO_STD = 1.4826
_ONE_DAY = pd.Timedelta(days=1)


class PanelError(TaskloomError, ValueError):
    """A panel, segment, column or model call that cannot be used; the message names it."""


# --------------------------------------------------------------------------------------------
# Files and frames
# --------------------------------------------------------------------------------------------


def read_panel(path: str | os.PathLike[str], start_time: Any = None,
               end_time: Any = None) -> pd.DataFrame:
    """The panel stored at ``path`` (``.parquet``/``.pq`` or ``.csv``/``.csv.gz``), indexed.

    ``start_time``/``end_time`` keep only the days between them (inclusive, ``None`` open),
    like a qlib handler's ``start_time``/``end_time``, so a rolling generator's
    ``extend_handler_end`` works on a config that calls this function.
    """
    path = Path(path)
    name = path.name.lower()
    try:
        if name.endswith((".parquet", ".pq")):
            frame = pd.read_parquet(path)
        elif name.endswith((".csv", ".csv.gz")):
            frame = pd.read_csv(path)
        else:
            raise PanelError(f"panel file {path}: expected a .parquet, .pq or .csv file")
    except (OSError, ValueError, ImportError) as exc:
        if isinstance(exc, PanelError):
            raise
        raise PanelError(f"panel file {path}: cannot read it: {exc}") from exc
    panel = as_panel(frame, f"panel file {path}")
    lo, hi = _row_range(_dates(panel), _day(start_time, "start_time"), _day(end_time, "end_time"))
    return panel.iloc[lo:hi]


def write_panel(frame: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write a panel to ``path`` as parquet or CSV (by its suffix); :func:`read_panel` reads it.

    The index is written as ``datetime`` and ``instrument`` columns. Returns the path.
    """
    path = Path(path)
    name = path.name.lower()
    flat = as_panel(frame, "panel").reset_index()
    if name.endswith((".parquet", ".pq")):
        flat.to_parquet(path, index=False)
    elif name.endswith((".csv", ".csv.gz")):
        flat.to_csv(path, index=False)
    else:
        raise PanelError(f"panel file {path}: expected a .parquet, .pq or .csv file name")
    return path


def as_panel(frame: pd.DataFrame, source: str = "data") -> pd.DataFrame:
    """``frame`` indexed by ``(datetime, instrument)``, sorted, one row per day and instrument.

    The two levels may already be the index (in either order) or be columns, as a file holds
    them. ``source`` names the frame in error messages.
    """
    if not isinstance(frame, pd.DataFrame):
        raise PanelError(f"{source}: expected a DataFrame, got {type(frame).__name__}")
    names = list(frame.index.names)
    if set(INDEX) <= set(names):
        if len(names) != 2:
            raise PanelError(f"{source}: the index must be (datetime, instrument), got {names}")
        panel = frame.reorder_levels(list(INDEX)) if names != list(INDEX) else frame
    elif set(INDEX) <= set(frame.columns):
        panel = frame.set_index(list(INDEX))
    else:
        raise PanelError(
            f"{source}: needs 'datetime' and 'instrument' as index levels or columns; "
            f"index {names}, columns {list(frame.columns)[:20]}"
        )
    dates = panel.index.get_level_values(0)
    if not isinstance(dates, pd.DatetimeIndex):
        try:
            dates = pd.DatetimeIndex(pd.to_datetime(dates))
        except (ValueError, TypeError) as exc:
            raise PanelError(f"{source}: the datetime level holds a non-date: {exc}") from exc
        panel = panel.set_axis(
            pd.MultiIndex.from_arrays([dates, panel.index.get_level_values(1)], names=INDEX)
        )
    if dates.tz is not None:
        raise PanelError(f"{source}: datetimes must be time-zone naive")
    panel = panel.sort_index()
    duplicated = panel.index.duplicated()
    if duplicated.any():
        day, instrument = panel.index[duplicated.argmax()]
        raise PanelError(f"{source}: two rows for {instrument!r} on {day:%Y-%m-%d}")
    return panel


# --------------------------------------------------------------------------------------------
# The dataset
# --------------------------------------------------------------------------------------------


class PanelDataset:
    """Features and a label on a ``(datetime, instrument)`` panel, cut into named segments.

    ``data`` (or ``handler``, its qlib name: give one) is a DataFrame, a parquet/CSV path, or
    a config building either (``{"class": "taskloom_panel:read_panel", "kwargs": {"path":
    ...}}``). ``segments`` maps names to ``(start, end)`` days (strings, dates, Timestamps or
    ``None``; tuples or lists). ``feature_columns`` defaults to every numeric column but the
    label. ``normalize`` is ``None``, ``"zscore"`` or ``"robust_zscore"`` (fitted on the
    ``fit_segment`` rows, default ``"train"``) or ``"cs_zscore"``/``"cs_rank"`` (per day).
    The label is never normalised.
    """

    def __init__(
        self,
        data: Any = None,
        segments: Mapping[str, Any] | None = None,
        *,
        handler: Any = None,
        feature_columns: Sequence[str] | None = None,
        label_column: str = "label",
        normalize: str | None = None,
        fit_segment: str = "train",
    ) -> None:
        if (data is None) == (handler is None):
            raise PanelError("PanelDataset: give the panel as data= or handler=, exactly one")
        source_name = "data" if handler is None else "handler"
        panel = _load(data if handler is None else handler, source_name)
        if not isinstance(segments, Mapping):
            raise PanelError(
                f"segments: expected a {{name: (start, end)}} mapping, got {segments!r:.80}"
            )
        self.segments = dict(segments)
        self._bounds = {name: _segment_bounds(seg, name) for name, seg in self.segments.items()}
        self.label_column = label_column
        self.feature_columns = _feature_columns(panel, feature_columns, label_column)
        self.normalize = normalize
        self.fit_segment = fit_segment
        self._raw = panel[[*self.feature_columns, label_column]]
        self._dates = _dates(self._raw)
        #: the fitted centre and scale per feature (rows "center", "scale"), or None
        self.norm_params: pd.DataFrame | None = None
        self._features = self._normalised_features()

    # ----------------------------------------------------------------------------------------

    def prepare(self, segments: Any, col_set: Any = CS_ALL,
                data_key: str = DK_INFER) -> pd.DataFrame | list[pd.DataFrame]:
        """The rows of ``segments`` with the columns of ``col_set``, as qlib's DatasetH does.

        ``segments`` is a segment name (one frame), a list or tuple of names (a list of
        frames), or a ``(start, end)`` pair or slice of days. ``col_set`` is ``"feature"``,
        ``"label"`` (plain columns), ``"__all"`` or a list of those groups (two-level columns
        ``(group, column)``). ``data_key`` is ``"raw"`` (as loaded), ``"infer"`` (features
        normalised) or ``"learn"`` (normalised, rows without a label dropped).
        """
        if data_key not in (DK_RAW, DK_INFER, DK_LEARN):
            raise PanelError(
                f"data_key must be {DK_RAW!r}, {DK_INFER!r} or {DK_LEARN!r}, got {data_key!r}"
            )
        groups = _groups(col_set)
        if isinstance(segments, str):
            return self._fetch(self._named(segments), col_set, groups, data_key)
        if isinstance(segments, slice):
            bounds = _segment_bounds((segments.start, segments.stop), "slice")
            return self._fetch(bounds, col_set, groups, data_key)
        if isinstance(segments, list | tuple):
            if all(isinstance(s, str) for s in segments) and any(
                s in self._bounds for s in segments
            ):
                return [self._fetch(self._named(s), col_set, groups, data_key) for s in segments]
            if len(segments) == 2:
                bounds = _segment_bounds(segments, "range", known=list(self._bounds))
                return self._fetch(bounds, col_set, groups, data_key)
        raise PanelError(
            f"segments: expected a segment name ({list(self._bounds)}), a list of them or a "
            f"(start, end) pair, got {segments!r:.80}"
        )

    @property
    def index(self) -> pd.MultiIndex:
        """The whole panel's ``(datetime, instrument)`` index."""
        return self._raw.index

    def __repr__(self) -> str:
        """Size, features, label and segment names: what a log line needs."""
        return (
            f"PanelDataset({len(self._raw)} rows, {len(self.feature_columns)} features, "
            f"label {self.label_column!r}, segments {list(self.segments)})"
        )

    # ----------------------------------------------------------------------------------------

    def _named(self, name: str) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
        """The bounds of segment ``name``; an unknown name lists the defined ones."""
        if name not in self._bounds:
            raise PanelError(f"segment {name!r} is not defined; segments: {list(self._bounds)}")
        return self._bounds[name]

    def _fetch(self, bounds: tuple[pd.Timestamp | None, pd.Timestamp | None], col_set: Any,
               groups: list[str], data_key: str) -> pd.DataFrame:
        """The rows between ``bounds`` with the columns ``col_set`` asks for."""
        lo, hi = _row_range(self._dates, *bounds)
        features = (self._raw[self.feature_columns] if data_key == DK_RAW
                    else self._features).iloc[lo:hi]
        label = self._raw[[self.label_column]].iloc[lo:hi]
        if data_key == DK_LEARN:
            keep = label[self.label_column].notna().to_numpy()
            features, label = features[keep], label[keep]
        parts = {CS_FEATURE: features, CS_LABEL: label}
        if isinstance(col_set, str) and col_set != CS_ALL:
            return parts[col_set]
        return pd.concat({group: parts[group] for group in groups}, axis=1)

    def _normalised_features(self) -> pd.DataFrame:
        """The feature columns after ``normalize``; fitted parameters go to ``norm_params``."""
        features = self._raw[self.feature_columns].astype("float64")
        method = self.normalize
        if method is None:
            return features
        if method in DAILY_NORMALIZERS:
            by_day = features.groupby(level=0, sort=False)
            if method == "cs_rank":  # ranks spread evenly over (-0.5, 0.5), centred on 0
                return (by_day.rank() - 0.5) / by_day.transform("count") - 0.5
            return (features - by_day.transform("mean")) / by_day.transform("std")
        if method not in FITTED_NORMALIZERS:
            known = [*FITTED_NORMALIZERS, *DAILY_NORMALIZERS]
            raise PanelError(f"normalize must be None or one of {known}, got {method!r}")
        if self.fit_segment not in self._bounds:
            raise PanelError(
                f"normalize={method!r} is fitted on segment {self.fit_segment!r}, which is not "
                f"defined; segments: {list(self._bounds)}"
            )
        lo, hi = _row_range(self._dates, *self._bounds[self.fit_segment])
        fit_rows = features.iloc[lo:hi]
        if fit_rows.empty:
            raise PanelError(
                f"normalize={method!r}: segment {self.fit_segment!r} has no rows to fit on"
            )
        if method == "zscore":
            center, scale = fit_rows.mean(), fit_rows.std()
        else:
            center = fit_rows.median()
            scale = (fit_rows - center).abs().median() * _MAD_TO_STD
        scale = scale.where(scale > 0)  # a constant feature has no scale: NaN, not inf
        self.norm_params = pd.DataFrame({"center": center, "scale": scale}).T
        normalised = (features - center) / scale
        if method == "robust_zscore":
            normalised = normalised.clip(-ROBUST_CLIP, ROBUST_CLIP)
        return normalised


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _load(source: Any, name: str) -> pd.DataFrame:
    """The indexed panel ``source`` gives: a frame, a file path, or a config building one."""
    if isinstance(source, pd.DataFrame):
        return as_panel(source, name)
    if isinstance(source, str | os.PathLike):
        return read_panel(source)
    if isinstance(source, Mapping):
        built = instantiate(source, config_path=name)
        if isinstance(built, Mapping):
            raise PanelError(f"{name}: the config built a mapping, not a panel")
        return _load(built, name)
    raise PanelError(
        f"{name}: expected a DataFrame, a parquet/CSV path or a config, got "
        f"{type(source).__name__}"
    )


def _feature_columns(panel: pd.DataFrame, columns: Sequence[str] | None,
                     label: str) -> list[str]:
    """The feature columns, checked: given ones must exist, the default is every numeric one."""
    if label not in panel.columns:
        raise PanelError(
            f"label_column {label!r} is not a column; columns: {list(panel.columns)[:30]}"
        )
    if columns is None:
        chosen = [c for c in panel.columns
                  if c != label and pd.api.types.is_numeric_dtype(panel[c])]
    else:
        if isinstance(columns, str):
            raise PanelError(f"feature_columns: expected a list of column names, got {columns!r}")
        chosen = list(columns)
        missing = [c for c in chosen if c not in panel.columns]
        if missing:
            raise PanelError(
                f"feature_columns: {missing} not in the panel; columns: {list(panel.columns)[:30]}"
            )
        if label in chosen:
            raise PanelError(f"feature_columns: the label column {label!r} cannot be a feature")
    if not chosen:
        raise PanelError("feature_columns: the panel has no feature column")
    return chosen


def _groups(col_set: Any) -> list[str]:
    """The column groups ``col_set`` asks for, checked."""
    known = (CS_FEATURE, CS_LABEL)
    if col_set == CS_ALL:
        return list(known)
    groups = [col_set] if isinstance(col_set, str) else list(col_set)
    bad = [g for g in groups if g not in known]
    if bad or not groups:
        raise PanelError(
            f"col_set must be {CS_ALL!r}, {CS_FEATURE!r}, {CS_LABEL!r} or a list of those, "
            f"got {col_set!r}"
        )
    return groups


def _segment_bounds(segment: Any, name: str, known: list[str] | None = None
                    ) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
    """A segment's ``(start, end)`` as days (``None`` open), checked."""
    if isinstance(segment, str | bytes) or not isinstance(segment, Sequence) or len(segment) != 2:
        raise PanelError(f"segment {name!r}: expected a (start, end) pair, got {segment!r:.80}")
    start, end = segment
    try:
        bounds = _day(start, "start"), _day(end, "end")
    except PanelError as exc:
        hint = f" (and not segment names: segments are {known})" if known is not None else ""
        raise PanelError(f"segment {name!r}: {exc}{hint}") from None
    if None not in bounds and bounds[0] > bounds[1]:
        raise PanelError(f"segment {name!r}: start {start} is after end {end}")
    return bounds


def _day(value: Any, what: str) -> pd.Timestamp | None:
    """``value`` as a midnight Timestamp (``None`` stays ``None``)."""
    if value is None:
        return None
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise PanelError(f"{what} {value!r} is not a date") from exc
    if stamp is pd.NaT:
        raise PanelError(f"{what} {value!r} is not a date")
    if stamp.tzinfo is not None:
        raise PanelError(f"{what} {value!r} has a time zone; panel days are time-zone naive")
    return stamp.normalize()


def _dates(panel: pd.DataFrame) -> np.ndarray:
    """The panel's datetime level as a sorted ``datetime64[ns]`` array, for searchsorted."""
    return panel.index.get_level_values(0).to_numpy(dtype="datetime64[ns]")


def _row_range(dates: np.ndarray, start: pd.Timestamp | None,
               end: pd.Timestamp | None) -> tuple[int, int]:
    """Row positions ``[lo, hi)`` of the days from ``start`` to ``end``, both inclusive."""
    lo = 0 if start is None else int(dates.searchsorted(_ns(start), side="left"))
    if end is None:
        return lo, len(dates)
    hi = int(dates.searchsorted(_ns(end + _ONE_DAY), side="left"))
    return lo, max(lo, hi)


def _ns(stamp: pd.Timestamp) -> np.datetime64:
    """``stamp`` in the nanosecond unit of :func:`_dates`."""
    return stamp.as_unit("ns").to_datetime64()
