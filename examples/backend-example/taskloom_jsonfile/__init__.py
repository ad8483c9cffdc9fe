"""An example storage backend: ``jsonfile:///path/store.json`` keeps every pool in one JSON file.

It shows what a third-party backend writes: the primitives of ``taskloom.backend.Store`` and
``Pool``, and one hook that registers the URL scheme.
"""

from __future__ import annotations

from taskloom.backend import RegisterStorage, hookimpl

from taskloom_jsonfile.store import JSONFilePool, JSONFileStore

__all__ = ["JSONFilePool", "JSONFileStore"]


@hookimpl
def taskloom_register_storage(register: RegisterStorage) -> None:
    """Register the ``jsonfile`` URL scheme."""
    register("jsonfile", JSONFileStore)
