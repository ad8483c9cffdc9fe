"""The ``mongodb://`` storage backend: pools shared by workers on many machines.

``mongodb://user:pw@host/dbname?options`` or ``mongodb+srv://...`` (pymongo URL syntax; the
database is the URL path, ``taskloom`` when there is none). ``get_storage(database)`` also
accepts a ready pymongo ``Database`` built with your own client (auth, TLS, pooling).
pymongo is imported only when a Mongo store is opened.
"""

from __future__ import annotations

from taskloom.backend import RegisterStorage, hookimpl

from taskloom_mongo.store import MongoPool, MongoStore

__all__ = ["MongoPool", "MongoStore"]


@hookimpl
def taskloom_register_storage(register: RegisterStorage) -> None:
    """Register the ``mongodb`` and ``mongodb+srv`` URL schemes."""
    register("mongodb", MongoStore)
    register("mongodb+srv", MongoStore)
