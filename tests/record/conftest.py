"""One MLflow tracking store per test module: creating its SQLite database costs seconds.

``tracking_dir`` is the module's working directory for recording: the default store
(``mlflow.db`` and ``mlruns/``) lives there, and ``MLFLOW_TRACKING_URI`` is unset while the
module runs, so nothing is written in the repository.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from taskloom_recorder import tracking


@pytest.fixture(scope="module")
def tracking_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The module's working directory, holding its default tracking store."""
    directory = tmp_path_factory.mktemp("tracking")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(directory)
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        yield directory


@pytest.fixture(scope="module")
def client(tracking_dir: Path):
    """An MLflow client on the module's tracking store."""
    return tracking.client()


@pytest.fixture
def experiment(tracking_dir: Path) -> str:
    """A fresh experiment name for the test."""
    return f"exp-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def pool_url(tmp_path: Path) -> str:
    """A SQLite task pool in the test's temporary directory."""
    return f"sqlite:///{tmp_path}/pool.db"
