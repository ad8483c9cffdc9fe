"""Speed of the rolling generator: tasks per second on daily rolling studies.

    python benchmarks/bench_generate.py [--repeat 5]

Two studies on the golden calendar (``tests/conformance/calendar_day.txt``) with the example
qlib template (``examples/templates/rolling_lgbm.yaml``):

* step 2 over 5½ years of test days (about 700 windows);
* step 1 over 12 years of test days (about 3,000 windows).

Each is timed for taskloom's ``rolling`` generator and for a step-by-step reference written
here the way qlib's RollingGen works (deep-copy the task and walk the calendar for every
window), and the outputs are checked to be identical. When ``pyqlib`` is importable, qlib's
own ``RollingGen`` is timed on the same calendar and template too; otherwise that comparison
is reported as skipped.
"""

from __future__ import annotations

import argparse
import bisect
import copy
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import taskloom
import yaml
from taskloom import TradingCalendar, to_jsonable

ROOT = Path(__file__).resolve().parents[1]
CALENDAR_FILE = ROOT / "tests" / "conformance" / "calendar_day.txt"
TEMPLATE_FILE = ROOT / "examples" / "templates" / "rolling_lgbm.yaml"

#: name -> (step, train, valid, test)
STUDIES: dict[str, tuple[int, list[str], list[str], list[str]]] = {
    "step 2 over 5.5 years": (2, ["2008-01-01", "2014-12-31"], ["2015-01-01", "2016-12-31"],
                              ["2017-01-01", "2022-06-30"]),
    "step 1 over 12 years": (1, ["2005-01-01", "2008-12-31"], ["2009-01-01", "2010-06-30"],
                             ["2010-07-01", "2022-06-30"]),
}


def make_template(train: list[str], valid: list[str], test: list[str]) -> dict[str, Any]:
    """The example template with the study's segments (as tuples, which qlib needs)."""
    task = yaml.safe_load(TEMPLATE_FILE.read_text(encoding="utf-8"))
    task["dataset"]["kwargs"]["segments"] = {"train": tuple(train), "valid": tuple(valid),
                                             "test": tuple(test)}
    task["dataset"]["kwargs"]["handler"]["kwargs"]["end_time"] = test[1]
    return task


def stepwise_rolling(task: dict[str, Any], days: list[pd.Timestamp], step: int,
                     rtype: str) -> list[dict[str, Any]]:
    """qlib's algorithm, restated: deep copies and a calendar walk for every window."""

    def start_of(date: Any) -> int | None:
        return None if date is None else bisect.bisect_left(days, pd.Timestamp(date))

    def end_of(date: Any) -> int | None:
        return None if date is None else bisect.bisect_right(days, pd.Timestamp(date)) - 1

    def day(index: int | None) -> pd.Timestamp | None:
        return None if index is None or index >= len(days) else days[index]

    def with_segments(base: dict[str, Any], segments: dict[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(base)
        out["dataset"]["kwargs"]["segments"] = copy.deepcopy(segments)
        handler = out["dataset"]["kwargs"]["handler"]["kwargs"]
        test_end = segments["test"][1]
        if test_end is None:
            handler["end_time"] = None
        elif pd.Timestamp(handler["end_time"]) < test_end:
            handler["end_time"] = copy.deepcopy(test_end)
        return out

    segments = {key: (day(start_of(s)), day(end_of(e)))
                for key, (s, e) in task["dataset"]["kwargs"]["segments"].items()}
    test_end = segments["test"][1] or days[-1]
    s0 = start_of(segments["test"][0])
    segments["test"] = (day(s0), day(s0 + step - 1))
    first = with_segments(task, segments)
    out = [first]
    while True:
        moved = {}
        for key, (start, end) in segments.items():
            si, ei = start_of(start), end_of(end)
            if not (key == "train" and rtype == "expanding") and si is not None:
                si += step
            moved[key] = (day(si), day(None if ei is None else ei + step))
        if moved["test"][0] is None or moved["test"][0] > test_end:
            return out
        segments = moved
        out.append(with_segments(first, segments))


def qlib_rolling() -> Callable[[dict[str, Any], int, str], list[dict[str, Any]]] | None:
    """qlib's RollingGen on the golden calendar, or None when pyqlib is not importable."""
    try:
        import qlib
        from qlib.workflow.task.gen import RollingGen as QlibRollingGen
    except ImportError:
        return None
    provider = Path(tempfile.mkdtemp(prefix="taskloom-bench-qlib-"))
    (provider / "calendars").mkdir()
    (provider / "calendars" / "day.txt").write_text(CALENDAR_FILE.read_text(encoding="utf-8"))
    (provider / "instruments").mkdir()
    (provider / "features").mkdir()
    qlib.init(provider_uri=str(provider), region="cn", logging_level="ERROR")

    def run(task: dict[str, Any], step: int, rtype: str) -> list[dict[str, Any]]:
        return QlibRollingGen(step=step, rtype=rtype).generate(task)

    return run


def best_time(func: Callable[[], list[Any]], repeat: int) -> tuple[float, list[Any]]:
    """The fastest of ``repeat`` runs, and the output of the last one."""
    best, result = float("inf"), []
    for _ in range(repeat):
        started = time.perf_counter()
        result = func()
        best = min(best, time.perf_counter() - started)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per measurement (best)")
    parser.add_argument("--rtype", default="sliding", choices=["sliding", "expanding"])
    args = parser.parse_args()

    calendar = TradingCalendar.from_file(CALENDAR_FILE)
    days = list(calendar.days)
    qlib_run = qlib_rolling()
    print(f"calendar {calendar}; template {TEMPLATE_FILE.name}; rtype {args.rtype}; "
          f"best of {args.repeat}")
    header = (f"{'study':<24}{'windows':>8}{'taskloom/s':>12}{'us/window':>11}"
              f"{'stepwise/s':>12}{'speed-up':>10}{'same':>6}")
    if qlib_run is not None:
        header += f"{'qlib/s':>10}{'vs qlib':>9}{'same':>6}"
    print(header)
    for name, (step, train, valid, test) in STUDIES.items():
        template = make_template(train, valid, test)
        gen = taskloom.get_generator("rolling")(step=step, rtype=args.rtype, calendar=calendar)
        ours_s, ours = best_time(lambda: gen.generate(template), args.repeat)  # noqa: B023
        ref_s, ref = best_time(
            lambda: stepwise_rolling(template, days, step, args.rtype), args.repeat  # noqa: B023
        )
        same = to_jsonable(ours) == to_jsonable(ref)
        line = (f"{name:<24}{len(ours):>8}{len(ours) / ours_s:>12,.0f}"
                f"{ours_s / len(ours) * 1e6:>11.1f}{len(ref) / ref_s:>12,.0f}"
                f"{ref_s / ours_s:>9.1f}x{'yes' if same else 'NO':>6}")
        if qlib_run is not None:
            qlib_s, theirs = best_time(
                lambda: qlib_run(template, step, args.rtype), args.repeat  # noqa: B023
            )
            qlib_same = to_jsonable(ours) == to_jsonable(theirs)
            line += (f"{len(theirs) / qlib_s:>10,.0f}{qlib_s / ours_s:>8.1f}x"
                     f"{'yes' if qlib_same else 'NO':>6}")
        print(line)
    if qlib_run is None:
        print("qlib RollingGen: skipped (pyqlib is not importable here; "
              "`pip install pyqlib` to add that comparison)")


if __name__ == "__main__":
    main()
