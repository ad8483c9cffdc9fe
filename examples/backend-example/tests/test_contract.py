"""The taskloom backend contract suite, run on this backend: one fixture to override."""

from __future__ import annotations

from pathlib import Path

import pytest
from taskloom.testing.backend import BackendContract


class TestJSONFileBackend(BackendContract):
    @pytest.fixture
    def store_url(self, tmp_path: Path) -> str:
        return f"jsonfile://{tmp_path}/store.json"
