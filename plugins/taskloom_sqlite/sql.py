"""The SQLite schema and the translation of normalised queries into SQL.

Schema (``PRAGMA user_version`` = :data:`SCHEMA_VERSION`): a ``pools`` table (a pool exists
until it is dropped, even when empty) and one ``tasks`` table for every pool, with a unique
index on ``(pool, key)`` and the claim index ``(pool, status, priority DESC, id)``. Payloads
(``def``, ``types``, ``res``, ``attempts``, ``error``) are canonical JSON text (sorted keys,
compact); lease fields are columns. Version 2 added the ``types`` column; a version-1 file is
upgraded in place when it is opened (:data:`UPGRADES`).

Queries become ``WHERE`` clauses over ``json_extract``/``json_type`` of the JSON columns.
Every predicate evaluates to 0 or 1, never NULL, so ``NOT`` (for ``$ne``/``$nin``) is exact
and a missing field behaves as in MongoDB. Type guards (``json_type``) keep values of
different kinds apart: a string is never equal to, or less than, a number. Lists and dicts
compare as JSON text; both sides are canonical text written by Python, so equal values give
equal text.
"""

from __future__ import annotations

import json
from typing import Any

from taskloom.backend import And, Cond, Node, canonical_text, value_kind

SCHEMA_VERSION = 2

SCHEMA = """
CREATE TABLE pools (
    name TEXT PRIMARY KEY,
    created_at REAL NOT NULL
);
CREATE TABLE tasks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    pool TEXT NOT NULL,
    key TEXT NOT NULL,
    def TEXT NOT NULL,
    types TEXT,
    status TEXT NOT NULL,
    priority NOT NULL DEFAULT 0,
    res TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    not_before REAL,
    attempt INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_token TEXT,
    lease_until REAL,
    lease_started REAL,
    lease_from_status TEXT,
    attempts TEXT NOT NULL DEFAULT '[]',
    error TEXT
);
CREATE UNIQUE INDEX tasks_pool_key ON tasks (pool, key);
CREATE INDEX tasks_claim ON tasks (pool, status, priority DESC, id);
"""
#: schema version -> the statement that upgrades a file of that version to the next one
UPGRADES = {1: "ALTER TABLE tasks ADD COLUMN types TEXT"}

#: the columns a record is read from, in order
COLUMNS = (
    "id, key, def, types, status, priority, res, created_at, updated_at, not_before, attempt, "
    "lease_owner, lease_token, lease_until, lease_started, lease_from_status, attempts, error"
)
#: record fields held as JSON text
JSON_FIELDS = frozenset({"def", "types", "res", "attempts", "error"})
#: JSON fields whose None is stored as NULL (not as the text ``null``)
NULL_WHEN_NONE = frozenset({"types", "res", "error"})
#: record fields held as plain columns of the same name
SCALAR_FIELDS = frozenset({"key", "status", "priority", "created_at", "updated_at",
                           "not_before", "attempt"})
#: the lease columns seen as the record's ``lease`` object (NULL when there is no lease)
LEASE_JSON = (
    "(CASE WHEN lease_token IS NULL THEN NULL ELSE json_object("
    "'from_status', lease_from_status, 'owner', lease_owner, 'started', lease_started, "
    "'token', lease_token, 'until', lease_until) END)"
)

_NUMBER = "({t} IS 'integer' OR {t} IS 'real')"


def sql_id(task_id: Any) -> int | None:
    """The integer row id an opaque id string stands for, or None if it names no row."""
    if isinstance(task_id, str) and task_id.isascii() and task_id.isdigit():
        number = int(task_id)
        if str(number) == task_id and number < 2**63:
            return number
    return None


def where(node: Node) -> tuple[str, list[Any]]:
    """A SQL boolean expression (0 or 1) for a normalised query, and its parameters."""
    params: list[Any] = []
    return _node(node, params), params


def nesting(node: Node) -> int:
    """How many ``$and``/``$or`` levels a normalised query nests, as its user wrote them.

    The tree alternates a query dict (an :class:`And`) and, below it, an operator (an
    ``And`` for ``$and``, an ``Or`` for ``$or``) holding query dicts again, so each operator
    level is two levels of the tree: the count :data:`taskloom.query.MAX_DEPTH` limits.
    """
    return (_tree_depth(node) - 1) // 2


def _tree_depth(node: Node) -> int:
    if isinstance(node, Cond):
        return 0
    return 1 + max((_tree_depth(part) for part in node.parts), default=0)


def _node(node: Node, params: list[Any]) -> str:
    if isinstance(node, Cond):
        return _cond(node, params)
    if not node.parts:
        return "1" if isinstance(node, And) else "0"
    joiner = " AND " if isinstance(node, And) else " OR "
    return "(" + joiner.join(_node(part, params) for part in node.parts) + ")"


