"""``MergeCollector``: several collectors' processed results in one dict (qlib's semantics)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from taskloom.collector import Collector, Processor


class MergeCollector(Collector):
    """Runs every child collector and merges their results under combined keys.

    ``collector_dict`` maps a name to a collector (any callable returning a dict); each child
    is *called*, so its own processors run first. The child ``ckey``'s result key ``key`` is
    stored under ``merge_func(ckey, key)``, or ``(ckey, key)`` without a merge_func. On a clash
    the later child wins, as in qlib.
    """

    def __init__(
        self,
        collector_dict: dict[Any, Callable[[], dict[Any, Any]]],
        process_list: Processor | Iterable[Processor] | None = None,
        merge_func: Callable[[Any, Any], Any] | None = None,
    ) -> None:
        super().__init__(process_list=process_list)
        for name, collector in collector_dict.items():
            if not callable(collector):
                raise TypeError(f"collector_dict[{name!r}] is {collector!r}, which is not a "
                                "collector (a callable returning a dict)")
        self.collector_dict = collector_dict
        self.merge_func = merge_func

    def collect(self) -> dict[Any, Any]:
        """``{merge_func(ckey, key): value}`` over every child's processed result."""
        merged: dict[Any, Any] = {}
        for collector_key, collector in self.collector_dict.items():
            collected = collector()
            if not isinstance(collected, dict):
                raise TypeError(f"collector_dict[{collector_key!r}] returned a "
                                f"{type(collected).__name__}, not a dict")
            for key, value in collected.items():
                if self.merge_func is None:
                    merged[(collector_key, key)] = value
                else:
                    merged[self.merge_func(collector_key, key)] = value
        return merged
