"""Fixtures for the pool tests: a TaskManager on every backend.

``storage_url`` is parametrized over memory, a SQLite file and MongoDB (a fresh database per
test from the top-level ``mongo_url`` fixture; skipped with the reason when there is no
server). ``store`` opens it once per test and closes it afterwards; ``tm`` is a
TaskManager on a fresh pool of that store.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from taskloom.manager import TaskManager
from taskloom.storage import Store
from taskloom.stores import get_storage


@pytest.fixture(params=["memory", "sqlite", pytest.param("mongo", marks=pytest.mark.mongo)])
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL of an empty store on each backend in turn."""
    if request.param == "memory":
        return f"memory://pool-test-{uuid.uuid4().hex}"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/pool.db"
    return request.getfixturevalue("mongo_url")


@pytest.fixture
def store(storage_url: str) -> Iterator[Store]:
    """The backend's store, closed after the test."""
    opened = get_storage(storage_url)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def tm(store: Store) -> TaskManager:
    """A TaskManager on an empty pool of the backend's store."""
    return TaskManager(f"tasks-{uuid.uuid4().hex[:8]}", store)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite store in the test's temporary directory (for the multi-process tests)."""
    return f"sqlite:///{tmp_path}/pool.db"

