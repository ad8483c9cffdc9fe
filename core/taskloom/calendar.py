"""``TradingCalendar``: a sorted set of trading days and qlib's TimeAdjuster arithmetic on it.

Every operation works on calendar *indices* (position of a day in the sorted array) found with
``searchsorted``: a segment start moves forward to the first trading day on or after it, an end
moves back to the last trading day on or before it. Where qlib silently wraps around or crashes
at the calendar's edges (a start after the last day, an end before the first day, a shift past
either end), taskloom raises :class:`CalendarError`, a ``ValueError`` naming the segment and the
date. ``None`` is an open bound everywhere and stays open.
"""

from __future__ import annotations

import datetime as dt
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any, Literal

import numpy as np
import pandas as pd

from taskloom.errors import TaskloomError

DateLike = str | pd.Timestamp | np.datetime64 | dt.date
Bound = pd.Timestamp | None
Segment = tuple[Bound, Bound]
Kind = Literal["start", "end"]
RType = Literal["sliding", "expanding"]

SLIDING = "sliding"
EXPANDING = "expanding"
RTYPES = (SLIDING, EXPANDING)
_DAY_NS = 86_400_000_000_000


class CalendarError(TaskloomError, ValueError):
    """A date, segment or shift that the trading calendar cannot place."""


class ShiftOutOfCalendarError(CalendarError, KeyError):
    """A shift moved a segment start off the calendar.

    Also a ``KeyError`` because qlib's ``TimeAdjuster.shift`` raises one there, and code
    written for qlib stops rolling with ``except KeyError``.
    """

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return str(self.args[0])


@lru_cache(maxsize=4096)
def _cached_timestamp(value: Any) -> pd.Timestamp:
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError, OverflowError) as exc:
        raise CalendarError(f"{value!r} is not a date") from exc
    if stamp is pd.NaT:
        raise CalendarError(f"{value!r} is not a date")
    if stamp.tzinfo is not None:
        raise CalendarError(f"{value!r} has a time zone; trading days are time-zone naive")
    return stamp.normalize()


def to_timestamp(value: DateLike) -> pd.Timestamp:
    """``value`` (str, Timestamp, datetime64, datetime or date) as a midnight ``pd.Timestamp``.

    Trading days are dates, so a time of day is dropped. Conversions are cached because the
    same few template dates are converted again for every generated window.
    """
    if (type(value) is pd.Timestamp and value.unit == "ns" and value.tzinfo is None
            and value.value % _DAY_NS == 0):
        return value  # already a trading-day Timestamp (the common case inside generators)
    if not isinstance(value, str | dt.date | np.datetime64):  # Timestamp is a datetime
        raise CalendarError(f"{value!r} ({type(value).__name__}) is not a date")
    return _cached_timestamp(value)


def _label(name: str | None) -> str:
    return f"segment {name!r}: " if name else ""


def _day_text(value: Any) -> str:
    if isinstance(value, pd.Timestamp):
        return value.strftime("%Y-%m-%d")
    return str(value)


