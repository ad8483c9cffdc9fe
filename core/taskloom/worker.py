"""Worker processes: claim a task, run its handler, commit, repeat; stop cleanly on a signal.

``taskloom worker`` checks its configuration (:func:`check_config`), then runs :func:`serve`:
one worker loop in this process, or N spawned child processes that each run one. Each loop
first runs the optional initializer (``--init``). On SIGTERM or SIGINT a worker stops
claiming; if a task is running, its handler is interrupted and the task is given back at once
(its lease released, not counted as a failed attempt), then the process exits 0. A parent
forwards the signal to its children, waits for them, and exits non-zero if one of them died.
With ``record`` set, each process runs its handler under a recorder (``--record``); the
experiment is prepared once, in the parent, before any worker process starts.
"""

from __future__ import annotations

import importlib
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from types import FrameType
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from taskloom import registry
from taskloom.attempt import OnError
from taskloom.errors import TaskloomError
from taskloom.gctuning import SetupFrozen
from taskloom.manager import TaskManager
from taskloom.outcome import Outcome
from taskloom.query import normalize
from taskloom.recording import Recorder
from taskloom.retry import RetryPolicy, exception_message
from taskloom.status import DONE, WAITING, check_after_status

log = logging.getLogger(__name__)

#: how often an idle worker looks for claimable tasks (and for a stop request)
DEFAULT_POLL_SECONDS = 0.5
#: a worker's lease; it is renewed every third of it while a task runs
DEFAULT_WORKER_LEASE_SECONDS = 60.0
#: the signals that ask a worker to stop
STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT})


class WorkerSetupError(TaskloomError):
    """A worker cannot start: its handler or initializer does not load, or the initializer failed.

    The message names the option, its value and the underlying error.
    """


class WorkerConfig(BaseModel):
    """What one ``taskloom worker`` invocation runs; the same for each of its processes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    pool: str = Field(min_length=1)
    storage: str | None = None
    handler: str = Field(min_length=1, description="registered name or module:function")
    concurrency: int = Field(1, ge=1, description="worker processes")
    max_tasks: int | None = Field(None, ge=1, description="tasks per process before exiting")
    idle_exit: float | None = Field(None, ge=0, description="exit after this long with no task")
    lease_seconds: float = Field(DEFAULT_WORKER_LEASE_SECONDS, gt=0)
    poll_seconds: float = Field(DEFAULT_POLL_SECONDS, gt=0)
    query: dict[str, Any] = Field(default_factory=dict)
    before_status: Literal["waiting", "part_done"] = WAITING
    after_status: str = DONE
    stop_on_error: bool = Field(False, description="qlib: the first error ends the worker")
    retry_policy: RetryPolicy = Field(default_factory=RetryPolicy)
    initializer: str | None = Field(
        None, description="module:function run once in each worker process before its first task"
    )
    initargs: tuple[Any, ...] = ()
    record: str | None = Field(
        None, min_length=1, description="record each task as a run of this experiment"
    )
    recorder: str = Field("mlflow", min_length=1, description="the registered recorder")
    tracking_uri: str | None = Field(None, description="the recorder's tracking store")

    @field_validator("after_status")
    @classmethod
    def _after_status_a_run_may_end_in(cls, status: str) -> str:
        return check_after_status(status)


class StopRequested(BaseException):
    """Raised inside a running handler when the worker is told to stop.

    A BaseException, so handlers that catch ``Exception`` do not swallow it; the task manager
    gives the task back instead of recording a failed attempt.
    """


class GracefulStop:
    """Turns SIGTERM/SIGINT into "stop claiming, and give back the task that is running"."""

    def __init__(self) -> None:
        self.requested = False
        self._in_task = False

    def install(self) -> None:
        """Handle SIGTERM and SIGINT in this process (main thread only, as Python requires)."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._on_signal)
            signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            return
        self.requested = True
        log.warning("signal %s: stopping", signal.Signals(signum).name)
        if self._in_task:
            raise StopRequested

    def guard(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """``func`` wrapped so that a stop request interrupts it."""

        def guarded(param: Any, **kwargs: Any) -> Any:
            self._in_task = True
            try:
                if self.requested:
                    raise StopRequested
                return func(param, **kwargs)
            finally:
                self._in_task = False

        return guarded

    def sleep(self, seconds: float) -> None:
        """Sleep up to ``seconds``, waking early once a stop is requested."""
        deadline = time.monotonic() + seconds
        while not self.requested and time.monotonic() < deadline:
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))


