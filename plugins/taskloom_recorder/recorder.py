"""The MLflow recorder: each call of a handler becomes one MLflow run, its result a reference.

A run is made in two writes (:mod:`taskloom_recorder.runs`): created RUNNING with every tag,
then, once its files are written (straight into a new run's folder on a local store, else
copied in one go), ended with its params and metrics. On MLflow's SQLite store each write is
one short SQL transaction; elsewhere it goes through MLflow's client. Every store call is
retried while SQLite is locked (:mod:`taskloom_recorder.retry`). The run's folder and task
files are written by a background thread while the handler runs.
``docs/recording.md`` has the whole story: tags, params, artifacts, the result reference,
orphaned and failed runs.

MLflow is imported inside the methods: the plugin's ``__init__`` imports this module, and
listing plugins or running ``taskloom --help`` must not pay seconds for it.
"""

from __future__ import annotations

import logging
import os
import tempfile
import traceback
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from taskloom.errors import TaskloomError
from taskloom.running import RunningTask, current_task
from taskloom.taskkey import task_key
from taskloom.train import TASK_ID_TAG

from taskloom_recorder import tracking
from taskloom_recorder.artifacts import task_files, write_result
from taskloom_recorder.loaders import load_task, local_artifact_dir
from taskloom_recorder.params import fit, flatten, limits
from taskloom_recorder.retry import retrying
from taskloom_recorder.runs import ClientRuns, NewRun, RunWriter, writer

if TYPE_CHECKING:
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)

#: the prefix of every tag the recorder sets
TAG_PREFIX = "taskloom."
#: the artifact a failed run's traceback is logged as
ERROR_ARTIFACT = "error.txt"

#: the experiment ids this process has resolved, by (tracking URI, experiment name): a pool
#: worker records every task into one experiment and looks it up once, not once per run
_EXPERIMENT_IDS: dict[tuple[str, str], str] = {}


class RecordingError(TaskloomError):
    """The tracking store cannot be used: an experiment cannot be created or is deleted."""


class RunKilledError(RecordingError):
    """A newer attempt at the task marked this run KILLED while its handler ran.

    The worker of this attempt stalled past its lease and the task was reclaimed: its result
    would not be committed, so the run stays KILLED instead of ending FINISHED.
    """


