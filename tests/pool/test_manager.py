"""TaskManager behaviour that qlib code relies on, and what taskloom adds, on every backend."""

from __future__ import annotations

import datetime as dt
import os
import uuid

import pytest
import taskloom
from taskloom.attempt import TaskFunctionExit
from taskloom.errors import LeaseLostError, QueryError, TaskEncodingError, UnknownTaskError
from taskloom.manager import TaskManager, run_task
from taskloom.retry import RetryPolicy
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
    assert tm.pool.get(ids[0])["def"]["seg"] == ["2017-01-02", "2017-12-20"]  # stored as JSON
    # ... and given back with the types of the first submission, which the pool kept
    assert tm.re_query(ids[0])["def"]["seg"] == ("2017-01-02", "2017-12-20")


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


def test_run_claimable_runs_every_matching_task_committing_and_claiming_together(
        tm, monkeypatch):
    tm.create_task([{"i": 1}, {"i": 2, "poison": True}, {"i": 3}, {"other": 4}])
    tm.retry_policy = RetryPolicy(max_attempts=1)
    steps = []
    commit_and_claim = tm.attempts.commit_and_claim

    def spy(*args, **kwargs):
        steps.append(args[0]["_id"])
        return commit_and_claim(*args, **kwargs)

    monkeypatch.setattr(tm.attempts, "commit_and_claim", spy)
    ran = tm.run_claimable(pool_handlers.fail_on_poison, {"i": {"$exists": True}},
                           on_error="retry", kwargs={})
    assert ran == 3  # the poisoned task's one allowed attempt counts too
    assert tm.task_stat() == {"done": 2, "failed": 1, "waiting": 1}
    assert len(steps) == 2  # each successful commit claimed the next task in the same step
    assert [task["status"] for task in tm.query({"other": 4})] == ["waiting"]


@pytest.mark.parametrize("loop", ["run_claimable", "worker"])
def test_a_claim_loop_normalises_and_compiles_its_query_once(loop, tmp_path, monkeypatch):
    import taskloom_sqlite.store as sqlite_store
    from taskloom.worker import WorkerConfig, work

    url = f"sqlite:///{tmp_path}/p.db"
    tm = TaskManager("once", url)
    ids = tm.create_task([{"n": n} for n in range(30)])
    compiled = []
    where = sqlite_store.where
    monkeypatch.setattr(sqlite_store, "where", lambda node: compiled.append(node) or where(node))
    # a trainer's query lists every task id: compiling it per claim made a study quadratic
    query = {"_id": {"$in": ids[:20]}}
    if loop == "run_claimable":
        assert tm.run_claimable(pool_handlers.pid, query) == 20
    else:
        config = WorkerConfig(pool="once", storage=url, handler="pool.pool_handlers:pid",
                              query=query, idle_exit=0)
        assert work(config) == {"done": 20}
    assert len(compiled) == 1
    assert tm.task_stat() == {"done": 20, "waiting": 10}


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


def test_only_the_claimer_gets_the_lease_token(tm):
    (task_id,) = tm.create_task([{"a": 1}])
    task = tm.fetch_task()
    assert task["lease"]["token"]
    for read in (tm.re_query(task_id), next(tm.query({"_id": task_id}))):
        lease = read["lease"]
        assert "token" not in lease
        assert (lease["owner"], lease["until"], lease["started"]) == (
            task["lease"]["owner"], task["lease"]["until"], task["lease"]["started"])
    tm.commit_task_res(task, "mine")  # the claimer's token still holds
    assert tm.re_query(task_id)["res"] == "mine"


def test_safe_fetch_task_and_task_fetcher_iter_yield_the_token(tm):
    tm.create_task([{"a": 1}, {"a": 2}])
    with tm.safe_fetch_task() as task:
        assert task["lease"]["token"]
        tm.commit_task_res(task, 1)
    for task in tm.task_fetcher_iter():
        assert task["lease"]["token"]
        tm.commit_task_res(task, 2)
    assert tm.task_stat() == {"done": 2}


def test_commit_and_return_accept_a_bare_id_string(tm):
    (task_id,) = tm.create_task([{"a": 1}])
    tm.commit_task_res(task_id, {"r": 1}, status="part_done")
    assert tm.re_query(task_id)["status"] == "part_done"
    tm.return_task(task_id)
    task = tm.re_query(task_id)
    assert (task["status"], task["res"]) == ("waiting", {"r": 1})
    tm.commit_task_res(str(task_id), 5)
    assert tm.re_query(task_id)["res"] == 5
    with pytest.raises(UnknownTaskError, match="999999"):
        tm.commit_task_res("999999", 1)


def test_insert_task_def_inserts_a_waiting_task_once_and_returns_its_id(tm):
    first = tm.insert_task_def({"model": "lgb", "seg": ("2017-01-02", "2017-12-29")})
    assert first.created and tm.re_query(first.inserted_id)["status"] == "waiting"
    again = tm.insert_task_def({"seg": ["2017-01-02", "2017-12-29"], "model": "lgb"})
    assert again.inserted_id == first.inserted_id and not again.created
    assert tm.create_task([{"model": "lgb", "seg": ["2017-01-02", "2017-12-29"]}]) == [
        first.inserted_id]


