"""RecorderCollector on a real MLflow sqlite tracking store: qlib's semantics, every artifact
type, the bad-input errors, tag filtering in the store, the cache and parallel loading.

One tracking store serves the whole module (creating one costs seconds); every test makes its
own experiment in it, so tests do not see each other's runs.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import taskloom
from mlflow.tracking import MlflowClient
from taskloom.errors import CollectError, MissingArtifactError
from taskloom_recorder import RecorderCollector, collector, load_task, loaders, segment_of

from collect.mlflow_runs import make_run, prediction, rolling_task


@pytest.fixture(scope="module")
def uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One sqlite tracking store (artifacts beside it) for the module."""
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    client.create_experiment("bootstrap", artifact_location=str(root / "mlruns" / "bootstrap"))
    return uri


@pytest.fixture()
def client(uri: str) -> MlflowClient:
    """A client on the module's store."""
    return MlflowClient(tracking_uri=uri)


@pytest.fixture()
def exp(client: MlflowClient, uri: str) -> tuple[str, str]:
    """``(name, id)`` of a fresh experiment in the module's store."""
    name = f"exp-{uuid.uuid4().hex[:8]}"
    root = Path(uri.removeprefix("sqlite:///")).parent / "mlruns" / name
    return name, client.create_experiment(name, artifact_location=str(root))


def collector_on(uri: str, name: str, **kwargs: Any) -> RecorderCollector:
    """A RecorderCollector on experiment ``name`` of the module's store."""
    return RecorderCollector(name, tracking_uri=uri, **kwargs)


def artifact_path(client: MlflowClient, run_id: str, name: str) -> Path:
    """The local file of artifact ``name`` of run ``run_id``."""
    return Path(client.get_run(run_id).info.artifact_uri) / name


# ------------------------------------------------------------------------------------------
# qlib's semantics
# ------------------------------------------------------------------------------------------


def test_finished_runs_only_by_default_keyed_by_run_id(client, uri, exp):
    name, eid = exp
    done = make_run(client, eid, artifacts={"pred.parquet": prediction("2020-01-01", 5, 1)})
    make_run(client, eid, artifacts={"pred.parquet": prediction("2020-01-01", 5, 2)},
             status="FAILED")
    make_run(client, eid, artifacts={"pred.parquet": prediction("2020-01-01", 5, 3)},
             status="KILLED")
    out = collector_on(uri, name).collect()
    assert list(out) == ["pred"]
    assert list(out["pred"]) == [done]
    pd.testing.assert_series_equal(out["pred"][done], prediction("2020-01-01", 5, 1),
                                   check_freq=False)


def test_status_none_keeps_every_status_and_a_set_keeps_those(client, uri, exp):
    name, eid = exp
    ids = {status: make_run(client, eid, artifacts={"pred.parquet": prediction("2020-01-01", 3)},
                            status=status) for status in ("FINISHED", "FAILED", "KILLED")}
    assert set(collector_on(uri, name, status=None).collect()["pred"]) == set(ids.values())
    both = collector_on(uri, name, status={"FINISHED", "FAILED"}).collect()["pred"]
    assert set(both) == {ids["FINISHED"], ids["FAILED"]}


def test_rec_key_and_filter_receive_mlflow_runs(client, uri, exp):
    name, eid = exp
    for model in ("LGBModel", "Linear"):
        make_run(client, eid, task=rolling_task("2017-01-03", "2019-04-08", model),
                 artifacts={"pred.parquet": prediction("2017-01-03", 4)})

    def rec_key(run):
        return run.data.tags["taskloom.model"], segment_of(run, "test")

    def lgb_only(run):
        return run.data.tags["taskloom.model"] == "LGBModel"

    window = (pd.Timestamp("2017-01-03"), pd.Timestamp("2019-04-08"))
    c = collector_on(uri, name, rec_key_func=rec_key, rec_filter_func=lgb_only)
    assert list(c.collect()["pred"]) == [("LGBModel", window)]
    # a filter given to collect() replaces the instance's
    keys = c.collect(rec_filter_func=lambda run: True)["pred"]
    assert set(keys) == {("LGBModel", window), ("Linear", window)}


