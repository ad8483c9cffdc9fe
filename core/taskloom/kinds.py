"""The kinds of named contribution: which register hook contributes each, and what it accepts.

A plugin's ``register(name, obj)`` call is checked against its kind here, so that a plugin
registering, say, an instance where a class is expected fails on its own at registration time
instead of breaking whoever looks the name up later.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from taskloom.storage import Store


@dataclass(frozen=True)
class Kind:
    """One kind of named contribution: its hook and the test every registered object must pass."""

    name: str
    hook: str
    expected: str
    accepts: Callable[[Any], bool]


def _is_task_generator_class(obj: Any) -> bool:
    # imported here: taskloom.generation pulls in pandas, needed only once generators are used
    from taskloom.generation import TaskGen

    return isinstance(obj, type) and issubclass(obj, TaskGen)


def _is_store_class(obj: Any) -> bool:
    return isinstance(obj, type) and issubclass(obj, Store)


#: kind name -> its definition, in the order ``taskloom plugins`` lists contributions
KINDS: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind("generator", "taskloom_register_generators",
             "a subclass of taskloom.TaskGen", _is_task_generator_class),
        Kind("storage scheme", "taskloom_register_storage",
             "a subclass of taskloom.storage.Store", _is_store_class),
        Kind("handler", "taskloom_register_handlers",
             "a callable func(param, **kwargs)", callable),
        Kind("processor", "taskloom_register_processors",
             "a callable (a class or factory) that builds a processor", callable),
        Kind("collector", "taskloom_register_collectors",
             "a callable (a class or factory) that builds a collector", callable),
        Kind("recorder", "taskloom_register_recorders",
             "a callable (a class or factory) that builds a recorder", callable),
        Kind("record", "taskloom_register_records",
             "a callable (a class or factory) that builds a record template", callable),
    )
}
