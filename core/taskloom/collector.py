"""The collector contract: gather results into ``{artifact_key: value}``, then process them.

A collector's :meth:`Collector.collect` gathers (the recorder plugin's collector reads MLflow
runs, the merge plugin's combines other collectors); calling the collector pipes each
top-level value through its processors (groupers, ensembles) in order. The semantics are
qlib's ``Collector``; a collector is not pickled anywhere, so it needs no serialisation.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from typing import Any

Processor = Callable[..., Any]


def processor_list(process_list: Processor | Iterable[Processor] | None) -> list[Processor]:
    """``process_list`` as a list: None is empty and a lone processor is wrapped."""
    if process_list is None:
        return []
    if callable(process_list):
        return [process_list]
    return list(process_list)


class Collector(ABC):
    """Something that collects results, plus the processors its results go through."""

    def __init__(self, process_list: Processor | Iterable[Processor] | None = None) -> None:
        self.process_list = processor_list(process_list)

    @abstractmethod
    def collect(self) -> dict[Any, Any]:
        """The collected results as ``{artifact_key: value}``, before any processing."""

    @staticmethod
    def process_collect(
        collected: dict[Any, Any],
        process_list: Processor | Iterable[Processor] | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> dict[Any, Any]:
        """Pipe every top-level value of ``collected`` through the processors, in list order.

        Each step is ``value = processor(value, *args, **kwargs)``; a new dict with the same
        top-level keys is returned. A processor that is not callable is a TypeError naming it.
        """
        processors = processor_list(process_list)
        for position, processor in enumerate(processors):
            if not callable(processor):
                raise TypeError(
                    f"process_list[{position}] is {processor!r}, which is not callable; a "
                    "processor is a callable such as taskloom.get_processor('rolling_group')()"
                )
        out = {}
        for key, value in collected.items():
            for processor in processors:
                value = processor(value, *args, **kwargs)
            out[key] = value
        return out

    def __call__(self, *args: Any, **kwargs: Any) -> dict[Any, Any]:
        """Collect with the defaults, then process: ``process_collect(collect(), process_list)``."""
        return self.process_collect(self.collect(), self.process_list, *args, **kwargs)
