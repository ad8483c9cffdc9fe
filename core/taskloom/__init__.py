"""taskloom: generate, pool, run and collect large batches of model-iteration tasks.

The names below are the public API. Heavy parts (pandas calendars, the task manager) are
imported on first attribute access so that ``import taskloom`` stays cheap for workers and
the CLI.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from taskloom.hookspecs import hookimpl

# Imported eagerly, unlike the names in _LAZY: the function shares its module's name, and a
# lazy export would be replaced by the module object as soon as anything imported
# ``taskloom.instantiate``. It costs nothing: it needs only modules pluggy already loads.
from taskloom.instantiate import instantiate
from taskloom.plugins import PluginInfo, list_plugins
from taskloom.registry import lookup as _lookup
from taskloom.running import RunningTask, current_task
from taskloom.stores import get_storage
from taskloom.taskkey import canonical_json, task_key, to_jsonable

if TYPE_CHECKING:
    from taskloom.calendar import TimeAdjuster, TradingCalendar
    from taskloom.collector import Collector
    from taskloom.ensemble import FLATTEN_TUPLE, Ensemble, Group, flatten_dict
    from taskloom.generation import TaskGen, task_generator
    from taskloom.manager import TaskManager, run_task
    from taskloom.recording import Recorder
    from taskloom.train import begin_task_train, end_task_train, task_train, train_values
    from taskloom.trainer import DelayTrainerR, DelayTrainerRM, Trainer, TrainerR, TrainerRM
    from taskloom.workflow import Workflow, load_workflow

__version__ = "0.1.0"

#: public name -> module that defines it (imported on first access)
_LAZY = {
    "TradingCalendar": "taskloom.calendar",
    "TimeAdjuster": "taskloom.calendar",
    "TaskGen": "taskloom.generation",
    "task_generator": "taskloom.generation",
    "TaskManager": "taskloom.manager",
    "Collector": "taskloom.collector",
    "Ensemble": "taskloom.ensemble",
    "FLATTEN_TUPLE": "taskloom.ensemble",
    "Group": "taskloom.ensemble",
    "flatten_dict": "taskloom.ensemble",
    "run_task": "taskloom.manager",
    "task_train": "taskloom.train",
    "begin_task_train": "taskloom.train",
    "end_task_train": "taskloom.train",
    "train_values": "taskloom.train",
    "Trainer": "taskloom.trainer",
    "TrainerR": "taskloom.trainer",
    "DelayTrainerR": "taskloom.trainer",
    "TrainerRM": "taskloom.trainer",
    "DelayTrainerRM": "taskloom.trainer",
    "Workflow": "taskloom.workflow",
    "load_workflow": "taskloom.workflow",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'taskloom' has no attribute {name!r}")


def get_generator(name: str) -> type[TaskGen]:
    """The generator class registered as ``name``; call it with parameters to build one."""
    return _lookup("generator", name)


def get_handler(name: str) -> Callable[..., Any]:
    """The task function registered as ``name``."""
    return _lookup("handler", name)


def get_processor(name: str) -> Callable[..., Any]:
    """The collector processor (class or factory) registered as ``name``."""
    return _lookup("processor", name)


def get_collector(name: str) -> Callable[..., Any]:
    """The collector (class or factory) registered as ``name``."""
    return _lookup("collector", name)


def get_recorder(name: str) -> Callable[..., Recorder]:
    """The recorder factory registered as ``name``; ``factory(experiment, **options)``."""
    return _lookup("recorder", name)


def get_record(name: str) -> Callable[..., Any]:
    """The record template (class or factory) registered as ``name``."""
    return _lookup("record", name)


__all__ = [
    "FLATTEN_TUPLE",
    "Collector",
    "DelayTrainerR",
    "DelayTrainerRM",
    "Ensemble",
    "Group",
    "PluginInfo",
    "RunningTask",
    "TaskGen",
    "TaskManager",
    "TimeAdjuster",
    "TradingCalendar",
    "Trainer",
    "TrainerR",
    "TrainerRM",
    "Workflow",
    "__version__",
    "begin_task_train",
    "canonical_json",
    "current_task",
    "end_task_train",
    "flatten_dict",
    "get_collector",
    "get_generator",
    "get_handler",
    "get_processor",
    "get_record",
    "get_recorder",
    "get_storage",
    "hookimpl",
    "instantiate",
    "list_plugins",
    "load_workflow",
    "run_task",
    "task_generator",
    "task_key",
    "task_train",
    "to_jsonable",
    "train_values",
]
