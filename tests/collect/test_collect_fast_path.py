"""What the collector's speed-ups must not change: ``read_parquet`` gives what pandas' own
reader gives, and a collection leaves Python's garbage collector as it found it."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from taskloom.errors import CollectError
from taskloom_recorder import RecorderCollector
from taskloom_recorder.artifacts import read_parquet, write_parquet

from collect.mlflow_runs import make_run, prediction

FRAMES = {
    "mixed dtypes": pd.DataFrame({
        "f": [0.5, None, 2.0], "i": [1, 2, 3], "n": pd.array([1, None, 3], dtype="Int64"),
        "s": ["a", None, "c"], "b": [True, False, True],
        "c": pd.Categorical(["x", "y", "x"]),
        "t": pd.to_datetime(["2020-01-01", None, "2020-01-03"]),
        "tz": pd.date_range("2020-01-01", periods=3, tz="Asia/Shanghai"),
    }),
    "qlib prediction": pd.DataFrame(
        {"score": [0.1, 0.2, 0.3]},
        index=pd.MultiIndex.from_tuples(
            [(pd.Timestamp("2020-01-02"), "SH600000"), (pd.Timestamp("2020-01-02"), "SZ000001"),
             (pd.Timestamp("2020-01-03"), "SH600000")], names=["datetime", "instrument"])),
    "column levels and a range index": pd.DataFrame(
        [[1.0, 2.0]], columns=pd.MultiIndex.from_tuples([("a", "x"), ("a", "y")]),
        index=pd.RangeIndex(5, 6, name="row")),
    "empty": pd.DataFrame({"score": pd.Series([], dtype="float64")},
                          index=pd.DatetimeIndex([], name="datetime")),
}


@pytest.mark.parametrize("frame", FRAMES.values(), ids=FRAMES.keys())
def test_read_parquet_gives_what_pandas_reads(frame, tmp_path):
    frame = frame.copy()
    frame.attrs = {"source": "user", "n": [1, 2]}
    path = tmp_path / "frame.parquet"
    frame.to_parquet(path)
    got = read_parquet(path)
    expected = pd.read_parquet(path)
    pd.testing.assert_frame_equal(got, expected)
    assert got.attrs == expected.attrs == {"source": "user", "n": [1, 2]}


def test_read_parquet_gives_a_series_back_as_pandas_would_read_its_frame(tmp_path):
    series = prediction("2020-01-01", 300, seed=4)
    path = tmp_path / "pred.parquet"
    write_parquet(series, path)
    got = read_parquet(path)
    pd.testing.assert_series_equal(got, pd.read_parquet(path).iloc[:, 0])
    pd.testing.assert_series_equal(got, series, check_freq=False)
    assert got.attrs == {}


@pytest.fixture()
def store(tmp_path: Path) -> tuple[MlflowClient, str, str]:
    """``(client, tracking uri, experiment id)`` of a fresh store with experiment ``e``."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    return client, uri, client.create_experiment("e", artifact_location=str(tmp_path / "art"))


@pytest.fixture()
def gc_restored() -> Iterator[None]:
    """Put the garbage collector back as it was, whatever the test did to it."""
    enabled = gc.isenabled()
    yield
    if enabled:
        gc.enable()
    else:
        gc.disable()


@pytest.mark.parametrize("enabled", [True, False], ids=["enabled", "disabled"])
def test_collect_leaves_the_garbage_collector_as_it_was(store, enabled, gc_restored):
    client, uri, eid = store
    make_run(client, eid, artifacts={"pred.parquet": prediction("2020-01-01", 3)})
    seen = []
    collector = RecorderCollector("e", tracking_uri=uri,
                                  rec_key_func=lambda run: seen.append(gc.isenabled()) or 1)
    gc.enable() if enabled else gc.disable()
    assert list(collector.collect()["pred"]) == [1]
    assert gc.isenabled() is enabled
    assert seen == [False]  # paused while the runs were collected
    broken = make_run(client, eid, artifacts={"pred.parquet": b"not parquet"})
    with pytest.raises(CollectError, match=broken):
        collector.collect()
    assert gc.isenabled() is enabled
