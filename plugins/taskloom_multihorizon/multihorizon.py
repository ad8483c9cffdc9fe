"""``MultiHorizonGen``: one task per prediction horizon, each truncated against label leakage.

For horizon ``h`` the task copy gets the horizon written into it (usually the label
expression), then every non-test segment is cut so that it ends at least ``h + label_leak_n``
trading days before the test start. The test segment is aligned but not split, and no handler
hook runs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from taskloom.calendar import (
    CalendarError,
    TimeAdjuster,
    TradingCalendar,
    check_int,
    checked_test_segment,
    truncate_indices,
)
from taskloom.generation import (
    DEFAULT_SEGMENTS_PATH,
    PathLike,
    Task,
    TaskGen,
    TaskSnapshot,
    get_segments,
    parse_path,
    set_path,
)

Setter = Callable[[Task, int], Any]

#: Where the horizon goes by default: the label of a qlib data handler...
DEFAULT_HORIZON_PATH = "dataset.kwargs.handler.kwargs.label"
#: ...and what is written there: qlib's return label over ``h`` days (h=1 is Alpha158's label).
DEFAULT_HORIZON_TEMPLATE: list[list[str]] = [["Ref($close, -{h+1})/Ref($close, -1) - 1"],
                                             ["LABEL0"]]

_PLACEHOLDER = re.compile(r"\{h(?:\s*([+-])\s*(\d+))?\}")


def render_horizon(template: Any, horizon: int) -> Any:
    """``template`` with every ``{h}``, ``{h+N}`` or ``{h-N}`` in its strings filled in.

    Dicts, lists and tuples are rebuilt recursively; other values are kept. A string that is
    exactly one placeholder becomes the integer itself (``"{h}"`` -> ``5``).
    """

    def value(match: re.Match[str]) -> int:
        sign, number = match.group(1), match.group(2)
        if sign is None:
            return horizon
        return horizon + int(number) if sign == "+" else horizon - int(number)

    if isinstance(template, str):
        whole = _PLACEHOLDER.fullmatch(template)
        if whole:
            return value(whole)
        return _PLACEHOLDER.sub(lambda match: str(value(match)), template)
    if isinstance(template, dict):
        return {key: render_horizon(item, horizon) for key, item in template.items()}
    if isinstance(template, list | tuple):
        return type(template)(render_horizon(item, horizon) for item in template)
    return template


def _checked_horizons(value: Any, name: str) -> list[int]:
    """``value`` as a new list of horizons (integers >= 0); a ValueError names ``name``."""
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise CalendarError(f"{name} must be a list of integers, got {value!r}")
    return [check_int(h, name, minimum=0) for h in value]


class MultiHorizonGen(TaskGen):
    """One task per horizon in ``horizons``, in order.

    For each horizon ``h`` the template is copied, the horizon is written into the copy by
    :meth:`set_horizon`, the segments are aligned, and every non-test bound is cut to at most
    ``test_start - (h + label_leak_n)`` trading days. ``horizons`` may also be given as
    ``horizon=`` (qlib's ``MultiHorizonGenBase`` name, also an attribute); the default is
    ``[5]``, as in qlib. ``ta`` is qlib's ``TimeAdjuster`` over ``calendar``.

    How the horizon is written, in order of precedence:

    * a subclass overriding :meth:`set_horizon` (qlib's way);
    * ``horizon_setter(task, h)``, a callable that changes the task in place;
    * ``horizon_path`` plus ``horizon_template``: the template with ``{h}``/``{h+1}`` filled in
      (:func:`render_horizon`) is written at the dotted path with plain item access, so a
      missing key raises ``KeyError``. Both default to qlib's label at
      ``dataset.kwargs.handler.kwargs.label``.

    ``label_leak_n`` is how many trading days after the prediction day the label still needs
    (buy at T+1, sell at T+2: 2). See ``docs/generation.md`` for the truncation convention.
    """

    def __init__(
        self,
        horizons: Iterable[int] | None = None,
        label_leak_n: int = 2,
        *,
        horizon: Iterable[int] | None = None,
        calendar: TradingCalendar,
        test_key: str = "test",
        horizon_setter: Setter | None = None,
        horizon_path: PathLike | None = None,
        horizon_template: Any = None,
        segments_path: PathLike = DEFAULT_SEGMENTS_PATH,
    ) -> None:
        if not isinstance(calendar, TradingCalendar):
            raise CalendarError(
                f"calendar must be a TradingCalendar, got {type(calendar).__name__}"
            )
        if horizons is not None and horizon is not None:
            raise CalendarError(
                f"give horizons or qlib's horizon, not both (horizons={horizons!r}, "
                f"horizon={horizon!r})"
            )
        if horizon is not None:
            self.horizon = horizon
        else:
            self.horizons = horizons if horizons is not None else [5]
        self.label_leak_n = check_int(label_leak_n, "label_leak_n", minimum=0)
        if horizon_setter is not None and not callable(horizon_setter):
            raise CalendarError(f"horizon_setter must be callable, got {horizon_setter!r:.80}")
        if horizon_setter is not None and (horizon_path, horizon_template) != (None, None):
            raise CalendarError("give horizon_setter or horizon_path/horizon_template, not both")
        if not isinstance(test_key, str) or not test_key:
            raise CalendarError(f"test_key must be a segment name, got {test_key!r}")
        self.calendar = calendar
        self.ta = TimeAdjuster(calendar)
        self.test_key = test_key
        self.horizon_setter = horizon_setter
        self.horizon_path = parse_path(horizon_path or DEFAULT_HORIZON_PATH, "horizon_path")
        self.horizon_template = (DEFAULT_HORIZON_TEMPLATE if horizon_template is None
                                 else horizon_template)
        self.segments_path = parse_path(segments_path)

    @property
    def horizons(self) -> list[int]:
        """The horizons, in generation order (the same list as qlib's :attr:`horizon`)."""
        return self._horizons

    @horizons.setter
    def horizons(self, value: Iterable[int]) -> None:
        self._horizons = _checked_horizons(value, "horizons")

    @property
    def horizon(self) -> list[int]:
        """qlib's name for :attr:`horizons` (``MultiHorizonGenBase(horizon=[...])``)."""
        return self._horizons

    @horizon.setter
    def horizon(self, value: Iterable[int]) -> None:
        self._horizons = _checked_horizons(value, "horizon")

    def __repr__(self) -> str:
        return f"MultiHorizonGen(horizons={self.horizons}, label_leak_n={self.label_leak_n})"

    def set_horizon(self, task: Task, horizon: int) -> None:
        """Write ``horizon`` into ``task`` in place (override in a subclass to customise)."""
        if self.horizon_setter is not None:
            self.horizon_setter(task, horizon)
        else:
            set_path(task, self.horizon_path, render_horizon(self.horizon_template, horizon))

    def generate(self, task: Task) -> list[Task]:
        """One truncated copy of ``task`` per horizon; ``[]`` when there are no horizons."""
        if not self.horizons:
            return []
        snapshot = TaskSnapshot(task)
        out = []
        for horizon in self.horizons:
            copied = snapshot.copy()
            self.set_horizon(copied, horizon)
            set_path(copied, self.segments_path, self._truncated(copied, horizon))
            out.append(copied)
        return out

    def _truncated(self, task: Task, horizon: int) -> dict[str, Any]:
        segments = get_segments(task, self.segments_path)
        test_start, _ = checked_test_segment(segments, self.test_key)
        limit = self.calendar.trunc_limit(test_start, horizon + self.label_leak_n, self.test_key)
        out = {}
        for key, segment in segments.items():
            pair = self.calendar.align_indices(segment, key)
            if key != self.test_key:
                pair = truncate_indices(pair, limit, key)
            out[key] = (self.calendar.stamp(pair[0]), self.calendar.stamp(pair[1]))
        return out
