"""The pool query language: validation, normalisation and an in-Python matcher.

Every backend accepts the same Mongo-style subset. :func:`normalize` checks a query once and
turns it into a small tree (:class:`Cond`, :class:`And`, :class:`Or`) that each backend
translates (to SQL, to a Mongo filter) or evaluates with :func:`matches`.

The language::

    {"status": "waiting"}                         # equality on a record field
    {"model.class": "LGBModel"}                   # any other root is a task field ...
    {"filter.model.class": "LGBModel"}            # ... also with qlib's "filter." prefix
    {"def.model.class": "LGBModel"}               # ... or the record's own "def." prefix
    {"segments.test.0": "2017-12-21"}             # a digit segment indexes a list
    {"segments.test": ["2017-12-21", "2018-12-13"]}   # list/dict: exact canonical equality
    {"priority": {"$gte": 5, "$lt": 10}}          # several operators on one path: all hold
    {"_id": {"$in": [id1, id2]}}                  # ids are opaque strings
    {"$or": [{"status": "done"}, {"res.score": {"$gt": 0.5}}]}

Paths: a root in :data:`taskloom.storage.RECORD_FIELDS` (``_id``, ``status``, ``priority``,
``res.x``, ``lease.until``, ``attempt``...) addresses the record; ``filter.X`` and ``def.X``
address task field X, and so does any other root (a bare ``filter`` means the whole task, as in
qlib). A segment of digits indexes a list or, on an object, names that key. Segments are
non-empty and contain no double quote.

Operators: ``$eq $ne $in $nin $lt $lte $gt $gte $exists`` on a path, ``$and``/``$or`` (lists
of queries) at any query level. Semantics kept from MongoDB:

* equality with a scalar is equality of value and type (``1 == 1.0``, but ``True != 1`` and
  ``"1" != 1``); equality with a list or dict is equality of canonical JSON (dict key order
  never matters); equality with None also matches a missing field;
* ``$ne`` and ``$nin`` match records that lack the field;
* ``$lt/$lte/$gt/$gte`` take a number or a string and only compare with values of the same
  kind (a string is never ``$lt`` a number);
* ``$exists: true`` matches a present field, even one that holds null.

Values go through :func:`taskloom.to_jsonable` (dates become ISO strings, tuples lists), as
task definitions do. ``_id`` values are opaque strings (other id objects are converted with
``str``); an id the backend could never have issued simply matches nothing.

Not part of the language: Mongo's implicit traversal of arrays (``{"tags": "x"}`` matching
``tags == ["x", "y"]``). On MongoDB a path that ends in or crosses an array may also match
array elements; portable queries address list items by index.

Writes are checked here too, so every backend rejects the same input: :func:`check_items`
validates the ``(key, def[, types])`` items of ``Pool.insert_many`` and :func:`check_changes`
the ``{field: value}`` sets that ``Pool.update_many`` and ``Pool.finish`` apply.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from taskloom.errors import QueryError, StorageError, TaskEncodingError
from taskloom.record import RECORD_FIELDS
from taskloom.taskkey import INT64_MAX, INT64_MIN, canonical_text, is_canonical, to_canonical

COMPARISONS: tuple[str, ...] = ("$lt", "$lte", "$gt", "$gte")
OPERATORS: tuple[str, ...] = ("$eq", "$ne", "$in", "$nin", *COMPARISONS, "$exists")
LOGICAL: tuple[str, ...] = ("$and", "$or")
#: task-field prefixes: ``filter`` is qlib's, ``def`` is the record's own field name
TASK_PREFIXES: tuple[str, ...] = ("filter", "def")
#: record fields an update may not set (identity, creation time, and the lease that only
#: claim/heartbeat/finish manage)
UNSETTABLE: frozenset[str] = frozenset({"_id", "created_at", "lease"})
#: the record fields an update may set
_SETTABLE: frozenset[str] = RECORD_FIELDS - UNSETTABLE
#: settable record fields whose values have a fixed kind (see ``value_kind``), so that ordering
#: and indexes behave the same on every backend
FIELD_KINDS: dict[str, tuple[str, ...]] = {
    "key": ("string",), "status": ("string",), "priority": ("number",),
    "not_before": ("number", "null"), "attempt": ("number",), "updated_at": ("number",),
    "attempts": ("compound",), "types": ("compound", "null"),
}
#: how deeply a query may nest, in ``$and``/``$or`` levels and, separately, in lists and dicts
#: inside one value (MongoDB's own document limit); deeper input would exhaust Python's stack
MAX_DEPTH = 100


@dataclass(frozen=True)
class Cond:
    """One operator applied to one record path, e.g. ``("def", "model", "class") $eq "X"``.

    ``path`` starts with a record field. ``value`` is JSON data with dict keys sorted: a list
    for ``$in``/``$nin``, a bool for ``$exists``, a number or string for comparisons, and
    strings only for ``_id``.
    """

    path: tuple[str, ...]
    op: str
    value: Any


@dataclass(frozen=True)
class And:
    """All parts hold (an empty ``And`` matches everything)."""

    parts: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    """At least one part holds."""

    parts: tuple[Node, ...]


Node = Cond | And | Or


def normalize(query: Mapping[str, Any] | And | None) -> And:
    """Validate ``query`` and return its normalised tree; a :class:`QueryError` names the problem.

    ``None`` and ``{}`` match every record. A tree is returned as it is, so a loop that
    claims with one query normalises it once, and a store may remember what it compiled the
    tree to (nodes are immutable).
    """
    if query is None or (type(query) is dict and not query):
        return _MATCH_ALL
    if isinstance(query, And):
        return query
    return _normalize_query(query, "query", 0)


#: the tree of the empty query (a worker's usual claim), built once: nodes are immutable
_MATCH_ALL = And(())


def _normalize_query(query: Any, where: str, depth: int) -> And:
    if depth > MAX_DEPTH:
        raise QueryError(f"{where}: the query nests $and/$or deeper than {MAX_DEPTH} levels")
    if not isinstance(query, Mapping):
        raise QueryError(f"{where} must be a dict, not {type(query).__name__} {query!r:.80}")
    parts: list[Node] = []
    for field, spec in query.items():
        if not isinstance(field, str):
            raise QueryError(f"{where}: field names are strings, got {field!r}")
        if field in LOGICAL:
            parts.append(_normalize_logical(field, spec, where, depth))
        elif field.startswith("$"):
            raise QueryError(
                f"{where}: unknown operator {field!r} at the top level; "
                f"supported there: {', '.join(LOGICAL)}"
            )
        else:
            parts.extend(_normalize_field(field, spec))
    return And(tuple(parts))


def _normalize_logical(op: str, spec: Any, where: str, depth: int) -> Node:
    if not isinstance(spec, list | tuple) or not spec:
        raise QueryError(f"{where}: {op} takes a non-empty list of queries, got {spec!r:.80}")
    parts = tuple(_normalize_query(item, f"{op}[{i}]", depth + 1) for i, item in enumerate(spec))
    return And(parts) if op == "$and" else Or(parts)


def record_path(field: str) -> tuple[str, ...]:
    """The record path a query field addresses: ``"filter.a.b"`` -> ``("def", "a", "b")``."""
    segments = field.split(".")
    if any(not segment for segment in segments):
        raise QueryError(f"field {field!r} has an empty path segment")
    if '"' in field:
        raise QueryError(f"field {field!r}: path segments cannot contain '\"'")
    root = segments[0]
    if root in TASK_PREFIXES:
        return ("def", *segments[1:])
    if root in RECORD_FIELDS:
        return tuple(segments)
    return ("def", *segments)


def _is_operator_dict(spec: Any) -> bool:
    return isinstance(spec, Mapping) and any(
        isinstance(key, str) and key.startswith("$") for key in spec
    )


def _normalize_field(field: str, spec: Any) -> list[Cond]:
    path = record_path(field)
    if not _is_operator_dict(spec):
        return [Cond(path, "$eq", _operand(field, path, "$eq", spec))]
    if not all(isinstance(key, str) and key.startswith("$") for key in spec):
        raise QueryError(
            f"field {field!r}: a dict mixes operators and plain keys ({list(spec)!r}); "
            "use {'$eq': {...}} to compare with a dict that has '$' keys"
        )
    if not spec:
        raise QueryError(f"field {field!r}: empty operator dict")
    conds = []
    for op, operand in spec.items():
        if op not in OPERATORS:
            raise QueryError(
                f"field {field!r}: unknown operator {op!r}; supported: {', '.join(OPERATORS)}"
            )
        conds.append(Cond(path, op, _operand(field, path, op, operand)))
    return conds


def _operand(field: str, path: tuple[str, ...], op: str, value: Any) -> Any:
    if op == "$exists":
        if not isinstance(value, bool):
            raise QueryError(f"field {field!r}: $exists takes true or false, got {value!r:.80}")
        return value
    if op in ("$in", "$nin"):
        if not isinstance(value, list | tuple | set | frozenset):
            raise QueryError(
                f"field {field!r}: {op} takes a list, got {type(value).__name__} {value!r:.80}"
            )
        return [_single(field, path, op, item) for item in value]
    single = _single(field, path, op, value)
    if op in COMPARISONS and not _comparable(single):
        raise QueryError(
            f"field {field!r}: {op} compares numbers or strings, got {value!r:.80}"
        )
    return single


def _single(field: str, path: tuple[str, ...], op: str, value: Any) -> Any:
    if path[0] == "_id":
        if op in COMPARISONS:
            raise QueryError(f"field '_id': ids are opaque and cannot be ordered with {op}")
        return value if isinstance(value, str) else str(value)
    _check_value(field, value)
    try:
        return to_canonical(value)
    except TaskEncodingError as exc:
        raise QueryError(f"field {field!r}: {op} value is not JSON data: {exc}") from exc


def _int_text(value: int) -> str:
    """An integer for a message (Python refuses to print one of more than 4300 digits)."""
    return str(value) if value.bit_length() <= 256 else f"a {value.bit_length()}-bit integer"


def _check_value(field: str, value: Any) -> None:
    """Reject an operand no store can compare: nested deeper than :data:`MAX_DEPTH` or holding
    an integer beyond 64 bits. The walk uses no recursion, so a deep value fails here with a
    :class:`QueryError` instead of a ``RecursionError`` later.
    """
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, int) and not isinstance(item, bool):
            if not INT64_MIN <= item <= INT64_MAX:
                raise QueryError(f"field {field!r}: {_int_text(item)} is outside the 64-bit "
                                 "integer range that stores hold")
        elif isinstance(item, Mapping | list | tuple | set | frozenset):
            if depth == MAX_DEPTH:
                raise QueryError(f"field {field!r}: the value nests deeper than {MAX_DEPTH} levels")
            items = item.values() if isinstance(item, Mapping) else item
            stack.extend((part, depth + 1) for part in items)


def _comparable(value: Any) -> bool:
    return isinstance(value, str) or (
        isinstance(value, int | float) and not isinstance(value, bool)
    )


#: an item to insert, as checked: ``(key, def, types)`` with ``types`` None or a dict
NewTask = tuple[str, Any, Any]


def check_items(items: Sequence[Sequence[Any]]) -> list[NewTask]:
    """Validate ``(key, def)`` or ``(key, def, types)`` items and return ``(key, def, types)``.

    Checking the whole batch first is what lets backends insert it atomically. A key that is
    not a non-empty string, or ``types`` that is neither None nor a dict, raises
    :class:`StorageError`; a def or types with no JSON form raises
    :class:`TaskEncodingError` naming the item and the path inside it.

    The task manager passes defs that are canonical already (the contract of
    ``Pool.insert_many``); those are recognised by :func:`taskloom.taskkey.is_canonical` and
    returned as they are, not converted again. Anything else (a direct caller's dates,
    tuples or unsorted keys) is converted here, so such input still works or fails clearly.
    A returned def may therefore be the caller's own object: a backend that keeps it as
    is must copy it.
    """
    out = []
    for i, item in enumerate(items):
        if not (isinstance(item, tuple | list) and len(item) in (2, 3)):
            raise StorageError(
                f"item {i}: expected a (key, def) or (key, def, types) tuple, got {item!r:.80}")
        key, definition, types = (*item, None) if len(item) == 2 else item
        if not isinstance(key, str) or not key:
            raise StorageError(f"item {i}: the task key must be a non-empty string, got {key!r}")
        if types is not None and not isinstance(types, Mapping):
            raise StorageError(f"item {i}: types must be a dict or None, got {types!r:.80}")
        try:
            if not is_canonical(definition):
                definition = to_canonical(definition)
            if types is not None and not is_canonical(types):
                types = to_canonical(types)
        except TaskEncodingError as exc:
            raise TaskEncodingError(f"item {i} (key {key[:12]}...): {exc}") from exc
        out.append((key, definition, types))
    return out


def check_changes(changes: Mapping[str, Any]) -> dict[str, Any]:
    """Validate an update's ``{record field: value}`` and return it as JSON data.

    Only top-level record fields may be set, and not ``_id``, ``created_at`` or ``lease``;
    fields in :data:`FIELD_KINDS` need a value of their kind (a :class:`QueryError` names
    the field). A value with no JSON form raises
    :class:`TaskEncodingError`.
    """
    if type(changes) is not dict and not isinstance(changes, Mapping):
        raise QueryError(f"changes must be a dict, not {type(changes).__name__}")
    out: dict[str, Any] = {}
    for field, value in changes.items():
        if field not in _SETTABLE:
            raise _unsettable(field)
        if value is None or type(value) is str:  # most changes: canonical as they are
            out[field] = value
        else:
            out[field] = _canonical_change(field, value)
        kinds = FIELD_KINDS.get(field)
        if kinds and value_kind(out[field]) not in kinds:
            raise QueryError(f"cannot set {field!r} to {value!r:.80}: it holds a {kinds[0]}")
    return out


def _unsettable(field: Any) -> QueryError:
    """The error for a change of a field that updates may not set."""
    if field in UNSETTABLE:
        return QueryError(f"cannot set {field!r}: it is managed by the store")
    return QueryError(f"cannot set {field!r}: updates set top-level record fields "
                      f"({', '.join(sorted(_SETTABLE))})")


def _canonical_change(field: str, value: Any) -> Any:
    """A changed field's value as canonical JSON data; an error names the field."""
    if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
        raise QueryError(f"cannot set {field!r} to {_int_text(value)}: it is outside "
                         "the 64-bit integer range that stores hold")
    try:
        return to_canonical(value)
    except TaskEncodingError as exc:
        raise TaskEncodingError(f"cannot set {field!r}: {exc}") from exc


