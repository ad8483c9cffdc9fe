"""The task record: its fields, the shape of a new one, and the entry a lost attempt leaves.

Defined here once, so that every backend stores the same record and the query language
(:mod:`taskloom.query`) knows which root paths are record fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from taskloom.status import WAITING

#: record fields that a query addresses directly; every other root path is a task field
RECORD_FIELDS: frozenset[str] = frozenset(
    {
        "_id",
        "key",
        "def",
        "types",
        "status",
        "priority",
        "res",
        "created_at",
        "updated_at",
        "not_before",
        "attempt",
        "lease",
        "attempts",
        "error",
    }
)

Record = dict[str, Any]

#: the ``outcome`` of the history entry a reclaimed, expired lease leaves
LEASE_EXPIRED = "lease expired"


def new_record(key: str, definition: Any, types: Any, now: float) -> Record:
    """The record an insert stores for a new task, without its ``_id`` (the backend's to give)."""
    return {"key": key, "def": definition, "types": types, "status": str(WAITING),
            "priority": 0, "res": None, "created_at": now, "updated_at": now,
            "not_before": None, "attempt": 0, "lease": None, "attempts": [], "error": None}


def lost_attempt(attempt: Any, owner: Any, started: Any, now: Any) -> dict[str, Any]:
    """The history entry appended when a claim takes over a task whose lease expired.

    The arguments are the lost attempt's number, its lease owner and start time. A backend
    that builds the entry inside the database passes its own field references instead (the
    MongoDB pipeline passes ``"$attempt"``...), so the keys and the outcome stay defined here.
    """
    return {"attempt": attempt, "ended": now, "outcome": LEASE_EXPIRED, "owner": owner,
            "started": started}


@dataclass(frozen=True)
class CorruptRecord:
    """A stored task that cannot be read as a record (undecodable JSON, a malformed document).

    Read primitives return it instead of raising, so that one bad row does not hide the
    good ones: :meth:`taskloom.storage.Pool.find` skips and logs it, a claim marks it failed.
    ``problem`` names the field and what is wrong with it.
    """

    task_id: str
    problem: str
