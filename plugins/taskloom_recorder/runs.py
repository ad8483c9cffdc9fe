"""Writing the runs the recorder makes: through MLflow's client, or straight into its SQLite store.

A recorded run takes two writes: it is created RUNNING with its tags before the handler runs,
and at the end its params and metrics are added and it is ended. Through MLflow's client that
is three calls and about 15 ms of SQLAlchemy per run, which is a third of a small model's
training. On MLflow's SQLite store the same rows are written with :mod:`sqlite3` in two short
transactions (under 1 ms), which is what :class:`SqliteRuns` does.

It writes the five tables a run lives in (``runs``, ``tags``, ``params``, ``metrics``,
``latest_metrics``) with the values MLflow's own store writes, and only when those tables have
exactly the columns it knows (:func:`sqlite_layout_known`); any other store, or an MLflow whose
tables changed, is written through :class:`ClientRuns`. MLflow reads such a run like any other:
``tests/record/test_run_writers.py`` compares the two field by field.
``TASKLOOM_MLFLOW_WRITES=client`` makes every run go through the client.
"""

from __future__ import annotations

import math
import os
import sqlite3
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from taskloom_recorder import tracking
from taskloom_recorder.params import batches, limits
from taskloom_recorder.retry import retrying

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

#: the environment variable that chooses how runs are written: ``auto`` or ``client``
WRITES_VARIABLE = "TASKLOOM_MLFLOW_WRITES"

#: the columns of each table a run is written to, as MLflow's SQLite store has them
RUN_TABLES: dict[str, frozenset[str]] = {
    "runs": frozenset({"run_uuid", "name", "source_type", "source_name", "entry_point_name",
                       "user_id", "status", "start_time", "end_time", "deleted_time",
                       "source_version", "lifecycle_stage", "artifact_uri", "experiment_id"}),
    "tags": frozenset({"key", "value", "run_uuid"}),
    "params": frozenset({"key", "value", "run_uuid"}),
    "metrics": frozenset({"key", "value", "timestamp", "run_uuid", "step", "is_nan"}),
    "latest_metrics": frozenset({"key", "value", "timestamp", "step", "is_nan", "run_uuid"}),
}
#: the columns read from ``experiments`` (it may have more)
EXPERIMENT_COLUMNS = frozenset({"experiment_id", "artifact_location", "lifecycle_stage"})
#: how long a write waits for another process's transaction on the same file
BUSY_SECONDS = 60.0


@dataclass(frozen=True)
class NewRun:
    """A run the recorder created: its id and where its artifacts go."""

    run_id: str
    artifact_uri: str


class RunWriter(Protocol):
    """Creates a RUNNING run, ends it with its params and metrics, reads its status."""

    def create(self, experiment_id: str, tags: Mapping[str, str], run_name: str) -> NewRun:
        """A new RUNNING run of the experiment with these tags; MlflowException if refused."""

    def end(self, run_id: str, params: Mapping[str, str], metrics: Mapping[str, float],
            tags: Mapping[str, str], status: str) -> None:
        """Add params, metrics and tags to the run and end it with ``status``."""

    def status(self, run_id: str) -> str:
        """The run's status: ``RUNNING``, ``FINISHED``, ``FAILED``, ``KILLED``..."""


class ClientRuns:
    """Runs written through MLflow's client: any tracking store MLflow supports."""

    def __init__(self, client: MlflowClient) -> None:
        self.client = client

    def create(self, experiment_id: str, tags: Mapping[str, str], run_name: str) -> NewRun:
        run = retrying(self.client.create_run, experiment_id, tags=dict(tags),
                       run_name=run_name)
        return NewRun(run.info.run_id, run.info.artifact_uri)

    def end(self, run_id: str, params: Mapping[str, str], metrics: Mapping[str, float],
            tags: Mapping[str, str], status: str) -> None:
        from mlflow.entities import Metric, Param, RunTag

        now = millis()
        for batch in batches(params, tags, metrics, limits()):
            retrying(self.client.log_batch, run_id,
                     metrics=[Metric(k, v, now, 0) for k, v in batch.metrics.items()],
                     params=[Param(k, v) for k, v in batch.params.items()],
                     tags=[RunTag(k, v) for k, v in batch.tags.items()])
        retrying(self.client.set_terminated, run_id, status)

    def status(self, run_id: str) -> str:
        return retrying(self.client.get_run, run_id).info.status


