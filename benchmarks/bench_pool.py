"""Speed of the task pool: no-op throughput per backend, and the costs that grow with a pool.

    python benchmarks/bench_pool.py [--tasks 20000] [--processes 1,2,4] [--repeat 3]
                                    [--mongo-url URL | --skip-mongo] [--skip-growth]

Throughput: ``--tasks`` no-op tasks are drained by 1, 2 and 4 worker processes running the
real worker loop (:func:`taskloom.worker.work` with the built-in ``noop`` handler: claim
with a lease, run, fenced commit with history, lifecycle hooks). In the same run a bare
SQLite claim/commit loop (one ``UPDATE ... RETURNING`` claim and one ``UPDATE`` commit per
task, WAL, ``synchronous=NORMAL``, the claim index; no leases, no history) drains the same
number of tasks with the same process counts: the physical limit of the file. The goal is
that the SQLite pool reaches at least half of it. On a shared machine one drain can be
slowed by a neighbour, so each process count is measured ``--repeat`` times, the bare loop
and the pool taking turns (bare, pool, pool, bare, ...), each on a fresh file; the row shows
the median rates and the median of the ratios of the pairs measured back to back.
``memory://`` lives in one process, so it is measured with one (and at most 2,000 tasks: it
scans its records on every claim). MongoDB is measured when ``--mongo-url`` (or
``TASKLOOM_BENCH_MONGO_URL``) names a server, with ``--mongo-tasks`` tasks. Without one, if
the test suite has built its SecantusDB server (in the user's cache, see
``tests/support/mongo.py``), it is started as a separate process for the run and the same
rows are printed for it, labelled as what they are: a functional check of the MongoDB
backend over the wire, not a MongoDB throughput figure. ``--skip-mongo`` leaves the MongoDB
rows out.

Growth (SQLite): ``create_task`` of 20,000 rolling-style tasks of which half are already in
the pool, on a pool of 10,000 tasks and again on one of 100,000, against a bare
``INSERT OR IGNORE`` of the same rows; and ``task_stat`` on the 100,000-task pool against a
bare ``GROUP BY`` and against decoding every task to count it (what qlib does). Both pool
operations must stay index-bound: the per-task cost of ``create_task`` must not grow with
the pool.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from taskloom import task_key, to_jsonable
from taskloom.manager import TaskManager
from taskloom.stores import get_storage

SPAWN = multiprocessing.get_context("spawn")
#: the repository's tests folder, for the SecantusDB helpers in ``support/mongo.py``
TESTS = Path(__file__).resolve().parents[1] / "tests"
#: the memory backend scans its dict per claim (it is the reference, not a fast path)
MEMORY_TASKS = 2_000

BARE_SCHEMA = """
CREATE TABLE task (id INTEGER PRIMARY KEY, status TEXT NOT NULL, priority INTEGER NOT NULL,
                   def TEXT NOT NULL, res TEXT, worker TEXT, lease_until REAL,
                   attempts INTEGER NOT NULL DEFAULT 0);
CREATE INDEX task_claim ON task (status, priority DESC, id);
"""
BARE_CLAIM = """
UPDATE task SET status = 'running', worker = ?, lease_until = ?, attempts = attempts + 1
WHERE id = (SELECT id FROM task WHERE status = 'waiting' ORDER BY priority DESC, id LIMIT 1)
RETURNING id, def
"""


def connect_bare(path: str) -> sqlite3.Connection:
    """A connection with the pool's pragmas (WAL, synchronous NORMAL, busy timeout)."""
    conn = sqlite3.connect(path, timeout=60, isolation_level=None)
    conn.execute("PRAGMA busy_timeout = 60000")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


