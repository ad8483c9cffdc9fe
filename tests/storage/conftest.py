"""Fixtures for the storage tests: every backend behind one ``backend`` fixture.

``backend`` is parametrized over memory, sqlite (a real file in ``tmp_path``) and mongo (a
fresh database per test from the top-level ``mongo_url`` fixture); the conformance suite
asks for it and runs unchanged against each.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from taskloom.storage import Pool, Store, get_storage


@dataclass
class Backend:
    """One backend under test: its name and the URL that opens (and re-opens) its store."""

    name: str
    url: str

    def open(self) -> Store:
        """A new store object for the URL (the same data each time)."""
        return get_storage(self.url)


@pytest.fixture(params=["memory", "sqlite", pytest.param("mongo", marks=pytest.mark.mongo)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """Each backend in turn, with an empty store."""
    name = request.param
    if name == "memory":
        return Backend(name, f"memory://test-{uuid.uuid4().hex}")
    if name == "sqlite":
        return Backend(name, f"sqlite:///{tmp_path}/pool.db")
    return Backend(name, request.getfixturevalue("mongo_url"))


@pytest.fixture
def store(backend: Backend) -> Iterator[Store]:
    """The backend's store, closed after the test."""
    opened = backend.open()
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def pool(store: Store) -> Pool:
    """An empty pool named ``tasks``."""
    return store.pool("tasks")
