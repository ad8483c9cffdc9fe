"""The whole extension surface of taskloom: every hook a plugin may implement.

Two families of hooks exist:

* ``taskloom_register_*`` hooks contribute *named things* (generators, storage schemes,
  handlers, collector processors, collectors, recorders, record templates). Each receives a
  ``register`` callback; the core builds the callback so it can record which plugin provided
  which name, reject duplicates and list the known names when a lookup misses.
* Lifecycle hooks (``taskloom_task_*``) let observers watch the task pool: a task was claimed,
  finished, failed for good, or will be retried. Their return values are ignored.

Plugin authors import the implementation marker with ``from taskloom import hookimpl``.
``docs/plugins.md`` has a section for every hook here, and the test suite fails when one is
missing there or has no test.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from taskloom.generation import TaskGen
    from taskloom.storage import Store

PROJECT = "taskloom"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

RegisterGenerator = Callable[[str, "type[TaskGen]"], None]
RegisterStorage = Callable[[str, "type[Store]"], None]
RegisterHandler = Callable[[str, Callable[..., Any]], None]
RegisterProcessor = Callable[[str, Callable[..., Any]], None]
RegisterCollector = Callable[[str, Callable[..., Any]], None]
RegisterRecorder = Callable[[str, Callable[..., Any]], None]
RegisterRecord = Callable[[str, Callable[..., Any]], None]


# --------------------------------------------------------------------------------------------
# Named contributions
# --------------------------------------------------------------------------------------------


@hookspec
def taskloom_register_generators(register: RegisterGenerator) -> None:
    """Contribute task generator classes by name.

    Called once per process, the first time a generator is looked up. ``register(name, cls)``
    takes a :class:`taskloom.TaskGen` subclass; ``taskloom.get_generator(name)`` returns it and
    calling it with keyword parameters builds an instance.

    Example::

        @hookimpl
        def taskloom_register_generators(register):
            register("seeds", SeedGen)
    """


@hookspec
def taskloom_register_storage(register: RegisterStorage) -> None:
    """Contribute storage backends by URL scheme.

    Called once per process, the first time a store is opened. ``register(scheme, cls)`` takes
    a :class:`taskloom.storage.Store` subclass; ``taskloom.get_storage("scheme://...")`` calls
    ``cls.from_url(url)``, and ``taskloom.get_storage(obj)`` for a non-string ``obj`` asks each
    registered class's ``cls.adopt(obj)`` (e.g. a ready pymongo ``Database``).

    Example::

        @hookimpl
        def taskloom_register_storage(register):
            register("redis", RedisStore)
    """


@hookspec
def taskloom_register_handlers(register: RegisterHandler) -> None:
    """Contribute task functions (what a worker runs for each task) by name.

    Called once per process, the first time a handler is looked up. ``register(name, func)``
    takes a callable ``func(param, **kwargs)`` that receives the task definition (or, for a
    ``part_done`` task, its stored intermediate result) and returns a JSON-compatible result.

    Example::

        @hookimpl
        def taskloom_register_handlers(register):
            register("train_lgbm", train_lgbm)
    """


@hookspec
def taskloom_register_processors(register: RegisterProcessor) -> None:
    """Contribute collector processors (groupers, ensembles, filters) by name.

    Called once per process, the first time a processor is looked up.
    ``register(name, factory)`` takes a class or factory; ``taskloom.get_processor(name)``
    returns it, and calling it builds a processor, itself a callable that maps a collected
    ``{key: value}`` dict to a new value.

    Example::

        @hookimpl
        def taskloom_register_processors(register):
            register("median_ensemble", MedianEnsemble)
    """


@hookspec
def taskloom_register_collectors(register: RegisterCollector) -> None:
    """Contribute collectors (things that gather task results into a dict) by name.

    Called once per process, the first time a collector is looked up.
    ``register(name, factory)`` takes a class or factory; ``taskloom.get_collector(name)``
    returns it, and calling it builds a collector whose ``collect()`` returns
    ``{artifact_key: {result_key: value}}``.

    Example::

        @hookimpl
        def taskloom_register_collectors(register):
            register("parquet_dir", ParquetDirCollector)
    """


@hookspec
def taskloom_register_recorders(register: RegisterRecorder) -> None:
    """Contribute recorders (things that run a handler inside a tracked run) by name.

    Called once per process, the first time a recorder is looked up.
    ``register(name, factory)`` takes a class or factory; ``taskloom.get_recorder(name)``
    returns it, and ``factory(experiment, **options)`` builds a
    :class:`taskloom.recording.Recorder`: ``prepare()`` creates the experiment once, before
    workers fan out, and ``wrap(handler)`` returns the handler recorded, returning a JSON
    reference to its run. ``taskloom worker --record EXPERIMENT --recorder NAME`` uses it.

    Example::

        @hookimpl
        def taskloom_register_recorders(register):
            register("wandb", WandbRecorder)
    """


@hookspec
def taskloom_register_records(register: RegisterRecord) -> None:
    """Contribute record templates by the bare class name tasks give them.

    Called once per process, the first time a task's ``record`` names a template without a
    module. ``register(name, cls)`` takes a class or factory; a task's
    ``{"class": name, "kwargs": {...}}`` builds it with those kwargs (and ``model``/``dataset``
    when it takes them), and its ``generate(pred=..., label=..., **context)`` returns the
    values to record (:mod:`taskloom.recordtemplates`). ``taskloom.get_record(name)`` returns
    it.

    Example::

        @hookimpl
        def taskloom_register_records(register):
            register("PortAnaRecord", PortfolioRecord)
    """


# --------------------------------------------------------------------------------------------
# Task lifecycle (observers)
# --------------------------------------------------------------------------------------------


@hookspec
def taskloom_task_claimed(pool: str, task: dict[str, Any]) -> None:
    """A worker has claimed ``task`` from ``pool`` and holds its lease.

    Called in the claiming process right after the claim; ``task`` is the stored record
    (``_id``, ``def``, ``status`` = ``"running"``, ``attempt``, ``lease``...). Use it for
    logging or metrics; do not mutate it.

    Example::

        @hookimpl
        def taskloom_task_claimed(pool, task):
            log.info("claimed %s attempt %s", task["_id"], task["attempt"])
    """


@hookspec
def taskloom_task_finished(pool: str, task: dict[str, Any], status: str) -> None:
    """A worker committed a result for ``task``; ``status`` is the new status.

    ``status`` is ``"done"`` or ``"part_done"`` (or whatever after-status the caller chose).
    ``task`` is the record as it is stored after the commit, its ``res`` included.

    Example::

        @hookimpl
        def taskloom_task_finished(pool, task, status):
            metrics.increment(f"taskloom.{pool}.{status}")
    """


@hookspec
def taskloom_task_failed(pool: str, task: dict[str, Any], error: dict[str, Any]) -> None:
    """``task`` raised on its last allowed attempt and is now ``failed`` for good.

    ``error`` holds ``type``, ``message`` and ``traceback`` of the final exception; the task's
    ``attempts`` history lists every attempt.

    Example::

        @hookimpl
        def taskloom_task_failed(pool, task, error):
            alert(f"{pool}: task {task['_id']} failed: {error['type']}: {error['message']}")
    """


@hookspec
def taskloom_task_retried(
    pool: str, task: dict[str, Any], error: dict[str, Any], delay: float
) -> None:
    """``task`` raised and goes back to the pool; it becomes claimable after ``delay`` seconds.

    ``error`` describes the exception of the attempt that just ended, as in
    :func:`taskloom_task_failed`.

    Example::

        @hookimpl
        def taskloom_task_retried(pool, task, error, delay):
            log.warning("retrying %s in %.1fs after %s", task["_id"], delay, error["type"])
    """
