"""Normalised queries as MongoDB filters.

Documents mirror the record layout (see :mod:`taskloom_mongo.store`), so a record path is
the document field path as is (``("def", "model", "class")`` -> ``"def.model.class"``) and
every operator of the language is MongoDB's own, with the same semantics: ``$ne``/``$nin``
match missing fields, equality with None matches a missing field, comparisons never cross
types. Dict operands arrive with sorted keys from :func:`taskloom.query.normalize`, matching
the sorted order in which ``def`` and ``res`` are stored, because embedded-document equality
in MongoDB is field-order sensitive. Values are always wrapped in ``$eq`` so that a dict
operand is never read as an operator expression.

``_id`` values are hex strings of ObjectIds; a string that is not one names no document.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from taskloom.backend import And, Cond, Node

if TYPE_CHECKING:
    from bson import ObjectId

#: a filter that matches no document
NOTHING: dict[str, Any] = {"_id": {"$in": []}}


def object_id(task_id: Any) -> ObjectId | None:
    """The ObjectId an opaque id string stands for, or None if it cannot name a document."""
    from bson import ObjectId

    if isinstance(task_id, str) and len(task_id) == 24 and ObjectId.is_valid(task_id):
        return ObjectId(task_id)
    return None


def to_filter(node: Node) -> dict[str, Any]:
    """The MongoDB filter for a normalised query tree."""
    if isinstance(node, Cond):
        return _cond(node)
    parts = [to_filter(part) for part in node.parts]
    if isinstance(node, And):
        return {} if not parts else parts[0] if len(parts) == 1 else {"$and": parts}
    return {"$or": parts}


def _id_cond(cond: Cond) -> dict[str, Any]:
    if cond.op == "$exists":
        return {} if cond.value else NOTHING
    wanted = cond.value if cond.op in ("$in", "$nin") else [cond.value]
    ids = [oid for oid in map(object_id, wanted) if oid is not None]
    if cond.op in ("$ne", "$nin"):
        return {"_id": {"$nin": ids}}
    return {"_id": {"$in": ids}}


def _cond(cond: Cond) -> dict[str, Any]:
    if cond.path[0] == "_id":
        return _id_cond(cond)
    return {".".join(cond.path): {cond.op: cond.value}}
