"""Canonical JSON for tasks and results, and the task key derived from it.

A task is identified by the SHA-256 of its canonical JSON: keys sorted, tuples as lists, dates
as ISO strings (a midnight date as ``YYYY-MM-DD``, so ``"2017-01-02"``, ``date(2017, 1, 2)``
and ``pd.Timestamp("2017-01-02")`` are the same), numpy scalars as Python numbers. Equal tasks
therefore get equal keys whatever their key order or date types, and the pool can deduplicate
with a unique index instead of comparing documents.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any

from taskloom.errors import TaskEncodingError

JSONValue = None | bool | int | float | str | list["JSONValue"] | dict[str, "JSONValue"]


def _date_text(value: dt.datetime | dt.date) -> str:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None and value.time() == dt.time(0):
            return value.date().isoformat()
        return value.isoformat()
    return value.isoformat()


def _convert(value: Any, path: str) -> JSONValue:
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TaskEncodingError(f"{path or '<root>'}: {value!r} has no JSON form (not finite)")
        return float(value)
    if isinstance(value, Mapping):
        out: dict[str, JSONValue] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TaskEncodingError(
                    f"{path or '<root>'}: key {key!r} is a {type(key).__name__};"
                    " JSON keys are strings"
                )
            out[key] = _convert(item, f"{path}.{key}" if path else key)
        return out
    if isinstance(value, list | tuple):
        return [_convert(item, f"{path}.{i}" if path else str(i)) for i, item in enumerate(value)]
    if isinstance(value, dt.datetime | dt.date):
        if isinstance(value, dt.datetime) and value != value:  # pd.NaT
            raise TaskEncodingError(f"{path or '<root>'}: NaT has no JSON form")
        return _date_text(value)
    module = type(value).__module__
    if module == "numpy" or module.startswith("numpy."):
        return _convert_numpy(value, path)
    if module.startswith("pandas") and type(value).__name__ == "NaTType":
        raise TaskEncodingError(f"{path or '<root>'}: NaT has no JSON form")
    raise TaskEncodingError(
        f"{path or '<root>'}: {type(value).__name__} value {value!r:.80} has no JSON form"
    )


def _convert_numpy(value: Any, path: str) -> JSONValue:
    import numpy as np

    if isinstance(value, np.datetime64):
        if np.isnat(value):
            raise TaskEncodingError(f"{path or '<root>'}: NaT has no JSON form")
        import pandas as pd

        return _date_text(pd.Timestamp(value).to_pydatetime())
    if isinstance(value, np.ndarray):
        return _convert(value.tolist(), path)
    if isinstance(value, np.generic):
        return _convert(value.item(), path)
    raise TaskEncodingError(f"{path or '<root>'}: {type(value).__name__} has no JSON form")


def to_jsonable(value: Any) -> JSONValue:
    """``value`` as plain JSON data; a :class:`TaskEncodingError` names the offending path."""
    return _convert(value, "")


def canonical_json(value: Any) -> str:
    """Compact JSON text with sorted keys: equal values give equal text."""
    return json.dumps(to_jsonable(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def task_key(task: Any) -> str:
    """A stable hash (hex SHA-256) of the task's canonical JSON."""
    return hashlib.sha256(canonical_json(task).encode("utf-8")).hexdigest()
