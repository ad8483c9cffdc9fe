"""An example task function for rolling tasks: it describes the task's windows.

Real studies train a model here; this one needs no market data, so the pool walkthrough
(``examples/rolling_pool.sh``) runs anywhere. Workers load it by import path:
``taskloom worker POOL --handler window_stats:summarize`` with this folder on PYTHONPATH.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def summarize(task: dict[str, Any], **_: Any) -> dict[str, Any]:
    """Return each segment's bounds and its length in business days (a small JSON result).

    The bounds arrive as the generator made them (``pd.Timestamp``s: the pool gives a task
    back with its types) or as strings, if the task was submitted so.
    """
    segments = task["dataset"]["kwargs"]["segments"]
    out: dict[str, Any] = {"model": task["model"]["class"]}
    for name, (start, end) in segments.items():
        out[name] = [start, end]
        if start is not None and end is not None:
            first, last = np.datetime64(start, "D"), np.datetime64(end, "D")
            out[f"{name}_days"] = int(np.busday_count(first, last + 1))
    return out