class TradingCalendar:
    """A sorted, unique set of tz-naive trading days, with qlib's TimeAdjuster operations.

    Build one with the constructor (any iterable of dates), :meth:`from_file`,
    :meth:`from_business_days` or :meth:`from_exchange`. The calendar is immutable; build a
    new one to see new trading days.
    """

    __slots__ = ("_days", "_ns", "_stamps")

    def __init__(self, days: Iterable[DateLike]) -> None:
        values = list(days)
        try:
            index = pd.DatetimeIndex(pd.to_datetime(values))
        except (ValueError, TypeError) as exc:
            raise CalendarError(f"calendar: cannot read the trading days: {exc}") from exc
        if index.hasnans:
            raise CalendarError("calendar: a trading day is missing (NaT)")
        if index.tz is not None:
            raise CalendarError("calendar: trading days must be time-zone naive")
        index = index.normalize().unique().sort_values().as_unit("ns")
        if len(index) == 0:
            raise CalendarError("calendar: no trading days")
        self._days = index
        self._ns = index.asi8
        self._stamps: tuple[pd.Timestamp, ...] | None = None

    # ----------------------------------------------------------------------------------------
    # Constructors
    # ----------------------------------------------------------------------------------------

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> TradingCalendar:
        """One date per line (qlib's ``calendars/day.txt``); blank lines and ``#`` comments skip.

        The file is UTF-8; a leading byte order mark, as some Windows editors write, is dropped.
        """
        days: list[pd.Timestamp] = []
        with open(path, encoding="utf-8-sig") as handle:
            for number, line in enumerate(handle, start=1):
                text = line.split("#", 1)[0].strip()
                if not text:
                    continue
                try:
                    days.append(to_timestamp(text))
                except CalendarError as exc:
                    raise CalendarError(f"calendar file {path}, line {number}: {exc}") from None
        if not days:
            raise CalendarError(f"calendar file {path}: no trading days")
        return cls(days)

    @classmethod
    def from_business_days(
        cls, start: DateLike, end: DateLike, holidays: Iterable[DateLike] = ()
    ) -> TradingCalendar:
        """Every Monday to Friday from ``start`` to ``end`` (inclusive) except ``holidays``."""
        days = pd.bdate_range(to_timestamp(start), to_timestamp(end))
        closed = pd.DatetimeIndex([to_timestamp(day) for day in holidays])
        return cls(days.difference(closed) if len(closed) else days)

    @classmethod
    def from_exchange(
        cls, code: str, start: DateLike | None = None, end: DateLike | None = None
    ) -> TradingCalendar:
        """The sessions of exchange ``code`` (``"XSHG"``, ``"XNYS"``...) from exchange_calendars.

        Needs the optional extra: ``pip install "taskloom[calendars]"``. ``start``/``end`` default
        to the library's own range (about twenty years back to one year ahead).
        """
        try:
            import exchange_calendars
        except ImportError as exc:
            raise CalendarError(
                f"calendar {code!r}: exchange calendars need the optional extra; "
                'install it with: pip install "taskloom[calendars]"'
            ) from exc
        kwargs = {}
        if start is not None:
            kwargs["start"] = to_timestamp(start)
        if end is not None:
            kwargs["end"] = to_timestamp(end)
        try:
            with warnings.catch_warnings():  # the library's own pandas deprecation noise
                warnings.simplefilter("ignore", DeprecationWarning)
                exchange = exchange_calendars.get_calendar(code, **kwargs)
        except exchange_calendars.errors.InvalidCalendarName as exc:
            raise CalendarError(f"calendar: unknown exchange code {code!r}") from exc
        except ValueError as exc:
            raise CalendarError(f"calendar {code!r}: {exc}") from exc
        return cls(exchange.sessions)

    # ----------------------------------------------------------------------------------------
    # The days
    # ----------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._ns)

    def __repr__(self) -> str:
        return f"TradingCalendar({len(self)} days, {_day_text(self.first)}..{_day_text(self.last)})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TradingCalendar):
            return NotImplemented
        return bool(np.array_equal(self._ns, other._ns))

    __hash__ = None  # type: ignore[assignment]

    def __contains__(self, date: object) -> bool:
        try:
            value = to_timestamp(date).value  # type: ignore[arg-type]
        except CalendarError:
            return False
        pos = int(self._ns.searchsorted(value))
        return pos < len(self._ns) and int(self._ns[pos]) == value

    @property
    def days(self) -> pd.DatetimeIndex:
        """The trading days as a ``pd.DatetimeIndex`` (nanosecond unit)."""
        return self._days

    @property
    def first(self) -> pd.Timestamp:
        """The first trading day."""
        return self.stamps[0]

    @property
    def last(self) -> pd.Timestamp:
        """The last trading day."""
        return self.stamps[-1]

    @property
    def stamps(self) -> tuple[pd.Timestamp, ...]:
        """The trading days as a tuple of ``pd.Timestamp``, built once and shared.

        Generators index it to turn many calendar indices into dates without creating a new
        Timestamp per window (Timestamps are immutable, so sharing them is safe).
        """
        if self._stamps is None:
            self._stamps = tuple(self._days)
        return self._stamps

    # ----------------------------------------------------------------------------------------
    # Index arithmetic
    # ----------------------------------------------------------------------------------------

    def align_index(self, date: DateLike | None, kind: Kind = "start", name: str | None = None
                    ) -> int | None:
        """The calendar index of ``date`` aligned as a segment ``kind``; ``None`` stays ``None``.

        A start moves to the first trading day on or after ``date`` and an end to the last one
        on or before it; an end after the calendar is clipped to the last day. A start after the
        last day or an end before the first day raises :class:`CalendarError`. ``name`` (the
        segment key) is put in the message.
        """
        if date is None:
            return None
        if kind not in ("start", "end"):
            raise CalendarError(f"alignment kind must be 'start' or 'end', not {kind!r}")
        try:
            stamp = to_timestamp(date)
        except CalendarError as exc:
            raise CalendarError(f"{_label(name)}{kind} {exc}") from None
        if kind == "start" and stamp > self.last:
            raise CalendarError(
                f"{_label(name)}start {_day_text(date)} is after the calendar's last day "
                f"{_day_text(self.last)}"
            )
        if kind == "end" and stamp < self.first:
            raise CalendarError(
                f"{_label(name)}end {_day_text(date)} is before the calendar's first day "
                f"{_day_text(self.first)}"
            )
        if stamp < self.first:  # outside the nanosecond range the search works in
            return 0
        if stamp > self.last:
            return len(self._ns) - 1
        if kind == "start":
            return int(self._ns.searchsorted(stamp.value, side="left"))
        return int(self._ns.searchsorted(stamp.value, side="right")) - 1

    def align_indices(self, segment: Any, name: str | None = None) -> tuple[int | None, int | None]:
        """The (start, end) calendar indices of ``segment``; it must hold a trading day."""
        start, end = _pair(segment, name)
        si = self.align_index(start, "start", name)
        ei = self.align_index(end, "end", name)
        if si is not None and ei is not None and si > ei:
            raise CalendarError(
                f"{_label(name) or 'segment: '}no trading day between {_day_text(start)} and "
                f"{_day_text(end)}"
            )
        return si, ei

    def stamp(self, index: int | None) -> pd.Timestamp | None:
        """The trading day at ``index``; ``None`` for ``None`` or past the end (an open bound).

        A negative index raises instead of wrapping around as Python indexing (and qlib) would.
        """
        if index is None or index >= len(self._ns):
            return None
        if index < 0:
            raise CalendarError(
                f"index {index} is before the calendar's first day {_day_text(self.first)}"
            )
        return self.stamps[index]

    def stamps_at(self, indices: np.ndarray) -> list[pd.Timestamp | None]:
        """Vectorised :meth:`stamp` for an integer array (indices ≥ len become ``None``)."""
        if len(indices) and int(indices.min()) < 0:
            return [self.stamp(int(i)) for i in indices]  # raises with the offending index
        stamps, n = self.stamps, len(self._ns)
        return [stamps[i] if i < n else None for i in indices.tolist()]

    # ----------------------------------------------------------------------------------------
    # qlib TimeAdjuster equivalents (dates in, Timestamps out)
    # ----------------------------------------------------------------------------------------

    def align(self, date: DateLike | None, kind: Kind = "start") -> pd.Timestamp | None:
        """``date`` moved onto the calendar as a segment ``kind`` (see :meth:`align_index`)."""
        return self.stamp(self.align_index(date, kind))

    def align_segment(self, segment: Any, name: str | None = None) -> Segment:
        """A ``(start, end)`` pair (list or tuple) aligned: start forward, end back."""
        si, ei = self.align_indices(segment, name)
        return self.stamp(si), self.stamp(ei)

    def align_segments(self, segments: Any) -> dict[str, Segment] | Segment:
        """Every segment of a ``{key: (start, end)}`` dict aligned, or one aligned pair."""
        if isinstance(segments, Mapping):
            return {key: self.align_segment(seg, key) for key, seg in segments.items()}
        return self.align_segment(segments)

    def shift(self, segment: Any, step: int, rtype: RType = SLIDING,
              name: str | None = None) -> Segment:
        """``segment`` aligned and moved by ``step`` trading days.

        ``"sliding"`` moves both bounds, ``"expanding"`` only the end. An end moved past the
        calendar becomes ``None`` (open); a start moved past either end of the calendar raises.
        """
        rtype = check_rtype(rtype)
        step = check_int(step, "step")
        si, ei = self.align_indices(segment, name)
        if si is not None and rtype == SLIDING:
            if not 0 <= si + step < len(self):
                raise ShiftOutOfCalendarError(
                    f"{_label(name)}start {_day_text(self.stamps[si])} shifted by {step} trading "
                    f"days falls outside the calendar ({_day_text(self.first)}.."
                    f"{_day_text(self.last)})"
                )
            si += step
        if ei is not None:
            if ei + step < 0:
                raise CalendarError(
                    f"{_label(name)}end {_day_text(self.stamps[ei])} shifted by {step} trading "
                    f"days falls before the calendar's first day {_day_text(self.first)}"
                )
            ei += step
        return self.stamp(si), self.stamp(ei)

    def truncate(self, segment: Any, test_start: DateLike, days: int,
                 name: str | None = None) -> Segment:
        """``segment`` aligned and cut to end ``days`` trading days before ``test_start``.

        Every non-``None`` bound index ``i`` becomes ``min(i, idx(test_start) - days)``, where
        ``test_start`` is aligned as a start. Index 0 is a valid result (qlib #1610).
        """
        limit = self.trunc_limit(test_start, days)
        si, ei = truncate_indices(self.align_indices(segment, name), limit, name)
        return self.stamp(si), self.stamp(ei)

    def trunc_segments(self, segments: Mapping[str, Any], days: int, test_key: str = "test"
                       ) -> dict[str, Any]:
        """A new dict: every segment except ``test_key`` truncated against the test start.

        The test segment itself is returned as it was (not aligned), as in qlib. The test
        segment must exist and have a start.
        """
        limit = self.trunc_limit(checked_test_segment(segments, test_key)[0], days, test_key)
        out: dict[str, Any] = {}
        for key, seg in segments.items():
            if key == test_key:
                out[key] = seg
            else:
                si, ei = truncate_indices(self.align_indices(seg, key), limit, key)
                out[key] = (self.stamp(si), self.stamp(ei))
        return out

    def trunc_limit(self, test_start: DateLike, days: int, test_key: str = "test") -> int:
        """The last index a truncated bound may keep: ``idx(test_start) - days``."""
        days = check_int(days, "days", minimum=0)
        return self.align_index(test_start, "start", test_key) - days  # type: ignore[operator]


