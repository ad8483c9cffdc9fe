"""Bad input is a clear error and leaves the pool as it was."""

from __future__ import annotations

import sqlite3

import pytest
from taskloom.errors import StorageError, TaskEncodingError
from taskloom.manager import TaskManager


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
