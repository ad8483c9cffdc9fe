"""Files a recorded run holds: the task, what the handler returned, and the parquet convention.

What a handler returns is recorded by type (``docs/recording.md``): a bare pandas object is
``pred.parquet``; in a dict, pandas objects are ``<key>.parquet``, dicts and lists
``<key>.json``, numbers metrics and other JSON data ``<key>.json``; a bare number is the metric
``result``. A Series is stored as a one-column frame marked in its parquet metadata, so that
:func:`read_parquet` gives the Series back, name included.

pandas and pyarrow are imported inside the functions: the plugin's ``__init__`` imports this
package's modules, and the CLI must stay quick.
"""

from __future__ import annotations

import json
import numbers
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from taskloom.errors import TaskEncodingError, TaskloomError
from taskloom.jsontypes import type_map
from taskloom.taskkey import to_canonical, to_jsonable

from taskloom_recorder.params import valid_key

if TYPE_CHECKING:
    import pandas as pd

#: the artifact a bare DataFrame or Series return value is stored as
PRED_ARTIFACT = "pred.parquet"
#: the metric a bare number return value is stored as
RESULT_METRIC = "result"
#: the ``frame.attrs`` key the parquet Series convention marks a stored Series with
ATTRS_KEY = "taskloom"
#: the column name of a stored Series whose name is not a string
SERIES_COLUMN = "__series__"
#: the longest file name stem a returned dict's key becomes
MAX_STEM_LENGTH = 200


class ArtifactError(TaskloomError):
    """A returned value cannot be written as the artifact its type calls for."""


def task_files(task: Any) -> dict[str, str]:
    """The text of ``task.json`` (the task as plain JSON) and, if the task has non-JSON types,
    of ``task.types.json``, by file name."""
    files = {"task.json": _json_text(to_canonical(task))}
    types = type_map(task)
    if types:
        files["task.types.json"] = _json_text(types)
    return files


def write_result(value: Any, directory: Path) -> dict[str, float]:
    """Write what a handler returned into ``directory``; the metrics it holds, by name."""
    if value is None:
        return {}
    if _is_number(value):
        return {RESULT_METRIC: float(value)}
    if _is_pandas(value):
        write_parquet(value, directory / PRED_ARTIFACT)
        return {}
    if not isinstance(value, dict):
        _write_entry(RESULT_METRIC, value, directory / f"{RESULT_METRIC}.json")
        return {}
    metrics: dict[str, float] = {}
    for key, item in value.items():
        if _is_number(item):
            metrics[str(key)] = float(item)
            continue
        suffix = ".parquet" if _is_pandas(item) else ".json"
        path = directory / f"{_file_stem(key)}{suffix}"
        if path.exists():
            raise ArtifactError(
                f"artifact {path.name!r}: the returned key {key!r} would overwrite the "
                f"{path.name} already recorded (the task, or another key with the same file "
                "name); rename it")
        if suffix == ".parquet":
            write_parquet(item, path)
        else:
            _write_entry(key, item, path)
    return metrics


def write_parquet(value: pd.DataFrame | pd.Series, path: Path) -> None:
    """A DataFrame as parquet, or a Series by the parquet Series convention."""
    import pandas as pd

    if isinstance(value, pd.Series):
        name = value.name if isinstance(value.name, str) else SERIES_COLUMN
        frame = value.to_frame(name=name)
        frame.attrs = {ATTRS_KEY: {"series": True, "name": _jsonable_or_none(value.name)}}
    else:
        frame = value
    try:
        frame.to_parquet(path)
    except (ValueError, TypeError, ImportError) as exc:
        raise ArtifactError(f"artifact {path.name!r}: cannot write the returned "
                            f"{type(value).__name__} as parquet: {exc}") from exc


def read_parquet(path: str | Path) -> pd.DataFrame | pd.Series:
    """A parquet artifact back: the Series it stores by the convention, else the DataFrame.

    The frame is what ``pd.read_parquet`` gives (pyarrow's pandas conversion, ``attrs``
    included), for about half its cost on the small files a run holds: the file is read
    whole into memory (usually less than the table it decodes to) and parsed there by
    ``pyarrow.parquet.ParquetFile``, skipping the dataset and file-system layers of
    ``pd.read_parquet``. pyarrow's own thread pool is not used: one file is small, and the
    collector already reads many files in parallel.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = pa.BufferReader(Path(path).read_bytes())
    table = pq.ParquetFile(data).read(use_threads=False, use_pandas_metadata=True)
    frame = table.to_pandas(use_threads=False)
    marker = frame.attrs.get(ATTRS_KEY)
    if not (isinstance(marker, dict) and marker.get("series")):
        return frame
    series = frame.iloc[:, 0]
    name = marker.get("name")
    series.name = tuple(name) if isinstance(name, list) else name  # a tuple name comes back
    series.attrs = {}
    return series


def _write_entry(key: Any, value: Any, path: Path) -> None:
    try:
        data = to_jsonable(value)
    except TaskEncodingError as exc:
        raise ArtifactError(
            f"artifact {path.name!r}: the returned value of {key!r} has no JSON form ({exc}); "
            "return pandas objects, JSON data or numbers"
        ) from exc
    _write_json(path, data)


def _write_json(path: Path, data: Any) -> None:
    path.write_text(_json_text(data))


def _json_text(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, indent=1, allow_nan=False)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_pandas(value: Any) -> bool:
    """A DataFrame or Series; pandas is not imported for it (a pandas object means it is)."""
    pd = sys.modules.get("pandas")
    return pd is not None and isinstance(value, pd.DataFrame | pd.Series)


def _jsonable_or_none(value: Any) -> Any:
    try:
        return to_jsonable(value)
    except TaskEncodingError:
        return None


def _file_stem(key: Any) -> str:
    """A returned dict's key as a file name: path separators and odd characters become ``_``."""
    return valid_key(str(key), MAX_STEM_LENGTH)
