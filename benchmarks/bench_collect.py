"""Speed of collecting recorded runs: RecorderCollector against the naive MLflow path.

    python benchmarks/bench_collect.py [--runs 500] [--growth 100,500,2000] [--repeat 3]
    python benchmarks/bench_collect.py --quick

One MLflow sqlite tracking store in a temporary folder, one experiment, ``--runs`` FINISHED
runs shaped like the recorder's: its tags (task key, pool, model, test window), one
``log_batch`` of params and metrics, ``task.json`` and a ``pred.parquet`` prediction Series of
2,500 rows (the shared Series convention). Both sides collect every prediction into
``{run_id: Series}`` in the same process, on the same store:

* naive: what a qlib-style collector does on MLflow. Search every run of the experiment
  without a filter, keep the FINISHED ones in Python, ``download_artifacts`` each prediction
  into a temporary folder and read it.
* collector: ``RecorderCollector(experiment, tracking_uri=...)()``, built and called as a user
  does, each time: the status filter runs in the store, runs come page by page, each parquet
  file is read where it lies, in parallel threads.

Both sides read the parquet files with the same reader (``taskloom_recorder.artifacts
.read_parquet``), so the ratio measures finding and fetching the runs' files, not the reader.

The goal is a ratio of at least 10. Collection is what a user waits on after every study, and
the naive path pays an extra ``get_run`` plus a file copy per run (peers_and_pains §C3:
5-12 ms against 0.15 ms). Then the collector alone is timed as the experiment grows through
the ``--growth`` sizes (runs are added to the same store, so it is built once): the search is
one indexed query per 1,000 runs and loading is parallel, so the time should grow about
linearly with the runs and stay far below the naive cost per run. Times are the median of
``--repeat`` collections after one warm-up (the operating system's file cache is warm for both
sides, as it is when a user collects a study just recorded). The machine's load average is
printed before and after: other processes on the same cores slow both sides.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
from taskloom.taskkey import to_jsonable
from taskloom_recorder import RecorderCollector
from taskloom_recorder.artifacts import read_parquet

#: the repository's tests folder, for the run-making helpers in ``collect/mlflow_runs.py``
TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path.insert(0, str(TESTS))
from collect.mlflow_runs import recorder_tags, rolling_task, write_parquet  # noqa: E402

#: rows of each prediction (about ten years of business days)
PRED_ROWS = 2_500
EXPERIMENT = "bench_collect"


def add_runs(client: MlflowClient, experiment_id: str, first: int, count: int) -> None:
    """Record runs ``first .. first+count-1``: tags, one log_batch, task.json, pred.parquet.

    The artifact files are written straight into each run's local artifact folder (what
    ``log_artifact`` does on a local store, minus a copy), so building 2,000 runs stays quick.
    """
    base = pd.Timestamp("2008-01-02")
    index = pd.bdate_range(base, periods=PRED_ROWS, name="datetime")
    for i in range(first, first + count):
        start = base + pd.offsets.BDay(20 * i)
        task = rolling_task(start.strftime("%Y-%m-%d"), None)
        run = client.create_run(experiment_id, tags=recorder_tags(task, key=f"k{i}"))
        run_id, now = run.info.run_id, int(time.time() * 1000)
        client.log_batch(
            run_id,
            metrics=[Metric("ic", (i % 97) / 97, now, 0), Metric("rank_ic", 0.5, now, 0)],
            params=[Param("model.class", "LGBModel"), Param("window", str(i))],
        )
        folder = Path(run.info.artifact_uri)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "task.json").write_text(json.dumps(to_jsonable(task)))
        values = [((i * 7919 + j) % 1000) / 1000 for j in range(PRED_ROWS)]
        write_parquet(pd.Series(values, index=index, name="score"), folder / "pred.parquet")
        client.set_terminated(run_id, "FINISHED")


def naive_collect(client: MlflowClient, experiment_id: str) -> dict[str, Any]:
    """List every run, keep FINISHED ones, download each prediction, read it."""
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            break
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for run in runs:
            if run.info.status != "FINISHED":
                continue
            path = client.download_artifacts(run.info.run_id, "pred.parquet", tmp)
            out[run.info.run_id] = read_parquet(Path(path))
    return out


def timed(func: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Median seconds of ``repeat`` calls after one warm-up call, and the last result."""
    result = func()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        result = func()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def load_average() -> str:
    """The machine's 1-minute load average, as printed with the timings."""
    return f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=500, help="runs for the naive comparison")
    parser.add_argument("--growth", default="100,500,2000", help="experiment sizes to time")
    parser.add_argument("--repeat", type=int, default=3, help="timed collections (median)")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 100 runs, growth 50,100,200, one repeat")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.growth, args.repeat = 100, "50,100,200", 1
    sizes = sorted({int(n) for n in args.growth.split(",")} | {args.runs})
    logging.getLogger("mlflow").setLevel(logging.WARNING)

    with tempfile.TemporaryDirectory(prefix="bench-collect-") as tmp:
        uri = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        client = MlflowClient(tracking_uri=uri)
        experiment_id = client.create_experiment(EXPERIMENT,
                                                 artifact_location=str(Path(tmp) / "mlruns"))
        print(f"MLflow sqlite store; one prediction Series of {PRED_ROWS:,} rows per run; "
              f"median of {args.repeat} after a warm-up; {load_average()}")
        growth, made = [], 0
        for size in sizes:
            started = time.perf_counter()
            add_runs(client, experiment_id, made, size - made)
            print(f"  recorded {size - made} runs in {time.perf_counter() - started:.1f} s")
            made = size
            seconds, ours = timed(lambda: RecorderCollector(EXPERIMENT, tracking_uri=uri)(),
                                  args.repeat)
            assert len(ours["pred"]) == size, (len(ours["pred"]), size)
            growth.append((size, seconds))
            if size == args.runs:
                naive_s, theirs = timed(lambda: naive_collect(client, experiment_id),
                                        args.repeat)
                same = ours["pred"].keys() == theirs.keys() and all(
                    ours["pred"][k].equals(v) for k, v in theirs.items())
                print(f"\ncollect {size} runs: RecorderCollector {seconds:.3f} s, naive (list "
                      f"all + download_artifacts + read) {naive_s:.3f} s, ratio "
                      f"{naive_s / seconds:.1f}x, same predictions: {'yes' if same else 'NO'}\n")
        print(f"{'runs':>8}{'collector s':>14}{'ms/run':>10}")
        for size, seconds in growth:
            print(f"{size:>8}{seconds:>14.3f}{seconds / size * 1000:>10.2f}")
        print(f"at the end: {load_average()}")


if __name__ == "__main__":
    main()
