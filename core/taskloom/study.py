"""A rolling study's stages, run from a :class:`~taskloom.workflow.Workflow`: qlib's flow.

qlib's ``task_manager_rolling.py`` resets, generates, trains through a pool with workers, and
collects. Here each stage is a function: :func:`reset`, :func:`prepare`, :func:`generate`,
:func:`submit`, :func:`train`, :func:`collect` and :func:`write_outputs`, and :func:`run`
chains them (``taskloom run``). Submitting is idempotent (the pool keeps one task per
definition), and training runs only what is not done, so running a study again after a crash
or Ctrl-C finishes it without retraining finished windows. Training starts ``taskloom worker``
processes against the pool, exactly the command other machines run (:func:`worker_argv`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from taskloom.errors import TaskloomError
from taskloom.generation import task_generator
from taskloom.instantiate import instantiate
from taskloom.manager import TaskManager
from taskloom.registry import lookup
from taskloom.retry import RetryPolicy
from taskloom.status import DONE, FAILED, PART_DONE, RUNNING, UNDONE, WAITING
from taskloom.stores import get_storage
from taskloom.worker import WorkerConfig, check_config
from taskloom.workflow import TEMPLATE_TAG, Workflow, WorkflowError, mask_url

if TYPE_CHECKING:
    from taskloom.calendar import TradingCalendar
    from taskloom.report import Summary

#: how often training re-counts the pool for its progress display
POLL_SECONDS = 0.5
#: a local worker idle this long exits (and is started again while tasks are undone), so one
#: orphaned by a ``kill -9`` of ``taskloom run`` ends by itself
IDLE_EXIT_SECONDS = 60.0
#: how long a stopped worker gets to give its task back before it is killed
STOP_GRACE_SECONDS = 30.0


class StudyError(TaskloomError):
    """A stage of a study could not complete: workers died, or windows failed to train."""


@dataclass(frozen=True)
class Submitted:
    """What :func:`submit` did: the ids of the study's tasks, and how many were new."""

    ids: list[str]
    new: int


@dataclass(frozen=True)
class Progress:
    """A snapshot of training: counts by status, and the rate since training started."""

    counts: dict[str, int]
    elapsed: float
    done_here: int

    @property
    def total(self) -> int:
        """Every task in the pool."""
        return sum(self.counts.values())

    @property
    def done(self) -> int:
        """Tasks done (trained and committed)."""
        return self.counts.get(DONE, 0)

    @property
    def running(self) -> int:
        """Tasks held by a worker right now."""
        return self.counts.get(RUNNING, 0)

    @property
    def failed(self) -> int:
        """Tasks whose attempts all failed."""
        return self.counts.get(FAILED, 0)

    @property
    def remaining(self) -> int:
        """Tasks still waiting or running."""
        return sum(self.counts.get(status, 0) for status in UNDONE)

    @property
    def rate(self) -> float:
        """Tasks done per second since training started (0 before the first)."""
        return self.done_here / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        """Seconds left at the current rate (None until a task has been done)."""
        return self.remaining / self.rate if self.rate > 0 else None


@dataclass(frozen=True)
class Failure:
    """A window that failed to train: its template, test segment and last error."""

    task_id: str
    template: str
    window: str
    error: str

    def __str__(self) -> str:
        """``ridge test 2019-01-02 .. 2019-03-29 (task ID): ValueError: ...``."""
        return f"{self.template} {self.window} (task {self.task_id}): {self.error}"


@dataclass(frozen=True)
class Trained:
    """What :func:`train` ended with: the pool's counts and the windows that failed."""

    counts: dict[str, int]
    trained_here: int
    failures: list[Failure] = field(default_factory=list)


@dataclass(frozen=True)
class StudyResult:
    """What :func:`run` did, stage by stage."""

    submitted: Submitted
    trained: Trained
    collected: dict[str, dict[Hashable, Any]]
    summary: Summary

    @property
    def outputs(self) -> list[Path]:
        """The files the study wrote (:attr:`taskloom.report.Summary.files`)."""
        return self.summary.files


# ------------------------------------------------------------------------------------------
# The stages
# ------------------------------------------------------------------------------------------


