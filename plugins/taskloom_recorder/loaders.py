"""Read a run's artifacts: find the file (locally or by download) and load it by its type.

An artifact is loaded by its file extension: ``.parquet`` (a Series written with the shared
Series convention comes back as a Series), ``.json``, ``.csv``, ``.txt``, and ``.pkl`` /
``.pickle`` only when the caller opts in (unpickling runs arbitrary code). When a run's
artifact URI is a local path or ``file://`` URI the file is read where it lies; otherwise it
is downloaded through MLflow. Every failure is a :class:`~taskloom.errors.CollectError`
naming the run id and the artifact path, with the cause chained.

pandas and MLflow are imported inside the functions: the plugin listing imports this module.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from taskloom.errors import CollectError, MissingArtifactError
from taskloom.jsontypes import restore

from taskloom_recorder.artifacts import read_parquet
from taskloom_recorder.tracking import tracking_uri as resolve_uri

if TYPE_CHECKING:
    from mlflow.entities import Run

#: the artifact a recorded run keeps its task definition in, and the task's type map
TASK_ARTIFACT = "task.json"
TYPES_ARTIFACT = "task.types.json"
#: extensions that are pickles, loaded only with ``allow_pickle=True``
PICKLE_SUFFIXES = (".pkl", ".pickle")
#: how many recorded tasks :func:`load_task` keeps parsed
TASK_CACHE_SIZE = 4096

Loader = Callable[[Path], Any]


def read_json(path: Path) -> Any:
    """The JSON document in ``path``."""
    with path.open(encoding="utf-8") as f:
        return json.load(f)


def read_csv(path: Path) -> Any:
    """A DataFrame, its index rebuilt from what ``DataFrame.to_csv`` wrote.

    An unnamed first column (an unnamed index) becomes the index. Otherwise leading columns
    named like qlib's prediction index, ``datetime`` and then ``instrument``, become the index,
    with ``datetime`` parsed as dates; any other CSV keeps a plain range index.
    """
    import pandas as pd

    frame = pd.read_csv(path)
    columns = list(frame.columns)
    if columns and str(columns[0]).startswith("Unnamed: 0"):
        return frame.set_index(columns[0]).rename_axis(None)
    if columns and columns[0] == "datetime":
        frame["datetime"] = pd.to_datetime(frame["datetime"])
        levels = ["datetime", "instrument"] if columns[1:2] == ["instrument"] else ["datetime"]
        return frame.set_index(levels)
    return frame


def read_text(path: Path) -> str:
    """The UTF-8 text in ``path``."""
    return path.read_text(encoding="utf-8")


def read_pickle(path: Path) -> Any:
    """The unpickled object (pandas' reader, which also reads pickles of older pandas)."""
    import pandas as pd

    return pd.read_pickle(path)


LOADERS: dict[str, Loader] = {
    ".parquet": read_parquet,
    ".json": read_json,
    ".csv": read_csv,
    ".txt": read_text,
}


def loader_for(artifact_path: str, allow_pickle: bool = False) -> Loader:
    """The function that loads ``artifact_path``, chosen by its extension.

    An unsupported extension, or a pickle without ``allow_pickle=True``, is a CollectError
    naming the artifact and what to do, raised before any run is read.
    """
    suffix = Path(artifact_path).suffix.lower()
    if suffix in LOADERS:
        return LOADERS[suffix]
    if suffix in PICKLE_SUFFIXES:
        if allow_pickle:
            return read_pickle
        raise CollectError(
            f"artifact {artifact_path!r} is a pickle, which can run arbitrary code when loaded; "
            "pass allow_pickle=True to load pickles you trust (e.g. a qlib experiment's pred.pkl)"
        )
    supported = ", ".join([*LOADERS, *PICKLE_SUFFIXES])
    raise CollectError(
        f"artifact {artifact_path!r}: unsupported file type {suffix or '(no extension)'!r}; "
        f"supported: {supported} (pickles with allow_pickle=True); load other files yourself "
        "from the run (artifact key '__raw')"
    )


def load_file(path: Path, loader: Loader, run_id: str, artifact_path: str) -> Any:
    """``loader(path)``; any failure becomes a CollectError naming the run and the artifact."""
    try:
        return loader(path)
    except Exception as exc:
        raise CollectError(
            f"run {run_id}: artifact {artifact_path!r} cannot be read ({path}): "
            f"{type(exc).__name__}: {exc}"
        ) from exc


def local_artifact_dir(artifact_uri: str) -> Path | None:
    """The folder of a local artifact URI (a path or ``file://``); None for a remote store."""
    parsed = urlparse(artifact_uri)
    if parsed.scheme == "file":
        from urllib.request import url2pathname  # costs 20 ms to import: only when needed

        return Path(url2pathname(parsed.path))
    if parsed.scheme == "" or (len(parsed.scheme) == 1 and artifact_uri[1:2] == ":"):
        # a bare path (a Windows drive parses as a scheme); absolute() asks the file system
        # nothing, where resolve() would look up every folder of every run's path
        return Path(artifact_uri).absolute()
    return None


def artifact_file(
    run_id: str, artifact_uri: str, artifact_path: str, dst: Path, tracking_uri: str | None
) -> Path:
    """The local file of ``artifact_path`` in a run, downloaded into ``dst`` if it is remote.

    ``artifact_uri`` is the run's ``run.info.artifact_uri``. A missing artifact (or one that
    cannot be downloaded) is a MissingArtifactError naming the run and the artifact.
    """
    local = local_artifact_dir(artifact_uri)
    if local is not None:
        path = local / artifact_path
        if not path.is_file():
            raise MissingArtifactError(
                f"run {run_id} has no artifact {artifact_path!r} (looked for {path})"
            )
        return path
    import mlflow.artifacts

    try:
        return Path(
            mlflow.artifacts.download_artifacts(
                run_id=run_id,
                artifact_path=artifact_path,
                dst_path=str(dst),
                tracking_uri=tracking_uri,
            )
        )
    except Exception as exc:
        raise MissingArtifactError(
            f"run {run_id}: artifact {artifact_path!r} cannot be downloaded from "
            f"{artifact_uri}: {type(exc).__name__}: {exc}"
        ) from exc


def load_task(run: Run, tracking_uri: str | None = None) -> Any:
    """The task a taskloom run recorded, from ``task.json`` with its types restored.

    Tuples, Timestamps and the other types the JSON form loses come back from
    ``task.types.json`` when the recorder wrote one. Parsed tasks are cached by run id (a
    recorded task never changes); each call returns a fresh copy the caller may modify. A
    run without ``task.json`` (not recorded by taskloom) is a MissingArtifactError.
    ``tracking_uri`` is needed only for a remote artifact store (see
    :func:`taskloom_recorder.tracking.tracking_uri`).
    """
    data, types = _task_json(run.info.run_id, run.info.artifact_uri, resolve_uri(tracking_uri))
    return restore(data, types)


@lru_cache(maxsize=TASK_CACHE_SIZE)
def _task_json(run_id: str, artifact_uri: str, tracking_uri: str | None) -> tuple[Any, Any]:
    """``(task, type map or None)`` as stored in the run ``run_id``."""
    with tempfile.TemporaryDirectory(prefix="taskloom-task-") as tmp:
        path = artifact_file(run_id, artifact_uri, TASK_ARTIFACT, Path(tmp), tracking_uri)
        data = load_file(path, read_json, run_id, TASK_ARTIFACT)
        try:
            types_path = artifact_file(run_id, artifact_uri, TYPES_ARTIFACT, Path(tmp),
                                       tracking_uri)
        except MissingArtifactError:
            return data, None
        return data, load_file(types_path, read_json, run_id, TYPES_ARTIFACT)
