"""A task as MLflow params, and params, tags and metrics cut to fit MLflow's limits.

MLflow refuses a whole batch when one key has a character it does not allow or is too long,
when a value is too long, or when a batch holds too many entries. A recorder must never fail a
task over that, so everything logged goes through here: keys are made valid (odd characters
become ``_``, long keys are cut and given a short hash so that they stay distinct), long
values are cut with a marker saying how much was dropped, and batches are split. The limits
are read from the installed MLflow (``mlflow.utils.validation``).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from taskloom.taskkey import to_canonical

#: a character MLflow allows in a param, metric or tag name (slashes left out: a name with
#: one may be refused as a path that is not unique)
_ODD_CHARACTER = re.compile(r"[^\w.\- :]")


@dataclass(frozen=True)
class Limits:
    """The MLflow limits that apply to one ``log_batch`` call and the entries in it."""

    key_length: int
    param_length: int
    tag_length: int
    params_per_batch: int
    tags_per_batch: int
    metrics_per_batch: int
    entities_per_batch: int


def limits() -> Limits:
    """The installed MLflow's limits."""
    from mlflow.utils import validation as v

    return Limits(v.MAX_ENTITY_KEY_LENGTH, v.MAX_PARAM_VAL_LENGTH, v.MAX_TAG_VAL_LENGTH,
                  v.MAX_PARAMS_TAGS_PER_BATCH, v.MAX_PARAMS_TAGS_PER_BATCH,
                  v.MAX_METRICS_PER_BATCH, v.MAX_ENTITIES_PER_BATCH)


def flatten(task: Any) -> dict[str, str]:
    """The task's leaves as ``{"model.kwargs.lr": "0.1", ...}``, keys joined by ``.``.

    The task is read in its canonical JSON form (Timestamps as ISO strings, tuples as
    lists). Dicts are walked; a list, a number, a bool or None becomes its JSON text, a
    string stays as it is. A task that is not a dict is the single param ``param``.
    """
    data = to_canonical(task)
    out: dict[str, str] = {}
    if isinstance(data, dict) and data:
        _walk(data, "", out)
    else:
        out["param"] = _text(data)
    return out


def _walk(node: dict[str, Any], prefix: str, out: dict[str, str]) -> None:
    for key, value in node.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            _walk(value, f"{name}.", out)
        else:
            out[name] = _text(value)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def valid_key(key: str, max_length: int) -> str:
    """``key`` as a name MLflow accepts: odd characters replaced, cut to ``max_length``.

    A cut key ends with ``-`` and 8 hex digits of the full key's hash, so that two long keys
    with a common start stay distinct. An empty name, or one that reads as a relative path
    (``.``, ``..x``), is prefixed with ``_``.
    """
    name = _ODD_CHARACTER.sub("_", key)
    if not name or name.startswith("."):
        name = f"_{name}"
    if len(name) > max_length:
        digest = hashlib.sha1(key.encode()).hexdigest()[:8]
        name = f"{name[:max_length - 9]}-{digest}"
    return name


def cut(value: str, max_length: int) -> str:
    """``value``, or its start and a marker naming how many characters were dropped."""
    if len(value) <= max_length:
        return value
    marker = "...[truncated {} chars]"
    keep = max_length - len(marker.format(len(value)))
    return value[:keep] + marker.format(len(value) - keep)


def fit(entries: Mapping[str, Any], key_length: int, value_length: int | None) -> dict[str, Any]:
    """``entries`` with valid keys (distinct after cleaning) and string values cut to fit.

    ``value_length`` None leaves values alone (metrics). When two keys clean to the same
    name, the later one gets ``-2``, ``-3``...
    """
    out: dict[str, Any] = {}
    for key, value in entries.items():
        name = valid_key(str(key), key_length)
        if name in out:
            base = name[:key_length - 4]
            n = 2
            while f"{base}-{n}" in out:
                n += 1
            name = f"{base}-{n}"
        out[name] = cut(value, value_length) if value_length is not None else value
    return out


@dataclass
class Batch:
    """One ``log_batch`` call's worth of params, tags and metrics (plain dicts)."""

    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)

    def size(self) -> int:
        """How many entries the batch holds."""
        return len(self.params) + len(self.tags) + len(self.metrics)


def batches(
    params: Mapping[str, str], tags: Mapping[str, str], metrics: Mapping[str, float],
    limit: Limits,
) -> Iterator[Batch]:
    """Params, tags and metrics, already fitted, in as few batches as MLflow's limits allow.

    Usually one. Each batch holds at most ``params_per_batch`` params, ``tags_per_batch``
    tags, ``metrics_per_batch`` metrics and ``entities_per_batch`` entries in all.
    """
    kinds = [("params", list(params.items()), limit.params_per_batch),
             ("tags", list(tags.items()), limit.tags_per_batch),
             ("metrics", list(metrics.items()), limit.metrics_per_batch)]
    while any(items for _, items, _ in kinds):
        batch = Batch()
        for kind, items, per_batch in kinds:
            room = min(per_batch, limit.entities_per_batch - batch.size())
            getattr(batch, kind).update(items[:room])
            del items[:room]
        yield batch