def open_manager(config: WorkerConfig) -> TaskManager:
    """The worker's TaskManager; an unknown pool or bad URL raises a clear error."""
    return TaskManager(config.pool, config.storage, lease_seconds=config.lease_seconds,
                       retry_policy=config.retry_policy, create=False)


def load_callable(option: str, spec: str) -> Callable[..., Any]:
    """The function a ``module:function`` path names, or a :class:`WorkerSetupError` saying why not.

    The error names the option and its value, and for a module that cannot be imported (it
    is missing, or raises or has a syntax error at import) the exception type and message.
    """
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise WorkerSetupError(f"{option} {spec!r}: expected module:function")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise WorkerSetupError(
            f"{option} {spec!r}: cannot import module {module_name!r}: "
            f"{type(exc).__name__}: {exception_message(exc)}"
        ) from exc
    if not hasattr(module, attr):
        raise WorkerSetupError(f"{option} {spec!r}: module {module_name!r} has no {attr!r}")
    return _callable(option, spec, getattr(module, attr))


def resolve_handler(spec: str) -> Callable[..., Any]:
    """The handler a ``--handler`` value names: a registered name or a ``module:function``."""
    if ":" in spec:
        return load_callable("--handler", spec)
    return _callable("--handler", spec, registry.lookup("handler", spec))


def _callable(option: str, spec: str, obj: object) -> Callable[..., Any]:
    if not callable(obj):
        raise WorkerSetupError(
            f"{option} {spec!r} is not callable (it is the {type(obj).__name__} {obj!r:.60}); "
            "every task would fail on it"
        )
    return obj


def build_recorder(config: WorkerConfig) -> Recorder | None:
    """The recorder ``config.record`` asks for (None without it); an unknown name lists the known.

    ``tracking_uri``, when given, is passed to the recorder's factory as an option.
    """
    if config.record is None:
        return None
    factory = registry.lookup("recorder", config.recorder)
    options = {} if config.tracking_uri is None else {"tracking_uri": config.tracking_uri}
    return factory(config.record, **options)


def check_config(config: WorkerConfig) -> None:
    """Refuse, before any process starts, a configuration whose worker could not run.

    The handler and the initializer must load and be callable, the recorder must be known,
    the query must be valid and the pool must exist; each failure is a
    :class:`~taskloom.errors.TaskloomError` naming the value.
    """
    resolve_handler(config.handler)
    if config.record is not None:
        registry.lookup("recorder", config.recorder)
    elif config.tracking_uri is not None:
        raise WorkerSetupError(f"--tracking-uri {config.tracking_uri!r} needs --record "
                               "EXPERIMENT: without it nothing is recorded")
    if config.initializer is not None:
        load_callable("--init", config.initializer)
    normalize(config.query)
    open_manager(config)


