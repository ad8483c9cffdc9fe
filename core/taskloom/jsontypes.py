"""Give a task back the Python types its JSON form lost: tuples, dates, Timestamps, numpy.

A task is stored as canonical JSON (:func:`taskloom.taskkey.to_canonical`): tuples become
lists, dates and Timestamps ISO strings, numpy scalars Python numbers, integral floats ints.
That keeps the definition queryable and the task key stable, but a handler given
``segments["test"]`` as a list of strings cannot use it as a dict key the way qlib's
``rec_key_func`` does. So, beside the definition, a small *type map* is kept:

* :func:`type_map` computes it from the task as submitted: ``{pointer: tag}`` for every value
  whose type the JSON form loses, where ``pointer`` is a JSON Pointer (RFC 6901) into the task
  and ``tag`` is ``tuple``, ``float`` (an integral float, stored as an int), ``date``,
  ``datetime``, ``Timestamp[<unit>]``, ``numpy.<scalar type>`` or ``numpy.datetime64[<unit>]``.
  ``None`` for plain JSON.
* :func:`restore` applies it to the canonical data and returns a new task with those types.

``restore(to_canonical(task), type_map(task)) == task``, with the same types. Not restored:
mapping and list subclasses (they come back as ``dict``/``list``), ``int``/``str`` subclasses
such as enums, numpy arrays (lists), a time zone's name (an aware datetime or Timestamp comes
back with its fixed UTC offset, the same instant) and the sign of ``-0.0``. Nothing is pickled
and no tag names arbitrary code: numpy tags must name a numpy scalar type.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from taskloom.errors import TaskEncodingError
from taskloom.taskkey import EXACT_INT_LIMIT

#: ``{JSON pointer: type tag}``; the pointer ``""`` is the task itself
TypeMap = dict[str, str]


# --------------------------------------------------------------------------------------------
# The type map of a task as submitted
# --------------------------------------------------------------------------------------------


def type_map(task: Any) -> TypeMap | None:
    """``{JSON pointer: tag}`` for every value of ``task`` whose type its JSON form loses.

    ``None`` when the task is plain JSON (dicts, lists, str, int, non-integral float, bool,
    None), which is the common case and costs one walk over the task. Call it on a task that
    :func:`~taskloom.taskkey.to_canonical` accepts.
    """
    found: TypeMap = {}
    _scan(task, "", found)
    return found or None


def _scan(value: Any, path: str, found: TypeMap) -> None:
    kind = type(value)
    if kind is dict:
        for key, item in value.items():
            item_kind = type(item)
            if item_kind is str or item_kind is int or item_kind is bool or item is None:
                continue  # the usual leaf: no path string to build
            _scan(item, f"{path}/{_escape(key, path)}", found)
    elif kind is list:
        _scan_items(value, path, found)
    elif kind is tuple:
        found[path] = "tuple"
        _scan_items(value, path, found)
    elif kind is float:
        if value.is_integer() and -EXACT_INT_LIMIT <= value <= EXACT_INT_LIMIT:
            found[path] = "float"
    elif not (kind is str or kind is int or kind is bool or value is None):
        _scan_other(value, path, found)


def _scan_items(items: list[Any] | tuple[Any, ...], path: str, found: TypeMap) -> None:
    for i, item in enumerate(items):
        item_kind = type(item)
        if not (item_kind is str or item_kind is int or item_kind is bool or item is None):
            _scan(item, f"{path}/{i}", found)


def _scan_other(value: Any, path: str, found: TypeMap) -> None:
    """Everything but the exact JSON and container types: dates, numpy, subclasses."""
    module = type(value).__module__
    if module == "numpy" or module.startswith("numpy."):
        _scan_numpy(value, path, found)
    elif isinstance(value, dt.datetime):
        if module.startswith("pandas") and type(value).__name__ == "Timestamp":
            found[path] = f"Timestamp[{value.unit}]"
        else:
            found[path] = "datetime"
    elif isinstance(value, dt.date):
        found[path] = "date"
    elif isinstance(value, Mapping):
        for key, item in value.items():
            _scan(item, f"{path}/{_escape(key, path)}", found)
    elif isinstance(value, tuple):
        found[path] = "tuple"
        _scan_items(value, path, found)
    elif isinstance(value, list):
        _scan_items(value, path, found)
    elif isinstance(value, float):
        _scan(float(value), path, found)


def _scan_numpy(value: Any, path: str, found: TypeMap) -> None:
    import numpy as np

    if isinstance(value, np.datetime64):
        found[path] = f"numpy.datetime64[{np.datetime_data(value.dtype)[0]}]"
    elif isinstance(value, np.bool_ | np.number):
        found[path] = f"numpy.{type(value).__name__}"


def _escape(key: Any, path: str) -> str:
    if type(key) is not str:
        raise TaskEncodingError(
            f"{path[1:].replace('/', '.') or '<root>'}: key {key!r} is a "
            f"{type(key).__name__}; JSON keys are strings"
        )
    if "~" in key or "/" in key:
        return key.replace("~", "~0").replace("/", "~1")
    return key


# --------------------------------------------------------------------------------------------
# Restoring
# --------------------------------------------------------------------------------------------


def restore(data: Any, types: Mapping[str, str] | None) -> Any:
    """A new task: the canonical JSON ``data`` with the types recorded in ``types`` put back.

    ``data`` is never changed, and the result shares no dict or list with it. ``types`` is
    what :func:`type_map` returned for the task (``None``: plain JSON, ``data`` is copied). A
    pointer that leads nowhere in ``data``, an unknown tag, or a value the tag cannot apply to
    is a :class:`~taskloom.errors.TaskEncodingError` naming the pointer.
    """
    if not types:
        return _copy(data)
    entries = tuple(types.items())
    try:
        hash(entries)
    except TypeError:  # a tag or pointer that is a list or a dict
        raise TaskEncodingError(
            f"types must map JSON pointers to tag strings, got {types!r:.80}"
        ) from None
    trie = _cached_trie(entries)
    applied: list[str] = []
    out = _rebuild(data, trie, applied)
    if len(applied) != len(types):
        missing = next(pointer for pointer in types if pointer not in set(applied))
        raise TaskEncodingError(
            f"types: {missing}: no such value in the task (the map does not fit it)"
        )
    return out


_TAG = None  # the key under which a trie node keeps (tag, pointer); JSON keys are strings


@lru_cache(maxsize=256)
def _cached_trie(types: tuple[tuple[str, str], ...]) -> dict[Any, Any]:
    """``types`` as nested dicts keyed by pointer segment, each tag under ``_TAG``.

    Cached: the tasks of one study share a map, and :func:`_rebuild` only reads the trie.
    """
    root: dict[Any, Any] = {}
    for pointer, tag in types:
        if not isinstance(pointer, str) or (pointer and pointer[0] != "/"):
            raise TaskEncodingError(f"types: {pointer!r} is not a JSON pointer ('' or '/a/0')")
        if not isinstance(tag, str) or _converter(tag) is None:
            raise TaskEncodingError(f"types: {pointer or '<root>'}: unknown type tag {tag!r}")
        node = root
        if pointer:
            for part in pointer[1:].split("/"):
                if "~" in part:
                    part = part.replace("~1", "/").replace("~0", "~")
                node = node.setdefault(part, {})
        node[_TAG] = (tag, pointer)
    return root


def _copy(node: Any) -> Any:
    """A copy of JSON data sharing no dict or list with it (leaves are immutable)."""
    kind = type(node)
    if kind is dict:
        return {key: _copy(item) if type(item) in _CONTAINERS else item
                for key, item in node.items()}
    if kind is list:
        return [_copy(item) if type(item) in _CONTAINERS else item for item in node]
    return node


_CONTAINERS = frozenset((dict, list))


def _rebuild(node: Any, trie: dict[Any, Any], applied: list[str]) -> Any:
    """A copy of ``node`` with the tags under ``trie`` applied; their pointers go to ``applied``."""
    kind = type(node)
    if kind is dict:
        out: Any = {}
        for key, item in node.items():
            sub = trie.get(key)
            out[key] = (_rebuild(item, sub, applied) if sub is not None
                        else _copy(item) if type(item) in _CONTAINERS else item)
    elif kind is list:
        out = []
        for i, item in enumerate(node):
            sub = trie.get(str(i))
            out.append(_rebuild(item, sub, applied) if sub is not None
                       else _copy(item) if type(item) in _CONTAINERS else item)
    else:
        out = node
    entry = trie.get(_TAG)
    if entry is None:
        return out
    tag, pointer = entry
    applied.append(pointer)
    try:
        return _converter(tag)(out)  # type: ignore[misc]
    except (TypeError, ValueError, OverflowError) as exc:
        raise TaskEncodingError(
            f"types: {pointer or '<root>'}: cannot restore {out!r:.80} as {tag}: {exc}"
        ) from None


# --------------------------------------------------------------------------------------------
# Tags
# --------------------------------------------------------------------------------------------


def _as_tuple(value: list[Any]) -> tuple[Any, ...]:
    if type(value) is not list:
        raise TypeError("not a list")
    return tuple(value)


def _as_float(value: int) -> float:
    if type(value) is not int:
        raise TypeError("not an integer")
    return float(value)


def _as_date(value: str) -> dt.date:
    return dt.date.fromisoformat(value)


def _as_datetime(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value)


@lru_cache(maxsize=4096)
def _timestamp(text: str, unit: str) -> Any:
    """The Timestamp for ISO ``text`` in ``unit``; cached, as tasks repeat the same dates."""
    import pandas as pd

    return pd.Timestamp(text).as_unit(unit)


def _datetime64(text: str, unit: str) -> Any:
    import numpy as np

    return np.datetime64(text).astype(f"datetime64[{unit}]")


def _numpy_scalar(scalar: type, value: Any) -> Any:
    if type(value) not in (int, float, bool):
        raise TypeError("not a number")
    return scalar(value)


_FIXED = {"tuple": _as_tuple, "float": _as_float, "date": _as_date, "datetime": _as_datetime}
_UNITS = frozenset(("Y", "M", "W", "D", "h", "m", "s", "ms", "us", "ns", "ps", "fs", "as"))


def _parametrised(tag: str, prefix: str) -> str | None:
    """The unit in ``prefix[unit]`` if ``tag`` has that form with a known unit."""
    if tag.startswith(prefix + "[") and tag.endswith("]") and tag[len(prefix) + 1:-1] in _UNITS:
        return tag[len(prefix) + 1:-1]
    return None


@lru_cache(maxsize=256)
def _converter(tag: str) -> Any:
    """The function restoring values of ``tag``, or ``None`` for an unknown tag."""
    if tag in _FIXED:
        return _FIXED[tag]
    unit = _parametrised(tag, "Timestamp")
    if unit is not None:
        return lambda text: _timestamp(_checked_text(text), unit)
    unit = _parametrised(tag, "numpy.datetime64")
    if unit is not None:
        return lambda text: _datetime64(_checked_text(text), unit)
    if tag.startswith("numpy.") and tag[6:].isidentifier():
        import numpy as np

        scalar = getattr(np, tag[6:], None)
        if isinstance(scalar, type) and issubclass(scalar, np.bool_ | np.number):
            return lambda value: _numpy_scalar(scalar, value)
    return None


def _checked_text(value: Any) -> str:
    if type(value) is not str:
        raise TypeError("not an ISO date string")
    return value