class SqliteRuns:
    """Runs written straight into MLflow's SQLite tracking store, one transaction per write.

    Only for a file whose run tables :func:`sqlite_layout_known` accepts. The rows are those
    MLflow's store writes: ``user_id`` "unknown" (or the ``mlflow.user`` tag), source type
    UNKNOWN, the run name as the ``mlflow.runName`` tag too, the artifact URI under the
    experiment's artifact location, NaN metrics as 0 with ``is_nan``, infinities as the
    largest float. One connection per thread, made on first use.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()

    def _connection(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(self.path, timeout=BUSY_SECONDS, isolation_level=None)
            connection.execute("PRAGMA synchronous = NORMAL")
            self._local.connection = connection
        return connection

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: committed at the end of the block, rolled back if it raises."""
        connection = self._connection()
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield connection
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

    def create(self, experiment_id: str, tags: Mapping[str, str], run_name: str) -> NewRun:
        return retrying(self._create, experiment_id, tags, run_name)

    def _create(self, experiment_id: str, tags: Mapping[str, str], run_name: str) -> NewRun:
        from mlflow.exceptions import MlflowException
        from mlflow.utils.uri import append_to_uri_path

        with self._transaction() as connection:
            row = connection.execute(
                "SELECT artifact_location, lifecycle_stage FROM experiments "
                "WHERE experiment_id = ?", (int(experiment_id),)).fetchone()
            if row is None or row[1] != "active":
                raise MlflowException(f"experiment id {experiment_id} is "
                                      f"{'missing' if row is None else row[1]}")
            run_id = uuid.uuid4().hex
            artifact_uri = append_to_uri_path(row[0], run_id, "artifacts")
            connection.execute(
                "INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name, "
                "user_id, status, start_time, end_time, deleted_time, source_version, "
                "lifecycle_stage, artifact_uri, experiment_id) "
                "VALUES (?, ?, 'UNKNOWN', '', '', ?, 'RUNNING', ?, NULL, NULL, '', 'active', ?, ?)",
                (run_id, run_name, tags.get("mlflow.user", "unknown"), millis(), artifact_uri,
                 int(experiment_id)))
            connection.executemany(
                "INSERT INTO tags (key, value, run_uuid) VALUES (?, ?, ?)",
                [(k, v, run_id) for k, v in {**tags, "mlflow.runName": run_name}.items()])
        return NewRun(run_id, artifact_uri)

    def end(self, run_id: str, params: Mapping[str, str], metrics: Mapping[str, float],
            tags: Mapping[str, str], status: str) -> None:
        retrying(self._end, run_id, params, metrics, tags, status)

    def _end(self, run_id: str, params: Mapping[str, str], metrics: Mapping[str, float],
             tags: Mapping[str, str], status: str) -> None:
        from mlflow.exceptions import MlflowException

        now = millis()
        values = [(k, *stored_metric(v)) for k, v in metrics.items()]
        with self._transaction() as connection:
            ended = connection.execute(
                "UPDATE runs SET status = ?, end_time = ? "
                "WHERE run_uuid = ? AND lifecycle_stage = 'active'", (status, now, run_id))
            if ended.rowcount != 1:
                raise MlflowException(f"run {run_id} is missing or deleted: it cannot be ended")
            connection.executemany(
                "INSERT INTO params (key, value, run_uuid) VALUES (?, ?, ?)",
                [(k, v, run_id) for k, v in params.items()])
            connection.executemany(
                "INSERT OR REPLACE INTO tags (key, value, run_uuid) VALUES (?, ?, ?)",
                [(k, v, run_id) for k, v in tags.items()])
            connection.executemany(
                "INSERT OR IGNORE INTO metrics (key, value, timestamp, run_uuid, step, is_nan) "
                "VALUES (?, ?, ?, ?, 0, ?)", [(k, v, now, run_id, nan) for k, v, nan in values])
            connection.executemany(
                "INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid) "
                "VALUES (?, ?, ?, 0, ?, ?) ON CONFLICT (key, run_uuid) DO UPDATE SET "
                "value = excluded.value, timestamp = excluded.timestamp, step = excluded.step, "
                "is_nan = excluded.is_nan WHERE (excluded.step, excluded.timestamp, "
                "excluded.value) > (latest_metrics.step, latest_metrics.timestamp, "
                "latest_metrics.value)", [(k, v, now, nan, run_id) for k, v, nan in values])

    def status(self, run_id: str) -> str:
        from mlflow.exceptions import MlflowException

        row = self._connection().execute(
            "SELECT status FROM runs WHERE run_uuid = ?", (run_id,)).fetchone()
        if row is None:
            raise MlflowException(f"run {run_id} not found")
        return row[0]