class MlflowRecorder:
    """Records handler calls as runs of the MLflow experiment ``experiment``.

    ``tracking_uri`` names the tracking store; by default ``MLFLOW_TRACKING_URI``, else
    ``mlflow.db`` and ``mlruns/`` in the working directory (:mod:`taskloom_recorder.tracking`),
    fixed when the recorder is built. A recorder pickles (without its client), so a wrapped
    handler can run in a ``force_release`` child process.
    """

    def __init__(self, experiment: str, *, tracking_uri: str | None = None) -> None:
        if not isinstance(experiment, str) or not experiment.strip():
            raise ValueError(f"experiment must be a non-empty name, got {experiment!r:.80}")
        self.experiment = experiment
        self.tracking_uri = tracking.tracking_uri(tracking_uri)
        self._client: MlflowClient | None = None
        self._experiment_id: str | None = None

    def __repr__(self) -> str:
        return f"MlflowRecorder({self.experiment!r}, tracking_uri={self.tracking_uri!r})"

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_client": None}

    def _writer(self) -> RunWriter:
        """How this process writes new runs: :func:`taskloom_recorder.runs.writer`."""
        return writer(self.tracking_uri)

    @property
    def client(self) -> MlflowClient:
        """The MLflow client on this recorder's tracking store, made on first use."""
        if self._client is None:
            self._client = tracking.client(self.tracking_uri)
        return self._client

    # ----------------------------------------------------------------------------------------
    # the experiment
    # ----------------------------------------------------------------------------------------

    def prepare(self) -> None:
        """Create the experiment (and the tracking store) unless it exists.

        Race-safe: when another process creates it first, the one it made is read back.
        Always asks the store, so a deleted experiment is reported here, as is a bad
        ``TASKLOOM_MLFLOW_WRITES``.
        """
        self._experiment_id = self._get_or_create()
        _EXPERIMENT_IDS[self.tracking_uri, self.experiment] = self._experiment_id
        tracking.use_wal(self.tracking_uri)
        self._writer()

    def experiment_id(self) -> str:
        """The id of the experiment: resolved once per process, created if it does not exist."""
        if self._experiment_id is None:
            known = _EXPERIMENT_IDS.get((self.tracking_uri, self.experiment))
            if known is None:
                self.prepare()
            else:
                self._experiment_id = known
        assert self._experiment_id is not None
        return self._experiment_id

    def _get_or_create(self) -> str:
        from mlflow.exceptions import MlflowException

        try:
            found = retrying(self.client.get_experiment_by_name, self.experiment)
            if found is None:
                try:
                    return retrying(self.client.create_experiment, self.experiment)
                except MlflowException:
                    found = retrying(self.client.get_experiment_by_name, self.experiment)
                    if found is None:
                        raise
        except MlflowException as exc:
            raise RecordingError(f"experiment {self.experiment!r} in {self.tracking_uri}: "
                                 f"cannot be created or read: {exc.message}") from exc
        if found.lifecycle_stage != "active":
            raise RecordingError(
                f"experiment {self.experiment!r} in {self.tracking_uri} is deleted; restore it "
                "(mlflow experiments restore) or record into another experiment")
        return found.experiment_id

    # ----------------------------------------------------------------------------------------
    # recording a handler
    # ----------------------------------------------------------------------------------------

    def wrap(self, handler: Callable[..., Any], *, run_name: str | None = None,
             tags: Mapping[str, str] | None = None) -> RecordedHandler:
        """``handler`` recorded: each call is one run and returns the run's JSON reference.

        ``run_name`` names the runs (default: ``pool/task_id#attempt`` in a pool, else
        ``task-`` and the start of the task key); ``tags`` are set on each run besides the
        recorder's own.
        """
        return RecordedHandler(self, handler, run_name=run_name, tags=tags)

    def record(self, handler: Callable[..., Any], param: Any, kwargs: Mapping[str, Any], *,
               run_name: str | None = None, tags: Mapping[str, str] | None = None) -> dict:
        """Run ``handler(param, **kwargs)`` inside a new run; the run's JSON reference.

        If the handler raises (or is interrupted), the run ends FAILED (KILLED for an
        interruption) with the traceback as ``error.txt``, and the exception propagates. A
        pool task's run that a newer attempt marked KILLED meanwhile stays KILLED: a
        :class:`RunKilledError` ends this attempt.
        """
        task = current_task()
        experiment_id = self.experiment_id()
        limit = limits()
        params = fit(flatten(param), limit.key_length, limit.param_length)
        all_tags = fit({**run_tags(param, task), **(tags or {})}, limit.key_length,
                       limit.tag_length)
        runs = self._writer()
        run = self._create_run(runs, experiment_id, all_tags, run_name or _run_name(task, all_tags))
        if task is not None and task.attempt > 1:
            self.kill_orphans(experiment_id, task)
        return self._run_handler(runs, run, experiment_id, handler, param, kwargs, params,
                                 caller_tags(all_tags))

    def _create_run(self, runs: RunWriter, experiment_id: str, tags: dict[str, str],
                    run_name: str) -> NewRun:
        """A new RUNNING run; a deleted experiment is a :class:`RecordingError`.

        The experiment id is resolved once per process, so the experiment may have been
        deleted since: when MLflow refuses the run, the store is asked again, which reports a
        deleted experiment clearly; any other refusal propagates as it is.
        """
        from mlflow.exceptions import MlflowException

        try:
            return runs.create(experiment_id, tags, run_name)
        except MlflowException:
            _EXPERIMENT_IDS.pop((self.tracking_uri, self.experiment), None)
            self.prepare()
            raise

    def resume(self, run_id: str, handler: Callable[..., Any], *,
               tags: Mapping[str, str] | None = None) -> dict:
        """Run ``handler(task)`` inside the existing run ``run_id``; its updated JSON reference.

        ``task`` is the task the run recorded (its ``task.json`` with the types of
        ``task.types.json`` put back). The run is set RUNNING again, what the handler returns
        is added to what the run already holds (params are not logged again), ``tags`` are
        set, and the run ends FINISHED, or FAILED with ``error.txt``, as :meth:`record` ends
        a new one. The reference lists the run's earlier artifacts and metrics too. This is
        qlib's ``R.start(recorder_id=..., resume=True)``, which ``end_task_train`` needs.
        """
        experiment_id = self.experiment_id()
        run = self._resumable(run_id, experiment_id)
        names = self._artifact_names(run_id)
        param = load_task(run, self.tracking_uri)
        retrying(self.client.update_run, run_id, status="RUNNING")
        limit = limits()
        end_tags = fit(dict(tags or {}), limit.key_length, limit.tag_length)
        return self._run_handler(ClientRuns(self.client),
                                 NewRun(run_id, run.info.artifact_uri), experiment_id, handler,
                                 param, {}, {}, caller_tags(end_tags), end_tags,
                                 earlier=(names, run.data.metrics))

    def _artifact_names(self, run_id: str) -> set[str]:
        """The names of the files at the top of a run's artifacts."""
        return {item.path for item in retrying(self.client.list_artifacts, run_id)
                if not item.is_dir}

    def _resumable(self, run_id: str, experiment_id: str) -> Run:
        """The run ``run_id`` of this experiment, checked to be resumable."""
        from mlflow.exceptions import MlflowException

        try:
            run = retrying(self.client.get_run, run_id)
        except MlflowException as exc:
            raise RecordingError(f"run {run_id!r} cannot be resumed: not found in "
                                 f"{self.tracking_uri} ({exc.message})") from exc
        if run.info.experiment_id != experiment_id:
            raise RecordingError(
                f"run {run_id} belongs to experiment id {run.info.experiment_id}, not to "
                f"{self.experiment!r} (id {experiment_id}); resume it with that experiment")
        if run.info.lifecycle_stage != "active":
            raise RecordingError(f"run {run_id} is deleted and cannot be resumed")
        return run

    def _run_handler(self, runs: RunWriter, run: NewRun, experiment_id: str,
                     handler: Callable[..., Any],
                     param: Any, kwargs: Mapping[str, Any], params: dict[str, str],
                     listed_tags: dict[str, str], end_tags: dict[str, str] | None = None,
                     earlier: tuple[set[str], Mapping[str, float]] | None = None) -> dict:
        """Call the handler inside ``run``, record what it returns, end the run; its reference.

        ``end_tags`` are logged when the run ends; ``listed_tags`` are the ones its reference
        lists. ``earlier`` are the artifact names and metrics a resumed run already holds,
        which its reference lists too.
        """
        task = current_task()
        in_place = None if earlier is not None else local_artifact_dir(run.artifact_uri)
        with _files_folder(in_place) as directory:
            copy = in_place is None
            written = None
            try:
                written = _write_soon(task_files(param), directory)
                value = handler(param, **kwargs)
                written.result()
                metrics = fit(write_result(value, directory), limits().key_length, None)
                if task is not None and task.may_be_reclaimed():
                    self._check_still_running(runs, run, task)
                self._end(runs, run, params, metrics, directory, copy, "FINISHED", end_tags)
            except RunKilledError:
                raise
            except BaseException as exc:
                _write_error(directory, written)
                status = "FAILED" if isinstance(exc, Exception) else "KILLED"
                self._end_quietly(runs, run, params, directory, copy, status)
                raise
            artifacts = {path.name for path in directory.iterdir()}
        if earlier is not None:
            artifacts |= earlier[0]
            metrics = {**earlier[1], **metrics}
        return self._reference(run, experiment_id, sorted(artifacts), metrics, listed_tags)

    def _end(self, runs: RunWriter, run: NewRun, params: dict[str, str],
             metrics: dict[str, float], directory: Path, copy: bool, status: str,
             tags: dict[str, str] | None = None) -> None:
        """(If ``copy``) store the directory's files; log params, metrics, tags; end the run."""
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        if copy and any(directory.iterdir()):
            get_artifact_repository(run.artifact_uri).log_artifacts(str(directory))
        runs.end(run.run_id, params, metrics, tags or {}, status)

    def _end_quietly(self, runs: RunWriter, run: NewRun, params: dict[str, str],
                     directory: Path, copy: bool, status: str) -> None:
        """:meth:`_end` for a run whose handler raised: a failure here must not hide that error."""
        try:
            self._end(runs, run, params, {}, directory, copy, status)
        except Exception:
            log.exception("run %s: could not record its failure", run.run_id)

    def _check_still_running(self, runs: RunWriter, run: NewRun, task: RunningTask) -> None:
        """Raise :class:`RunKilledError` if a newer attempt marked ``run`` KILLED meanwhile."""
        status = runs.status(run.run_id)
        if status != "RUNNING":
            raise RunKilledError(
                f"run {run.run_id} of task {task.task_id} attempt {task.attempt} was "
                f"marked {status} while its handler ran (a newer attempt reclaimed the task "
                "after this worker's lease expired); its result is discarded")

    def kill_orphans(self, experiment_id: str, task: RunningTask) -> int:
        """Mark KILLED the RUNNING runs of earlier attempts at ``task``; how many there were.

        Such a run's worker died or lost its lease (the task was reclaimed), so it will never
        end by itself. Runs are found by their pool and task id tags.
        """
        from mlflow.entities import RunStatus

        query = (f"tags.`taskloom.pool` = {_quoted(task.pool)} and "
                 f"tags.`taskloom.task_id` = {_quoted(task.task_id)} and "
                 "attributes.status = 'RUNNING'")
        killed = 0
        for run in retrying(self.client.search_runs, [experiment_id], query):
            attempt = run.data.tags.get(f"{TAG_PREFIX}attempt", "")
            if attempt.isdigit() and int(attempt) < task.attempt:
                retrying(self.client.set_terminated, run.info.run_id,
                         RunStatus.to_string(RunStatus.KILLED))
                log.warning("run %s of task %s attempt %s was left running; marked KILLED",
                            run.info.run_id, task.task_id, attempt)
                killed += 1
        return killed

    def _reference(self, run: NewRun, experiment_id: str, artifacts: list[str],
                   metrics: dict[str, float], tags: dict[str, str]) -> dict[str, Any]:
        """The JSON reference a recorded task's pool result is (non-finite metrics as None)."""
        base = run.artifact_uri.rstrip("/")
        return {
            "run_id": run.run_id,
            "experiment_id": experiment_id,
            "experiment": self.experiment,
            "artifacts": {name: f"{base}/{name}" for name in artifacts},
            "metrics": {k: v if v == v and abs(v) != float("inf") else None
                        for k, v in metrics.items()},
            "tags": tags,
        }


