"""Bad input is a clear error and leaves the pool as it was."""

from __future__ import annotations

import re
import sqlite3

import pytest
from taskloom.errors import QueryError, StorageError, TaskEncodingError
from taskloom.manager import TaskManager
from taskloom.query import MAX_DEPTH
from taskloom.stores import get_storage


def test_a_batch_with_one_bad_task_inserts_nothing_even_beside_existing_tasks(tm):
    tm.create_task([{"a": 1}])
    with pytest.raises(TaskEncodingError, match=r"task 2: x: .*not finite"):
        tm.create_task([{"a": 2}, {"a": 1}, {"x": float("nan")}])
    assert [task["def"] for task in tm.query()] == [{"a": 1}]


def test_a_corrupt_row_is_named_on_read_and_counting_still_works(tmp_path, caplog):
    path = tmp_path / "pool.db"
    tm = TaskManager("p", f"sqlite:///{path}")
    ids = tm.create_task([{"a": 1}, {"a": 2}])
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE tasks SET def = '{not json' WHERE id = ?", (int(ids[1]),))
    assert tm.task_stat() == {"waiting": 2}  # counting never decodes payloads
    with pytest.raises(StorageError, match=f"task {ids[1]}.*'def'"):
        tm.re_query(ids[1])
    assert [task["_id"] for task in tm.query()] == [ids[0]]  # skipped, and logged by name
    assert f"task {ids[1]} is corrupt" in caplog.text
    assert tm.re_query(ids[0])["def"] == {"a": 1}


def test_a_store_file_that_is_not_sqlite_is_a_clear_error(tmp_path):
    junk = tmp_path / "notes.db"
    junk.write_text("meeting notes, not a database\n" * 50)
    with pytest.raises(StorageError, match="not a SQLite database"):
        TaskManager("p", f"sqlite:///{junk}")
    assert junk.read_text().startswith("meeting notes")


@pytest.mark.parametrize("query, message", [
    ({"i": 2**70}, "field 'i': 1180591620717411303424 is outside the 64-bit integer range"),
    ({"i": {"$nin": [-(2**63) - 1]}}, "field 'i': -9223372036854775809 is outside"),
    ({"i": [[10**400]]}, "field 'i': a 1329-bit integer is outside"),
])
def test_integers_beyond_64_bits_are_a_query_error_on_every_backend(tm, query, message):
    tm.create_task([{"i": 1}])
    with pytest.raises(QueryError, match=re.escape(message)):
        list(tm.query(query))
    with pytest.raises(QueryError, match=re.escape(message)):
        tm.task_stat(query)
    assert [task["def"] for task in tm.query({"i": 2**63 - 1})] == []


def test_a_priority_beyond_64_bits_is_a_query_error_and_changes_nothing(tm):
    (task_id,) = tm.create_task([{"a": 1}])
    with pytest.raises(QueryError, match="cannot set 'priority' to 1180591620717411303424"):
        tm.prioritize(task_id, 2**70)
    assert tm.re_query(task_id)["priority"] == 0


def test_queries_nested_beyond_the_limit_are_a_query_error_naming_it(tm):
    tm.create_task([{"a": 1}])
    logical: dict = {"a": 1}
    value: object = 1
    for _ in range(MAX_DEPTH + 1):
        logical = {"$or": [logical]}
        value = [value]
    for query in (logical, {"a": value}, {"a": {"$in": [value]}}):
        with pytest.raises(QueryError, match=f"deeper than {MAX_DEPTH} levels"):
            tm.task_stat(query)
    deep = {"a": 1}
    for _ in range(1000):  # far beyond Python's recursion limit: still a QueryError
        deep = {"$and": [deep]}
    with pytest.raises(QueryError, match=f"deeper than {MAX_DEPTH} levels"):
        tm.remove(deep)
    assert tm.task_stat({"$and": [{"$or": [{"a": [[[1]]]}, {"a": 1}]}]}) == {"waiting": 1}


def test_a_store_that_must_exist_is_never_created(tmp_path):
    missing = tmp_path / "typo.db"
    with pytest.raises(StorageError, match=f"no such store: {missing} does not exist"):
        get_storage(f"sqlite:///{missing}", create=False)
    with pytest.raises(StorageError, match="no such store"):
        get_storage(f"sqlite:///{missing}?mode=ro")
    assert list(tmp_path.iterdir()) == []
    TaskManager("p", f"sqlite:///{missing}").create_task([{"a": 1}])
    assert get_storage(f"sqlite:///{missing}", create=False).list_pools() == ["p"]


def test_a_task_with_an_integer_beyond_64_bits_is_refused_alike_on_every_backend(tm):
    with pytest.raises(TaskEncodingError, match=r"task 1: i: .* is outside the 64-bit integer"):
        tm.create_task([{"i": 1}, {"i": 2**70}])
    assert tm.task_stat() == {}