def test_duplicate_key_warns_and_the_later_run_wins(client, uri, exp, caplog):
    name, eid = exp
    first = make_run(client, eid, artifacts={"pred.parquet": prediction("2020-01-01", 3, 1)},
                     start_time=1_000)
    second = make_run(client, eid, artifacts={"pred.parquet": prediction("2020-01-01", 3, 2)},
                      start_time=2_000)
    c = collector_on(uri, name, rec_key_func=lambda run: "same",
                     list_kwargs={"order_by": ["attributes.start_time ASC"]})
    with caplog.at_level(logging.WARNING, logger=collector.__name__):
        out = c.collect()
    pd.testing.assert_series_equal(out["pred"]["same"], prediction("2020-01-01", 3, 2),
                                   check_freq=False)
    assert "'same' is duplicated" in caplog.text and second in caplog.text
    assert first not in caplog.text


def test_only_exist_skips_a_missing_artifact_or_raises_naming_run_and_artifact(
        client, uri, exp, caplog):
    name, eid = exp
    full = make_run(client, eid, artifacts={"pred.parquet": prediction("2020-01-01", 3),
                                            "label.json": [1, 2]})
    partial = make_run(client, eid, artifacts={"pred.parquet": prediction("2020-01-01", 3)})
    c = collector_on(uri, name, artifacts_path={"pred": "pred.parquet", "label": "label.json"})
    with caplog.at_level(logging.WARNING, logger=collector.__name__):
        out = c.collect()
    assert set(out["pred"]) == {full, partial}
    assert out["label"] == {full: [1, 2]}
    assert partial in caplog.text and "'label.json'" in caplog.text
    with pytest.raises(MissingArtifactError, match=f"run {partial} has no artifact 'label.json'"):
        c.collect(only_exist=False)
    with pytest.raises(MissingArtifactError, match=partial):
        collector_on(uri, name, artifacts_path={"label": "label.json"},
                     only_exist=False).collect()


def test_a_key_no_run_has_is_absent(client, uri, exp):
    name, eid = exp
    make_run(client, eid, artifacts={"pred.parquet": prediction("2020-01-01", 3)})
    out = collector_on(uri, name, artifacts_path={"pred": "pred.parquet",
                                                  "ic": "ic.json"}).collect()
    assert list(out) == ["pred"]


def test_raw_key_gives_the_run_and_a_str_key_is_a_list(client, uri, exp):
    name, eid = exp
    run_id = make_run(client, eid, artifacts={"pred.parquet": prediction("2020-01-01", 3)})
    c = collector_on(uri, name, artifacts_key="__raw")
    out = c.collect()
    assert list(out) == ["__raw"]
    assert out["__raw"][run_id].info.run_id == run_id
    assert list(c.collect(artifacts_key=["pred", "__raw"])) == ["pred", "__raw"]
    assert RecorderCollector.ART_KEY_RAW == "__raw"


def test_unknown_artifact_key_is_a_key_error_naming_the_known_ones(uri, exp):
    c = collector_on(uri, exp[0])
    with pytest.raises(KeyError, match="'lable' is not in artifacts_path; known keys: 'pred'"):
        c.collect(artifacts_key="lable")


def test_callable_experiment_gets_the_status_filter(client, uri, exp):
    name, eid = exp
    ok = make_run(client, eid, artifacts={"pred.parquet": prediction("2020-01-01", 3)})
    failed = make_run(client, eid, artifacts={"pred.parquet": prediction("2020-01-01", 3)},
                      status="FAILED")
    runs = [client.get_run(ok), client.get_run(failed)]
    out = RecorderCollector(lambda: runs, tracking_uri=uri).collect()
    assert list(out["pred"]) == [ok]


def test_an_mlflow_experiment_object_is_accepted(client, uri, exp):
    name, eid = exp
    run_id = make_run(client, eid, artifacts={"pred.parquet": prediction("2020-01-01", 3)})
    c = RecorderCollector(client.get_experiment(eid), tracking_uri=uri)
    assert list(c.collect()["pred"]) == [run_id]
    assert c.get_exp_name() == name