def bare_worker(path: str, ready: Any, go: Any, out: Any) -> None:
    """Claim and commit until nothing is waiting: the limit any SQLite pool can reach."""
    conn = connect_bare(path)
    me = f"bare:{os.getpid()}"
    ready.wait()
    go.wait()
    done = 0
    while True:
        conn.execute("BEGIN IMMEDIATE")
        row = conn.execute(BARE_CLAIM, (me, time.time() + 60)).fetchone()
        conn.execute("COMMIT")
        if row is None:
            break
        json.loads(row[1])
        conn.execute("UPDATE task SET status = 'done', res = 'null' WHERE id = ?", (row[0],))
        done += 1
    out.put((done, time.monotonic()))


def pool_worker(url: str, pool: str, ready: Any, go: Any, out: Any) -> None:
    """The real worker loop with the ``noop`` handler until the pool is drained."""
    from taskloom import plugins, registry
    from taskloom.worker import WorkerConfig, work

    config = WorkerConfig(pool=pool, storage=url, handler="noop", idle_exit=0)
    plugins.get_plugin_manager()
    registry.resolve_callable("noop")
    ready.wait()
    go.wait()
    outcomes = work(config)
    out.put((outcomes.total(), time.monotonic()))


def drain(target: Callable[..., None], args: tuple[Any, ...], processes: int, tasks: int) -> float:
    """Run ``processes`` copies of a worker together; tasks per second from the go signal."""
    ready, go, out = SPAWN.Barrier(processes + 1), SPAWN.Event(), SPAWN.Queue()
    children = [SPAWN.Process(target=target, args=(*args, ready, go, out))
                for _ in range(processes)]
    for child in children:
        child.start()
    ready.wait()
    started = time.monotonic()
    go.set()
    results = [out.get(timeout=600) for _ in children]
    for child in children:
        child.join()
    done = sum(n for n, _ in results)
    if done != tasks:
        raise RuntimeError(f"drained {done} tasks, expected {tasks}")
    return tasks / (max(end for _, end in results) - started)


def bare_rate(workdir: Path, tasks: int, processes: int) -> float:
    path = str(workdir / f"bare-{uuid.uuid4().hex[:6]}.db")
    conn = connect_bare(path)
    conn.executescript(BARE_SCHEMA)
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO task (status, priority, def) VALUES ('waiting', 0, ?)",
                     [(json.dumps({"i": i}),) for i in range(tasks)])
    conn.execute("COMMIT")
    conn.close()
    return drain(bare_worker, (path,), processes, tasks)


def pool_rate(url: str, tasks: int, processes: int) -> float:
    pool = f"bench-{uuid.uuid4().hex[:6]}"
    TaskManager(pool, url).create_task([{"i": i} for i in range(tasks)])
    return drain(pool_worker, (url, pool), processes, tasks)


def memory_rate(tasks: int) -> float:
    from taskloom.worker import WorkerConfig, work

    url = f"memory://bench-{uuid.uuid4().hex[:6]}"
    TaskManager("bench", url).create_task([{"i": i} for i in range(tasks)])
    started = time.monotonic()
    done = work(WorkerConfig(pool="bench", storage=url, handler="noop", idle_exit=0)).total()
    assert done == tasks
    return tasks / (time.monotonic() - started)


def sqlite_pair(workdir: Path, tasks: int, processes: int, pool_first: bool) -> tuple[float, float]:
    """``(pool rate, bare rate)`` measured back to back, each on a fresh file."""
    url = f"sqlite:///{workdir}/pool-{uuid.uuid4().hex[:6]}.db"
    if pool_first:
        rate = pool_rate(url, tasks, processes)
        return rate, bare_rate(workdir, tasks, processes)
    bare = bare_rate(workdir, tasks, processes)
    return pool_rate(url, tasks, processes), bare