class RecordedHandler:
    """A handler under a recorder: same ``(param, **kwargs)`` call, returns the run reference.

    A class rather than a closure, so that it pickles for a ``force_release`` child process
    (when the handler itself is a module-level function).
    """

    def __init__(self, recorder: MlflowRecorder, handler: Callable[..., Any], *,
                 run_name: str | None = None, tags: Mapping[str, str] | None = None) -> None:
        self.recorder = recorder
        self.handler = handler
        self.run_name = run_name
        self.tags = dict(tags or {})

    def __call__(self, param: Any, **kwargs: Any) -> dict[str, Any]:
        return self.recorder.record(self.handler, param, kwargs, run_name=self.run_name,
                                    tags=self.tags)

    def __repr__(self) -> str:
        return f"{self.recorder!r}.wrap({self.handler!r})"


def run_tags(task_def: Any, task: RunningTask | None) -> dict[str, str]:
    """The tags of a run recording ``task_def``: attempt, window segments, model, task tags.

    ``task`` (the pool task being run, if any) gives key, pool, task id, attempt and storage;
    outside a pool the key is computed from ``task_def``.
    """
    tags: dict[str, str] = {}
    if isinstance(task_def, Mapping):
        user_tags = task_def.get("tags")
        if isinstance(user_tags, Mapping):
            tags.update({str(k): _tag_text(v) for k, v in user_tags.items()})
        tags.update(segment_tags(task_def))
        model = task_def.get("model")
        if isinstance(model, Mapping) and model.get("class") is not None:
            tags[f"{TAG_PREFIX}model"] = str(model["class"])
    if task is not None:
        tags.update({f"{TAG_PREFIX}key": task.key, f"{TAG_PREFIX}pool": task.pool,
                     f"{TAG_PREFIX}task_id": task.task_id,
                     f"{TAG_PREFIX}attempt": str(task.attempt), TASK_ID_TAG: task.task_id})
        if task.storage:
            tags[f"{TAG_PREFIX}storage"] = task.storage
    else:
        tags[f"{TAG_PREFIX}key"] = task_key(task_def)
    return tags


