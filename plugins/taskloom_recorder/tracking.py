"""Which MLflow tracking store taskloom records into, and one client for it.

``MLFLOW_TRACKING_URI`` decides when it is set. Otherwise the embedded default is MLflow's own:
a SQLite file ``mlflow.db`` plus an artifact folder ``mlruns/`` in the working directory. The
default is resolved to an absolute path once, so that the worker processes a coordinator
starts record into the same store whatever their working directory.

MLflow is imported inside the functions: importing it costs seconds, and the CLI and the
plugin listing must not pay for it.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)

#: the file name of the embedded default tracking store, in the working directory
DEFAULT_DB = "mlflow.db"
SQLITE_PREFIX = "sqlite:///"


def tracking_uri(uri: str | None = None) -> str:
    """``uri`` if given, else ``MLFLOW_TRACKING_URI``, else the SQLite file in the working dir."""
    if uri:
        return uri
    from_env = os.environ.get("MLFLOW_TRACKING_URI")
    if from_env:
        return from_env
    return f"{SQLITE_PREFIX}{Path.cwd().resolve() / DEFAULT_DB}"


def client(uri: str | None = None) -> MlflowClient:
    """An MLflow client on :func:`tracking_uri` ``(uri)``."""
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri(uri))


@cache
def use_wal(uri: str) -> None:
    """Put a SQLite tracking store in write-ahead-log mode (once per file and process).

    MLflow commits every step of a run (create, log, end) as its own transaction; in SQLite's
    default rollback-journal mode each one syncs the disk several times, which costs more per
    run than a small model's training. WAL mode cuts that by more than half and lets readers
    (a collector) work while workers write. The mode is a property of the file, so switching
    it once is enough; a store that is busy at that moment is left as it is (logged).
    """
    if not uri.startswith(SQLITE_PREFIX):
        return
    path = Path(uri[len(SQLITE_PREFIX):].split("?", 1)[0])
    if not path.is_file():
        return
    try:
        with sqlite3.connect(path, timeout=5) as connection:
            connection.execute("PRAGMA journal_mode=WAL")
    except sqlite3.Error as exc:
        log.info("tracking store %s stays in its journal mode: %s", path, exc)