def reset(wf: Workflow) -> tuple[int, int]:
    """Empty the study's pool and delete its experiment's runs (qlib's ``reset()``).

    Returns ``(tasks removed, runs deleted)``. MLflow keeps deleted runs in its trash, where
    collection does not look.
    """
    store = open_store(wf)
    removed = 0
    if wf.pool_name in store.list_pools():
        removed = TaskManager(wf.pool_name, store).remove()
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=wf.tracking_uri)
    experiment = client.get_experiment_by_name(wf.experiment_name)
    deleted = 0
    if experiment is not None:
        for run in _all_runs(client, experiment.experiment_id):
            client.delete_run(run.info.run_id)
            deleted += 1
    return removed, deleted


def prepare(wf: Workflow) -> None:
    """Call each ``prepare:`` entry (e.g. one writing the data file the tasks read), in order."""
    for position, config in enumerate(wf.prepare):
        instantiate(config.as_config(), config_path=f"prepare[{position}]")


def calendar(wf: Workflow) -> TradingCalendar | None:
    """The trading calendar ``calendar:`` describes (None without one)."""
    from taskloom.calendar import TradingCalendar

    spec = wf.calendar
    if spec is None:
        return None
    try:
        if spec.file is not None:
            return TradingCalendar.from_file(spec.file)
        if spec.exchange is not None:
            return TradingCalendar.from_exchange(spec.exchange, spec.start, spec.end)
        return TradingCalendar.from_business_days(spec.start, spec.end)
    except OSError as exc:
        raise WorkflowError(f"calendar.file: {spec.file!r}: cannot read it ({exc.strerror})"
                            ) from None
    except TaskloomError as exc:
        raise WorkflowError(f"calendar: {exc}") from None


def generate(wf: Workflow) -> list[dict[str, Any]]:
    """Every task of the study: each template expanded by the generators, template-major.

    Each task carries the tag ``template: <name>`` (the collection's key). A generator that
    refuses its parameters, or needs a calendar the workflow lacks, is a WorkflowError naming
    ``generators[i]``.
    """
    days = calendar(wf)
    generators = []
    for position, spec in enumerate(wf.generators):
        cls = lookup("generator", spec.name)
        params = dict(spec.params)
        if "calendar" in _parameters(cls):
            if days is None:
                raise WorkflowError(f"generators[{position}]: generator {spec.name!r} needs a "
                                    "trading calendar: add a calendar: section")
            params.setdefault("calendar", days)
        try:
            generators.append(cls(**params))
        except (TaskloomError, TypeError, ValueError) as exc:
            raise WorkflowError(f"generators[{position}].params: {exc}") from None
    tasks: list[dict[str, Any]] = []
    for position, template in enumerate(wf.templates):
        try:
            tasks += task_generator(template.as_task(), generators)
        except (TaskloomError, ValueError) as exc:
            raise WorkflowError(f"templates[{position}] ({template.label}): {exc}") from None
    return tasks


def submit(wf: Workflow, tasks: list[dict[str, Any]]) -> Submitted:
    """Add the tasks not yet in the study's pool; done tasks stay done (idempotent)."""
    from taskloom.taskkey import task_key

    manager = TaskManager(wf.pool_name, open_store(wf))
    keys = sorted({task_key(task) for task in tasks})
    already = len(manager.pool.ids_for_keys(keys))
    ids = manager.create_task(tasks)
    return Submitted(ids=ids, new=len(keys) - already)


@dataclass(frozen=True)
class Stage:
    """One pass of workers over the pool: what they run, on which tasks, and when it is over."""

    handler: str
    before_status: str = WAITING
    after_status: str = DONE
    #: whether the workers record each task as a run (``--record``)
    record: bool = True
    #: the stage is over when no task is left in these statuses
    pending: tuple[str, ...] = UNDONE


def stages(wf: Workflow) -> list[Stage]:
    """The worker passes that train this study: one, or qlib's two delay stages.

    With ``trainer.delay`` the first pass records every task as a run and leaves it
    ``part_done``; the second trains each one inside its run (``end_task_train``).
    """
    if not wf.trainer.delay:
        return [Stage(wf.trainer.handler)]
    return [Stage("train_begin", after_status=PART_DONE, pending=(WAITING, RUNNING)),
            Stage("train_end", before_status=PART_DONE, record=False,
                  pending=(PART_DONE, RUNNING))]