# --------------------------------------------------------------------------------------------
# Validation helpers shared by the generators
# --------------------------------------------------------------------------------------------


def _pair(segment: Any, name: str | None) -> tuple[Any, Any]:
    if isinstance(segment, str | bytes) or not isinstance(segment, Sequence) or len(segment) != 2:
        raise CalendarError(
            f"{_label(name) or 'segment: '}expected a (start, end) pair, got {segment!r:.80}"
        )
    return segment[0], segment[1]


def checked_test_segment(segments: Mapping[str, Any], test_key: str) -> tuple[Any, Any]:
    """The ``test_key`` segment as a pair; it must exist and have a start (the rolling anchor)."""
    if not isinstance(segments, Mapping):
        raise CalendarError(
            f"segments must be a {{key: (start, end)}} mapping, got {segments!r:.80}"
        )
    if test_key not in segments:
        raise CalendarError(
            f"segment {test_key!r} (the test key) is missing; segments are {list(segments)}"
        )
    start, end = _pair(segments[test_key], test_key)
    if start is None:
        raise CalendarError(
            f"segment {test_key!r} (the test key) has no start; the test start anchors "
            "rolling and truncation"
        )
    return start, end


def truncate_indices(pair: tuple[int | None, int | None], limit: int, name: str | None = None
                     ) -> tuple[int | None, int | None]:
    """Each non-``None`` index of ``pair`` cut to at most ``limit`` (the truncation rule)."""
    if limit < 0 and pair != (None, None):
        raise CalendarError(
            f"{_label(name)}truncation leaves no trading day: the last allowed day would be "
            f"{-limit} trading days before the calendar's first day"
        )
    return tuple(None if i is None else min(i, limit) for i in pair)  # type: ignore[return-value]


