"""A pytest plugin for people who write taskloom plugins (and for taskloom's own tests).

Installed with taskloom through the ``pytest11`` entry point, so its fixtures are available
in any test suite:

* ``register_plugin(obj, name=None)``: register an object or module with ``@hookimpl``
  functions in-process for one test; it is removed afterwards, whatever the test did.
* ``memory_store``: a fresh ``memory://`` store for one test.

The storage backend contract suite is in :mod:`taskloom.testing.backend` (imported only by
the test modules that subclass it); this plugin registers its ``slow`` marker.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from taskloom import plugins
from taskloom.storage import Store
from taskloom.stores import get_storage


@pytest.fixture
def register_plugin() -> Iterator[Callable[..., str]]:
    """Register throwaway plugins for the duration of one test; returns the name used."""
    names: list[str] = []

    def register(plugin: object, name: str | None = None) -> str:
        name = name or f"test-plugin-{uuid.uuid4().hex[:8]}"
        plugins.register_plugin(plugin, name)
        names.append(name)
        return name

    try:
        yield register
    finally:
        for name in reversed(names):
            plugins.unregister_plugin(name)


@pytest.fixture
def memory_store() -> Iterator[Store]:
    """A fresh, private in-memory store."""
    store = get_storage(f"memory://{uuid.uuid4().hex}")
    try:
        yield store
    finally:
        store.close()


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker the backend contract suite puts on its multi-process test."""
    config.addinivalue_line("markers", "slow: multi-process and chaos tests")