def worker_config(wf: Workflow, workers: int | None = None,
                  stage: Stage | None = None) -> WorkerConfig:
    """The ``taskloom worker`` configuration of ``stage`` (default: the first) of this study."""
    stage = stage or stages(wf)[0]
    return WorkerConfig(
        pool=wf.pool_name, storage=wf.storage_url, handler=stage.handler,
        concurrency=workers or wf.trainer.workers, lease_seconds=wf.trainer.lease_seconds,
        retry_policy=RetryPolicy(max_attempts=wf.trainer.max_attempts),
        initializer=wf.trainer.init, before_status=stage.before_status,
        after_status=stage.after_status,
        record=wf.experiment_name if stage.record else None,
        tracking_uri=wf.tracking_uri if stage.record else None,
    )


def worker_argv(wf: Workflow, workers: int | None = None, masked: bool = False,
                with_urls: bool = True, stage: Stage | None = None) -> list[str]:
    """The ``taskloom worker`` command line of ``stage`` (default: the first) of this study.

    ``masked`` hides passwords (for printing); without ``with_urls`` the store and tracking
    URLs are left out, to be passed as ``TASKLOOM_STORAGE`` and ``MLFLOW_TRACKING_URI``.
    """
    config = worker_config(wf, workers, stage)
    show = mask_url if masked else str
    argv = ["taskloom", "worker", config.pool]
    if with_urls:
        argv += ["--storage", show(config.storage or "")]
    argv += ["--handler", config.handler, "--concurrency", str(config.concurrency),
             "--lease", f"{config.lease_seconds:g}",
             "--max-attempts", str(config.retry_policy.max_attempts)]
    if config.before_status != WAITING:
        argv += ["--before-status", config.before_status]
    if config.after_status != DONE:
        argv += ["--after-status", config.after_status]
    if config.record is not None:
        argv += ["--record", config.record]
        if with_urls:
            argv += ["--tracking-uri", show(config.tracking_uri or "")]
    if config.initializer is not None:
        argv += ["--init", config.initializer]
    return argv


def train(wf: Workflow, workers: int | None = None,
          progress: Callable[[Progress], object] | None = None,
          poll_seconds: float = POLL_SECONDS) -> Trained:
    """Train every undone task of the pool with local ``taskloom worker`` processes.

    Does nothing when no task is waiting, running or part_done. Otherwise, for each of the
    study's :func:`stages`: checks the worker configuration here (a bad handler is a clear
    error, not N dying processes), starts the workers (their output goes to
    ``<outputs>/logs/worker.log``), hands a :class:`Progress` to ``progress`` every
    ``poll_seconds``, and stops them once no task is pending for the stage, which also waits
    for tasks other machines' workers hold (workers idle for :data:`IDLE_EXIT_SECONDS` exit and
    are started again). On Ctrl-C or SIGTERM the workers give their tasks back and stop, and
    the interrupt propagates. Workers that die with tasks left are a :class:`StudyError`
    quoting their log.
    """
    manager = TaskManager(wf.pool_name, open_store(wf), create=False)
    counts = manager.task_stat()
    done_before = counts.get(DONE, 0)
    if not _undone(counts):
        return Trained(counts=counts, trained_here=0, failures=failures(wf, manager))
    started = time.monotonic()
    for stage in stages(wf):
        counts = _run_stage(wf, stage, manager, workers, progress, poll_seconds,
                            lambda counts: Progress(counts, time.monotonic() - started,
                                                    counts.get(DONE, 0) - done_before))
    return Trained(counts=counts, trained_here=counts.get(DONE, 0) - done_before,
                   failures=failures(wf, manager))


def _run_stage(wf: Workflow, stage: Stage, manager: TaskManager, workers: int | None,
               progress: Callable[[Progress], object] | None, poll_seconds: float,
               snapshot: Callable[[dict[str, int]], Progress]) -> dict[str, int]:
    """Run ``stage``'s workers until none of its tasks is pending; the last counts."""
    config = worker_config(wf, workers, stage)
    check_config(config)
    log_file = wf.outputs_dir / "logs" / "worker.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", *worker_argv(wf, workers, with_urls=False, stage=stage),
            "--idle-exit", f"{IDLE_EXIT_SECONDS:g}"]
    # the URLs go by environment, where a password does not show in the process list
    env = {**os.environ, "TASKLOOM_STORAGE": wf.storage_url,
           "MLFLOW_TRACKING_URI": wf.tracking_uri}
    with open(log_file, "ab") as log, _sigterm_as_interrupt():
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            while True:
                counts = manager.task_stat()
                if progress is not None:
                    progress(snapshot(counts))
                pending = sum(counts.get(status, 0) for status in stage.pending)
                if not pending:
                    return counts
                if process.poll() == 0:  # idle while other machines hold the rest
                    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                               env=env)
                elif process.returncode is not None:
                    raise StudyError(
                        f"the worker processes exited (code {process.returncode}) with "
                        f"{pending} tasks undone; the end of {log_file}:\n"
                        + wf.mask(_tail(log_file)))
                time.sleep(poll_seconds)
        finally:
            _stop(process)


