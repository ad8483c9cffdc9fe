"""The ``merge`` collector: several collectors' results under one dict.

``taskloom.get_collector("merge")`` returns :class:`taskloom_merge.merge.MergeCollector`.
"""

from __future__ import annotations

from typing import Any

from taskloom import hookimpl


@hookimpl
def taskloom_register_collectors(register: Any) -> None:
    """Contribute the ``merge`` collector."""
    from taskloom_merge.merge import MergeCollector

    register("merge", MergeCollector)
