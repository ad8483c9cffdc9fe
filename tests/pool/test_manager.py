"""TaskManager behaviour that qlib code relies on, and what taskloom adds, on every backend."""

from __future__ import annotations

import datetime as dt
import os
import uuid

import pytest
import taskloom
from taskloom.errors import LeaseLostError, QueryError, TaskEncodingError, UnknownTaskError
from taskloom.manager import TaskManager, run_task
from taskloom.storage import Store
from taskloom.stores import get_storage

from pool import pool_handlers


def test_public_names_resolve_to_the_manager_module():
    assert taskloom.TaskManager is TaskManager
    assert taskloom.run_task is run_task


def test_create_task_returns_ids_aligned_with_input_and_reuses_existing(tm):
    first = tm.create_task([{"a": 1}, {"a": 2}, {"a": 1}])
    assert first[0] == first[2] and first[0] != first[1]
    task = tm.fetch_task({"_id": first[0]})
    tm.commit_task_res(task, {"score": 1})
    again = tm.create_task([{"a": 2}, {"a": 3}, {"a": 1}])
    assert again[0] == first[1] and again[2] == first[0] and again[1] not in first
    assert tm.task_stat() == {"waiting": 2, "done": 1}


def test_equal_tasks_dedupe_whatever_their_key_order_and_date_types(tm):
    ids = tm.create_task([
        {"seg": ("2017-01-02", "2017-12-20"), "m": {"x": 1, "y": 2}},
        {"m": {"y": 2, "x": 1}, "seg": [dt.date(2017, 1, 2), dt.datetime(2017, 12, 20)]},
    ])
    assert ids[0] == ids[1]
    assert tm.re_query(ids[0])["def"]["seg"] == ["2017-01-02", "2017-12-20"]


def test_a_task_without_json_form_is_rejected_naming_it_and_nothing_is_inserted(tm):
    with pytest.raises(TaskEncodingError, match=r"task 1: model\.kwargs\.f"):
        tm.create_task([{"ok": 1}, {"model": {"kwargs": {"f": object()}}}, {"ok": 2}])
    assert tm.task_stat() == {}
    with pytest.raises(TaskEncodingError, match="task 0: a task definition is a dict"):
        tm.create_task([["not", "a", "dict"]])
    assert tm.task_stat() == {}


def test_dry_run_previews_the_new_tasks_once_and_inserts_nothing(tm, capsys):
    tm.create_task([{"old": 1}])
    assert tm.create_task([{"new": 1}, {"old": 1}, {"new": 1}], dry_run=True, print_nt=True) == []
    printed = capsys.readouterr().out
    assert printed.count("'new'") == 1 and "'old'" not in printed
    assert tm.task_stat() == {"waiting": 1}


def test_fetch_takes_the_highest_priority_then_the_oldest(tm):
    ids = tm.create_task([{"n": i} for i in range(4)])
    tm.prioritize({"_id": ids[3]}, 5)
    tm.prioritize(ids[0], -1)
    order = [tm.fetch_task()["_id"] for _ in range(4)]
    assert order == [ids[3], ids[1], ids[2], ids[0]]
    assert tm.fetch_task() is None


def test_queries_address_task_fields_with_or_without_the_filter_prefix(tm):
    ids = tm.create_task([{"model": {"class": "LGB", "leaves": n}} for n in (16, 32, 64)])
    leaves = lambda q: sorted(t["def"]["model"]["leaves"] for t in tm.query(q))  # noqa: E731
    assert leaves({"filter.model.class": "LGB"}) == [16, 32, 64]
    assert leaves({"model.leaves": {"$gte": 32}}) == [32, 64]
    assert leaves({"def.model.leaves": {"$lt": 32}}) == [16]
    assert leaves({"model.leaves": {"$nin": [16, 64]}}) == [32]
    assert leaves({"model.leaves": {"$ne": 16}, "_id": {"$in": ids[:2]}}) == [32]
    assert leaves({"model.seed": {"$exists": False}}) == [16, 32, 64]


def test_the_callers_query_is_never_modified(tm):
    ids = tm.create_task([{"a": 1}])
    query = {"_id": {"$in": ids}}
    tm.fetch_task(query)
    tm.reset_waiting(query)
    assert query == {"_id": {"$in": ids}}


def test_an_unknown_query_operator_is_a_clear_error_and_changes_nothing(tm):
    tm.create_task([{"a": 1}])
    for call in (tm.fetch_task, tm.task_stat, tm.remove, lambda q: list(tm.query(q))):
        with pytest.raises(QueryError, match=r"unknown operator '\$regex'"):
            call({"a": {"$regex": "x"}})
    assert tm.task_stat() == {"waiting": 1}


def test_re_query_of_an_unknown_id_is_a_lookup_error_naming_it(tm):
    with pytest.raises(LookupError, match="no-such-id") as info:
        tm.re_query("no-such-id")
    assert isinstance(info.value, UnknownTaskError)


def test_a_result_without_json_form_is_rejected_at_commit_and_changes_nothing(tm):
    tm.create_task([{"a": 1}])
    task = tm.fetch_task()
    with pytest.raises(TaskEncodingError, match="recorder") as info:
        tm.commit_task_res(task, {"model": object()})
    assert "MLflow" in str(info.value) and task["_id"] in str(info.value)
    stored = tm.re_query(task["_id"])
    assert stored["status"] == "running" and stored["res"] is None
    tm.commit_task_res(task, {"run_id": "abc", "ic": 0.05})
    assert tm.re_query(task["_id"])["res"] == {"run_id": "abc", "ic": 0.05}