def test_insert_task_inserts_a_raw_record(tm):
    done = tm.insert_task({"def": {"a": 1}, "filter": {"a": 1}, "status": "done",
                           "res": {"ic": 0.1}, "priority": 3})
    task = tm.re_query(done.inserted_id)
    assert (task["def"], task["status"], task["res"], task["priority"]) == (
        {"a": 1}, "done", {"ic": 0.1}, 3)
    plain = tm.insert_task({"def": {"a": 2}})
    assert tm.fetch_task()["_id"] == plain.inserted_id
    existing = tm.insert_task({"def": {"a": 1}, "status": "waiting"})
    assert existing.inserted_id == done.inserted_id and not existing.created
    assert tm.re_query(done.inserted_id)["status"] == "done"  # left as it was


def test_insert_task_refuses_what_the_pool_sets_itself(tm):
    with pytest.raises(ValueError, match=r"\['_id', 'lease'\]"):
        tm.insert_task({"def": {"a": 1}, "_id": "7", "lease": None})
    with pytest.raises(ValueError, match="'running'"):
        tm.insert_task({"def": {"a": 1}, "status": "running"})
    with pytest.raises(ValueError, match="'def'"):
        tm.insert_task({"status": "waiting"})
    with pytest.raises(ValueError, match="filter"):
        tm.insert_task({"def": {"a": 1}, "filter": {"a": 2}})
    assert tm.task_stat() == {}


@pytest.mark.parametrize("status", ["running", "waiting", "failed", "cancelled", ""])
def test_run_task_and_run_one_refuse_an_after_status_that_strands_the_task(tm, status):
    tm.create_task([{"a": 1}])
    with pytest.raises(ValueError, match=f"after_status {status!r}|non-empty"):
        run_task(pool_handlers.pid, tm.task_pool, storage=tm.store, after_status=status)
    with pytest.raises(ValueError, match=f"after_status {status!r}|non-empty"):
        tm.run_one(pool_handlers.pid, after_status=status)
    assert tm.task_stat() == {"waiting": 1}  # nothing was claimed


def test_run_task_commits_into_a_custom_status(tm):
    (task_id,) = tm.create_task([{"a": 1}])
    assert run_task(lambda param: "ok", tm.task_pool, storage=tm.store, after_status="reviewed")
    assert tm.re_query(task_id)["status"] == "reviewed"
    assert tm.wait(timeout=0.1) == {"reviewed": 1}


def test_a_task_function_that_calls_sys_exit_fails_its_attempt(tm):
    tm.retry_policy = RetryPolicy(max_attempts=2, backoff_seconds=0)
    (task_id,) = tm.create_task([{"a": 1}])
    with pytest.raises(TaskFunctionExit, match=r"sys\.exit\(3\)"):
        run_task(pool_handlers.exit_now, tm.task_pool, storage=tm.store,
                 retry_policy=tm.retry_policy)
    assert tm.run_one(pool_handlers.exit_now, on_error="retry") == "failed"
    task = tm.re_query(task_id)
    assert task["status"] == "failed" and task["error"]["type"].endswith("TaskFunctionExit")
    assert [entry["outcome"] for entry in task["attempts"]] == ["error", "error"]


def test_force_release_runs_the_initializer_in_the_child_before_the_task(tmp_path):
    store: Store = get_storage(f"sqlite:///{tmp_path}/p.db")
    tm = TaskManager("init", store)
    tm.create_task([{"n": 1}, {"n": 2}])
    assert run_task(pool_handlers.setup_seen, "init", storage=store, force_release=True,
                    initializer=pool_handlers.set_up, initargs=("qlib ready",))
    seen = [task["res"] for task in tm.query()]
    assert [(s["setup"], s["calls"]) for s in seen] == [("qlib ready", 1)] * 2
    assert len({s["pid"] for s in seen}) == 2 and os.getpid() not in {s["pid"] for s in seen}
    assert os.environ.get(pool_handlers.SETUP_ENV) is None  # the parent was not set up


def test_an_initializer_without_force_release_is_refused_before_claiming(tm):
    tm.create_task([{"a": 1}])
    with pytest.raises(ValueError, match="force_release"):
        run_task(pool_handlers.setup_seen, tm.task_pool, storage=tm.store,
                 initializer=pool_handlers.set_up)
    assert tm.task_stat() == {"waiting": 1}


def test_wait_hands_every_count_it_reads_to_progress(tm):
    tm.create_task([{"a": 1}, {"a": 2}])
    tm.commit_task_res(tm.fetch_task(), 1)
    seen: list[dict[str, int]] = []
    with pytest.raises(TimeoutError):
        tm.wait(timeout=0.15, poll_seconds=0.05, progress=seen.append)
    assert len(seen) >= 2 and all(stat == {"done": 1, "waiting": 1} for stat in seen)
    run_task(lambda param: param, tm.task_pool, storage=tm.store)
    seen.clear()
    assert tm.wait(progress=seen.append) == {"done": 2}
    assert seen == [{"done": 2}]