@contextmanager
def _files_folder(in_place: Path | None) -> Iterator[Path]:
    """Where a run's files are written: ``in_place`` (a new run's own local artifact folder,
    so nothing is copied; made with the task's files), else a temporary folder the run end
    copies into the store."""
    if in_place is not None:
        yield in_place
        return
    with tempfile.TemporaryDirectory(prefix="taskloom-run-") as tmp:
        yield Path(tmp)


def caller_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """The tags a reference lists: those outside the recorder's own ``taskloom.`` namespace.

    They are the caller's, the task's own ``tags`` and qlib's ``_id in TaskManager``: what a
    trainer looks for before it tags a run again.
    """
    return {k: v for k, v in tags.items() if not k.startswith(TAG_PREFIX)}


def segment_tags(task_def: Mapping[str, Any]) -> dict[str, str]:
    """``taskloom.segment.<name>.start|end`` as ``YYYY-MM-DD`` for each bounded segment.

    Segments are read from ``dataset.kwargs.segments`` (qlib's layout) and a top-level
    ``segments``; an open (None) bound gets no tag.
    """
    found: dict[str, Any] = {}
    dataset = task_def.get("dataset")
    if isinstance(dataset, Mapping) and isinstance(dataset.get("kwargs"), Mapping):
        nested = dataset["kwargs"].get("segments")
        if isinstance(nested, Mapping):
            found.update(nested)
    if isinstance(task_def.get("segments"), Mapping):
        found.update(task_def["segments"])
    tags: dict[str, str] = {}
    for name, bounds in found.items():
        if not isinstance(bounds, list | tuple) or len(bounds) != 2:
            continue
        for side, bound in zip(("start", "end"), bounds, strict=True):
            if bound is not None:
                tags[f"{TAG_PREFIX}segment.{name}.{side}"] = _day(bound)
    return tags


