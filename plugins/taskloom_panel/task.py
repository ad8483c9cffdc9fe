"""A qlib-shaped training task on a panel file: the task this plugin's model and dataset make.

Written out, such a task is two dozen lines of nesting that tests, benchmarks and scripts
would otherwise each spell out again; :func:`panel_task` builds it from what varies.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

#: qlib's segment names, in the order a task lists them
SEGMENT_NAMES = ("train", "valid", "test")


def panel_task(path: str, estimator: Mapping[str, Any], features: Sequence[str],
               segments: Mapping[str, tuple[Any, Any]], *, normalize: str | None = "zscore",
               record: list[Any] | None = None, tags: Mapping[str, str] | None = None
               ) -> dict[str, Any]:
    """A task training ``SklearnModel(estimator)`` on ``PanelDataset`` over the panel ``path``.

    ``segments`` maps ``train``, ``valid`` and ``test`` to ``(start, end)`` bounds, as in
    qlib; the handler loads from the train start to the valid end, the span the rolling
    generator moves along with the segments. ``record`` (the record templates, none by
    default) and ``tags`` go into the task as given. Plain JSON-compatible values only, so the
    task can go into any pool.
    """
    missing = [name for name in SEGMENT_NAMES if name not in segments]
    if missing:
        raise ValueError(f"segments: {missing} missing (a panel task needs train, valid and "
                         f"test bounds), got {sorted(segments)}")
    task: dict[str, Any] = {
        "model": {"class": "SklearnModel", "module_path": "taskloom_panel",
                  "kwargs": {"estimator": dict(estimator)}},
        "dataset": {
            "class": "PanelDataset", "module_path": "taskloom_panel",
            "kwargs": {
                "handler": {"class": "taskloom_panel:read_panel",
                            "kwargs": {"path": path, "start_time": segments["train"][0],
                                       "end_time": segments["valid"][1]}},
                "segments": {name: tuple(segments[name]) for name in SEGMENT_NAMES},
                "feature_columns": list(features),
                "normalize": normalize,
            },
        },
        "record": list(record or []),
    }
    if tags:
        task["tags"] = dict(tags)
    return task