def test_commit_and_return_with_a_bare_id_are_administrative_updates(tm):
    (task_id,) = tm.create_task([{"a": 1}])
    tm.commit_task_res({"_id": task_id}, [1, 2], status="part_done")
    assert tm.re_query(task_id)["status"] == "part_done"
    tm.return_task({"_id": task_id}, status="waiting")
    assert tm.re_query(task_id)["res"] == [1, 2]
    with pytest.raises(UnknownTaskError):
        tm.commit_task_res({"_id": "999999"}, 1)


def test_prioritize_checks_its_arguments(tm):
    (task_id,) = tm.create_task([{"a": 1}])
    with pytest.raises(TypeError):
        tm.prioritize(task_id, True)
    with pytest.raises(UnknownTaskError):
        tm.prioritize("999999", 1)


def test_task_fetcher_iter_returns_a_task_the_consumer_abandons(tm):
    ids = tm.create_task([{"n": i} for i in range(3)])
    with pytest.raises(ZeroDivisionError):
        for task in tm.task_fetcher_iter():
            if task["_id"] != ids[0]:
                raise ZeroDivisionError("the consumer fails on the second task")
            tm.commit_task_res(task, "ok")
    assert tm.re_query(ids[0])["status"] == "done"
    assert tm.re_query(ids[1])["status"] == "waiting"
    for _task in tm.task_fetcher_iter():
        break
    assert tm.task_stat() == {"done": 1, "waiting": 2}


def test_safe_fetch_task_gives_the_task_back_on_interrupt_without_using_an_attempt(tm):
    (task_id,) = tm.create_task([{"a": 1}])
    with pytest.raises(KeyboardInterrupt), tm.safe_fetch_task():
        raise KeyboardInterrupt
    task = tm.re_query(task_id)
    assert task["status"] == "waiting" and task["lease"] is None
    assert [entry["outcome"] for entry in task["attempts"]] == ["returned"]


def test_wait_returns_the_counts_when_nothing_is_undone_and_times_out_otherwise(tm):
    tm.create_task([{"a": 1}, {"a": 2}])
    with pytest.raises(TimeoutError, match="2 tasks still undone"):
        tm.wait(timeout=0.2, poll_seconds=0.05)
    run_task(lambda param: param, tm.task_pool, storage=tm.store)
    assert tm.wait(timeout=0.2) == {"done": 2}


def test_cancelled_tasks_are_not_fetched_and_a_running_one_cannot_commit(tm):
    ids = tm.create_task([{"a": 1}, {"a": 2}, {"a": 3}])
    running = tm.fetch_task({"_id": ids[0]})
    tm.commit_task_res(tm.fetch_task({"_id": ids[2]}), "kept")
    assert tm.cancel() == 2
    assert tm.task_stat() == {"cancelled": 2, "done": 1}
    assert tm.fetch_task() is None
    with pytest.raises(LeaseLostError, match=ids[0]):
        tm.commit_task_res(running, "late")
    assert tm.re_query(ids[0])["status"] == "cancelled"


def test_remove_deletes_matching_tasks_and_an_empty_query_everything(tm):
    tm.create_task([{"a": 1}, {"a": 2}, {"a": 3}])
    assert tm.remove({"a": {"$gt": 1}}) == 2
    assert tm.task_stat() == {"waiting": 1}
    assert tm.remove() == 1
    assert tm.task_stat() == {}
    assert tm.task_pool in TaskManager.list(tm.store)


def test_run_task_passes_def_or_res_and_kwargs_and_chains_stages(tm):
    tm.create_task([{"n": 1}, {"n": 2}])
    seen = []

    def stage(param, scale=1):
        seen.append(param)
        return {"v": param["n"] * scale} if "n" in param else {"v": param["v"] + 1}

    assert run_task(stage, tm.task_pool, storage=tm.store, after_status="part_done", scale=10)
    assert run_task(stage, tm.task_pool, storage=tm.store, before_status="part_done")
    assert not run_task(stage, tm.task_pool, storage=tm.store)
    assert seen == [{"n": 1}, {"n": 2}, {"v": 10}, {"v": 20}]
    assert sorted(t["res"]["v"] for t in tm.query({"status": "done"})) == [11, 21]


def test_run_task_rejects_other_before_statuses_before_claiming(tm):
    tm.create_task([{"a": 1}])
    tm.fetch_task()
    with pytest.raises(ValueError, match="part_done"):
        run_task(pool_handlers.pid, tm.task_pool, storage=tm.store, before_status="running")
    assert tm.task_stat() == {"running": 1}


def test_run_task_force_release_runs_each_task_in_a_fresh_process(tmp_path):
    store: Store = get_storage(f"sqlite:///{tmp_path}/p.db")
    tm = TaskManager("fr", store)
    tm.create_task([{"n": 1}, {"n": 2}])
    assert run_task(pool_handlers.pid, "fr", storage=store, force_release=True)
    pids = [task["res"] for task in tm.query()]
    assert len(set(pids)) == 2 and os.getpid() not in pids


def test_taskmanager_opens_the_default_storage_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("TASKLOOM_STORAGE", f"sqlite:///{tmp_path}/env.db")
    name = f"env-{uuid.uuid4().hex[:6]}"
    TaskManager(name).create_task([{"a": 1}])
    assert TaskManager(name, f"sqlite:///{tmp_path}/env.db").task_stat() == {"waiting": 1}
