"""qlib's trainers: train a list of tasks and return one run reference per task, in order.

``TrainerR`` trains in this process, one task after another; ``TrainerRM`` puts the tasks in
a pool, trains its own share and lets workers on other processes or machines take the rest;
the ``Delay`` variants split training in two stages (``train`` records the task,
``end_train`` fits and predicts in the same run). A reference is the JSON dict a recorder
returns (``{"run_id", "experiment_id", "experiment", "artifacts", "metrics"}``), not a
pickled qlib Recorder. What changes against qlib (``docs/train.md``, "Trainers"):

* a failing window follows the pool's retry policy; when its attempts are used up ``train``
  raises one :class:`TrainingError` naming every failed window and its error, instead of
  hanging or returning a partial list;
* ``DelayTrainerRM.train`` waits until the tasks are really part_done before reading their
  results (qlib read them at once: bug B7);
* ``TrainerR(call_in_subproc=True)`` runs each task in one fresh process (qlib nested the
  k-th task k processes deep: bug B10);
* waiting has no 10 s sleep: it returns as soon as the last task is done.

The ``train_status`` tags go to a train function that takes ``tags`` (``task_train`` and
``begin_task_train`` do), so they are set when its run is created; the recorder tags a pool
task's run with ``"_id in TaskManager"`` itself. A run whose reference does not list them
(another train function's) is tagged afterwards through the registered ``mlflow`` recorder's
client; MLflow itself is imported only there.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from taskloom.attempt import OnError, call_task
from taskloom.errors import TaskloomError
from taskloom.manager import TaskManager
from taskloom.registry import lookup
from taskloom.retry import RetryPolicy
from taskloom.status import DONE, FAILED, PART_DONE, RUNNING, WAITING
from taskloom.train import (
    STATUS_BEGIN,
    STATUS_END,
    STATUS_KEY,
    TASK_ID_TAG,
    begin_task_train,
    end_task_train,
    task_train,
)

log = logging.getLogger(__name__)

#: the experiment qlib records into when none is named
DEFAULT_EXPERIMENT = "Experiment"
#: how often a trainer waiting for other workers re-counts its tasks
DEFAULT_POLL_SECONDS = 0.2
#: a lease of the trainer's own share; renewed every third of it while a task trains
DEFAULT_TRAIN_LEASE_SECONDS = 60.0

#: how long tagging a run waits for a locked SQLite tracking store
LOCKED_RETRY_SECONDS = 30.0

#: a train function: ``train_func(task, experiment_name, recorder_name=None, **kw) -> reference``
TrainFunc = Callable[..., dict[str, Any]]


class TrainingError(TaskloomError):
    """Some tasks could not be trained; the message names each window and its error.

    ``failures`` maps each failed task's id to ``(window, error)``; ``references`` holds the
    references of the tasks that did train (None in the place of a failed one), in task order.
    """

    def __init__(self, message: str, failures: dict[str, tuple[str, str]],
                 references: list[dict[str, Any] | None]) -> None:
        super().__init__(message)
        self.failures = failures
        self.references = references


class Trainer:
    """The trainer contract: ``train(tasks) -> references``, then ``end_train(references)``.

    ``is_delay()`` says whether ``train`` leaves the real work to ``end_train``;
    ``has_worker()`` whether :meth:`worker` can help another process's ``train``.
    """

    def __init__(self) -> None:
        self.delay = False

    def train(self, tasks: Sequence[Mapping[str, Any]] | Mapping[str, Any], *args: Any,
              **kwargs: Any) -> list[dict[str, Any]]:
        """Train ``tasks``; one reference per task, in task order."""
        raise NotImplementedError(f"{type(self).__name__} must implement train()")

    def end_train(self, models: list[dict[str, Any]], *args: Any,
                  **kwargs: Any) -> list[dict[str, Any]]:
        """Finish what ``train`` started; the base trainer has nothing left to do."""
        return models

    def is_delay(self) -> bool:
        """True if ``train`` only records the tasks and ``end_train`` trains them."""
        return self.delay

    def __call__(self, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        """``end_train(train(...))``."""
        return self.end_train(self.train(*args, **kwargs))

    def has_worker(self) -> bool:
        """True if :meth:`worker` can train tasks that another process submitted."""
        return False

    def worker(self, *args: Any, **kwargs: Any) -> None:
        """Train tasks other processes submitted; only pool trainers have workers."""
        raise NotImplementedError(f"{type(self).__name__} has no worker: use TrainerRM")


class TrainerR(Trainer):
    """Trains each task in this process, in order, each as one recorded run.

    ``train_func(task, experiment_name, recorder_name=None, **kw)`` returns the run's
    reference (``task_train`` by default). ``call_in_subproc`` runs each task in a fresh
    spawned process, so that its memory is released; the function must then be importable
    (a module-level function). ``tracking_uri`` names the MLflow store, passed on to the train
    function and used for the tags (default: ``MLFLOW_TRACKING_URI`` or ``mlflow.db`` in the
    working directory).
    """

    STATUS_KEY = STATUS_KEY
    STATUS_BEGIN = STATUS_BEGIN
    STATUS_END = STATUS_END

    def __init__(self, experiment_name: str | None = None, train_func: TrainFunc = task_train,
                 call_in_subproc: bool = False, default_rec_name: str | None = None, *,
                 tracking_uri: str | None = None) -> None:
        super().__init__()
        self.experiment_name = experiment_name
        self.train_func = train_func
        self.call_in_subproc = call_in_subproc
        self.default_rec_name = default_rec_name
        self.tracking_uri = tracking_uri

    def train(self, tasks: Sequence[Mapping[str, Any]] | Mapping[str, Any],
              train_func: TrainFunc | None = None, experiment_name: str | None = None,
              **kwargs: Any) -> list[dict[str, Any]]:
        """Train each task in order; its reference, tagged ``train_status=begin_task_train``.

        ``kwargs`` go to the train function. A task that raises stops the loop and the
        exception propagates, as in qlib (its run is recorded FAILED).
        """
        tasks = task_list(tasks)
        func = train_func or self.train_func
        experiment = experiment_name or self.experiment_name or DEFAULT_EXPERIMENT
        options = begin_tags(func, func_options(self.tracking_uri, self.default_rec_name, kwargs))
        references = []
        for i, task in enumerate(tasks, 1):
            log.info("training task %d/%d: %s", i, len(tasks), window(task))
            references.append(call_task(func, task, {"experiment_name": experiment, **options},
                                        force_release=self.call_in_subproc))
        tag_runs(references, {self.STATUS_KEY: self.STATUS_BEGIN}, self.tracking_uri)
        return references

    def end_train(self, models: list[dict[str, Any]] | dict[str, Any],
                  **kwargs: Any) -> list[dict[str, Any]]:
        """Tag each run ``train_status=end_task_train``; the references come back unchanged."""
        references = [models] if isinstance(models, Mapping) else list(models)
        tag_runs(references, {self.STATUS_KEY: self.STATUS_END}, self.tracking_uri)
        return references


class DelayTrainerR(TrainerR):
    """:class:`TrainerR` in two stages: ``train`` records each task, ``end_train`` trains it.

    ``train_func`` (``begin_task_train``) makes a run holding only the task;
    ``end_train_func(reference, experiment_name, **kw)`` (``end_task_train``) trains in that
    same run and returns its reference.
    """

    def __init__(self, experiment_name: str | None = None,
                 train_func: TrainFunc = begin_task_train,
                 end_train_func: TrainFunc = end_task_train, **kwargs: Any) -> None:
        super().__init__(experiment_name, train_func, **kwargs)
        self.end_train_func = end_train_func
        self.delay = True

    def end_train(self, models: list[dict[str, Any]] | dict[str, Any],
                  end_train_func: TrainFunc | None = None, experiment_name: str | None = None,
                  **kwargs: Any) -> list[dict[str, Any]]:
        """Train each recorded task whose run is not tagged ``end_task_train`` yet, in order."""
        references = [models] if isinstance(models, Mapping) else list(models)
        func = end_train_func or self.end_train_func
        experiment = experiment_name or self.experiment_name or DEFAULT_EXPERIMENT
        options = func_options(self.tracking_uri, None, kwargs)
        statuses = read_run_tag(references, self.STATUS_KEY, self.tracking_uri)
        finished = []
        for reference, status in zip(references, statuses, strict=True):
            if status != self.STATUS_END:
                reference = call_task(func, reference, {"experiment_name": experiment,
                                                        **options},
                                      force_release=self.call_in_subproc)
                tag_runs([reference], {self.STATUS_KEY: self.STATUS_END}, self.tracking_uri)
            finished.append(reference)
        return finished


class TrainerRM(Trainer):
    """Trains through a task pool: this process and any number of workers share the tasks.

    ``train`` puts the tasks in the pool ``task_pool`` (default: the experiment name) of
    ``storage`` (a URL, default ``TASKLOOM_STORAGE`` or ``sqlite:///taskloom.db``), trains
    tasks itself until none is left to claim (unless ``skip_run_task``), waits for the ones
    other workers hold, and returns the references in task order. Tasks already done (an
    earlier ``train`` of the same tasks) are not trained again: their stored reference is
    returned. A failing task is retried by ``retry_policy``; ``train`` raises a
    :class:`TrainingError` naming the windows that failed. ``lease_seconds`` is the lease of
    this process's own share; ``progress`` logs the done count whenever it changes.
    """

    STATUS_KEY = TrainerR.STATUS_KEY
    STATUS_BEGIN = TrainerR.STATUS_BEGIN
    STATUS_END = TrainerR.STATUS_END
    TM_ID = TASK_ID_TAG

    def __init__(self, experiment_name: str | None = None, task_pool: str | None = None,
                 train_func: TrainFunc = task_train, skip_run_task: bool = False,
                 default_rec_name: str | None = None, *, storage: str | None = None,
                 tracking_uri: str | None = None,
                 lease_seconds: float = DEFAULT_TRAIN_LEASE_SECONDS,
                 retry_policy: RetryPolicy | None = None,
                 poll_seconds: float = DEFAULT_POLL_SECONDS) -> None:
        super().__init__()
        self.experiment_name = experiment_name
        self.task_pool = task_pool
        self.train_func = train_func
        self.skip_run_task = skip_run_task
        self.default_rec_name = default_rec_name
        self.storage = storage
        self.tracking_uri = tracking_uri
        self.lease_seconds = lease_seconds
        self.retry_policy = retry_policy
        self.poll_seconds = poll_seconds

    def _experiment(self, experiment_name: str | None) -> str:
        return experiment_name or self.experiment_name or DEFAULT_EXPERIMENT

    def _manager(self, experiment: str) -> TaskManager:
        """The manager of this trainer's pool (named after the experiment unless given)."""
        return TaskManager(self.task_pool or experiment, self.storage,
                           lease_seconds=self.lease_seconds, retry_policy=self.retry_policy)

    def train(self, tasks: Sequence[Mapping[str, Any]] | Mapping[str, Any],
              train_func: TrainFunc | None = None, experiment_name: str | None = None,
              before_status: str = WAITING, after_status: str = DONE,
              default_rec_name: str | None = None, **kwargs: Any) -> list[dict[str, Any]]:
        """Train the tasks through the pool; one reference per task, in task order.

        Tasks that failed in an earlier ``train`` get a fresh attempt budget. Each run is
        tagged ``train_status=begin_task_train`` and ``"_id in TaskManager"=<task id>``.
        """
        tasks = task_list(tasks)
        if not tasks:
            return []
        func = train_func or self.train_func
        experiment = self._experiment(experiment_name)
        tm = self._manager(experiment)
        ids = tm.create_task(tasks)
        unique = list(dict.fromkeys(ids))
        retried = tm.retry({"_id": {"$in": unique}, "status": FAILED})
        if retried:
            log.info("pool %s: %d failed tasks get a fresh attempt budget", tm.task_pool, retried)
        options = begin_tags(func, func_options(
            self.tracking_uri, default_rec_name or self.default_rec_name, kwargs))
        self._drive(tm, func, unique, before_status, after_status,
                    {"experiment_name": experiment, **options})
        references = collect_results(tm, ids, after_status)
        tag_runs(references, {self.STATUS_KEY: self.STATUS_BEGIN}, self.tracking_uri,
                 ids=ids, id_tag=self.TM_ID)
        return references

    def _drive(self, tm: TaskManager, func: TrainFunc, ids: list[str], before_status: str,
               after_status: str, kwargs: dict[str, Any]) -> None:
        """Train claimable tasks among ``ids`` here, then wait until none is left undone.

        Undone means still in ``before_status`` or running. A task waiting out a retry
        backoff, or one whose worker died (its lease expires), is claimed again by this loop
        unless ``skip_run_task``.
        """
        mine = {"_id": {"$in": ids}}
        undone = {"_id": {"$in": ids}, "status": {"$in": [before_status, RUNNING]}}
        last: dict[str, int] = {}
        while True:
            if not self.skip_run_task and tm.run_claimable(
                    func, mine, before_status=before_status, after_status=after_status,
                    on_error=OnError.RETRY, kwargs=kwargs):
                continue
            stat = tm.task_stat(mine)
            if stat != last:
                log.info("pool %s: %s of %d tasks", tm.task_pool, format_stat(stat), len(ids))
                last = stat
            if not tm.task_stat(undone):
                return
            time.sleep(self.poll_seconds)

    def end_train(self, models: list[dict[str, Any]] | dict[str, Any],
                  **kwargs: Any) -> list[dict[str, Any]]:
        """Tag each run ``train_status=end_task_train``; the references come back unchanged."""
        references = [models] if isinstance(models, Mapping) else list(models)
        tag_runs(references, {self.STATUS_KEY: self.STATUS_END}, self.tracking_uri)
        return references

    def worker(self, train_func: TrainFunc | None = None,
               experiment_name: str | None = None) -> None:
        """Train any waiting task of the pool until none is left to claim (another process's).

        Failures follow the retry policy and never end the loop.
        """
        experiment = self._experiment(experiment_name)
        func = train_func or self.train_func
        self._work(self._manager(experiment), func, WAITING,
                   {"experiment_name": experiment,
                    **begin_tags(func, func_options(self.tracking_uri, None, {}))})

    @staticmethod
    def _work(tm: TaskManager, func: TrainFunc, before_status: str,
              kwargs: dict[str, Any]) -> None:
        """Run ``func`` on claimable ``before_status`` tasks of the pool until there are none."""
        tm.run_claimable(func, None, before_status=before_status, on_error=OnError.RETRY,
                         kwargs=kwargs)

    def has_worker(self) -> bool:
        """True: :meth:`worker` trains the pool's tasks from any process."""
        return True


class DelayTrainerRM(TrainerRM):
    """:class:`TrainerRM` in two stages through the pool: part_done, then done.

    ``train`` runs ``train_func`` (``begin_task_train``) on the tasks, leaves them
    ``part_done`` with the begin run's reference as their result, and returns once every
    task is really part_done (or done). ``end_train`` trains the part_done tasks with
    ``end_train_func`` (``end_task_train``) in the same runs, here and in workers
    (``worker()`` or ``taskloom worker --before-status part_done``), waits for all of them, and
    returns the final references.
    """

    def __init__(self, experiment_name: str | None = None, task_pool: str | None = None,
                 train_func: TrainFunc = begin_task_train,
                 end_train_func: TrainFunc = end_task_train, skip_run_task: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(experiment_name, task_pool, train_func, skip_run_task, **kwargs)
        self.end_train_func = end_train_func
        self.delay = True

    def train(self, tasks: Sequence[Mapping[str, Any]] | Mapping[str, Any],
              train_func: TrainFunc | None = None, experiment_name: str | None = None,
              **kwargs: Any) -> list[dict[str, Any]]:
        """Record the tasks (part_done); this process always takes part in this stage."""
        skip, self.skip_run_task = self.skip_run_task, False
        try:
            return super().train(tasks, train_func, experiment_name, after_status=PART_DONE,
                                 **kwargs)
        finally:
            self.skip_run_task = skip

    def end_train(self, models: list[dict[str, Any]] | dict[str, Any],
                  end_train_func: TrainFunc | None = None, experiment_name: str | None = None,
                  **kwargs: Any) -> list[dict[str, Any]]:
        """Train the part_done tasks of these references; their final references, in order.

        The tasks are found by their runs' ``"_id in TaskManager"`` tag. Tasks already done
        are not trained again.
        """
        references = [models] if isinstance(models, Mapping) else list(models)
        if not references:
            return []
        experiment = self._experiment(experiment_name)
        tm = self._manager(experiment)
        ids = task_ids(references, self.tracking_uri)
        missing = [ref.get("run_id") for ref, i in zip(references, ids, strict=True) if not i]
        if missing:
            raise TrainingError(f"runs {missing} have no {self.TM_ID!r} tag: they were not "
                                "made by a TrainerRM's train()", {}, list(references))
        unique = list(dict.fromkeys(ids))
        options = func_options(self.tracking_uri, None, kwargs)
        self._drive(tm, end_train_func or self.end_train_func, unique, PART_DONE, DONE,
                    {"experiment_name": experiment, **options})
        finished = collect_results(tm, ids, DONE)
        tag_runs(finished, {self.STATUS_KEY: self.STATUS_END}, self.tracking_uri)
        return finished

    def worker(self, end_train_func: TrainFunc | None = None,
               experiment_name: str | None = None) -> None:
        """Finish any part_done task of the pool until none is left to claim."""
        experiment = self._experiment(experiment_name)
        self._work(self._manager(experiment), end_train_func or self.end_train_func, PART_DONE,
                   {"experiment_name": experiment,
                    **func_options(self.tracking_uri, None, {})})


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------


def task_list(tasks: Sequence[Mapping[str, Any]] | Mapping[str, Any]) -> list[Any]:
    """One task (a dict) or a sequence of tasks, as a list."""
    return [tasks] if isinstance(tasks, Mapping) else list(tasks)


def func_options(tracking_uri: str | None, recorder_name: str | None,
                 kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments a train function gets besides the experiment name.

    ``recorder_name`` and ``tracking_uri`` are passed only when set, so that a train function
    of one's own need not accept them.
    """
    options = dict(kwargs)
    if recorder_name is not None:
        options["recorder_name"] = recorder_name
    if tracking_uri is not None:
        options["tracking_uri"] = tracking_uri
    return options


def begin_tags(func: TrainFunc, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` with ``tags={"train_status": "begin_task_train"}`` if ``func`` takes ``tags``.

    The run is then tagged when it is created instead of by a second write to the store.
    Only a ``tags`` parameter counts: a ``**kwargs`` may pass it somewhere that refuses it.
    """
    try:
        takes = "tags" in inspect.signature(func).parameters
    except (TypeError, ValueError):
        takes = False
    if not takes:
        return options
    return {**options, "tags": {**options.get("tags", {}), STATUS_KEY: STATUS_BEGIN}}


def window(task: Any) -> str:
    """A task's window for messages: its model class and test segment, when it has them."""
    if not isinstance(task, Mapping):
        return repr(task)[:80]
    parts = []
    model = task.get("model")
    if isinstance(model, Mapping) and model.get("class") is not None:
        parts.append(str(model["class"]))
    dataset = task.get("dataset")
    segments = dataset.get("kwargs", {}).get("segments") if isinstance(dataset, Mapping) else None
    if isinstance(segments, Mapping) and segments.get("test") is not None:
        start, end = segments["test"]
        parts.append(f"test {_day(start)}..{_day(end)}")
    return " ".join(parts) or repr(task)[:80]


def _day(bound: Any) -> str:
    """A segment bound for messages: ``YYYY-MM-DD`` for a date, as written otherwise."""
    return bound.strftime("%Y-%m-%d") if hasattr(bound, "strftime") else str(bound)


def format_stat(stat: Mapping[str, int]) -> str:
    """``{status: count}`` as ``"3 done, 1 running"``."""
    return ", ".join(f"{n} {status}" for status, n in sorted(stat.items())) or "none"


def collect_results(tm: TaskManager, ids: list[str], status: str) -> list[dict[str, Any]]:
    """The stored reference of each task, in order; a TrainingError if any did not train.

    A task counts as trained when it reached ``status`` or went further (``done`` after a
    ``part_done`` stage).
    """
    accepted = {status, DONE}
    references: list[dict[str, Any] | None] = []
    failures: dict[str, tuple[str, str]] = {}
    for task_id in ids:
        task = tm.re_query(task_id)
        if task["status"] in accepted:
            references.append(task["res"])
            continue
        references.append(None)
        error = task.get("error") or {}
        reason = (f"{error.get('type', 'error')}: {error.get('message', '')}" if error
                  else f"ended {task['status']}")
        failures[task_id] = (window(task["def"]), reason)
    if failures:
        lines = "\n".join(f"  {win} (task {task_id}): {reason}"
                          for task_id, (win, reason) in failures.items())
        raise TrainingError(
            f"pool {tm.task_pool}: {len(failures)} of {len(set(ids))} tasks failed to train "
            f"(see 'taskloom show {tm.task_pool} ID' for the tracebacks):\n{lines}",
            failures, references)
    return references  # type: ignore[return-value]


def _client(references: Sequence[Mapping[str, Any]], tracking_uri: str | None) -> Any:
    """The MLflow client of the ``mlflow`` recorder on the store the references' runs are in."""
    options = {} if tracking_uri is None else {"tracking_uri": tracking_uri}
    return lookup("recorder", "mlflow")(references[0]["experiment"], **options).client


def _retrying(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``call(*args, **kwargs)``, tried again while the SQLite tracking store is locked.

    Workers record into the same store while the trainer tags its runs.
    """
    from mlflow.exceptions import MlflowException

    deadline = time.monotonic() + LOCKED_RETRY_SECONDS
    while True:
        try:
            return call(*args, **kwargs)
        except MlflowException as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def tag_runs(references: Sequence[Mapping[str, Any]], tags: Mapping[str, str],
             tracking_uri: str | None, *, ids: Sequence[str] | None = None,
             id_tag: str | None = None) -> None:
    """Set ``tags`` on each reference's run (and ``id_tag`` = its task id, when ``ids``).

    A run whose reference lists every one of them already (its ``"tags"``: they were set
    when the run was made) is not written to again.
    """
    from mlflow.entities import RunTag

    client = None
    for i, reference in enumerate(references):
        run_tags = dict(tags)
        if ids is not None and id_tag is not None:
            run_tags[id_tag] = str(ids[i])
        listed = reference.get("tags") or {}
        if all(listed.get(key) == value for key, value in run_tags.items()):
            continue
        client = client or _client(references, tracking_uri)
        _retrying(client.log_batch, reference["run_id"],
                  tags=[RunTag(key, value) for key, value in run_tags.items()])


def task_ids(references: Sequence[Mapping[str, Any]], tracking_uri: str | None
             ) -> list[str | None]:
    """The pool task id each reference's run was recorded for (its ``_id in TaskManager`` tag).

    Read from the reference when it lists the tag, else from the run.
    """
    listed = [(ref.get("tags") or {}).get(TASK_ID_TAG) for ref in references]
    unlisted = [ref for ref, task_id in zip(references, listed, strict=True) if not task_id]
    read = iter(read_run_tag(unlisted, TASK_ID_TAG, tracking_uri))
    return [task_id or next(read) for task_id in listed]


def read_run_tag(references: Sequence[Mapping[str, Any]], key: str,
                 tracking_uri: str | None) -> list[str | None]:
    """The value of tag ``key`` on each reference's run (None where it is not set)."""
    if not references:
        return []
    client = _client(references, tracking_uri)
    return [_retrying(client.get_run, ref["run_id"]).data.tags.get(key) for ref in references]
