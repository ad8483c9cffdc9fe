"""Make MLflow runs the way taskloom's recorder does, straight through ``MlflowClient``.

The collector tests and ``benchmarks/bench_collect.py`` build their runs with these helpers,
independently of the recorder plugin: tags, ``task.json`` (+ ``task.types.json``) and
``pred.parquet`` follow the shared recording conventions, so the collector is proved on any
MLflow experiment, not only on runs the recorder made.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient
from taskloom.jsontypes import type_map
from taskloom.taskkey import to_jsonable


def write_parquet(obj: pd.DataFrame | pd.Series, path: Path) -> None:
    """Write a DataFrame, or a Series with the shared Series convention, as parquet."""
    if isinstance(obj, pd.Series):
        name = obj.name
        frame = obj.to_frame(name=name if isinstance(name, str) else "__series__")
        jsonable = name if name is None or isinstance(name, str | int | float | bool) else None
        frame.attrs["taskloom"] = {"series": True, "name": jsonable}
        obj = frame
    obj.to_parquet(path)


def write_artifact(obj: Any, path: Path) -> None:
    """Write ``obj`` to ``path`` as its extension says (bytes are written as they are)."""
    if isinstance(obj, bytes):
        path.write_bytes(obj)
    elif path.suffix == ".parquet":
        write_parquet(obj, path)
    elif path.suffix == ".json":
        path.write_text(json.dumps(obj))
    elif path.suffix == ".csv":
        obj.to_csv(path)
    elif path.suffix in (".pkl", ".pickle"):
        pd.to_pickle(obj, path)
    else:
        path.write_text(obj)


def recorder_tags(task: dict[str, Any], *, key: str = "k", pool: str = "p") -> dict[str, str]:
    """The tags the recorder puts on a run of ``task`` (key, pool, model, segment bounds)."""
    tags = {"taskloom.key": key, "taskloom.pool": pool, "taskloom.task_id": "1",
            "taskloom.attempt": "1"}
    if "class" in task.get("model", {}):
        tags["taskloom.model"] = task["model"]["class"]
    segments = task.get("dataset", {}).get("kwargs", {}).get("segments", {})
    for name, bounds in segments.items():
        for side, bound in zip(("start", "end"), bounds, strict=True):
            if bound is not None:
                tags[f"taskloom.segment.{name}.{side}"] = pd.Timestamp(bound).strftime("%Y-%m-%d")
    tags.update(task.get("tags", {}))
    return tags


def make_run(
    client: MlflowClient,
    experiment_id: str,
    *,
    task: dict[str, Any] | None = None,
    artifacts: dict[str, Any] | None = None,
    tags: dict[str, str] | None = None,
    status: str = "FINISHED",
    start_time: int | None = None,
) -> str:
    """One run with the recorder's tags and ``task.json`` (for ``task``), the ``artifacts``
    (``{file name: object}``), and the final ``status``; returns its run id."""
    all_tags = {**(recorder_tags(task) if task is not None else {}), **(tags or {})}
    run = client.create_run(experiment_id, start_time=start_time)
    run_id = run.info.run_id
    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric("rows", 1.0, now, 0)],
                     params=[Param("model", str(all_tags.get("taskloom.model", "")))],
                     tags=[RunTag(k, v) for k, v in all_tags.items()])
    files = dict(artifacts or {})
    if task is not None:
        files["task.json"] = to_jsonable(task)
        types = type_map(task)
        if types:
            files["task.types.json"] = types
    if files:
        with tempfile.TemporaryDirectory() as tmp:
            for name, obj in files.items():
                write_artifact(obj, Path(tmp) / name)
            client.log_artifacts(run_id, tmp)
    client.set_terminated(run_id, status)
    return run_id


def rolling_task(start: str, end: str | None, model: str = "LGBModel") -> dict[str, Any]:
    """A qlib-style rolling task whose test segment is ``(start, end)`` (Timestamps)."""
    test = (pd.Timestamp(start), None if end is None else pd.Timestamp(end))
    return {
        "model": {"class": model, "module_path": "qlib.contrib.model.gbdt"},
        "dataset": {"kwargs": {"segments": {
            "train": (pd.Timestamp("2008-01-01"), pd.Timestamp("2014-12-31")),
            "test": test,
        }}},
    }


def prediction(start: str, days: int, seed: int = 0) -> pd.Series:
    """A prediction Series over ``days`` business days from ``start`` (deterministic values)."""
    index = pd.bdate_range(start, periods=days, name="datetime")
    return pd.Series([(seed * 7919 + i) % 1000 / 1000 for i in range(days)], index=index,
                     name="score")
