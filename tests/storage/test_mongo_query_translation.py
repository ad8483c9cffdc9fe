"""Fast unit tests of the query-to-Mongo-filter translation (no server; mongomock at most).

mongomock is an in-process fake: good enough to evaluate filters single-threaded, not a
stand-in for a server (it equates ``True`` with ``1`` and lacks ``$type`` in expressions).
Server semantics are pinned in ``test_mongo_store.py`` and the conformance suite.
"""

from __future__ import annotations

from typing import Any

import mongomock
import pytest
from bson import ObjectId
from taskloom import get_storage, task_key
from taskloom.query import matches, normalize
from taskloom_mongo import MongoStore
from taskloom_mongo.translate import NOTHING, to_filter

OID = "65a1b2c3d4e5f60718293a4b"


@pytest.mark.parametrize(("query", "expected"), [
    ({}, {}),
    ({"status": "done"}, {"status": {"$eq": "done"}}),
    ({"filter.model.class": "X"}, {"def.model.class": {"$eq": "X"}}),
    ({"model.class": "X", "res.ic": {"$gt": 0.1}},
     {"$and": [{"def.model.class": {"$eq": "X"}}, {"res.ic": {"$gt": 0.1}}]}),
    ({"seg.0": {"$gte": "2017", "$lt": "2018"}},
     {"$and": [{"def.seg.0": {"$gte": "2017"}}, {"def.seg.0": {"$lt": "2018"}}]}),
    ({"lease.until": {"$lt": 5}}, {"lease.until": {"$lt": 5}}),
    ({"x": {"$exists": False}}, {"def.x": {"$exists": False}}),
    ({"x": {"$eq": {"$in": 1}}}, {"def.x": {"$eq": {"$in": 1}}}),
    ({"$or": [{"a": 1}, {"status": "done"}]},
     {"$or": [{"def.a": {"$eq": 1}}, {"status": {"$eq": "done"}}]}),
    ({"_id": OID}, {"_id": {"$in": [ObjectId(OID)]}}),
    ({"_id": {"$in": [OID, "junk", "abcdefghijkl"]}}, {"_id": {"$in": [ObjectId(OID)]}}),
    ({"_id": {"$nin": ["junk"]}}, {"_id": {"$nin": []}}),
    ({"_id": {"$ne": OID}}, {"_id": {"$nin": [ObjectId(OID)]}}),
    ({"_id": {"$exists": False}}, NOTHING),
])
def test_translation(query: dict[str, Any], expected: dict[str, Any]) -> None:
    assert to_filter(normalize(query)) == expected


def test_dict_operands_are_sent_in_sorted_key_order() -> None:
    mongo_filter = to_filter(normalize({"model": {"kwargs": {"lr": 1, "depth": 2}, "class": "M"}}))
    value = mongo_filter["def.model"]["$eq"]
    assert list(value) == ["class", "kwargs"] and list(value["kwargs"]) == ["depth", "lr"]


DEFS: list[dict[str, Any]] = [
    {"n": 0, "h": 1, "seg": ["a", "b"], "m": {"k": {"b": 1, "a": 2}}, "note": None},
    {"n": 1, "h": "5", "seg": ["b", "c"], "m": {"k": {"a": 2}}},
    {"n": 2, "h": 10.5, "m": {"c": "X"}},
]
QUERIES: list[dict[str, Any]] = [
    {"h": {"$lt": 6}}, {"h": {"$gte": "1"}}, {"h": {"$in": [1, "5"]}}, {"h": {"$nin": [1]}},
    {"note": None}, {"note": {"$exists": True}}, {"note": {"$ne": None}},
    {"seg": ["a", "b"]}, {"seg.1": "c"}, {"m": {"k": {"a": 2, "b": 1}}},
    {"m.k": {"$in": [{"a": 2}, {"z": 0}]}}, {"m.c": {"$ne": "X"}},
    {"$or": [{"n": 0}, {"m.c": "X"}]}, {"filter.n": {"$gt": 0}, "def.h": {"$exists": True}},
]


@pytest.fixture
def mock_store() -> MongoStore:
    store = get_storage(mongomock.MongoClient().db)
    assert isinstance(store, MongoStore) and not store.supports_transactions()
    return store


@pytest.mark.parametrize("query", QUERIES, ids=repr)
def test_filters_select_what_the_reference_matcher_selects(
    mock_store: MongoStore, query: dict[str, Any]
) -> None:
    pool = mock_store.pool("p")
    pool.insert_many([(task_key(d), d) for d in DEFS], 1.0)
    records = list(pool.find({}))
    expected = [rec["def"]["n"] for rec in records if matches(rec, query)]
    assert [rec["def"]["n"] for rec in pool.find(query)] == expected
