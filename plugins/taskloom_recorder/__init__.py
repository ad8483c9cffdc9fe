"""Recording on MLflow: run any handler inside an MLflow run, and collect recorded runs.

``taskloom.get_recorder("mlflow")`` is :class:`~taskloom_recorder.recorder.MlflowRecorder`;
``taskloom.get_collector("recorder")`` is :class:`~taskloom_recorder.collector.RecorderCollector`;
:func:`segment_of` and :func:`load_task` read a run's window and task for its key function.
These modules import MLflow and pandas only when they run, so loading the plugin stays cheap.
"""

from __future__ import annotations

from taskloom import hookimpl
from taskloom.hookspecs import RegisterCollector, RegisterRecorder

from taskloom_recorder.collector import RecorderCollector, segment_of
from taskloom_recorder.loaders import load_task
from taskloom_recorder.recorder import MlflowRecorder

__all__ = ["MlflowRecorder", "RecorderCollector", "load_task", "segment_of"]


@hookimpl
def taskloom_register_recorders(register: RegisterRecorder) -> None:
    """The ``mlflow`` recorder."""
    register("mlflow", MlflowRecorder)


@hookimpl
def taskloom_register_collectors(register: RegisterCollector) -> None:
    """The ``recorder`` collector."""
    register("recorder", RecorderCollector)
