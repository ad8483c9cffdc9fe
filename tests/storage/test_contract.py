"""The shipped backend contract suite (:mod:`taskloom.testing.backend`) on every built-in backend.

Each class overrides the one fixture a third-party backend overrides too, ``store_url``; the
SQLite and MongoDB classes also say how to corrupt a stored task (the memory one says why it
cannot hold one).
"""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import pytest
from support.mongo import corrupt_mongo_task
from taskloom.storage import Store
from taskloom.testing.backend import BackendContract, CorruptTask


class TestMemoryBackend(BackendContract):
    @pytest.fixture
    def store_url(self) -> str:
        return f"memory://test-{uuid.uuid4().hex}"

    @pytest.fixture
    def corrupt_task(self) -> CorruptTask:
        pytest.skip("memory:// keeps Python objects, never encoded data: nothing it holds "
                    "can be unreadable")


class TestSQLiteBackend(BackendContract):
    @pytest.fixture
    def store_url(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path}/pool.db"

    @pytest.fixture
    def corrupt_task(self) -> CorruptTask:
        def corrupt(store: Store, pool_name: str, task_id: str) -> None:
            conn = sqlite3.connect(store.path)  # type: ignore[attr-defined]
            with conn:
                conn.execute("UPDATE tasks SET def = '{broken' WHERE id = ? AND pool = ?",
                             (int(task_id), pool_name))
            conn.close()

        return corrupt


@pytest.mark.mongo
class TestMongoBackend(BackendContract):
    @pytest.fixture
    def store_url(self, mongo_url: str) -> str:
        return mongo_url

    @pytest.fixture
    def corrupt_task(self) -> CorruptTask:
        return corrupt_mongo_task