def test_process_list_is_applied_by_call(client, uri, exp):
    name, eid = exp
    run_id = make_run(client, eid, artifacts={"pred.parquet": prediction("2020-01-01", 3)})

    def lengths(inner):
        return {key: len(value) for key, value in inner.items()}

    def total(inner):
        return sum(inner.values())

    assert collector_on(uri, name, process_list=lengths)() == {"pred": {run_id: 3}}
    assert collector_on(uri, name, process_list=[lengths, total])() == {"pred": 3}


def test_registered_as_recorder_and_listing_imports_no_mlflow():
    assert taskloom.get_collector("recorder") is RecorderCollector
    code = ("import sys, taskloom; taskloom.get_collector('recorder'); "
            "import taskloom_recorder; "
            "print(sorted(m for m in ('mlflow', 'pandas', 'pyarrow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


# ------------------------------------------------------------------------------------------
# File types
# ------------------------------------------------------------------------------------------


def test_every_file_type_loads(client, uri, exp):
    name, eid = exp
    frame = pd.DataFrame({"a": [1.0, 2.0], "b": ["x", "y"]},
                         index=pd.Index(["r1", "r2"], name="row"))
    unnamed = pd.Series([0.5, 0.25], index=pd.date_range("2020-01-01", periods=2))
    qlib_pred = pd.DataFrame(
        {"score": [0.1, 0.2, 0.3]},
        index=pd.MultiIndex.from_tuples(
            [(pd.Timestamp("2020-01-02"), "SH600000"), (pd.Timestamp("2020-01-02"), "SZ000001"),
             (pd.Timestamp("2020-01-03"), "SH600000")], names=["datetime", "instrument"]))
    plain_csv = pd.DataFrame({"x": [1, 2]}, index=["a", "b"])
    files = {"frame.parquet": frame, "unnamed.parquet": unnamed, "pred.parquet":
             prediction("2020-01-01", 3), "metrics.json": {"ic": 0.05, "ok": [1, 2]},
             "qlib.csv": qlib_pred, "plain.csv": plain_csv, "notes.txt": "héllo\n",
             "old.pkl": qlib_pred}
    run_id = make_run(client, eid, artifacts=files)
    paths = {Path(f).stem: f for f in files}
    out = collector_on(uri, name, artifacts_path=paths, allow_pickle=True).collect()
    got = {key: value[run_id] for key, value in out.items()}
    pd.testing.assert_frame_equal(got["frame"], frame)
    pd.testing.assert_series_equal(got["unnamed"], unnamed, check_freq=False)
    assert got["unnamed"].attrs == {} and got["unnamed"].name is None
    pd.testing.assert_series_equal(got["pred"], prediction("2020-01-01", 3), check_freq=False)
    assert got["metrics"] == {"ic": 0.05, "ok": [1, 2]}
    pd.testing.assert_frame_equal(got["qlib"], qlib_pred, check_index_type=False)
    assert isinstance(got["qlib"].index.get_level_values("datetime")[0], pd.Timestamp)
    pd.testing.assert_frame_equal(got["plain"], plain_csv)
    assert got["notes"] == "héllo\n"
    pd.testing.assert_frame_equal(got["old"], qlib_pred)


def test_pickle_needs_the_opt_in(uri, exp):
    with pytest.raises(CollectError, match=r"artifacts_path\['pred'\]: artifact 'pred.pkl' is "
                                           r"a pickle.*allow_pickle=True"):
        collector_on(uri, exp[0], artifacts_path={"pred": "pred.pkl"})


def test_unsupported_extension_names_the_artifact_and_the_supported_types(uri, exp):
    with pytest.raises(CollectError, match=r"artifacts_path\['model'\]: artifact 'model.h5': "
                                           r"unsupported file type '.h5'; supported: .parquet"):
        collector_on(uri, exp[0], artifacts_path={"model": "model.h5"})


@pytest.mark.parametrize("only_exist", [True, False])
def test_unreadable_artifact_names_the_run_and_artifact(client, uri, exp, only_exist):
    name, eid = exp
    run_id = make_run(client, eid, artifacts={"pred.parquet": b"not parquet at all"})
    with pytest.raises(CollectError, match=f"run {run_id}: artifact 'pred.parquet' cannot be "
                                           "read") as info:
        collector_on(uri, name, only_exist=only_exist).collect()
    assert info.value.__cause__ is not None


def test_a_missing_experiment_is_an_error_naming_it_and_is_not_created(client, uri, exp):
    c = collector_on(uri, "no-such-exp")
    with pytest.raises(CollectError, match=r"experiment 'no-such-exp' does not exist .*"
                                           rf"existing experiments: .*'{exp[0]}'"):
        c.collect()
    assert client.get_experiment_by_name("no-such-exp") is None


def test_a_missing_tracking_store_is_an_error_and_is_not_created(tmp_path):
    uri = f"sqlite:///{tmp_path / 'none.db'}"
    with pytest.raises(CollectError, match="there is no tracking store at"):
        RecorderCollector("exp", tracking_uri=uri).collect()
    assert not (tmp_path / "none.db").exists()


def test_bad_arguments_are_refused_at_construction(uri):
    with pytest.raises(ValueError, match="status: unknown DONE"):
        RecorderCollector("e", status={"DONE"})
    with pytest.raises(TypeError, match="list_kwargs: unknown rtype"):
        RecorderCollector("e", list_kwargs={"rtype": 1})
    with pytest.raises(ValueError, match="both quote kinds"):
        RecorderCollector("e", tags={"note": "it's \"x\""})
    with pytest.raises(TypeError, match="experiment must be a name"):
        RecorderCollector(3)


# ------------------------------------------------------------------------------------------
# The fast path
# ------------------------------------------------------------------------------------------


def test_tags_filter_in_the_store_with_the_users_filter_string(client, uri, exp):
    name, eid = exp
    ids = {}
    for model in ("LGBModel", "Linear"):
        for window in ("2017-01-03", "2018-01-02"):
            ids[model, window] = make_run(
                client, eid, task=rolling_task(window, None, model),
                artifacts={"pred.parquet": prediction(window, 3)}, tags={"note": "it's"})
    c = collector_on(uri, name, tags={"taskloom.model": "LGBModel", "note": "it's"},
                     list_kwargs={"filter_string":
                                  "tags.`taskloom.segment.test.start` = '2018-01-02'"})
    assert "tags.`taskloom.model` = 'LGBModel'" in c.store_filter()
    assert "attributes.status = 'FINISHED'" in c.store_filter()
    assert list(c.collect()["pred"]) == [ids["LGBModel", "2018-01-02"]]
    # the same tags on a callable experiment are checked in Python
    runs = [client.get_run(run_id) for run_id in ids.values()]
    c = RecorderCollector(lambda: runs, tags={"taskloom.model": "Linear"}, tracking_uri=uri)
    assert set(c.collect()["pred"]) == {ids["Linear", "2017-01-03"], ids["Linear", "2018-01-02"]}


def test_runs_are_fetched_page_by_page_up_to_max_results(client, uri, exp, monkeypatch):
    name, eid = exp
    ids = {make_run(client, eid, artifacts={"pred.parquet": prediction("2020-01-01", 2)})
           for _ in range(5)}
    monkeypatch.setattr(collector, "PAGE_SIZE", 2)
    assert set(collector_on(uri, name).collect()["pred"]) == ids
    assert len(collector_on(uri, name, list_kwargs={"max_results": 3}).collect()["pred"]) == 3


def test_cache_serves_a_second_collect_without_the_artifact_files(client, uri, exp, tmp_path):
    name, eid = exp
    run_ids = [make_run(client, eid, artifacts={"pred.parquet": prediction("2020-01-01", 4, i)})
               for i in range(3)]
    c = collector_on(uri, name, cache=tmp_path / "cache")
    first = c.collect()["pred"]
    for run_id in run_ids:
        artifact_path(client, run_id, "pred.parquet").unlink()
    second = c.collect(only_exist=False)["pred"]
    assert set(second) == set(run_ids)
    for run_id in run_ids:
        pd.testing.assert_series_equal(second[run_id], first[run_id])
    # without the cache, the files are gone indeed
    with pytest.raises(MissingArtifactError):
        collector_on(uri, name).collect(only_exist=False)


def test_only_finished_runs_are_cached(client, uri, exp, tmp_path):
    name, eid = exp
    done = make_run(client, eid, artifacts={"pred.parquet": prediction("2020-01-01", 2)})
    failed = make_run(client, eid, artifacts={"pred.parquet": prediction("2020-01-01", 2)},
                      status="FAILED")
    out = collector_on(uri, name, status=None, cache=tmp_path).collect()
    assert set(out["pred"]) == {done, failed}
    assert {p.name for p in tmp_path.iterdir()} == {done}
    assert (tmp_path / done / "pred.parquet").is_file()


def test_parallel_loading_equals_serial(client, uri, exp):
    name, eid = exp
    for i in range(12):
        make_run(client, eid, artifacts={"pred.parquet": prediction("2020-01-01", 50, i),
                                         "ic.json": {"ic": i}})
    paths = {"pred": "pred.parquet", "ic": "ic.json"}
    serial = collector_on(uri, name, artifacts_path=paths, max_workers=1).collect()
    parallel = collector_on(uri, name, artifacts_path=paths, max_workers=8).collect()
    assert serial.keys() == parallel.keys() and serial["ic"] == parallel["ic"]
    assert list(serial["pred"]) == list(parallel["pred"])
    for run_id, pred in serial["pred"].items():
        pd.testing.assert_series_equal(pred, parallel["pred"][run_id])


def test_a_remote_artifact_store_is_downloaded(client, uri, exp, monkeypatch):
    name, eid = exp
    run_id = make_run(client, eid, artifacts={"pred.parquet": prediction("2020-01-01", 3)})
    monkeypatch.setattr(loaders, "local_artifact_dir", lambda artifact_uri: None)
    out = collector_on(uri, name, artifacts_path={"pred": "pred.parquet", "ic": "ic.json"})
    pd.testing.assert_series_equal(out.collect()["pred"][run_id], prediction("2020-01-01", 3),
                                   check_freq=False)
    with pytest.raises(MissingArtifactError, match=f"run {run_id}: artifact 'ic.json' cannot "
                                                   "be downloaded"):
        out.collect(artifacts_key="ic", only_exist=False)


# ------------------------------------------------------------------------------------------
# Key-function helpers
# ------------------------------------------------------------------------------------------


def test_load_task_restores_types_and_segment_of_reads_tags(client, uri, exp):
    name, eid = exp
    task = rolling_task("2017-01-03", None)
    run_id = make_run(client, eid, task=task)
    run = client.get_run(run_id)
    loaded = load_task(run, tracking_uri=uri)
    assert loaded == task and isinstance(loaded["dataset"]["kwargs"]["segments"]["test"], tuple)
    loaded["model"]["class"] = "changed"  # a caller's change does not reach the cache
    assert load_task(run, tracking_uri=uri)["model"]["class"] == "LGBModel"
    assert segment_of(run, "test") == (pd.Timestamp("2017-01-03"), None)
    assert segment_of(run, "train") == task["dataset"]["kwargs"]["segments"]["train"]
    with pytest.raises(CollectError, match=f"run {run_id} has no tag .*valid.*its segments: "
                                           "test, train"):
        segment_of(run, "valid")


def test_load_task_of_a_run_taskloom_did_not_record(client, exp):
    run_id = make_run(client, exp[1], artifacts={"pred.parquet": prediction("2020-01-01", 2)})
    with pytest.raises(MissingArtifactError, match=f"run {run_id} has no artifact 'task.json'"):
        load_task(client.get_run(run_id))


def test_plain_json_task_has_no_type_map(client, uri, exp):
    name, eid = exp
    task = {"model": {"class": "M"}, "n": [1, 2]}
    run_id = make_run(client, eid, task=task)
    assert not artifact_path(client, run_id, "task.types.json").exists()
    assert load_task(client.get_run(run_id)) == task
    assert json.loads(artifact_path(client, run_id, "task.json").read_text()) == task


@pytest.mark.parametrize(("uri", "local"), [
    ("file:///data/mlruns/1/ab%20c/artifacts", Path("/data/mlruns/1/ab c/artifacts")),
    ("/data/mlruns/1/abc/artifacts", Path("/data/mlruns/1/abc/artifacts")),
    ("s3://bucket/mlruns/1/abc/artifacts", None),
    ("mlflow-artifacts:/1/abc/artifacts", None),
])
def test_local_artifact_uris_are_read_in_place_and_others_downloaded(uri, local):
    assert loaders.local_artifact_dir(uri) == local
