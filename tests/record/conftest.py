"""Fixtures of the recording tests (the tracking store fixtures are in ``tests/conftest.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def pool_url(tmp_path: Path) -> str:
    """A SQLite task pool in the test's temporary directory."""
    return f"sqlite:///{tmp_path}/pool.db"
