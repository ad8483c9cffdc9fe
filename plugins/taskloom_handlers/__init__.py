"""Built-in handlers: ``train`` (qlib's task training), ``noop`` and ``sleep``.

``train`` is :func:`taskloom.train.train_values`: build the task's model and dataset, fit,
predict the test segment, run its record templates, and return the values to record; run it
under the recorder (``taskloom worker POOL --handler train --record EXPERIMENT``) and each
task becomes one MLflow run, exactly what ``task_train`` makes. ``train_begin`` and
``train_end`` are the two stages of a delay trainer (a workflow's ``trainer.delay``): record
each task first, then train it inside that run. ``noop`` and ``sleep`` need no
data, so a pool and its workers can be tried out (``taskloom worker POOL --handler sleep``)
and measured (``benchmarks/bench_pool.py``).
"""

from __future__ import annotations

import time
from typing import Any

from taskloom import hookimpl
from taskloom.hookspecs import RegisterHandler
from taskloom.train import end_task_train, train_values

#: how long ``sleep`` sleeps when the task does not say
DEFAULT_SLEEP_SECONDS = 1.0


def noop(param: Any, **kwargs: Any) -> None:
    """Do nothing and return no result: measures the pool's own cost per task."""
    return None


def sleep(param: Any, **kwargs: Any) -> dict[str, float]:
    """Sleep ``param["seconds"]`` seconds (1 s by default) and report how long it slept."""
    seconds = DEFAULT_SLEEP_SECONDS
    if isinstance(param, dict) and "seconds" in param:
        seconds = float(param["seconds"])
    if seconds < 0:
        raise ValueError(f"sleep: seconds must not be negative, got {seconds}")
    time.sleep(seconds)
    return {"slept": seconds}


def train_begin(param: Any, **kwargs: Any) -> None:
    """The first delay stage: nothing to compute; under ``--record`` the run records the task."""
    return None


def train_end(reference: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """The second delay stage: train a ``part_done`` task inside the run its first stage made.

    ``reference`` is what the first stage stored (the run's reference); the run is resumed
    in its own experiment, so this stage runs without ``--record``.
    """
    return end_task_train(reference, reference["experiment"])


@hookimpl
def taskloom_register_handlers(register: RegisterHandler) -> None:
    """Register ``noop``, ``sleep`` and ``train``."""
    register("noop", noop)
    register("sleep", sleep)
    register("train", train_values)
    register("train_begin", train_begin)
    register("train_end", train_end)
