"""``score_params``: a task function that needs no data, for trying out workers."""

from __future__ import annotations

from typing import Any


def score_params(task: dict[str, Any], **_: Any) -> dict[str, Any]:
    """Return a deterministic pseudo-score from the model's keyword arguments."""
    kwargs = task.get("model", {}).get("kwargs", {})
    numbers = [value for value in kwargs.values() if isinstance(value, int | float)]
    return {"score": float(sum(numbers)), "n_params": len(kwargs)}