# --------------------------------------------------------------------------------------------
# In-Python evaluation (the memory backend, and the reference the other backends must agree with)
# --------------------------------------------------------------------------------------------

_MISSING = object()


def _resolve(record: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    """The value at ``path`` in ``record``, or ``_MISSING``."""
    value: Any = record
    for segment in path:
        if isinstance(value, Mapping):
            value = value.get(segment, _MISSING)
        elif isinstance(value, list) and segment.isdigit() and int(segment) < len(value):
            value = value[int(segment)]
        else:
            return _MISSING
        if value is _MISSING:
            return _MISSING
    return value


def value_kind(value: Any) -> str:
    """The JSON kind a comparison respects: null, bool, number, string or compound."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "compound"


def _equal(stored: Any, wanted: Any) -> bool:
    if wanted is None:
        return stored is _MISSING or stored is None
    if stored is _MISSING:
        return False
    kind = value_kind(wanted)
    if value_kind(stored) != kind:
        return False
    if kind == "compound":
        return canonical_text(stored) == canonical_text(wanted)
    return stored == wanted


def _compare(stored: Any, op: str, wanted: Any) -> bool:
    if stored is _MISSING or value_kind(stored) != value_kind(wanted):
        return False
    if op == "$lt":
        return stored < wanted
    if op == "$lte":
        return stored <= wanted
    if op == "$gt":
        return stored > wanted
    return stored >= wanted


def _holds(record: Mapping[str, Any], cond: Cond) -> bool:
    stored = _resolve(record, cond.path)
    op, value = cond.op, cond.value
    if op == "$eq":
        return _equal(stored, value)
    if op == "$ne":
        return not _equal(stored, value)
    if op == "$in":
        return any(_equal(stored, item) for item in value)
    if op == "$nin":
        return not any(_equal(stored, item) for item in value)
    if op == "$exists":
        return (stored is not _MISSING) == value
    return _compare(stored, op, value)


def evaluate(record: Mapping[str, Any], node: Node) -> bool:
    """Whether ``record`` satisfies a normalised query tree."""
    if isinstance(node, Cond):
        return _holds(record, node)
    if isinstance(node, And):
        return all(evaluate(record, part) for part in node.parts)
    return any(evaluate(record, part) for part in node.parts)


def matches(record: Mapping[str, Any], query: Mapping[str, Any] | Node | None) -> bool:
    """Whether a task record satisfies ``query`` (a raw query or an already normalised tree)."""
    node = query if isinstance(query, Cond | And | Or) else normalize(query)
    return evaluate(record, node)