def check_int(value: Any, name: str, minimum: int | None = None) -> int:
    """``value`` as an int (bools refused), at least ``minimum`` when given, else ValueError."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise CalendarError(f"{name} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise CalendarError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_rtype(rtype: Any) -> str:
    """``rtype`` if it is ``"sliding"`` or ``"expanding"``; otherwise a ValueError naming it."""
    if rtype not in RTYPES:
        raise CalendarError(f"rtype must be 'expanding' or 'sliding', got {rtype!r}")
    return rtype


# --------------------------------------------------------------------------------------------
# qlib's TimeAdjuster, by name
# --------------------------------------------------------------------------------------------


class TimeAdjuster:
    """qlib's ``TimeAdjuster`` API over a :class:`TradingCalendar`, as generators' ``gen.ta``.

    Hooks written for qlib (``ds_extra_mod_func``, custom generators) call ``gen.ta.align_idx``,
    ``cal_interval``, ``shift``... and run unchanged. Results are qlib's wherever qlib gives a
    sound one; where qlib wraps around the calendar or crashes, the calendar's rules apply
    (a :class:`CalendarError` naming the date, see ``docs/generation.md``). The calendar is
    fixed: there is no ``set_end_time``; build the generator with a new calendar instead.
    """

    SHIFT_SD = SLIDING
    SHIFT_EX = EXPANDING

    __slots__ = ("calendar",)

    def __init__(self, calendar: TradingCalendar) -> None:
        if not isinstance(calendar, TradingCalendar):
            raise CalendarError(
                f"calendar must be a TradingCalendar, got {type(calendar).__name__}"
            )
        self.calendar = calendar

    def __repr__(self) -> str:
        return f"TimeAdjuster({self.calendar!r})"

    @property
    def cals(self) -> pd.DatetimeIndex:
        """The trading days (qlib's ``ta.cals``)."""
        return self.calendar.days

    def get(self, idx: int | None) -> pd.Timestamp | None:
        """The trading day at ``idx``; ``None`` for ``None`` or an index past the last day.

        A negative index raises :class:`CalendarError` (qlib wraps around to the end).
        """
        return self.calendar.stamp(idx)

    def max(self) -> pd.Timestamp:
        """The calendar's last trading day."""
        return self.calendar.last

    def align_idx(self, time_point: DateLike | None, tp_type: Kind = "start") -> int | None:
        """The calendar index of ``time_point`` aligned as a ``tp_type`` (qlib's bisect rule).

        ``"start"``: the first trading day on or after it, ``len(calendar)`` when it is after
        the last day; ``"end"``: the last trading day on or before it, ``-1`` when it is before
        the first day. ``None`` stays ``None``. A time of day is dropped (trading days are dates).
        """
        if time_point is None:
            return None
        if tp_type not in ("start", "end"):
            raise CalendarError(f"tp_type must be 'start' or 'end', got {tp_type!r}")
        stamp = to_timestamp(time_point)
        cal = self.calendar
        if stamp < cal.first:
            return 0 if tp_type == "start" else -1
        if stamp > cal.last:
            return len(cal) if tp_type == "start" else len(cal) - 1
        side = "left" if tp_type == "start" else "right"
        return int(cal._ns.searchsorted(stamp.value, side=side)) - (tp_type == "end")

    def cal_interval(self, time_point_A: DateLike, time_point_B: DateLike) -> int:
        """Trading days from ``time_point_B`` to ``time_point_A`` (both aligned as starts).

        Negative when A is before B. ``None`` for either raises ``TypeError``, as in qlib:
        qlib's ``handler_mod`` relies on it to leave a handler with no ``end_time`` alone.
        """
        for name, value in (("time_point_A", time_point_A), ("time_point_B", time_point_B)):
            if value is None:
                raise TypeError(f"cal_interval: {name} is None; an open bound has no index")
        return self.align_idx(time_point_A) - self.align_idx(time_point_B)  # type: ignore[operator]

    def align_time(self, time_point: DateLike | None, tp_type: Kind = "start"
                   ) -> pd.Timestamp | None:
        """``time_point`` moved onto the calendar as a ``tp_type``; ``None`` stays ``None``.

        A start after the last day or an end before the first day raises
        :class:`CalendarError` (qlib raises ``IndexError``, or returns the *last* day).
        """
        if tp_type not in ("start", "end"):
            raise CalendarError(f"tp_type must be 'start' or 'end', got {tp_type!r}")
        return self.calendar.align(time_point, tp_type)

    def align_seg(self, segment: Any) -> Any:
        """A ``(start, end)`` pair as an aligned tuple, or a dict of them aligned per key.

        Dicts may nest. A segment with no trading day in it raises :class:`CalendarError`.
        """
        return self._align_seg(segment, None)

    def _align_seg(self, segment: Any, name: str | None) -> Any:
        if isinstance(segment, Mapping):
            return {key: self._align_seg(seg, key) for key, seg in segment.items()}
        if isinstance(segment, tuple | list):
            return self.calendar.align_segment(segment, name)
        raise CalendarError(
            f"{_label(name) or 'segment: '}expected a (start, end) pair or a dict of them, "
            f"got {segment!r:.80}"
        )

    def truncate(self, segment: Any, test_start: DateLike, days: int) -> Segment:
        """``segment`` cut to end at least ``days`` trading days before ``test_start``.

        Each bound index becomes ``min(index, idx(test_start) - days)``. Unlike qlib, the end
        is aligned as an end, a bound on the calendar's first day is allowed (qlib #1610) and
        an open bound stays open.
        """
        return self.calendar.truncate(segment, test_start, days)

    def shift(self, seg: Any, step: int, rtype: RType = SHIFT_SD) -> Segment:
        """``seg`` aligned and moved ``step`` trading days: both bounds when ``"sliding"``,
        only the end when ``"expanding"``.

        An end past the calendar becomes ``None``. A start moved off the calendar raises
        :class:`ShiftOutOfCalendarError`, which is a ``KeyError`` as in qlib.
        """
        return self.calendar.shift(seg, step, rtype)
