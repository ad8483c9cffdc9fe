"""Settings shared by the whole test suite."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.mongo import (
    SECANTUS_REQUIREMENT,
    SWITCH_ENV,
    URI_ENV,
    BuildError,
    MongoServer,
    describe,
    ensure_secantus,
    is_ready,
    mongo_switch,
    ping,
    secantus_venv,
    start_secantus,
    stop_server,
    with_database,
)
from taskloom_recorder import tracking

# Wide, colourless rich output so CLI tests can read whole table rows.
os.environ.setdefault("COLUMNS", "200")
os.environ.setdefault("NO_COLOR", "1")
# Tests choose their storage explicitly; a developer's setting must not leak in.
os.environ.pop("TASKLOOM_STORAGE", None)
os.environ.pop("TASKLOOM_BLOCK_PLUGINS", None)
os.environ.pop("TASKLOOM_TRACE_PLUGINS", None)


def pytest_configure(config: pytest.Config) -> None:
    """Refuse a misspelt TASKLOOM_TEST_MONGO before any test runs."""
    try:
        mongo_switch()
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from exc


def pytest_report_header() -> str:
    """Say up front which MongoDB server the Mongo tests run against, or why they will skip."""
    return f"taskloom MongoDB tests: {describe()}"


def _provision_secantus(config: pytest.Config) -> Path:
    """The SecantusDB interpreter, built on first use with one line on the terminal about it.

    Skips (with the reason and the build log's path) when the build fails, e.g. offline;
    fails instead under ``TASKLOOM_TEST_MONGO=require``.
    """
    venv = secantus_venv()
    if is_ready(venv):
        return ensure_secantus()[0]
    capture = config.pluginmanager.getplugin("capturemanager")
    terminal = config.get_terminal_writer()
    started = time.monotonic()
    with capture.global_and_fixture_disabled():
        terminal.line()
        terminal.write(f"taskloom tests: building the MongoDB test server ({SECANTUS_REQUIREMENT}, "
                       f"first run only, about a minute) in {venv} ... ", flush=True)
    try:
        python, _ = ensure_secantus()
    except BuildError as exc:
        with capture.global_and_fixture_disabled():
            terminal.line("failed")
        reason = f"could not build SecantusDB: {exc}"
        if mongo_switch() == "require":
            pytest.fail(f"{reason} ({SWITCH_ENV}=require)", pytrace=False)
        pytest.skip(f"MongoDB tests skipped: {reason}. Set {URI_ENV} to use a server of "
                    f"your own, or {SWITCH_ENV}=off to skip without trying")
    with capture.global_and_fixture_disabled():
        terminal.line(f"ready after {time.monotonic() - started:.0f} s")
    return python


@pytest.fixture(scope="session")
def mongo_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MongoServer]:
    """The session's MongoDB-protocol server.

    ``TASKLOOM_TEST_MONGO_URI`` if set, else SecantusDB (provisioned on first use) started
    for this session; skips with the reason under ``TASKLOOM_TEST_MONGO=off`` or when
    SecantusDB cannot be built (unless ``TASKLOOM_TEST_MONGO=require``).
    """
    if mongo_switch() == "off":
        pytest.skip(f"MongoDB tests skipped: {SWITCH_ENV}=off")
    uri = os.environ.get(URI_ENV)
    if uri:
        ping(uri, 10_000)
        yield MongoServer(uri)
        return
    python = _provision_secantus(request.config)
    server = start_secantus(python, tmp_path_factory.mktemp("secantus") / "data")
    try:
        yield server
    finally:
        stop_server(server)


@pytest.fixture
def mongo_url(mongo_server: MongoServer) -> Iterator[str]:
    """A URL naming a fresh database on the session's server, dropped after the test."""
    import pymongo

    database = f"taskloom_test_{uuid.uuid4().hex[:12]}"
    yield with_database(mongo_server.uri, database)
    client: pymongo.MongoClient = pymongo.MongoClient(mongo_server.uri)
    try:
        client.drop_database(database)
    finally:
        client.close()


# One MLflow tracking store per test module: creating its SQLite database costs seconds.
# ``tracking_dir`` is the module's working directory for recording: the default store
# (``mlflow.db`` and ``mlruns/``) lives there, and ``MLFLOW_TRACKING_URI`` is unset while the
# module runs, so nothing is written in the repository.


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
