"""Cost of the type round-trip per task: ``type_map`` on submit, ``restore`` on read.

    python benchmarks/bench_jsontypes.py [--number 20000]

The task is window 3 of a sliding rolling study (step 250) over the example qlib template on
the golden calendar: three segments of Timestamp tuples and a Timestamp handler end, the
shape qlib users submit. ``to_canonical`` (the conversion every submitted task already pays)
is timed as the yardstick. Each figure is the best of three runs, in microseconds per task.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import taskloom
import yaml
from taskloom.jsontypes import restore, type_map
from taskloom.taskkey import to_canonical

ROOT = Path(__file__).resolve().parents[1]
CALENDAR_FILE = ROOT / "tests" / "conformance" / "calendar_day.txt"
TEMPLATE_FILE = ROOT / "examples" / "templates" / "rolling_lgbm.yaml"


def best_microseconds(func: Callable[[], Any], number: int) -> float:
    """The best of three runs of ``number`` calls, in microseconds per call."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(number):
            func()
        best = min(best, (time.perf_counter() - start) / number * 1e6)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--number", type=int, default=20000, help="calls per run")
    args = parser.parse_args()
    calendar = taskloom.TradingCalendar.from_file(CALENDAR_FILE)
    template = yaml.safe_load(TEMPLATE_FILE.read_text(encoding="utf-8"))
    template = template.get("task", template)
    rolling = taskloom.get_generator("rolling")(step=250, rtype="sliding", calendar=calendar)
    task = taskloom.task_generator(template, rolling)[3]
    stored, types = to_canonical(task), type_map(task)
    assert restore(stored, types) == task
    print(f"task with {len(types or {})} typed values")
    for name, func in [
        ("to_canonical (yardstick)", lambda: to_canonical(task)),
        ("type_map", lambda: type_map(task)),
        ("restore", lambda: restore(stored, types)),
        ("type_map, plain JSON task", lambda: type_map(stored)),
        ("restore, no type map", lambda: restore(stored, None)),
    ]:
        print(f"{name:28s} {best_microseconds(func, args.number):7.2f} us")


if __name__ == "__main__":
    main()
