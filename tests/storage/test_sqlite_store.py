"""SQLite-only behaviour: URLs, the file format, bad files, locking and forking."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from taskloom import get_storage, task_key
from taskloom.errors import QueryError, StorageError
from taskloom.storage import Store
from taskloom_sqlite.sql import SCHEMA

T0 = 1_700_000_000.0


def _insert(store: Store, *names: str) -> list[str]:
    pool = store.pool("p")
    defs = [{"name": n} for n in names]
    return [i for i, _ in pool.insert_many([(task_key(d), d) for d in defs], T0)]


def test_relative_url_and_the_default_live_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = get_storage("sqlite:///sub.db")
    assert store.url == f"sqlite:///{tmp_path / 'sub.db'}"
    assert (tmp_path / "sub.db").exists()
    default = get_storage()
    assert default.url == f"sqlite:///{tmp_path / 'taskloom.db'}"
    monkeypatch.chdir("/")
    assert get_storage(store.url).list_pools() == []  # the absolute URL still finds it


def test_absolute_url(tmp_path: Path) -> None:
    store = get_storage(f"sqlite:///{tmp_path}/abs.db")
    _insert(store, "a")
    assert get_storage(f"sqlite:///{tmp_path / 'abs.db'}").pool("p").counts({}) == {
        "waiting": 1}


@pytest.mark.parametrize(("url", "message"), [
    ("sqlite:///:memory:", "memory://"),
    ("sqlite:///", "bad SQLite URL"),
    ("sqlite://host/x.db", "bad SQLite URL"),
])
def test_bad_urls_are_rejected(url: str, message: str) -> None:
    with pytest.raises(StorageError, match=message):
        get_storage(url)


def test_a_file_that_is_not_sqlite_is_a_storage_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("these are my notes, not a database\n" * 100)
    with pytest.raises(StorageError, match=f"{path} is not a SQLite database"):
        get_storage(f"sqlite:///{path}")


def test_a_missing_directory_is_a_storage_error_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="nowhere"):
        get_storage(f"sqlite:///{tmp_path}/nowhere/x.db")


def test_file_format_wal_schema_version_and_indexes(tmp_path: Path) -> None:
    get_storage(f"sqlite:///{tmp_path}/f.db").pool("p")
    conn = sqlite3.connect(tmp_path / "f.db")
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert conn.execute("PRAGMA user_version").fetchone() == (2,)
    indexes = {row[1] for row in conn.execute("PRAGMA index_list(tasks)")}
    assert {"tasks_pool_key", "tasks_claim"} <= indexes
    plan = " ".join(row[3] for row in conn.execute(
        "EXPLAIN QUERY PLAN SELECT id FROM tasks WHERE pool = 'p' AND status = 'waiting' "
        "ORDER BY priority DESC, id LIMIT 1"))
    assert "tasks_claim" in plan and "TEMP B-TREE" not in plan


def test_a_version_1_file_is_upgraded_in_place(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "v1.db")
    conn.executescript(SCHEMA.replace("    types TEXT,\n", "") + "PRAGMA user_version = 1;")
    conn.execute("INSERT INTO pools VALUES ('p', 1.0)")
    conn.execute("INSERT INTO tasks (pool, key, def, status, created_at, updated_at) "
                 "VALUES ('p', 'k1', '{\"a\":1}', 'waiting', 1.0, 1.0)")
    conn.commit()
    conn.close()
    store = get_storage(f"sqlite:///{tmp_path}/v1.db")
    (old,) = store.pool("p").find({})
    assert old["def"] == {"a": 1} and old["types"] is None
    (new_id, _), = store.pool("p").insert_many([("k2", {"a": 2}, {"a": "tuple"})], T0)
    assert store.pool("p").get(new_id)["types"] == {"a": "tuple"}
    assert sqlite3.connect(tmp_path / "v1.db").execute("PRAGMA user_version").fetchone() == (2,)


def test_a_newer_schema_version_is_refused(tmp_path: Path) -> None:
    get_storage(f"sqlite:///{tmp_path}/f.db")
    conn = sqlite3.connect(tmp_path / "f.db")
    conn.execute("PRAGMA user_version = 99")
    conn.commit()
    with pytest.raises(StorageError, match="schema version 99"):
        get_storage(f"sqlite:///{tmp_path}/f.db")


def test_corrupt_rows_are_named_and_counting_does_not_decode(tmp_path: Path) -> None:
    store = get_storage(f"sqlite:///{tmp_path}/c.db")
    bad, good = _insert(store, "bad", "good")
    conn = sqlite3.connect(tmp_path / "c.db")
    conn.execute("UPDATE tasks SET def = '{broken' WHERE id = ?", (int(bad),))
    conn.execute("UPDATE tasks SET res = ? WHERE id = ?", (b"\x80\x04pickle", int(good)))
    conn.commit()
    pool = store.pool("p")
    assert pool.counts({}) == {"waiting": 2}
    with pytest.raises(StorageError, match=rf"task {bad} is corrupt \(column 'def' is not valid"):
        pool.get(bad)
    with pytest.raises(StorageError, match=rf"task {good} is corrupt.*never unpickles"):
        pool.get(good)
    assert list(pool.find({})) == []  # both skipped (and logged), not an error for the pool


def test_a_writer_waits_for_the_lock_instead_of_failing(tmp_path: Path) -> None:
    store = get_storage(f"sqlite:///{tmp_path}/l.db")
    _insert(store, "a")
    holder = sqlite3.connect(tmp_path / "l.db", isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    release = threading.Timer(0.5, lambda: holder.execute("COMMIT"))
    release.start()
    started = time.monotonic()
    got = store.pool("p").claim(status="waiting", query={}, owner="w", token="t",
                                lease_seconds=60, now=T0)
    release.join()
    assert got is not None and time.monotonic() - started >= 0.4


def _claim_in_child(store: Store, result: Any) -> None:
    got = store.pool("p").claim(status="waiting", query={}, owner="child", token="c",
                                lease_seconds=60, now=T0)
    result.put(None if got is None else got["_id"])


def test_a_forked_child_opens_its_own_connection(tmp_path: Path) -> None:
    store = get_storage(f"sqlite:///{tmp_path}/fork.db")
    first, second = _insert(store, "a", "b")
    ctx = multiprocessing.get_context("fork")
    result = ctx.Queue()
    child = ctx.Process(target=_claim_in_child, args=(store, result))
    child.start()
    assert result.get(timeout=30) == first
    child.join(timeout=30)
    assert child.exitcode == 0
    assert store.pool("p").get(first)["lease"]["owner"] == "child"
    assert store.pool("p").claim(status="waiting", query={}, owner="parent", token="p",
                                 lease_seconds=60, now=T0)["_id"] == second


def test_a_worker_goes_past_a_corrupt_row_and_leaves_it_failed(tmp_path: Path) -> None:
    from taskloom.manager import TaskManager, run_task

    url = f"sqlite:///{tmp_path}/w.db"
    tm = TaskManager("p", url)
    bad, *good = tm.create_task([{"n": 0}, {"n": 1}, {"n": 2}])
    conn = sqlite3.connect(tmp_path / "w.db")
    conn.execute("UPDATE tasks SET def = '{broken' WHERE id = ?", (int(bad),))
    conn.commit()
    assert run_task(lambda task: task["n"] * 10, "p", storage=url)
    assert tm.task_stat() == {"done": 2, "failed": 1}
    assert sorted(task["res"] for task in tm.query({"status": "done"})) == [10, 20]
    assert [task["_id"] for task in tm.query({"status": "done"})] == good


def _nested(levels: int) -> dict[str, Any]:
    """``{"name": "a"}`` inside ``levels`` of ``$and``/``$or`` (alternating) that keep its matches.

    Each ``$and`` adds a condition every task meets, each ``$or`` one that no task meets.
    """
    query: dict[str, Any] = {"name": "a"}
    for level in range(levels):
        if level % 2:
            query = {"$or": [query, {"name": f"none-{level}"}]}
        else:
            query = {"$and": [query, {"name": {"$ne": f"none-{level}"}}]}
    return query


def test_a_query_too_deep_for_sqlite_is_a_query_error_naming_its_depth(tmp_path: Path) -> None:
    # normalize accepts up to MAX_DEPTH levels, but SQLite's parser gives up earlier on the
    # parentheses they become; the user learns how deep the query is and what to do
    store = get_storage(f"sqlite:///{tmp_path}/deep.db")
    _insert(store, "a", "b")
    pool = store.pool("p")
    assert pool.counts(_nested(20)) == {"waiting": 1}  # a deep but parsable query still works
    deep = _nested(60)
    for call in (lambda: pool.counts(deep), lambda: list(pool.find(deep)),
                 lambda: pool.update_many(deep, {"priority": 1}, T0),
                 lambda: pool.delete_many(deep),
                 lambda: pool.claim(status="waiting", query=deep, owner="o", token="t",
                                    lease_seconds=60, now=T0)):
        with pytest.raises(QueryError, match=r"nests \$and/\$or 60 levels deep.*"
                                             r"parser stack overflow.*merge nested"):
            call()
    assert pool.counts({}) == {"waiting": 2}  # nothing was changed or claimed
