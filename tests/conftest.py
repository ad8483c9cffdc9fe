"""Settings shared by the whole test suite."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from support.mongo import MongoServer, describe, find_server, stop_server, with_database

# Wide, colourless rich output so CLI tests can read whole table rows.
os.environ.setdefault("COLUMNS", "200")
os.environ.setdefault("NO_COLOR", "1")
# Tests choose their storage explicitly; a developer's setting must not leak in.
os.environ.pop("TASKLOOM_STORAGE", None)
os.environ.pop("TASKLOOM_BLOCK_PLUGINS", None)
os.environ.pop("TASKLOOM_TRACE_PLUGINS", None)


def pytest_report_header() -> str:
    """Say up front which MongoDB server the Mongo tests run against, or why they will skip."""
    return f"taskloom MongoDB tests: {describe()}"


@pytest.fixture(scope="session")
def mongo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MongoServer]:
    """The session's MongoDB-protocol server; skips (saying why) when there is none."""
    found = find_server(tmp_path_factory.mktemp("secantus") / "data")
    if isinstance(found, str):
        pytest.skip(found)
    try:
        yield found
    finally:
        stop_server(found)


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