def stored_metric(value: float) -> tuple[float, int]:
    """A metric value as MLflow's SQL store keeps it: ``(value, is_nan)``.

    NaN is 0 with ``is_nan``; an infinity is the largest float, signed.
    """
    if math.isnan(value):
        return 0.0, 1
    if math.isinf(value):
        return math.copysign(sys.float_info.max, value), 0
    return float(value), 0


def sqlite_layout_known(path: Path) -> bool:
    """Whether the SQLite file's run tables have exactly the columns :class:`SqliteRuns` writes."""
    try:
        connection = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True,
                                     timeout=BUSY_SECONDS)
    except sqlite3.Error:
        return False
    try:
        with connection:
            columns = {table: frozenset(row[1] for row in connection.execute(
                f"PRAGMA table_info({table})")) for table in [*RUN_TABLES, "experiments"]}
    except sqlite3.Error:
        return False
    finally:
        connection.close()
    return (all(columns[table] == expected for table, expected in RUN_TABLES.items())
            and EXPERIMENT_COLUMNS <= columns["experiments"])


#: the writer of each tracking URI and writes mode in this process (a forked child makes its own)
_WRITERS: dict[tuple[int, str, str], RunWriter] = {}


def writer(uri: str) -> RunWriter:
    """How this process writes the recorder's runs into the tracking store ``uri``.

    :class:`SqliteRuns` for a plain ``sqlite:///`` file with a known layout, unless
    ``TASKLOOM_MLFLOW_WRITES`` is ``client``; else :class:`ClientRuns`. Decided once per
    store, mode and process.
    """
    mode = os.environ.get(WRITES_VARIABLE) or "auto"
    if mode not in ("auto", "client"):
        raise ValueError(f"{WRITES_VARIABLE} must be 'auto' or 'client', got {mode!r}")
    key = (os.getpid(), uri, mode)
    found = _WRITERS.get(key)
    if found is None:
        found = _WRITERS[key] = _choose(uri, mode)
    return found


def _choose(uri: str, mode: str) -> RunWriter:
    if mode == "auto" and uri.startswith(tracking.SQLITE_PREFIX) and "?" not in uri:
        path = Path(uri[len(tracking.SQLITE_PREFIX):]).absolute()  # fixed: cwd may change
        if path.name != ":memory:" and path.is_file() and sqlite_layout_known(path):
            return SqliteRuns(path)
    return ClientRuns(tracking.client(uri))


def millis() -> int:
    """Now, in milliseconds since the epoch (MLflow's timestamps)."""
    return int(time.time() * 1000)