def throughput(workdir: Path, tasks: int, counts: list[int], repeat: int,
               mongo_url: str | None, mongo_tasks: int, skip_mongo: bool) -> None:
    print(f"no-op throughput, {tasks} tasks (tasks/s; ratio = pool / bare SQLite loop; "
          f"medians of {repeat} interleaved pairs)")
    print(f"  {'backend':<28}{'procs':>6}{'tasks/s':>12}{'bare/s':>12}{'ratio':>8}   ratios")
    for n in counts:
        pairs = [sqlite_pair(workdir, tasks, n, pool_first=i % 2 == 1) for i in range(repeat)]
        rate = statistics.median(p for p, _ in pairs)
        bare = statistics.median(b for _, b in pairs)
        ratios = [p / b for p, b in pairs]
        print(f"  {'sqlite pool':<28}{n:>6}{rate:>12,.0f}{bare:>12,.0f}"
              f"{statistics.median(ratios):>8.2f}   {' '.join(f'{r:.2f}' for r in ratios)}")
    n_memory = min(tasks, MEMORY_TASKS)
    rate = memory_rate(n_memory)
    print(f"  {f'memory pool ({n_memory} tasks)':<28}{1:>6}{rate:>12,.0f}")
    if skip_mongo:
        return
    if mongo_url:
        mongo_rows("mongodb pool", mongo_url, mongo_tasks, counts)
    else:
        secantus_rows(workdir, mongo_tasks, counts)


def mongo_rows(label: str, url: str, tasks: int, counts: list[int]) -> None:
    for n in counts:
        rate = pool_rate(url, tasks, n)
        print(f"  {f'{label} ({tasks} tasks)':<28}{n:>6}{rate:>12,.0f}")


def secantus_rows(workdir: Path, tasks: int, counts: list[int]) -> None:
    """The MongoDB rows against a SecantusDB server started for this run, if the suite built one.

    SecantusDB is GPL-licensed and lives in its own virtualenv: it is only run as a
    separate process (``tests/support/mongo.py`` starts and stops it), never imported.
    """
    sys.path.insert(0, str(TESTS))
    from support.mongo import (
        ensure_secantus,
        is_ready,
        secantus_venv,
        start_secantus,
        stop_server,
        with_database,
    )

    if not is_ready(secantus_venv()):
        print("  mongodb: skipped (give --mongo-url or TASKLOOM_BENCH_MONGO_URL, or run "
              "python -m pytest tests/storage once: it builds the SecantusDB test server)")
        return
    python, _ = ensure_secantus()
    server = start_secantus(python, workdir / "secantus" / "data")
    try:
        print("  SecantusDB test server — functional check, not a MongoDB throughput figure:")
        mongo_rows("secantusdb pool", with_database(server.uri, "taskloom_bench"), tasks,
                   counts)
    finally:
        stop_server(server)


def rolling_task(i: int) -> dict[str, Any]:
    """A task shaped like a rolling LightGBM window (about 700 bytes of JSON)."""
    year = 2008 + i % 12
    return {
        "model": {"class": "LGBModel", "module_path": "qlib.contrib.model.gbdt",
                  "kwargs": {"loss": "mse", "num_leaves": 64, "seed": i}},
        "dataset": {"class": "DatasetH", "module_path": "qlib.data.dataset", "kwargs": {
            "handler": {"class": "Alpha158", "module_path": "qlib.contrib.data.handler",
                        "kwargs": {"start_time": "2008-01-01", "end_time": "2020-08-01",
                                   "instruments": "csi300"}},
            "segments": {"train": ["2008-01-02", f"{year}-12-31"],
                         "valid": [f"{year + 1}-01-02", f"{year + 1}-12-31"],
                         "test": [f"{year + 2}-01-02", f"{year + 2}-12-31"]}}},
        "record": [{"class": "SignalRecord", "module_path": "qlib.workflow.record_temp"}],
    }


