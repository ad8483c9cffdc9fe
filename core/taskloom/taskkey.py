"""Canonical JSON for tasks and results, and the task key derived from it.

A task is identified by the SHA-256 of its canonical JSON: keys sorted, tuples as lists, dates
as ISO strings (a naive midnight as ``YYYY-MM-DD``, so ``"2017-01-02"``, ``date(2017, 1, 2)``
and ``pd.Timestamp("2017-01-02")`` are the same; a time zone or a time of day, to the
nanosecond, is kept), numpy scalars as Python numbers, integral floats as ints (``1.0`` is
``1``, as in queries). :mod:`taskloom.jsontypes` records what this loses, to restore it. Equal tasks
therefore get equal keys whatever their key order or date types, and the pool can deduplicate
with a unique index instead of comparing documents.

Converting is the costly part of submitting a task, so it is done once: :func:`to_canonical`
gives the data a store keeps, :func:`data_key` hashes such data without converting it again,
and :func:`is_canonical` lets a store accept it after a cheap check instead of a conversion.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

from taskloom.errors import TaskEncodingError

JSONValue = None | bool | int | float | str | list["JSONValue"] | dict[str, "JSONValue"]


class _Unencodable(Exception):
    """Raised where a value has no JSON form; the path to it is collected on the way up.

    Building a path string for every value converted would cost more than the conversion
    itself, so the path is only assembled when there is an error to report.
    """

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem
        self.segments: list[str] = []  # innermost first


#: integral floats up to this magnitude are exact ints; beyond it they stay floats (an int that
#: large would not fit a BSON int64, and a float that large is not a count of anything)
EXACT_INT_LIMIT = 2**53
#: the integers a task or result may hold: what SQLite and MongoDB store (BSON int64)
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def _date_text(value: dt.datetime | dt.date) -> str:
    """A naive midnight as ``YYYY-MM-DD``; any other datetime as ISO with its time and offset.

    A time zone, or a time down to the nanosecond (``pd.Timestamp``), keeps the full form, so
    a UTC midnight, a +08:00 midnight and the naive date are three different values.
    """
    if isinstance(value, dt.datetime):
        if (value.tzinfo is None and value.time() == dt.time(0)
                and not getattr(value, "nanosecond", 0)):
            return value.date().isoformat()
        return value.isoformat()
    return value.isoformat()


def _int(value: int) -> int:
    """An int that every store can hold (MongoDB and SQLite keep 64 bits)."""
    if INT64_MIN <= value <= INT64_MAX:
        return value
    raise _Unencodable(f"{value} is outside the 64-bit integer range that stores hold")


def _float(value: float, canonical: bool) -> float | int:
    """A finite float; canonically the equal int when it is integral (1.0 and 1 share a key).

    Outside the canonical form (results, ``generate -o``) a float stays a float.
    """
    if not math.isfinite(value):
        raise _Unencodable(f"{value!r} has no JSON form (not finite)")
    if canonical and value.is_integer() and -EXACT_INT_LIMIT <= value <= EXACT_INT_LIMIT:
        return int(value)
    return value


def _convert(value: Any, canonical: bool) -> JSONValue:
    """``value`` as JSON data; when ``canonical``, dict keys sorted and integral floats as ints.

    Exact JSON types go first.
    """
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return value
    if kind is int:
        return _int(value)
    if kind is dict:
        return _convert_dict(value, canonical)
    if kind is list or kind is tuple:
        return _convert_list(value, canonical)
    if kind is float:
        return _float(value, canonical)
    return _convert_other(value, canonical)


def _convert_dict(value: Mapping[Any, Any], canonical: bool) -> dict[str, JSONValue]:
    keys: Iterable[Any] = value
    if canonical:
        try:
            keys = sorted(value)
        except TypeError:  # keys of several types; the loop below names the first non-string
            pass
    out: dict[str, JSONValue] = {}
    for key in keys:
        if not isinstance(key, str):
            raise _Unencodable(f"key {key!r} is a {type(key).__name__}; JSON keys are strings")
        try:
            out[key] = _convert(value[key], canonical)
        except _Unencodable as exc:
            exc.segments.append(key)
            raise
    return out


def _convert_list(value: list[Any] | tuple[Any, ...], canonical: bool) -> list[JSONValue]:
    out: list[JSONValue] = []
    for i, item in enumerate(value):
        try:
            out.append(_convert(item, canonical))
        except _Unencodable as exc:
            exc.segments.append(str(i))
            raise
    return out


def _convert_other(value: Any, canonical: bool) -> JSONValue:
    """Everything but the exact JSON types: subclasses, mappings, dates, numpy, pandas."""
    if isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return _int(int(value))
    if isinstance(value, float):
        return _float(float(value), canonical)
    if isinstance(value, Mapping):
        return _convert_dict(value, canonical)
    if isinstance(value, list | tuple):
        return _convert_list(value, canonical)
    if isinstance(value, dt.datetime | dt.date):
        if isinstance(value, dt.datetime) and value != value:  # pd.NaT
            raise _Unencodable("NaT has no JSON form")
        return _date_text(value)
    module = type(value).__module__
    if module == "numpy" or module.startswith("numpy."):
        return _convert_numpy(value, canonical)
    if module.startswith("pandas") and type(value).__name__ == "NaTType":
        raise _Unencodable("NaT has no JSON form")
    raise _Unencodable(f"{type(value).__name__} value {value!r:.80} has no JSON form")


def _convert_numpy(value: Any, canonical: bool) -> JSONValue:
    import numpy as np

    if isinstance(value, np.datetime64):
        if np.isnat(value):
            raise _Unencodable("NaT has no JSON form")
        import pandas as pd

        try:
            return _date_text(pd.Timestamp(value))  # a Timestamp keeps the nanoseconds
        except (ValueError, OverflowError) as exc:
            raise _Unencodable(f"{value!r} has no JSON form ({exc})") from None
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "M":  # tolist() would give nanosecond datetime64s as integers
            return _convert_list(list(value), canonical)
        return _convert(value.tolist(), canonical)
    if isinstance(value, np.generic):
        return _convert(value.item(), canonical)
    raise _Unencodable(f"{type(value).__name__} has no JSON form")


def _encoding_error(value: Any, problem: _Unencodable) -> TaskEncodingError:
    """The error for a failed conversion of ``value``, naming the path to the problem.

    The problem named is the first in the caller's key order, as :func:`to_jsonable` finds
    it: a sorting conversion may have met another one first, so ``value`` is converted again
    without sorting.
    """
    try:
        _convert(value, False)
    except _Unencodable as exc:
        problem = exc
    path = ""
    for segment in reversed(problem.segments):
        path = f"{path}.{segment}" if path else segment
    return TaskEncodingError(f"{path or '<root>'}: {problem.problem}")


def to_jsonable(value: Any) -> JSONValue:
    """``value`` as plain JSON data; a :class:`TaskEncodingError` names the offending path."""
    try:
        return _convert(value, False)
    except _Unencodable as exc:
        raise _encoding_error(value, exc) from None


def to_canonical(value: Any) -> JSONValue:
    """``value`` as canonical JSON data: :func:`to_jsonable` with every dict's keys sorted and
    integral floats as ints.

    This is the form a task definition or a query value is stored and compared in, produced
    in one pass; results keep their floats (:func:`to_jsonable`).
    """
    try:
        return _convert(value, True)
    except _Unencodable as exc:
        raise _encoding_error(value, exc) from None


def is_canonical(value: Any) -> bool:
    """Whether ``value`` is already what :func:`to_canonical` would return, unchanged.

    That is: only exact ``dict``, ``list``, ``str``, ``int``, ``float``, ``bool`` and None,
    string keys in ascending order, finite floats that are not integral (those become ints).
    Checking this costs a fraction of a conversion, so a store can accept data the task
    manager already converted.
    """
    kind = type(value)
    if kind is dict:
        previous = None
        for key, item in value.items():
            if type(key) is not str or (previous is not None and key <= previous):
                return False
            if not is_canonical(item):
                return False
            previous = key
        return True
    if kind is list:
        for item in value:
            if not is_canonical(item):
                return False
        return True
    if kind is str or kind is bool or value is None:
        return True
    if kind is int:
        return INT64_MIN <= value <= INT64_MAX
    return (kind is float and math.isfinite(value)
            and not (value.is_integer() and -EXACT_INT_LIMIT <= value <= EXACT_INT_LIMIT))


#: one encoder for every canonical text (``json.dumps`` with options builds one per call)
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_text(data: JSONValue) -> str:
    """Compact sorted-key JSON text of JSON data: equal values give equal text."""
    return _ENCODER.encode(data)


def canonical_json(value: Any) -> str:
    """Compact JSON text with sorted keys: equal values give equal text."""
    return canonical_text(to_canonical(value))


def task_key(task: Any) -> str:
    """A stable hash (hex SHA-256) of the task's canonical JSON."""
    return data_key(to_canonical(task))


def data_key(data: JSONValue) -> str:
    """:func:`task_key` of data that is JSON data already, without converting it again.

    ``data`` is the output of :func:`to_canonical`: the task manager
    converts each task once and derives both the stored definition and the key from it.
    """
    return hashlib.sha256(canonical_text(data).encode("utf-8")).hexdigest()