def undone(wf: Workflow) -> int:
    """How many of the pool's tasks are still waiting or running."""
    return _undone(TaskManager(wf.pool_name, open_store(wf), create=False).task_stat())


def failures(wf: Workflow, manager: TaskManager | None = None) -> list[Failure]:
    """The study's failed tasks, each named by template and test window, with its last error."""
    manager = manager or TaskManager(wf.pool_name, open_store(wf), create=False)
    found = []
    for record in manager.query({"status": FAILED}):
        task = record["def"]
        error = record.get("error") or {}
        found.append(Failure(
            task_id=str(record["_id"]),
            template=str((task.get("tags") or {}).get(TEMPLATE_TAG, "?")),
            window=_window_text(task),
            error=f"{error.get('type', '?')}: {error.get('message', '')}"))
    return found


def collect(wf: Workflow) -> dict[str, dict[Hashable, Any]]:
    """The study's recorded results, collected and processed as ``collect:`` says.

    With the default ``recorder`` collector: the FINISHED runs of the experiment whose
    ``template`` tag is one of the workflow's templates, keyed by their tags and test window
    (``collect.key``), with the ``collect.artifacts`` loaded, then the processors applied
    (``rolling_group``: one stitched series per template).
    """
    spec = wf.collect
    processors = [lookup("processor", p.name)(**p.kwargs) for p in spec.processors]
    cls = lookup("collector", spec.collector)
    if spec.collector != "recorder":
        return cls(process_list=processors, **spec.kwargs)()
    names = {template.label for template in wf.templates}
    collector = cls(
        wf.experiment_name, process_list=processors, rec_key_func=run_key(wf),
        rec_filter_func=lambda run: run.data.tags.get(TEMPLATE_TAG) in names,
        artifacts_path=spec.artifacts, tracking_uri=wf.tracking_uri, **spec.kwargs)
    return collector()


def run_key(wf: Workflow) -> Callable[[Any], tuple[Any, ...]]:
    """The collection key of an MLflow run: its ``collect.key.tags`` values, then its window.

    The window is the ``(start, end)`` of the run's ``collect.key.segment`` as the recorder
    tags it (``taskloom.segment.<name>.start``/``.end``, see ``docs/recording.md``).
    """
    tags, segment = wf.collect.key.tags, wf.collect.key.segment

    def key(run: Any) -> tuple[Any, ...]:
        """The run's key."""
        values = tuple(run.data.tags.get(tag) for tag in tags)
        if segment is None:
            return values
        prefix = f"taskloom.segment.{segment}."
        return (*values, (run.data.tags.get(prefix + "start"), run.data.tags.get(prefix + "end")))

    return key


def write_outputs(wf: Workflow, collected: dict[str, dict[Hashable, Any]]) -> Summary:
    """Write the study's outputs in ``collect.outputs`` (:func:`taskloom.report.write_outputs`).

    One prediction series per collected key (``collect.key`` values joined by ``/``, in the
    workflow's template order) with its labels, and its test windows: those of the pool's done
    tasks. Returns what :func:`taskloom.report.write_outputs` computed and wrote.
    """
    from taskloom.report import write_outputs as write_report

    preds = collected.get("pred", {})
    if not preds:
        raise StudyError(f"nothing to write: experiment {wf.experiment_name!r} has no finished "
                         "run with predictions for this workflow's templates")
    order = {template.label: position for position, template in enumerate(wf.templates)}
    keys = sorted(preds, key=lambda key: order.get(_column(key), len(order)))
    segment = wf.collect.key.segment or "test"
    windows: dict[str, list[Any]] = {}
    manager = TaskManager(wf.pool_name, open_store(wf), create=False)
    for record in manager.query({"status": DONE}):
        task = record["def"]
        tags = task.get("tags") or {}
        name = _column(tuple(tags.get(tag) for tag in wf.collect.key.tags))
        windows.setdefault(name, []).append(task["dataset"]["kwargs"]["segments"][segment])
    return write_report({key: preds[key] for key in keys}, collected.get("label", {}),
                        windows, wf.outputs_dir)


