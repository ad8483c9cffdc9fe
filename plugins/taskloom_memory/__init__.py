"""The ``memory://`` storage backend: process-local pools for tests and notebooks.

``memory://NAME`` names a store that lives as long as the process; every ``get_storage`` of
the same URL sees the same data (``memory://`` alone is the default one). Nothing is shared
with other processes.
"""

from __future__ import annotations

from taskloom.backend import RegisterStorage, hookimpl

from taskloom_memory.store import MemoryPool, MemoryStore

__all__ = ["MemoryPool", "MemoryStore"]


@hookimpl
def taskloom_register_storage(register: RegisterStorage) -> None:
    """Register the ``memory`` URL scheme."""
    register("memory", MemoryStore)
