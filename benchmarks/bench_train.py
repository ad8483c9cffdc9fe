"""What taskloom adds to training a rolling study: pool, recording and collection per window.

    python benchmarks/bench_train.py [--windows 200] [--instruments 50] [--model ridge|hgb]

The same ``--windows`` rolling tasks (a qlib-shaped template over the synthetic market panel
written to parquet, one window every 5 trading days, each training on two years) are
trained twice, by the same code, :func:`taskloom.train_values`:

* **plain loop**: a ``for`` loop over the tasks that writes each window's predictions and
  labels to parquet files, then reads them back and concatenates the predictions (the
  least a user needs to have a study on disk and stitch it);
* **taskloom**: ``TrainerRM`` on a SQLite pool (this process is the only worker), each
  window recorded as an MLflow run in a SQLite tracking store (params, tags, ``task.json``,
  ``pred.parquet``, ``label.parquet``), then ``get_collector("recorder")`` with the
  ``rolling_group`` processor stitching the predictions.

Both start from a cold panel cache and the same process, so the difference is the pool,
the recording and the collection. The goal: under 15% of the plain loop. The taskloom side
is split into its two phases (training through the pool with recording and tagging, then
collection). Then the tracking-store writes of its runs are replayed with bare client calls
into a fresh store (``create_run`` with the same tags, one ``log_batch``, ``set_terminated``):
the least that recording one MLflow run per window costs, whoever does it. The overhead is
printed as that part and the rest, which is taskloom's own. ``--profile`` prints where the
taskloom side's time goes (cProfile, top functions by cumulative time).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
import taskloom
from taskloom_panel import SIGNAL_FEATURES, panel_task, synthetic_market, write_panel

#: trading days between two windows' test starts (and each window's test length)
STEP = 5
MODELS = {
    "ridge": {"class": "Ridge", "module_path": "sklearn.linear_model", "kwargs": {"alpha": 10.0}},
    "hgb": {"class": "sklearn.ensemble.HistGradientBoostingRegressor",
            "kwargs": {"max_iter": 30, "max_depth": 3, "early_stopping": False}},
}


def study(windows: int, instruments: int, model: str, directory: Path) -> list[dict[str, Any]]:
    """``windows`` rolling tasks over a synthetic panel written to ``directory``."""
    test_days = windows * STEP
    market = synthetic_market(instruments=instruments, start="2010-01-01",
                              end=pd.Timestamp("2012-01-01") + pd.offsets.BDay(test_days + 5),
                              seed=3)
    path = str(write_panel(market, directory / "market.parquet"))
    template = panel_task(path, MODELS[model], SIGNAL_FEATURES,
                          {"train": ("2010-01-01", "2011-06-30"),
                           "valid": ("2011-07-01", "2011-12-31"), "test": ("2012-01-01", None)})
    days = market.index.get_level_values("datetime").unique()
    gen = taskloom.get_generator("rolling")(step=STEP, rtype="sliding",
                                           calendar=taskloom.TradingCalendar(days))
    return taskloom.task_generator(template, gen)[:windows]


def plain_loop(tasks: list[dict[str, Any]], directory: Path) -> tuple[float, pd.Series]:
    """Train each task, write its values to parquet, read the predictions back, stitch them."""
    start = time.perf_counter()
    directory.mkdir()
    for i, task in enumerate(tasks):
        for key, value in taskloom.train_values(task).items():
            frame = value.to_frame(key) if isinstance(value, pd.Series) else value
            frame.to_parquet(directory / f"{i:04d}-{key}.parquet")
    pred = pd.concat([pd.read_parquet(path).iloc[:, 0]
                      for path in sorted(directory.glob("*-pred.parquet"))]).sort_index()
    return time.perf_counter() - start, pred


def with_taskloom(tasks: list[dict[str, Any]], directory: Path
                  ) -> tuple[dict[str, float], pd.Series]:
    """TrainerRM on a SQLite pool with MLflow recording, then collection; phase times."""
    tracking_uri = f"sqlite:///{directory / 'mlflow.db'}"
    taskloom.get_recorder("mlflow")("bench", tracking_uri=tracking_uri).prepare()
    phases: dict[str, float] = {}
    start = time.perf_counter()
    trainer = taskloom.TrainerRM("bench", storage=f"sqlite:///{directory / 'pool.db'}",
                                 tracking_uri=tracking_uri)
    trainer.train(tasks)
    phases["train, record, tag (pool included)"] = time.perf_counter() - start
    begin = time.perf_counter()
    collector = taskloom.get_collector("recorder")(
        "bench", process_list=taskloom.get_processor("rolling_group")(),
        rec_key_func=lambda run: ("ridge", run.data.tags["taskloom.segment.test.start"]),
        tracking_uri=tracking_uri)
    (pred,) = collector()["pred"].values()
    phases["collect and stitch"] = time.perf_counter() - begin
    return phases, pred


def mlflow_alone(directory: Path, replayed: Path) -> float:
    """The tracking-store writes of the taskloom side's runs, replayed with bare client calls.

    Each FINISHED run of ``replayed``'s store is written again into a fresh store in
    ``directory``: ``create_run`` with the same tags, one ``log_batch`` with the same params
    and metrics, ``set_terminated``; seconds. That is the least any code recording one MLflow
    run per window pays on top of writing its files (which the plain loop writes too), so the
    part of the overhead above it is taskloom's own (pool, tags and params made from the task,
    ``task.json``, collection).
    """
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient
    from taskloom_recorder import tracking

    source = MlflowClient(f"sqlite:///{replayed / 'mlflow.db'}")
    runs = source.search_runs([source.get_experiment_by_name("bench").experiment_id],
                              max_results=50_000)
    uri = f"sqlite:///{directory / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment_id = client.create_experiment("bench")
    tracking.use_wal(uri)
    start = time.perf_counter()
    for run in runs:
        tags = {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.")}
        made = client.create_run(experiment_id, tags=tags, run_name=run.info.run_name)
        client.log_batch(made.info.run_id,
                         params=[Param(k, v) for k, v in run.data.params.items()],
                         metrics=[Metric(k, v, 0, 0) for k, v in run.data.metrics.items()])
        client.set_terminated(made.info.run_id)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--windows", type=int, default=200)
    parser.add_argument("--instruments", type=int, default=50)
    parser.add_argument("--model", choices=sorted(MODELS), default="ridge")
    parser.add_argument("--profile", action="store_true", help="profile the taskloom side")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        directory = Path(tmp)
        os.chdir(directory)  # nothing lands in the repository
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        tasks = study(args.windows, args.instruments, args.model, directory)
        print(f"{len(tasks)} windows of {args.model} on {args.instruments} instruments")
        taskloom.train_values(tasks[0])  # imports and first-call costs, for both sides
        plain, plain_pred = plain_loop(tasks, directory / "plain")
        profiler = cProfile.Profile() if args.profile else None
        if profiler:
            profiler.enable()
        phases, pred = with_taskloom(tasks, directory / "taskloom")
        if profiler:
            profiler.disable()
        floor = mlflow_alone(directory / "replay", directory / "taskloom")
        total = sum(phases.values())
        assert pred.sort_index().equals(plain_pred.rename(pred.name)), "the two studies differ"
        print(f"plain loop: {plain:8.2f} s  ({plain / len(tasks) * 1000:6.1f} ms per window)")
        print(f"taskloom:   {total:8.2f} s  ({total / len(tasks) * 1000:6.1f} ms per window)")
        for name, seconds in phases.items():
            print(f"  {name:34} {seconds:7.2f} s  ({seconds / len(tasks) * 1000:6.1f} ms "
                  "per window)")
        overhead = (total - plain) / plain
        print(f"overhead: {total - plain:.2f} s = {overhead:.1%} of the plain loop "
              f"({(total - plain) / len(tasks) * 1000:.1f} ms per window; goal < 15%)")
        own = total - plain - floor
        print(f"  MLflow alone (the same runs' store writes, bare client calls): {floor:.2f} s = "
              f"{floor / plain:.1%} ({floor / len(tasks) * 1000:.1f} ms per window)")
        print(f"  taskloom's own (the rest): {own:.2f} s = {own / plain:.1%} "
              f"({own / len(tasks) * 1000:.1f} ms per window)")
        if profiler:
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)


if __name__ == "__main__":
    main()
