"""Opening a store: :func:`get_storage` picks the registered backend for a URL or client object.

Kept apart from the contract (:mod:`taskloom.storage`) so that the contract does not depend
on the plugin registry, and backends can import it without an import cycle.
"""

from __future__ import annotations

import os

from taskloom import registry
from taskloom.errors import StorageError
from taskloom.storage import Store

#: the embedded default store, a SQLite file in the working directory
DEFAULT_STORAGE_URL = "sqlite:///taskloom.db"


def get_storage(target: str | Store | object | None = None, *, create: bool = True) -> Store:
    """Open a store from a URL (``memory://``, ``sqlite:///path``, ``mongodb://...``).

    ``None`` means the embedded default (``TASKLOOM_STORAGE`` or ``sqlite:///taskloom.db`` in
    the working directory). A :class:`Store` is returned as is; any other object is offered to
    every registered backend's :meth:`Store.adopt` (a pymongo ``Database``, for instance).
    With ``create=False`` a URL naming a store that does not exist yet is a ``StorageError``
    (:meth:`Store.open_existing`) instead of a new empty store.
    """
    if target is None:
        target = os.environ.get("TASKLOOM_STORAGE") or DEFAULT_STORAGE_URL
    if isinstance(target, Store):
        return target
    backends = registry.contributions("storage scheme")
    if isinstance(target, str):
        scheme, sep, _ = target.partition("://")
        if not sep:
            raise StorageError(
                f"storage URL {target!r} has no scheme; use one of "
                + ", ".join(f"{s}://" for s in sorted(backends))
            )
        backend = registry.lookup("storage scheme", scheme)
        return backend.from_url(target) if create else backend.open_existing(target)
    for item in backends.values():
        store = item.obj.adopt(target)
        if store is not None:
            return store
    raise StorageError(
        f"no storage backend accepts a {type(target).__name__} object; pass a URL with one of "
        + ", ".join(f"{s}://" for s in sorted(backends))
    )
