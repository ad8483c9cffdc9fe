"""The SQL translation selects exactly what the reference matcher selects, on random data.

The in-Python matcher (:func:`taskloom.query.matches`, used by the memory backend) is the
definition of the query language; this property test checks the SQLite backend's
``json_extract`` translation against it over generated tasks and queries, including the
corner cases (missing fields, nulls, bools next to numbers, digit segments that are list
indexes or object keys, lists and dicts compared whole).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from taskloom import get_storage, task_key
from taskloom.query import matches
from taskloom.storage import Store

KEYS = st.sampled_from(["a", "b", "0", "1"])
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-2, 2), st.sampled_from([1.0, 1.5, -0.5]),
    st.sampled_from(["", "a", "b", "1", "é"]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=2), st.dictionaries(KEYS, inner, max_size=2)),
    max_leaves=4,
)
TASKS = st.dictionaries(KEYS, VALUES, max_size=3)
PATHS = st.lists(KEYS, min_size=1, max_size=3).map(".".join)
COMPARABLE = st.one_of(st.integers(-2, 2), st.sampled_from([1.5, "", "a", "b"]))


@st.composite
def conditions(draw: st.DrawFn) -> dict[str, Any]:
    path = draw(PATHS)
    op = draw(st.sampled_from(["eq", "$ne", "$in", "$nin", "$lt", "$lte", "$gt", "$gte",
                               "$exists"]))
    if op == "eq":
        return {path: draw(VALUES)}
    if op in ("$in", "$nin"):
        return {path: {op: draw(st.lists(VALUES, max_size=3))}}
    if op == "$exists":
        return {path: {op: draw(st.booleans())}}
    if op == "$ne":
        return {path: {op: draw(VALUES)}}
    return {path: {op: draw(COMPARABLE)}}


QUERIES = st.one_of(
    conditions(),
    st.lists(conditions(), min_size=1, max_size=2).map(lambda qs: {"$or": qs}),
)

@pytest.fixture(scope="module")
def sqlite_store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    return get_storage(f"sqlite:///{tmp_path_factory.mktemp('equivalence')}/eq.db")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tasks=st.lists(TASKS, min_size=1, max_size=5), query=QUERIES)
def test_sqlite_selects_what_the_matcher_selects(sqlite_store: Store,
                                                 tasks: list[dict[str, Any]],
                                                 query: dict[str, Any]) -> None:
    sqlite_store.drop_pool("p")
    pool = sqlite_store.pool("p")
    pool.insert_many([(task_key(task), task) for task in tasks], 1.0)
    records = list(pool.find({}))
    expected = [rec["_id"] for rec in records if matches(rec, query)]
    assert [rec["_id"] for rec in pool.find(query)] == expected
    assert sum(pool.counts(query).values()) == len(expected)