def run(wf: Workflow, workers: int | None = None, reset_first: bool = False,
        progress: Callable[[Progress], object] | None = None,
        report: Callable[[str], object] | None = None) -> StudyResult:
    """The whole study: (reset), prepare, generate, submit, train, collect, write outputs.

    ``report`` receives one line per stage. Failed windows are a :class:`StudyError` naming
    each, raised after training (nothing is collected then); rerun once they are fixed
    (``taskloom retry POOL`` puts them back).
    """
    say = report or (lambda line: None)
    open_store(wf)  # an unreachable store fails before any data is prepared
    if reset_first:
        removed, deleted = reset(wf)
        say(f"reset: removed {removed} tasks from pool {wf.pool_name!r} and deleted "
            f"{deleted} runs of experiment {wf.experiment_name!r}")
    prepare(wf)
    tasks = generate(wf)
    submitted = submit(wf, tasks)
    say(f"submitted {len(set(submitted.ids))} tasks to pool {wf.pool_name!r} "
        f"({mask_url(wf.storage_url)}): {submitted.new} new")
    trained = train(wf, workers, progress)
    if trained.failures:
        raise StudyError(f"{len(trained.failures)} windows failed to train:\n"
                         + "\n".join(f"  {failure}" for failure in trained.failures)
                         + f"\nfix the cause, then `taskloom retry {wf.pool_name}` and run again")
    say(f"trained {trained.trained_here} tasks here; {trained.counts.get(DONE, 0)} done in all")
    collected = collect(wf)
    summary = write_outputs(wf, collected)
    for path in summary.files:
        say(f"wrote {path}")
    return StudyResult(submitted, trained, collected, summary)


# ------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------


def open_store(wf: Workflow) -> Any:
    """The pool's store; an unreachable or unknown one is a WorkflowError naming ``pool.storage``.

    A store private to this process (``memory://``) is refused: worker processes could not
    see it.
    """
    url = wf.storage_url
    try:
        store = get_storage(url)
        store.list_pools()  # reach the store now: a bad host or path fails here, named
    except TaskloomError as exc:
        raise WorkflowError(wf.mask(f"pool.storage: {mask_url(url)!r}: {exc}")) from None
    if not store.shared_across_processes:
        raise WorkflowError(f"pool.storage: {mask_url(url)!r} lives only in this process; the "
                            "workers need a store they share (sqlite:///FILE, mongodb://...)")
    return store


def _undone(counts: dict[str, int]) -> int:
    """How many tasks of these counts are still waiting or running."""
    return sum(counts.get(status, 0) for status in UNDONE)


def _parameters(cls: type) -> set[str]:
    """The names a class's constructor takes."""
    import inspect

    return set(inspect.signature(cls).parameters)


def _all_runs(client: Any, experiment_id: str) -> list[Any]:
    """Every active run of the experiment, page by page."""
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], max_results=1000, page_token=token)
        runs += list(page)
        token = page.token
        if not token:
            return runs


def _window_text(task: dict[str, Any]) -> str:
    """``test 2019-01-02 .. 2019-03-29`` from a task's dataset segments."""
    segments = ((task.get("dataset") or {}).get("kwargs") or {}).get("segments") or {}
    test = segments.get("test")
    if not isinstance(test, list | tuple) or len(test) != 2:
        return "test ?"
    start, end = ("open" if bound is None else str(bound)[:10] for bound in test)
    return f"test {start} .. {end}"


def _tail(path: Path, lines: int = 20) -> str:
    """The last lines of a log file."""
    text = path.read_text(encoding="utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Ask the worker processes to stop (they give their tasks back), kill them if they hang."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _column(key: Hashable) -> str:
    """A collected key as a column name: ``("ridge",)`` -> ``ridge``."""
    parts = key if isinstance(key, tuple) else (key,)
    return "/".join(str(part) for part in parts)


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """While active, SIGTERM raises KeyboardInterrupt, so a killed run stops its workers too."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        """Turn the signal into the KeyboardInterrupt Ctrl-C would raise."""
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
