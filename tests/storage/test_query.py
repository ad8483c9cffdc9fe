"""The query language itself: validation errors, path rules and the in-Python matcher."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from taskloom.errors import QueryError, StorageError, TaskEncodingError
from taskloom.query import (
    And,
    Cond,
    Or,
    check_changes,
    check_items,
    matches,
    normalize,
    record_path,
)


@pytest.mark.parametrize(("field", "path"), [
    ("status", ("status",)),
    ("res.score", ("res", "score")),
    ("lease.until", ("lease", "until")),
    ("_id", ("_id",)),
    ("model.class", ("def", "model", "class")),
    ("filter.model.class", ("def", "model", "class")),
    ("def.model.class", ("def", "model", "class")),
    ("filter", ("def",)),
    ("def.status", ("def", "status")),
    ("segments.test.0", ("def", "segments", "test", "0")),
])
def test_record_path(field: str, path: tuple[str, ...]) -> None:
    assert record_path(field) == path


@pytest.mark.parametrize(("query", "named"), [
    ({"h": {"$regex": "x"}}, "'$regex'"),
    ({"$where": "1"}, "'$where'"),
    ({"h": {"$in": "abc"}}, "'h': $in takes a list"),
    ({"h": {"$nin": 3}}, "$nin takes a list"),
    ({"h": {"$exists": "yes"}}, "$exists takes true or false"),
    ({"h": {"$lt": {"a": 1}}}, "'h': $lt compares numbers or strings"),
    ({"h": {"$gte": True}}, "$gte compares numbers or strings"),
    ({"h": {"$eq": 1, "plain": 2}}, "mixes operators and plain keys"),
    ({"h": {"$eq": object()}}, "'h': $eq value is not JSON data"),
    ({"_id": {"$lt": "5"}}, "ids are opaque"),
    ({"a..b": 1}, "empty path segment"),
    ({"$or": {"a": 1}}, "$or takes a non-empty list"),
    ({"$and": [{"a": 1}, 5]}, "$and[1] must be a dict"),
    ({1: 2}, "field names are strings"),
])
def test_invalid_queries_name_the_problem(query: Any, named: str) -> None:
    with pytest.raises(QueryError) as info:
        normalize(query)
    assert named in str(info.value)


@pytest.mark.parametrize("query", [["status"], "status", 5])
def test_a_query_must_be_a_dict(query: Any) -> None:
    with pytest.raises(QueryError, match="must be a dict"):
        normalize(query)


def test_normalize_builds_the_tree_with_canonical_values() -> None:
    tree = normalize({
        "model": {"kwargs": {"b": 1, "a": (2, 3)}},
        "seg.0": {"$gte": dt.date(2017, 1, 3), "$lt": "2018"},
        "$or": [{"status": "done"}, {"_id": {"$in": [7, "x"]}}],
    })
    assert tree == And((
        Cond(("def", "model"), "$eq", {"kwargs": {"a": [2, 3], "b": 1}}),
        Cond(("def", "seg", "0"), "$gte", "2017-01-03"),
        Cond(("def", "seg", "0"), "$lt", "2018"),
        Or((And((Cond(("status",), "$eq", "done"),)),
            And((Cond(("_id",), "$in", ["7", "x"]),)))),
    ))
    assert list(tree.parts[0].value["kwargs"]) == ["a", "b"]
    assert normalize(None) == normalize({}) == And(())


def test_matches_follows_mongo_semantics() -> None:
    rec = {"_id": "1", "status": "waiting", "res": None,
           "def": {"a": 1, "b": "x", "c": [1, {"d": 2}], "e": None, "t": True}}
    assert matches(rec, {"a": 1.0})
    assert not matches(rec, {"a": True}) and not matches(rec, {"t": 1})
    assert not matches(rec, {"b": {"$gt": 0}}) and matches(rec, {"b": {"$gt": "a"}})
    assert matches(rec, {"missing": {"$ne": 1}}) and matches(rec, {"missing": {"$nin": [1]}})
    assert matches(rec, {"missing": None}) and matches(rec, {"e": None})
    assert matches(rec, {"e": {"$exists": True}})
    assert not matches(rec, {"missing": {"$exists": True}})
    assert matches(rec, {"c.1.d": 2}) and matches(rec, {"c": [1, {"d": 2}]})
    assert not matches(rec, {"c": 1})  # no implicit array traversal
    assert matches(rec, {"res": None, "status": {"$in": ["waiting"]}})
    assert matches(rec, {"_id": "1"}) and not matches(rec, {"_id": 1.5})


def test_check_changes_rejects_store_managed_and_unknown_fields() -> None:
    assert check_changes({"res": {"b": 1, "a": (1,)}, "status": "done"}) == {
        "res": {"a": [1], "b": 1}, "status": "done"}
    for field in ("_id", "created_at", "lease", "whatever"):
        with pytest.raises(QueryError, match=field):
            check_changes({field: 1})
    with pytest.raises(TaskEncodingError, match="'res'"):
        check_changes({"res": object()})


def test_check_items_names_the_bad_item() -> None:
    assert check_items([("k", {"b": 1, "a": 2})]) == [("k", {"a": 2, "b": 1}, None)]
    assert check_items([("k", {}, {"y": 1, "x": (1,)})]) == [("k", {}, {"x": [1], "y": 1})]
    with pytest.raises(StorageError, match=r"item 0: types must be a dict or None, got \['x'\]"):
        check_items([("k", {}, ["x"])])
    with pytest.raises(StorageError, match="item 1"):
        check_items([("k", {}), (None, {})])
    with pytest.raises(StorageError, match="item 0: expected a"):
        check_items(["k"])  # type: ignore[list-item]
    with pytest.raises(TaskEncodingError, match=r"item 1 .*x\.y"):
        check_items([("k", {}), ("k2", {"x": {"y": object()}})])


@pytest.mark.parametrize(("field", "value"), [
    ("status", 1), ("priority", "high"), ("priority", True), ("not_before", "soon"),
    ("attempt", None), ("key", 5), ("attempts", "none"),
])
def test_check_changes_keeps_record_fields_typed(field: str, value: Any) -> None:
    with pytest.raises(QueryError, match=f"cannot set '{field}'"):
        check_changes({field: value})
