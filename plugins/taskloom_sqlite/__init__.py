"""The ``sqlite://`` storage backend: the embedded default, one file shared by local workers.

``sqlite:///relative/path.db`` (relative to the working directory) or
``sqlite:////absolute/path.db``, as in SQLAlchemy. See :mod:`taskloom_sqlite.store` for how
many processes share the file safely and :mod:`taskloom_sqlite.sql` for the schema.
"""

from __future__ import annotations

from taskloom.backend import RegisterStorage, hookimpl

from taskloom_sqlite.store import SQLitePool, SQLiteStore

__all__ = ["SQLitePool", "SQLiteStore"]


@hookimpl
def taskloom_register_storage(register: RegisterStorage) -> None:
    """Register the ``sqlite`` URL scheme."""
    register("sqlite", SQLiteStore)