def timed(func: Callable[[], Any], repeat: int = 1) -> float:
    """The median wall time of ``repeat`` calls."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        func()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def bare_insert(path: str, tasks: list[dict[str, Any]]) -> float:
    """INSERT OR IGNORE of ready (key, def) rows into a table with a unique key index."""
    rows = [(task_key(task), json.dumps(task, sort_keys=True, separators=(",", ":")))
            for task in tasks]
    conn = connect_bare(path)
    conn.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, key TEXT UNIQUE, "
                 "def TEXT NOT NULL, status TEXT NOT NULL)")

    def insert() -> None:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT OR IGNORE INTO t (key, def, status) VALUES (?, ?, 'waiting')",
                         rows)
        conn.execute("COMMIT")

    elapsed = timed(insert)
    conn.close()
    return elapsed


def growth(workdir: Path) -> None:
    url = f"sqlite:///{workdir}/growth.db"
    store = get_storage(url)
    tm = TaskManager("growth", store)
    print("costs that grow with the pool (SQLite)")
    tm.create_task([rolling_task(i) for i in range(10_000)])
    batch = [rolling_task(i) for i in range(0, 10_000)] + [
        rolling_task(i) for i in range(200_000, 210_000)]
    small = timed(lambda: tm.create_task(batch))
    bare_small = bare_insert(str(workdir / "bare-insert.db"), batch)
    print(f"  create_task 20,000 (10,000 duplicates) into a 10,000-task pool: {small:.2f} s "
          f"({20_000 / small:,.0f} tasks/s); bare INSERT OR IGNORE {bare_small:.2f} s; "
          f"ratio {small / bare_small:.1f}x")
    tm.create_task([rolling_task(i) for i in range(10_000, 90_000)])
    assert sum(tm.task_stat().values()) == 100_000
    batch = [rolling_task(i) for i in range(80_000, 90_000)] + [
        rolling_task(i) for i in range(300_000, 310_000)]
    large = timed(lambda: tm.create_task(batch))
    print(f"  create_task 20,000 (10,000 duplicates) into a 100,000-task pool: {large:.2f} s "
          f"({20_000 / large:,.0f} tasks/s); per-task cost vs the 10,000-task pool: "
          f"{large / small:.2f}x (index-bound: stays near 1)")
    tm.remove({"model.kwargs.seed": {"$gte": 300_000}})
    stat_time = timed(tm.task_stat, repeat=5)
    conn = sqlite3.connect(store.path)  # type: ignore[attr-defined]
    group_by = timed(lambda: conn.execute(
        "SELECT status, COUNT(*) FROM tasks WHERE pool = 'growth' GROUP BY status").fetchall(),
        repeat=5)

    def decode_all() -> dict[str, int]:
        counts: dict[str, int] = {}
        for status, text in conn.execute("SELECT status, def FROM tasks WHERE pool = 'growth'"):
            to_jsonable(json.loads(text))
            counts[status] = counts.get(status, 0) + 1
        return counts

    decoded = timed(decode_all)
    conn.close()
    print(f"  task_stat on 100,000 tasks: {stat_time * 1000:.1f} ms; bare GROUP BY "
          f"{group_by * 1000:.1f} ms (ratio {stat_time / group_by:.2f}); decoding every task "
          f"to count it (qlib) {decoded * 1000:.0f} ms ({decoded / stat_time:,.0f}x slower)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--processes", default="1,2,4")
    parser.add_argument("--repeat", type=int, default=3,
                        help="interleaved bare/pool pairs per process count (median shown)")
    parser.add_argument("--mongo-url", default=os.environ.get("TASKLOOM_BENCH_MONGO_URL"))
    parser.add_argument("--mongo-tasks", type=int, default=300)
    parser.add_argument("--skip-mongo", action="store_true", help="leave out the MongoDB rows")
    parser.add_argument("--skip-growth", action="store_true")
    args = parser.parse_args()
    counts = [int(part) for part in args.processes.split(",")]
    with tempfile.TemporaryDirectory(prefix="taskloom-bench-") as tmp:
        workdir = Path(tmp)
        throughput(workdir, args.tasks, counts, args.repeat, args.mongo_url, args.mongo_tasks,
                   args.skip_mongo)
        if not args.skip_growth:
            growth(workdir)


if __name__ == "__main__":
    main()
