"""What a recorder is: the protocol the ``taskloom_register_recorders`` hook's factories build.

A recorder runs a handler inside a recorded run of an experiment (an MLflow run, for the
built-in ``mlflow`` recorder) and turns what the handler returns into a small JSON reference,
which is what the pool stores as the task's result. ``taskloom.get_recorder(name)`` returns a
factory; ``factory(experiment, **options)`` builds a recorder.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

#: a task function: ``handler(param, **kwargs) -> result``
Handler = Callable[..., Any]


@runtime_checkable
class Recorder(Protocol):
    """Records each call of a handler as one run of one experiment.

    ``prepare()`` is called once, in the coordinating process, before worker processes fan
    out: it creates the experiment (and the tracking store) so that workers never race to.
    ``wrap(handler)`` returns a function with the handler's ``(param, **kwargs)`` signature
    that runs it inside a new run and returns the run's JSON reference instead of the
    handler's value. A handler that raises must end its run as failed and re-raise the very
    same exception, so that the pool's retry policy applies unchanged.
    """

    def prepare(self) -> None:
        """Create the experiment and whatever store it lives in; safe to call concurrently."""

    def wrap(self, handler: Handler) -> Handler:
        """``handler`` recorded: each call is one run; it returns the run's JSON reference."""
