"""Which MLflow tracking store taskloom records into, and one client for it.

``MLFLOW_TRACKING_URI`` decides when it is set. Otherwise the embedded default is MLflow's own:
a SQLite file ``mlflow.db`` plus an artifact folder ``mlruns/`` in the working directory. The
default is resolved to an absolute path once, so that the worker processes a coordinator
starts record into the same store whatever their working directory.

MLflow is imported inside the functions: importing it costs seconds, and the CLI and the
plugin listing must not pay for it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

#: the file name of the embedded default tracking store, in the working directory
DEFAULT_DB = "mlflow.db"


def tracking_uri(uri: str | None = None) -> str:
    """``uri`` if given, else ``MLFLOW_TRACKING_URI``, else the SQLite file in the working dir."""
    if uri:
        return uri
    from_env = os.environ.get("MLFLOW_TRACKING_URI")
    if from_env:
        return from_env
    return f"sqlite:///{Path.cwd().resolve() / DEFAULT_DB}"


def client(uri: str | None = None) -> MlflowClient:
    """An MLflow client on :func:`tracking_uri` ``(uri)``."""
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri(uri))