def _json_paths(segments: tuple[str, ...]) -> list[str]:
    """SQLite JSON paths for a field path: a digit segment may be a list index or a key."""
    paths = ["$"]
    for segment in segments:
        label = f'."{segment}"'
        if segment.isascii() and segment.isdigit():
            paths = [p + alt for p in paths for alt in (f"[{segment}]", label)]
        else:
            paths = [p + label for p in paths]
    return paths


def _coalesce(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else f"COALESCE({', '.join(parts)})"


def _typed_value(path: tuple[str, ...]) -> tuple[str, str, bool]:
    """``(type expression, value expression, always exists)`` for a record path.

    The type expression yields a ``json_type`` name, or NULL when the path is missing.
    """
    root, rest = path[0], path[1:]
    if root in SCALAR_FIELDS:
        if rest:  # a path below a plain value does not exist
            return "NULL", "NULL", False
        return f"typeof({root})", root, True
    column = LEASE_JSON if root == "lease" else root
    if not rest:
        return f"COALESCE(json_type({column}), 'null')", f"json_extract({column}, '$')", True
    paths = [p.replace("'", "''") for p in _json_paths(rest)]
    kind = _coalesce([f"json_type({column}, '{p}')" for p in paths])
    value = _coalesce([f"json_extract({column}, '{p}')" for p in paths])
    return kind, value, False


def _equal(kind_expr: str, value_expr: str, value: Any, params: list[Any]) -> str:
    kind = value_kind(value)
    if kind == "null":
        return f"({kind_expr} IS NULL OR {kind_expr} IS 'null')"
    if kind == "bool":
        return f"({kind_expr} IS '{'true' if value else 'false'}')"
    params.append(value if kind != "compound" else canonical_text(value))
    if kind == "number":
        return f"({_NUMBER.format(t=kind_expr)} AND {value_expr} = ?)"
    if kind == "string":
        return f"({kind_expr} IS 'text' AND {value_expr} = ?)"
    json_type = "array" if isinstance(value, list) else "object"
    return f"({kind_expr} IS '{json_type}' AND {value_expr} = json(?))"


def _member(kind_expr: str, value_expr: str, values: list[Any], params: list[Any]) -> str:
    """``value IN values`` with the same typing as equality: one ``json_each`` per kind."""
    groups: dict[str, list[Any]] = {}
    for value in values:
        groups.setdefault(value_kind(value), []).append(value)
    tests = []
    for kind, members in groups.items():
        if kind in ("null", "bool"):
            tests.extend(_equal(kind_expr, value_expr, v, params) for v in dict.fromkeys(members))
            continue
        params.append(canonical_text(members))
        guard = {
            "number": _NUMBER.format(t=kind_expr),
            "string": f"{kind_expr} IS 'text'",
            "compound": f"({kind_expr} IS 'array' OR {kind_expr} IS 'object')",
        }[kind]
        tests.append(f"({guard} AND {value_expr} IN (SELECT value FROM json_each(?)))")
    return "(" + " OR ".join(tests) + ")" if tests else "0"


def _compare(kind_expr: str, value_expr: str, op: str, value: Any, params: list[Any]) -> str:
    sign = {"$lt": "<", "$lte": "<=", "$gt": ">", "$gte": ">="}[op]
    guard = f"{kind_expr} IS 'text'" if isinstance(value, str) else _NUMBER.format(t=kind_expr)
    params.append(value)
    return f"({guard} AND {value_expr} {sign} ?)"


def _id_cond(cond: Cond, params: list[Any]) -> str:
    if cond.op == "$exists":
        return "1" if cond.value else "0"
    wanted = cond.value if cond.op in ("$in", "$nin") else [cond.value]
    ids = [n for n in map(sql_id, wanted) if n is not None]
    if not ids:
        test = "0"
    elif len(ids) == 1:
        params.append(ids[0])
        test = "(id = ?)"
    else:
        params.append(json.dumps(ids))
        test = "(id IN (SELECT value FROM json_each(?)))"
    return f"(NOT {test})" if cond.op in ("$ne", "$nin") else test


def _cond(cond: Cond, params: list[Any]) -> str:
    if cond.path[0] == "_id":
        return _id_cond(cond, params)
    kind_expr, value_expr, always = _typed_value(cond.path)
    op = cond.op
    if op == "$exists":
        present = "1" if always else f"({kind_expr} IS NOT NULL)"
        return present if cond.value else f"(NOT {present})"
    if op in ("$eq", "$ne"):
        test = _equal(kind_expr, value_expr, cond.value, params)
    elif op in ("$in", "$nin"):
        test = _member(kind_expr, value_expr, cond.value, params)
    else:
        return _compare(kind_expr, value_expr, op, cond.value, params)
    return f"(NOT {test})" if op in ("$ne", "$nin") else test
