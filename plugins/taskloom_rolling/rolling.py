"""``RollingGen``: one task per rolling test window, computed in closed form on the calendar.

Instead of shifting every segment window by window (qlib walks the calendar and deep-copies the
whole task per window), the windows are computed directly in calendar indices: window ``i`` of a
segment ``[a, b]`` is ``[a + i*step, b + i*step]`` (the train start stays at ``a`` when
expanding), and the number of windows follows from the test start and end. Each output task is
an independent copy of the template made from a pickled snapshot, with its own segments dict.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from taskloom.calendar import (
    EXPANDING,
    SLIDING,
    CalendarError,
    DateLike,
    Segment,
    TimeAdjuster,
    TradingCalendar,
    check_int,
    check_rtype,
    checked_test_segment,
    to_timestamp,
    truncate_indices,
)
from taskloom.generation import (
    DEFAULT_SEGMENTS_PATH,
    PathLike,
    Task,
    TaskGen,
    TaskSnapshot,
    extend_handler_end,
    get_segments,
    parse_path,
    replace_path,
)

Hook = Callable[[Task, "RollingGen"], Any]
CopyFunc = Callable[[Task], Task]


@dataclass(frozen=True)
class _Layout:
    """The segments of window 0 as calendar indices (``None`` = open bound)."""

    keys: tuple[str, ...]
    starts: tuple[int | None, ...]
    ends: tuple[int | None, ...]
    moving_start: tuple[bool, ...]  # False only for the train start when expanding


class RollingGen(TaskGen):
    """Roll a template's segments forward by ``step`` trading days, one task per test window.

    Parameters follow qlib's ``RollingGen``:

    * ``step``: trading days between two windows, and the length of each test window.
    * ``rtype``: ``"expanding"`` keeps the ``train_key`` start fixed and grows its end;
      ``"sliding"`` moves every segment. Every other segment always slides.
    * ``ds_extra_mod_func(task, gen)``: a hook run on every output task after its segments are
      set (default: :func:`taskloom.generation.extend_handler_end`; ``None`` for no hook).
    * ``test_key`` / ``train_key``: the segment names (``train_key=None`` never expands).
    * ``trunc_days``: cut every non-test bound of the first window to at most
      ``test_start - trunc_days`` trading days (the later windows keep that gap).
    * ``task_copy_func``: how each output task is copied from the template. ``None`` (the
      default) uses a fast deep copy; pass e.g. ``copy.deepcopy`` or a function that shares a
      heavy object on purpose.
    * ``calendar``: the :class:`~taskloom.TradingCalendar` the windows are counted on.
    * ``segments_path``: where the segments live in a task (``dataset.kwargs.segments``).

    Output segments are tuples of ``pd.Timestamp`` (or ``None`` for a bound past the calendar).
    ``ta`` is qlib's ``TimeAdjuster`` over ``calendar``, for hooks written against qlib.
    """

    #: qlib's rtype constants: a fixed train start with a growing end, or every segment sliding
    ROLL_EX = EXPANDING
    ROLL_SD = SLIDING

    def __init__(
        self,
        step: int = 40,
        rtype: str = ROLL_EX,
        ds_extra_mod_func: Hook | None = extend_handler_end,
        test_key: str = "test",
        train_key: str | None = "train",
        trunc_days: int | None = None,
        task_copy_func: CopyFunc | None = None,
        *,
        calendar: TradingCalendar,
        segments_path: PathLike = DEFAULT_SEGMENTS_PATH,
    ) -> None:
        if not isinstance(calendar, TradingCalendar):
            raise CalendarError(
                f"calendar must be a TradingCalendar, got {type(calendar).__name__}"
            )
        if not isinstance(test_key, str) or not test_key:
            raise CalendarError(f"test_key must be a segment name, got {test_key!r}")
        if train_key == test_key:
            raise CalendarError(f"train_key and test_key must differ, both are {test_key!r}")
        for name, func in (("ds_extra_mod_func", ds_extra_mod_func),
                           ("task_copy_func", task_copy_func)):
            if func is not None and not callable(func):
                raise CalendarError(f"{name} must be callable or None, got {func!r:.80}")
        self.step = check_int(step, "step", minimum=1)
        self.rtype = check_rtype(rtype)
        self.trunc_days = None if trunc_days is None else check_int(trunc_days, "trunc_days", 0)
        self.ds_extra_mod_func = ds_extra_mod_func
        self.test_key = test_key
        self.train_key = train_key
        self.task_copy_func = task_copy_func
        self.calendar = calendar
        self.ta = TimeAdjuster(calendar)
        self.segments_path = parse_path(segments_path)

    def __repr__(self) -> str:
        return (f"RollingGen(step={self.step}, rtype={self.rtype!r}, trunc_days={self.trunc_days}, "
                f"test_key={self.test_key!r}, train_key={self.train_key!r})")

    # ----------------------------------------------------------------------------------------
    # Public API
    # ----------------------------------------------------------------------------------------

    def generate(self, task: Task) -> list[Task]:
        """The first window (test = the first ``step`` days of the test segment) and all after it.

        Windows are produced while their test start is on or before the template's test end
        (the calendar's last day when that end is open or past the calendar). The first window
        is always produced, and no window is clipped to the template's test end.
        """
        aligned = self._aligned(get_segments(task, self.segments_path))
        layout = self._first_window(aligned)
        segments = self._windows(layout, self._count(layout, self._test_end_index(aligned)))
        first = self._copy_once(task)
        self._update(first, segments[0])
        return [first, *self._emit(first, segments[1:])]

    def gen_following_tasks(self, task: Task, test_end: DateLike | None) -> list[Task]:
        """The windows after ``task`` whose test start is on or before ``test_end``.

        Each is a copy of ``task`` with every segment shifted by a multiple of ``step`` (then
        the hook applied); ``task`` itself is not repeated. ``test_end`` may be any date form;
        ``None`` rolls up to the calendar's last day.
        """
        layout = self._aligned(get_segments(task, self.segments_path))
        if test_end is None:
            end_index = len(self.calendar) - 1
        else:
            try:
                end = to_timestamp(test_end)
            except CalendarError as exc:
                raise CalendarError(f"test_end: {exc}") from None
            if end < self.calendar.first:
                return []
            end_index = self.calendar.align_index(end, "end", "test_end")
        segments = self._windows(layout, self._count(layout, end_index))
        return self._emit(task, segments[1:])

    # ----------------------------------------------------------------------------------------
    # Index arithmetic
    # ----------------------------------------------------------------------------------------

    def _aligned(self, segments: Mapping[str, Any]) -> _Layout:
        checked_test_segment(segments, self.test_key)
        keys = tuple(segments)
        pairs = [self.calendar.align_indices(segments[key], key) for key in keys]
        expanding = self.rtype == EXPANDING
        return _Layout(
            keys=keys,
            starts=tuple(start for start, _ in pairs),
            ends=tuple(end for _, end in pairs),
            moving_start=tuple(not (expanding and key == self.train_key) for key in keys),
        )

    def _first_window(self, layout: _Layout) -> _Layout:
        """Window 0: the test segment cut to ``step`` days, the others truncated if asked."""
        s0 = layout.starts[layout.keys.index(self.test_key)]
        limit = None if self.trunc_days is None else s0 - self.trunc_days
        starts, ends = [], []
        for key, start, end in zip(layout.keys, layout.starts, layout.ends, strict=True):
            if key == self.test_key:
                start, end = s0, s0 + self.step - 1
            elif limit is not None:
                start, end = truncate_indices((start, end), limit, key)
            starts.append(start)
            ends.append(end)
        return _Layout(layout.keys, tuple(starts), tuple(ends), layout.moving_start)

    def _test_end_index(self, layout: _Layout) -> int:
        """eT: the template's aligned test end, or the last calendar index when it is open."""
        end = layout.ends[layout.keys.index(self.test_key)]
        return len(self.calendar) - 1 if end is None else end

    def _count(self, layout: _Layout, end_index: int) -> int:
        """How many windows (window 0 included) to produce, always at least one.

        A window exists while its test start is ``<= end_index``; generation also stops before
        any moving start would leave the calendar (qlib crashed or stopped there).
        """
        test_pos = layout.keys.index(self.test_key)
        s0 = layout.starts[test_pos]
        count = (end_index - s0) // self.step + 1 if end_index >= s0 else 1
        last = len(self.calendar) - 1
        for start, moving in zip(layout.starts, layout.moving_start, strict=True):
            if start is not None and moving:
                count = min(count, (last - start) // self.step + 1)
        return max(count, 1)

    def _windows(self, layout: _Layout, count: int) -> list[dict[str, Segment]]:
        """The segments dict of windows ``0..count-1``, vectorised per segment bound."""
        offsets = np.arange(count, dtype=np.int64) * self.step
        columns = []
        for start, end, moving in zip(layout.starts, layout.ends, layout.moving_start,
                                      strict=True):
            columns.append(zip(self._bounds(start, offsets if moving else None, count),
                               self._bounds(end, offsets, count), strict=True))
        return [dict(zip(layout.keys, pairs, strict=True))
                for pairs in zip(*columns, strict=True)]

    def _bounds(self, index: int | None, offsets: np.ndarray | None, count: int
                ) -> list[pd.Timestamp | None]:
        if index is None:
            return [None] * count
        if offsets is None:
            return [self.calendar.stamp(index)] * count
        return self.calendar.stamps_at(index + offsets)

    # ----------------------------------------------------------------------------------------
    # Tasks
    # ----------------------------------------------------------------------------------------

    def _copy_once(self, task: Task) -> Task:
        if self.task_copy_func is not None:
            return self.task_copy_func(task)
        return TaskSnapshot(task, omit=self.segments_path).copy()

    def _emit(self, base: Task, windows: list[dict[str, Segment]]) -> list[Task]:
        """A copy of ``base`` per window, with that window's segments and the hook applied."""
        if not windows:
            return []
        if self.task_copy_func is not None:
            copy_func, base_task = self.task_copy_func, base
            copies = (copy_func(base_task) for _ in windows)
        else:
            snapshot = TaskSnapshot(base, omit=self.segments_path)
            copies = (snapshot.copy() for _ in windows)
        out = []
        for task, segments in zip(copies, windows, strict=True):
            self._update(task, segments)
            out.append(task)
        return out

    def _update(self, task: Task, segments: dict[str, Segment]) -> None:
        """Give ``task`` its window's segments, then run the hook on it.

        The segments are written through copies of the dicts on their path, so a dict that
        ``task_copy_func`` shares with the template or the other windows stays unchanged.
        """
        replace_path(task, self.segments_path, segments)
        if self.ds_extra_mod_func is not None:
            self.ds_extra_mod_func(task, self)
