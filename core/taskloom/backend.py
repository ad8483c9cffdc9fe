"""Everything a storage backend needs, in one import: ``from taskloom.backend import ...``.

A backend subclasses :class:`Store` and :class:`Pool` and implements their primitives (the
abstract ``_`` methods; see :mod:`taskloom.storage` and ``docs/storage.md``). The public
methods are already written on top of them: input checks, the shared rules and the errors
come from here, so every backend behaves the same. Queries arrive as normalised trees
(:class:`And`/:class:`Or`/:class:`Cond`) to translate, or to evaluate in Python with
:func:`evaluate`; values arrive as canonical JSON data (:func:`canonical_text` gives their
text form). Test the backend with :mod:`taskloom.testing.backend`.
"""

from __future__ import annotations

from taskloom.errors import QueryError, StorageError, TaskEncodingError, UnknownNameError
from taskloom.hookspecs import RegisterStorage, hookimpl
from taskloom.query import And, Cond, NewTask, Node, Or, evaluate, matches, value_kind
from taskloom.record import (
    LEASE_EXPIRED,
    RECORD_FIELDS,
    CorruptRecord,
    Record,
    lost_attempt,
    new_record,
)
from taskloom.status import CANCELLED, DONE, FAILED, PART_DONE, RUNNING, WAITING, TaskStatus
from taskloom.storage import KeyNotUnique, Pool, Store
from taskloom.taskkey import canonical_text, to_canonical

__all__ = [
    "CANCELLED",
    "DONE",
    "FAILED",
    "LEASE_EXPIRED",
    "PART_DONE",
    "RECORD_FIELDS",
    "RUNNING",
    "WAITING",
    "And",
    "Cond",
    "CorruptRecord",
    "KeyNotUnique",
    "NewTask",
    "Node",
    "Or",
    "Pool",
    "QueryError",
    "Record",
    "RegisterStorage",
    "Store",
    "StorageError",
    "TaskEncodingError",
    "TaskStatus",
    "UnknownNameError",
    "canonical_text",
    "evaluate",
    "hookimpl",
    "lost_attempt",
    "matches",
    "new_record",
    "to_canonical",
    "value_kind",
]