def _day(bound: Any) -> str:
    """A segment bound as ``YYYY-MM-DD``; what pandas cannot read as a date is kept as text."""
    import pandas as pd

    try:
        return pd.Timestamp(bound).strftime("%Y-%m-%d")
    except (ValueError, TypeError):
        return str(bound)


def _tag_text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def _run_name(task: RunningTask | None, tags: Mapping[str, str]) -> str:
    """``pool/task_id#attempt`` for a pool task, else ``task-`` and the start of its key."""
    if task is not None:
        return f"{task.pool}/{task.task_id}#{task.attempt}"
    return f"task-{tags[f'{TAG_PREFIX}key'][:12]}"


def _quoted(value: str) -> str:
    """``value`` as a string literal of MLflow's search filter."""
    return f'"{value}"' if "'" in value else f"'{value}'"


#: the thread that writes runs' task files, one per process (a forked child makes its own)
_FILE_WRITERS: dict[int, ThreadPoolExecutor] = {}


def _write_soon(files: dict[str, str], directory: Path) -> Future[None]:
    """Make ``directory`` and write ``files`` (name: text) into it on a background thread.

    The handler runs meanwhile: a run's folder and task files are file-system work, a
    millisecond or more per run on the build machine, that the system does while Python
    trains. The texts are made before, so a handler that changes its task changes nothing.
    """
    pid = os.getpid()
    if pid not in _FILE_WRITERS:
        _FILE_WRITERS[pid] = ThreadPoolExecutor(1, thread_name_prefix="taskloom-files")
    return _FILE_WRITERS[pid].submit(_write_files, files, directory)


def _write_files(files: dict[str, str], directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)


def _write_error(directory: Path, written: Future[None] | None) -> None:
    """``error.txt`` with the traceback being handled, once the task's files are settled."""
    if written is not None:
        wait([written])
    directory.mkdir(parents=True, exist_ok=True)
    (directory / ERROR_ARTIFACT).write_text(traceback.format_exc())
