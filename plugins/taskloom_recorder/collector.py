"""``RecorderCollector``: the artifacts of MLflow runs, as ``{key: {run key: object}}``.

qlib's ``RecorderCollector`` with MLflow runs in place of qlib recorders, on any MLflow
experiment (taskloom's recorder or not), and a fast path, because collection is what users
wait on: runs are filtered by status and tags in the tracking store and fetched page by page
instead of listing everything; artifacts are read where they lie when the store is local
(downloaded otherwise); many runs load in parallel threads; and an optional cache folder keeps
each FINISHED run's artifact files (immutable once the run finished) so a later collection, or
one from a remote store, does not fetch them again. :func:`segment_of` and
:func:`~taskloom_recorder.loaders.load_task` let a key function read a run's window and task
without downloading anything.

MLflow and pandas are imported inside the functions: the plugin listing imports this module.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from taskloom.collector import Collector, Processor
from taskloom.errors import CollectError, MissingArtifactError
from taskloom.gctuning import gc_paused

from taskloom_recorder.loaders import Loader, artifact_file, load_file, loader_for
from taskloom_recorder.tracking import tracking_uri as resolve_uri

if TYPE_CHECKING:
    import pandas as pd
    from mlflow.entities import Experiment, Run
    from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)

#: the artifact key that collects the MLflow ``Run`` itself instead of a file (qlib's name)
ART_KEY_RAW = "__raw"
#: the prediction artifact the recorder writes for a bare DataFrame/Series result
DEFAULT_ARTIFACTS_PATH = {"pred": "pred.parquet"}
#: MLflow's run statuses
STATUSES = ("RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED")
#: the ``list_kwargs`` understood (``search_runs`` arguments; ``max_results`` caps the total)
LIST_KWARGS = ("filter_string", "max_results", "order_by", "run_view_type")
#: runs fetched per ``search_runs`` call
PAGE_SIZE = 1000
#: threads loading artifacts at once: reading parquet is CPU work that releases the GIL only
#: in part, so about one per core, and a few more are no help
DEFAULT_WORKERS = min(8, os.cpu_count() or 1)
#: how many existing experiment names an unknown-experiment error lists
NAMES_SHOWN = 10


def segment_of(run: Run, name: str = "test") -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
    """``(start, end)`` of the task's segment ``name``, from the run's segment tags.

    The recorder tags each segment bound as ``taskloom.segment.<name>.start`` / ``.end``
    (``YYYY-MM-DD``); they come back as Timestamps, an open bound as None, so the pair equals
    the task's own ``segments[name]``. A run with neither tag is a CollectError naming the run
    and the segments it has.
    """
    tags = run.data.tags
    prefix = f"taskloom.segment.{name}."
    start, end = tags.get(prefix + "start"), tags.get(prefix + "end")
    if start is None and end is None:
        have = sorted({tag[len("taskloom.segment."):].rsplit(".", 1)[0]
                       for tag in tags if tag.startswith("taskloom.segment.")})
        raise CollectError(
            f"run {run.info.run_id} has no tag {prefix}start or {prefix}end; "
            f"its segments: {', '.join(have) or 'none (not recorded by taskloom?)'}"
        )
    import pandas as pd

    return (pd.Timestamp(start) if start else None, pd.Timestamp(end) if end else None)


def run_id_key(run: Run) -> str:
    """The default run key: the run id (qlib's default, ``rec.info["id"]``)."""
    return run.info.run_id


class RecorderCollector(Collector):
    """Collect artifacts of MLflow runs: ``collect()`` returns ``{artifact_key: {rec_key: obj}}``.

    ``experiment`` is an experiment name, an ``mlflow.entities.Experiment``, or a callable
    returning runs. ``rec_key_func(run)`` and ``rec_filter_func(run)`` receive an
    ``mlflow.entities.Run``. ``artifacts_path`` maps artifact keys to artifact paths (default
    ``{"pred": "pred.parquet"}``), ``artifacts_key`` picks the keys to collect (default all;
    ``"__raw"`` is the run itself). ``list_kwargs`` goes to ``search_runs`` (``filter_string``,
    ``max_results``, ``order_by``, ``run_view_type``); ``status`` keeps runs in these statuses
    (None: any). ``only_exist=True`` skips a run missing an artifact, with a warning.

    Beyond qlib: ``allow_pickle`` lets ``.pkl``/``.pickle`` artifacts load; ``tags`` keeps runs
    whose tags equal these values (filtered in the store); ``max_workers`` threads load
    artifacts; ``cache`` is a folder keeping FINISHED runs' artifact files; ``tracking_uri``
    picks the store (default :func:`taskloom_recorder.tracking.tracking_uri`).
    """

    ART_KEY_RAW = ART_KEY_RAW

    def __init__(
        self,
        experiment: str | Experiment | Callable[[], Iterable[Run]],
        process_list: Processor | Iterable[Processor] | None = None,
        rec_key_func: Callable[[Run], Hashable] | None = None,
        rec_filter_func: Callable[[Run], bool] | None = None,
        artifacts_path: Mapping[str, str] | None = None,
        artifacts_key: str | Iterable[str] | None = None,
        list_kwargs: Mapping[str, Any] | None = None,
        status: Iterable[str] | None = frozenset({"FINISHED"}),
        only_exist: bool = True,
        *,
        allow_pickle: bool = False,
        tags: Mapping[str, str] | None = None,
        max_workers: int = DEFAULT_WORKERS,
        cache: str | os.PathLike[str] | None = None,
        tracking_uri: str | None = None,
    ) -> None:
        super().__init__(process_list)
        if not (isinstance(experiment, str) or callable(experiment)
                or hasattr(experiment, "experiment_id")):
            raise TypeError(
                f"experiment must be a name, an mlflow Experiment or a callable returning runs, "
                f"got {experiment!r}"
            )
        self.experiment = experiment
        self.rec_key_func = rec_key_func or run_id_key
        self.rec_filter_func = rec_filter_func
        self.artifacts_path = dict(DEFAULT_ARTIFACTS_PATH if artifacts_path is None
                                   else artifacts_path)
        self.artifacts_key = artifacts_key
        self.list_kwargs = dict(list_kwargs or {})
        unknown = sorted(set(self.list_kwargs) - set(LIST_KWARGS))
        if unknown:
            raise TypeError(f"list_kwargs: unknown {', '.join(unknown)}; "
                            f"known: {', '.join(LIST_KWARGS)}")
        self.status = None if status is None else frozenset(status)
        if self.status is not None and not self.status <= set(STATUSES):
            bad = ", ".join(sorted(self.status - set(STATUSES)))
            raise ValueError(f"status: unknown {bad}; MLflow's are {', '.join(STATUSES)}")
        self.only_exist = only_exist
        self.allow_pickle = allow_pickle
        self.tags = dict(tags or {})
        for name, value in self.tags.items():
            _tag_clause(name, value)  # refuse what cannot be filtered before any run is read
        if not (isinstance(max_workers, int) and max_workers >= 1):
            raise ValueError(f"max_workers must be an int >= 1, got {max_workers!r}")
        self.max_workers = max_workers
        self.cache = None if cache is None else Path(cache)
        self.tracking_uri = tracking_uri
        self._loaders: dict[str, Loader] = {}
        for key, path in self.artifacts_path.items():
            try:
                self._loaders[key] = loader_for(path, allow_pickle)
            except CollectError as exc:
                raise CollectError(f"artifacts_path[{key!r}]: {exc}") from None

    # ----------------------------------------------------------------------------------------
    # qlib's API
    # ----------------------------------------------------------------------------------------

    @gc_paused()
    def collect(
        self,
        artifacts_key: str | Iterable[str] | None = None,
        rec_filter_func: Callable[[Run], bool] | None = None,
        only_exist: bool | None = None,
    ) -> dict[str, dict[Hashable, Any]]:
        """``{artifact_key: {rec_key: object}}`` for the runs kept; None arguments use the defaults.

        A duplicate run key logs a warning and the later run wins; an artifact key no run
        had is absent. A key absent from ``artifacts_path`` is a KeyError naming the known
        ones. A missing artifact is skipped with a warning when ``only_exist``, else raised
        (MissingArtifactError); an artifact that exists but cannot be read always raises.
        """
        keys = self._keys(self.artifacts_key if artifacts_key is None else artifacts_key)
        keep = rec_filter_func or self.rec_filter_func
        only_exist = self.only_exist if only_exist is None else only_exist
        started = time.perf_counter()
        runs = self.runs()
        if keep is not None:
            runs = [run for run in runs if keep(run)]
        counts = Counter(run.info.status for run in runs)
        log.info("collecting %d runs of %s (by status: %s), listed in %.3f s", len(runs),
                 self.get_exp_name(), dict(counts), time.perf_counter() - started)
        files = [key for key in keys if key != ART_KEY_RAW]
        out: dict[str, dict[Hashable, Any]] = {}
        seen: set[Hashable] = set()
        with tempfile.TemporaryDirectory(prefix="taskloom-collect-") as tmp, \
                ThreadPoolExecutor(self.max_workers) as pool:
            try:
                loading = {(run.info.run_id, key): pool.submit(self._load, run, key, Path(tmp))
                           for run in runs for key in files}
                rec_keys = [self.rec_key_func(run) for run in runs]  # while the threads load
                for run, rec_key in zip(runs, rec_keys, strict=True):
                    if rec_key in seen:
                        log.warning("key %r is duplicated; run %s replaces the earlier run's "
                                    "artifacts", rec_key, run.info.run_id)
                    seen.add(rec_key)
                    for key in keys:
                        obj = run if key == ART_KEY_RAW else loading[run.info.run_id, key].result()
                        if isinstance(obj, MissingArtifactError):
                            if not only_exist:
                                raise obj
                            log.warning("%s; skipped (only_exist=True)", obj)
                            continue
                        out.setdefault(key, {})[rec_key] = obj
            except BaseException:
                pool.shutdown(cancel_futures=True)
                raise
        return out

    def get_exp_name(self) -> str:
        """The experiment's name (for a callable, its name as a function)."""
        if isinstance(self.experiment, str):
            return self.experiment
        if hasattr(self.experiment, "experiment_id"):
            return self.experiment.name
        return getattr(self.experiment, "__name__", repr(self.experiment))

    # ----------------------------------------------------------------------------------------
    # Finding the runs
    # ----------------------------------------------------------------------------------------

    def runs(self) -> list[Run]:
        """The runs in the wanted statuses with the wanted tags, before ``rec_filter_func``."""
        if isinstance(self.experiment, str) or hasattr(self.experiment, "experiment_id"):
            return self._search()
        return [run for run in self.experiment()
                if (self.status is None or run.info.status in self.status)
                and all(run.data.tags.get(k) == v for k, v in self.tags.items())]

    def store_filter(self) -> str:
        """The ``filter_string`` sent to the store: status, tags and the user's own filter."""
        clauses = []
        if self.status is not None and len(self.status) == 1:
            clauses.append(f"attributes.status = '{next(iter(self.status))}'")
        elif self.status is not None:  # the store compares status with one value at a time
            clauses += [f"attributes.status != '{other}'"
                        for other in STATUSES if other not in self.status]
        clauses += [_tag_clause(name, value) for name, value in self.tags.items()]
        if self.list_kwargs.get("filter_string"):  # MLflow filters know only ``and``
            clauses.append(self.list_kwargs["filter_string"])
        return " and ".join(clauses)

    def _search(self) -> list[Run]:
        """Page through ``search_runs`` with :meth:`store_filter`, up to ``max_results`` runs."""
        from mlflow.entities import ViewType

        client = self._client()
        experiment_id = self._experiment_id(client)
        limit = self.list_kwargs.get("max_results")
        query = {
            "filter_string": self.store_filter(),
            "run_view_type": self.list_kwargs.get("run_view_type", ViewType.ACTIVE_ONLY),
            "order_by": self.list_kwargs.get("order_by"),
        }
        runs: list[Run] = []
        token = None
        while limit is None or len(runs) < limit:
            size = PAGE_SIZE if limit is None else min(PAGE_SIZE, limit - len(runs))
            try:
                page = client.search_runs([experiment_id], max_results=size, page_token=token,
                                          **query)
            except Exception as exc:
                raise CollectError(
                    f"experiment {self.get_exp_name()!r}: cannot search runs with filter "
                    f"{query['filter_string']!r}: {type(exc).__name__}: {exc}"
                ) from exc
            runs.extend(page)
            token = page.token
            if not token:
                break
        return runs

    def _client(self) -> MlflowClient:
        """A client on the tracking store; a SQLite store that does not exist is an error."""
        from mlflow.tracking import MlflowClient

        uri = resolve_uri(self.tracking_uri)
        parsed = urlparse(uri)
        db = parsed.path[1:]  # sqlite:////abs/file and sqlite:///relative/file
        if parsed.scheme == "sqlite" and db not in ("", ":memory:") and not Path(db).exists():
            raise CollectError(f"experiment {self.get_exp_name()!r}: there is no tracking store "
                               f"at {uri} (set MLFLOW_TRACKING_URI or pass tracking_uri)")
        return MlflowClient(tracking_uri=uri)

    def _experiment_id(self, client: MlflowClient) -> str:
        """The id of ``experiment``; an unknown name is an error listing existing names."""
        if not isinstance(self.experiment, str):
            return self.experiment.experiment_id
        found = client.get_experiment_by_name(self.experiment)
        if found is not None:
            return found.experiment_id
        names = [e.name for e in client.search_experiments(max_results=NAMES_SHOWN + 1)]
        listing = ", ".join(repr(n) for n in names[:NAMES_SHOWN]) or "none"
        more = " ..." if len(names) > NAMES_SHOWN else ""
        raise CollectError(
            f"experiment {self.experiment!r} does not exist in {resolve_uri(self.tracking_uri)}"
            f" (a collector never creates one); existing experiments: {listing}{more}"
        )

    # ----------------------------------------------------------------------------------------
    # Loading the artifacts
    # ----------------------------------------------------------------------------------------

    def _keys(self, artifacts_key: str | Iterable[str] | None) -> list[str]:
        """The artifact keys to collect; one absent from ``artifacts_path`` is a KeyError."""
        if artifacts_key is None:
            return list(self.artifacts_path)
        keys = [artifacts_key] if isinstance(artifacts_key, str) else list(artifacts_key)
        for key in keys:
            if key != ART_KEY_RAW and key not in self.artifacts_path:
                raise KeyError(f"artifact key {key!r} is not in artifacts_path; known keys: "
                               f"{', '.join(map(repr, [*self.artifacts_path, ART_KEY_RAW]))}")
        return keys

    def _load(self, run: Run, key: str, tmp: Path) -> Any:
        """The object of artifact ``key`` of ``run``, or the MissingArtifactError saying why not."""
        path, loader, run_id = self.artifacts_path[key], self._loaders[key], run.info.run_id
        cached = None
        if self.cache is not None and run.info.status == "FINISHED":
            cached = self.cache / run_id / path
            if cached.is_file():
                return load_file(cached, loader, run_id, path)
        try:
            found = artifact_file(run_id, run.info.artifact_uri, path, tmp / run_id,
                                  resolve_uri(self.tracking_uri))
        except MissingArtifactError as exc:
            return exc
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            partial = cached.with_name(f"{cached.name}.{uuid.uuid4().hex}.partial")
            shutil.copyfile(found, partial)
            os.replace(partial, cached)  # a reader never sees half a file
        return load_file(found, loader, run_id, path)


def _tag_clause(name: str, value: str) -> str:
    """``tags.`name` = 'value'`` for the store's filter; a name or value it cannot quote is a
    ValueError naming the tag."""
    if not isinstance(name, str) or not isinstance(value, str):
        raise TypeError(f"tags: {name!r}: tag names and values are strings, got {value!r}")
    if "`" in name:
        raise ValueError(f"tags: tag name {name!r} contains a backtick, which cannot be filtered")
    if "'" not in value:
        return f"tags.`{name}` = '{value}'"
    if '"' not in value:
        return f'tags.`{name}` = "{value}"'
    raise ValueError(f"tags[{name!r}]: value {value!r} has both quote kinds; it cannot be "
                     "filtered in the store")