def work(config: WorkerConfig, stop: GracefulStop | None = None) -> Counter[str]:
    """Run one worker loop in this process until told to stop, idle or done with max_tasks.

    ``config.initializer`` runs first. Returns how many attempts ended with each outcome
    (``done``, ``retried``, ``failed``, ``lease lost``...); a task retried by this loop
    counts once per attempt. With ``stop_on_error`` the handler's first exception propagates.
    A successful task's commit also claims the next task, in one store transaction
    (:meth:`~taskloom.manager.TaskManager.run_fetched`); if a stop comes meanwhile, that task
    is given back unrun (history: returned), and the last of ``max_tasks`` claims none. What
    the first task loaded is left out of the cycle collector's scans until the loop ends
    (:class:`~taskloom.gctuning.SetupFrozen`).
    """
    if config.initializer is not None:
        initializer = load_callable("--init", config.initializer)
        try:
            initializer(*config.initargs)
        except Exception as exc:
            raise WorkerSetupError(
                f"--init {config.initializer!r} failed: {type(exc).__name__}: "
                f"{exception_message(exc)}"
            ) from exc
    func = resolve_handler(config.handler)
    recorder = build_recorder(config)
    if recorder is not None:
        func = recorder.wrap(func)
    tm = open_manager(config)
    stop = stop or GracefulStop()
    guarded = stop.guard(func)
    on_error = OnError.RAISE if config.stop_on_error else OnError.RETRY
    outcomes: Counter[str] = Counter()
    idle_since = time.monotonic()
    query = normalize(config.query)  # once: the store may keep what it compiled it to
    task = None  # the task claimed together with the last commit, not run yet
    with SetupFrozen() as setup:
        while not stop.requested:
            if config.max_tasks is not None and outcomes.total() >= config.max_tasks:
                break
            if task is None:
                task = tm.fetch_task(query, config.before_status)
            if task is None:
                if (config.idle_exit is not None
                        and time.monotonic() - idle_since >= config.idle_exit):
                    break
                stop.sleep(config.poll_seconds)
                continue
            last = config.max_tasks is not None and outcomes.total() + 1 >= config.max_tasks
            try:
                outcome, task = tm.run_fetched(
                    task, guarded, query, before_status=config.before_status,
                    after_status=config.after_status, on_error=on_error, claim_next=not last)
            except StopRequested:  # the task was given back
                outcomes[Outcome.RETURNED] += 1
                task = None
                break
            outcomes[outcome] += 1
            idle_since = time.monotonic()
            setup.settled()
    if task is not None:  # a stop came while the last commit claimed it: it never ran
        tm.return_task(task, config.before_status)
    return outcomes


def _run_here(config: WorkerConfig, stop: GracefulStop) -> int:
    """One worker loop with a summary line; the process's exit code."""
    try:
        outcomes = work(config, stop)
    except Exception as exc:  # stop_on_error (qlib's "the first error ends the worker"), setup
        print(f"worker {os.getpid()}: stopped on error: {type(exc).__name__}: "
              f"{exception_message(exc)}", file=sys.stderr)
        return 1
    summary = ", ".join(f"{n} {outcome}" for outcome, n in sorted(outcomes.items()))
    print(f"worker {os.getpid()}: {outcomes.total()} attempts ({summary or 'none'})",
          file=sys.stderr)
    return 0


def _child(config: WorkerConfig) -> None:
    """A child process of :func:`serve`: one worker loop, its summary and exit code."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    stop = GracefulStop()
    stop.install()
    sys.exit(_run_here(config, stop))


def _ended(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        return f"was killed by signal {signal.Signals(-exitcode).name}"
    return f"exited with code {exitcode}"


def serve(config: WorkerConfig) -> int:
    """Run ``config.concurrency`` worker loops (child processes when more than one).

    Returns 0 when every loop ended normally (idle, max_tasks or a stop signal), 1 if one
    stopped on an error or died; a parent names each child that did. SIGTERM or SIGINT to
    the parent is sent on to every child as SIGTERM, and the parent waits for them. With
    ``config.record``, the recorder's ``prepare()`` (creating the experiment) runs here
    first, once.
    """
    recorder = build_recorder(config)
    if recorder is not None:
        recorder.prepare()
    if config.concurrency == 1:
        stop = GracefulStop()
        stop.install()
        return _run_here(config, stop)
    context = multiprocessing.get_context("spawn")
    children = [context.Process(target=_child, args=(config,), name=f"taskloom-worker-{i}")
                for i in range(config.concurrency)]
    forwarded = False

    def forward(signum: int, frame: FrameType | None) -> None:
        nonlocal forwarded
        forwarded = True
        for child in children:
            if child.pid is not None and child.is_alive():
                os.kill(child.pid, signal.SIGTERM)

    previous = {signum: signal.signal(signum, forward) for signum in STOP_SIGNALS}
    # a stop that arrives while the children start waits until every child has a pid
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        for child in children:
            child.start()
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    try:
        for child in children:
            child.join()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    # A child killed by the SIGTERM this parent sent had not installed its handler yet, so
    # it had claimed nothing: it stopped as asked. Any other end but 0 is a failure.
    died = [child for child in children if child.exitcode != 0
            and not (forwarded and child.exitcode == -signal.SIGTERM)]
    for child in died:
        print(f"taskloom worker: worker process {child.pid} {_ended(child.exitcode)}",
              file=sys.stderr)
    return 1 if died else 0
