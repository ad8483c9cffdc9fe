"""PanelDataset: qlib DatasetH's segments and prepare() over a (datetime, instrument) panel."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest
import taskloom
from taskloom_panel import PanelDataset, PanelError, write_panel

DAYS = pd.bdate_range("2020-01-01", "2020-01-31")  # 23 weekdays
INSTRUMENTS = ["AAA", "BBB", "CCC"]
SEGMENTS = {
    "train": ("2020-01-01", "2020-01-10"),
    "valid": ("2020-01-13", "2020-01-17"),
    "test": ("2020-01-20", None),
}


def make_panel() -> pd.DataFrame:
    """A small panel: two features with different scales, a label with a few NaNs."""
    index = pd.MultiIndex.from_product([DAYS, INSTRUMENTS], names=["datetime", "instrument"])
    n = len(index)
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({
        "f_small": rng.standard_normal(n),
        "f_big": 100.0 + 10.0 * rng.standard_normal(n),
        "name": ["x"] * n,  # not numeric: never a default feature
        "label": rng.standard_normal(n),
    }, index=index)
    frame.loc[(DAYS[2], "BBB"), "label"] = np.nan
    frame.loc[(DAYS[-1], slice(None)), "label"] = np.nan
    return frame


@pytest.fixture
def panel() -> pd.DataFrame:
    return make_panel()


def days_of(frame: pd.DataFrame) -> list[str]:
    return sorted({d.strftime("%Y-%m-%d") for d in frame.index.get_level_values("datetime")})


# --------------------------------------------------------------------------------------------
# Segments
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bounds",
    [
        ("2020-01-06", "2020-01-10"),
        ["2020-01-06", "2020-01-10"],
        (pd.Timestamp("2020-01-06"), pd.Timestamp("2020-01-10")),
        (dt.date(2020, 1, 6), dt.date(2020, 1, 10)),
        (dt.datetime(2020, 1, 6), dt.datetime(2020, 1, 10, 15, 30)),
        (np.datetime64("2020-01-06"), np.datetime64("2020-01-10")),
        ("2020-01-04", "2020-01-11"),  # a weekend on either side: the same trading days
        ["2020-01-06T00:00:00", "2020-01-10T00:00:00"],  # a task's canonical JSON form
    ],
    ids=["str tuple", "str list", "Timestamp", "date", "datetime", "datetime64", "weekends",
         "iso list"],
)
def test_segment_bounds_of_every_date_type_select_the_same_inclusive_days(panel, bounds):
    ds = PanelDataset(panel, {"train": bounds})
    frame = ds.prepare("train")
    assert days_of(frame) == ["2020-01-06", "2020-01-07", "2020-01-08", "2020-01-09",
                              "2020-01-10"]
    assert len(frame) == 5 * len(INSTRUMENTS)


def test_none_is_an_open_bound(panel):
    ds = PanelDataset(panel, {"head": (None, "2020-01-02"), "tail": ("2020-01-30", None),
                              "all": (None, None)})
    assert days_of(ds.prepare("head")) == ["2020-01-01", "2020-01-02"]
    assert days_of(ds.prepare("tail")) == ["2020-01-30", "2020-01-31"]
    assert len(ds.prepare("all")) == len(panel)


def test_a_list_of_names_gives_a_list_and_a_date_pair_or_slice_gives_a_frame(panel):
    ds = PanelDataset(panel, SEGMENTS)
    train, valid = ds.prepare(["train", "valid"])
    assert days_of(train)[-1] == "2020-01-10" and days_of(valid)[0] == "2020-01-13"
    assert isinstance(ds.prepare(("train", "test")), list)
    by_pair = ds.prepare(("2020-01-13", "2020-01-17"))
    by_slice = ds.prepare(slice("2020-01-13", "2020-01-17"))
    pd.testing.assert_frame_equal(by_pair, valid)
    pd.testing.assert_frame_equal(by_slice, valid)


def test_segments_from_a_generated_task_work_unchanged(panel):
    cal = taskloom.TradingCalendar(DAYS)
    template = {"dataset": {"kwargs": {"segments": {
        "train": ("2020-01-01", "2020-01-08"), "valid": ("2020-01-09", "2020-01-10"),
        "test": ("2020-01-13", "2020-01-24")}}}}
    tasks = taskloom.task_generator(
        template, taskloom.get_generator("rolling")(step=5, rtype="sliding", calendar=cal))
    assert len(tasks) >= 2
    for task in tasks:
        for segments in (task["dataset"]["kwargs"]["segments"],
                         json.loads(taskloom.canonical_json(task))["dataset"]["kwargs"]["segments"]):
            ds = PanelDataset(panel, segments)
            test = ds.prepare("test")
            start = pd.Timestamp(task["dataset"]["kwargs"]["segments"]["test"][0])
            assert test.index.get_level_values("datetime").min() == start


# --------------------------------------------------------------------------------------------
# Columns and data keys
# --------------------------------------------------------------------------------------------


def test_col_sets_give_qlibs_column_shapes(panel):
    ds = PanelDataset(panel, SEGMENTS)
    assert ds.feature_columns == ["f_small", "f_big"]  # numeric, label excluded
    assert list(ds.prepare("train", col_set="feature").columns) == ["f_small", "f_big"]
    assert list(ds.prepare("train", col_set="label").columns) == ["label"]
    everything = ds.prepare("train")
    assert list(everything.columns) == [("feature", "f_small"), ("feature", "f_big"),
                                        ("label", "label")]
    both = ds.prepare("train", col_set=["feature", "label"])
    pd.testing.assert_frame_equal(both["feature"], ds.prepare("train", col_set="feature"))
    assert list(ds.prepare("train", col_set=["label"]).columns) == [("label", "label")]


def test_learn_drops_rows_without_a_label_and_raw_keeps_them(panel):
    ds = PanelDataset(panel, SEGMENTS)
    raw = ds.prepare("train", col_set="label", data_key="raw")
    learn = ds.prepare("train", col_set="label", data_key="learn")
    assert raw["label"].isna().sum() == 1
    assert len(learn) == len(raw) - 1 and learn["label"].notna().all()
    assert (DAYS[2], "BBB") not in learn.index


def test_explicit_feature_columns_and_another_label(panel):
    ds = PanelDataset(panel, SEGMENTS, feature_columns=["f_big"], label_column="f_small")
    frame = ds.prepare("valid")
    assert list(frame.columns) == [("feature", "f_big"), ("label", "f_small")]


# --------------------------------------------------------------------------------------------
# Normalisation: fitted on train only
# --------------------------------------------------------------------------------------------


def test_zscore_is_fitted_on_the_train_segment(panel):
    ds = PanelDataset(panel, SEGMENTS, normalize="zscore")
    train = ds.prepare("train", col_set="feature")
    np.testing.assert_allclose(train.mean(), 0.0, atol=1e-12)
    np.testing.assert_allclose(train.std(), 1.0, rtol=1e-12)
    raw_train = ds.prepare("train", col_set="feature", data_key="raw")
    np.testing.assert_allclose(ds.norm_params.loc["center"], raw_train.mean())
    assert not np.allclose(ds.prepare("test", col_set="feature").mean(), 0.0, atol=1e-3)


@pytest.mark.parametrize("method", ["zscore", "robust_zscore"])
def test_changing_test_period_data_moves_no_fitted_parameter(panel, method):
    before = PanelDataset(panel, SEGMENTS, normalize=method)
    shocked = panel.copy()
    test_rows = shocked.index.get_level_values("datetime") >= "2020-01-20"
    shocked.loc[test_rows, ["f_small", "f_big"]] *= 1000.0
    after = PanelDataset(shocked, SEGMENTS, normalize=method)
    pd.testing.assert_frame_equal(before.norm_params, after.norm_params)
    for segment in ("train", "valid"):
        pd.testing.assert_frame_equal(before.prepare(segment), after.prepare(segment))
    assert not before.prepare("test").equals(after.prepare("test"))


def test_robust_zscore_is_clipped(panel):
    panel.loc[(DAYS[15], "AAA"), "f_small"] = 1e6
    ds = PanelDataset(panel, SEGMENTS, normalize="robust_zscore")
    features = ds.prepare((None, None), col_set="feature")
    assert features.abs().max().max() == 3.0


def test_daily_normalisations_use_only_the_day_itself(panel):
    ds = PanelDataset(panel, SEGMENTS, normalize="cs_zscore")
    daily_mean = ds.prepare((None, None), col_set="feature").groupby(level="datetime").mean()
    np.testing.assert_allclose(daily_mean, 0.0, atol=1e-12)
    assert ds.norm_params is None
    ranked = PanelDataset(panel, SEGMENTS, normalize="cs_rank").prepare("test", col_set="feature")
    np.testing.assert_allclose(np.sort(ranked["f_small"].unique()), [-1 / 3, 0.0, 1 / 3],
                               atol=1e-12)


def test_the_label_is_never_normalised(panel):
    ds = PanelDataset(panel, SEGMENTS, normalize="zscore")
    pd.testing.assert_frame_equal(ds.prepare("test", col_set="label"),
                                  ds.prepare("test", col_set="label", data_key="raw"))


# --------------------------------------------------------------------------------------------
# Sources: files, frames in either layout, handler configs
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["panel.parquet", "panel.csv"])
def test_file_inputs_give_the_same_dataset_as_the_frame(panel, tmp_path, name):
    path = write_panel(panel, tmp_path / name)
    from_file = PanelDataset(str(path), SEGMENTS, normalize="zscore")
    from_frame = PanelDataset(panel, SEGMENTS, normalize="zscore")
    assert from_file.feature_columns == from_frame.feature_columns
    for segment in SEGMENTS:
        pd.testing.assert_frame_equal(from_file.prepare(segment), from_frame.prepare(segment),
                                      check_index_type=False, check_exact=False, rtol=1e-12)


def test_a_frame_with_the_levels_as_columns_or_swapped_is_indexed(panel):
    expected = PanelDataset(panel, SEGMENTS).prepare("valid")
    flat = panel.reset_index().sample(frac=1.0, random_state=1)  # any row order
    swapped = panel.swaplevel().sort_index()
    for frame in (flat, swapped):
        pd.testing.assert_frame_equal(PanelDataset(frame, SEGMENTS).prepare("valid"), expected)


def test_handler_is_the_qlib_name_for_data_and_may_be_a_config(panel, tmp_path):
    path = write_panel(panel, tmp_path / "panel.parquet")
    handler = {"class": "taskloom_panel:read_panel",
               "kwargs": {"path": str(path), "start_time": "2020-01-06", "end_time": "2020-01-24"}}
    ds = PanelDataset(handler=handler, segments=SEGMENTS)
    assert days_of(ds.prepare("train"))[0] == "2020-01-06"
    assert days_of(ds.prepare("test"))[-1] == "2020-01-24"
    task_dataset = {"class": "PanelDataset", "module_path": "taskloom_panel",
                    "kwargs": {"handler": handler, "segments": SEGMENTS}}
    built = taskloom.instantiate(task_dataset, config_path="dataset")
    pd.testing.assert_frame_equal(built.prepare("test"), ds.prepare("test"))


# --------------------------------------------------------------------------------------------
# Errors name the segment, column or value
# --------------------------------------------------------------------------------------------


def test_an_unknown_segment_is_named_with_the_known_ones(panel):
    ds = PanelDataset(panel, SEGMENTS)
    with pytest.raises(PanelError, match=r"segment 'tset' is not defined; segments: "
                                         r"\['train', 'valid', 'test'\]"):
        ds.prepare("tset")
    with pytest.raises(PanelError, match=r"segment 'vlid' is not defined"):
        ds.prepare(["train", "vlid"])
    with pytest.raises(PanelError, match=r"segment 'range': start 'tset' is not a date \(and "
                                         r"not segment names"):
        ds.prepare(["tset", "vlid"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"label_column": "target"}, r"label_column 'target' is not a column"),
        ({"feature_columns": ["f_small", "f_huge"]}, r"feature_columns: \['f_huge'\] not in"),
        ({"feature_columns": ["f_small", "label"]}, r"label column 'label' cannot be a feature"),
        ({"normalize": "minmax"}, r"normalize must be None or one of .* got 'minmax'"),
        ({"normalize": "zscore", "fit_segment": "fit"}, r"fitted on segment 'fit', which is"),
    ],
)
def test_bad_columns_and_options_are_named(panel, kwargs, message):
    with pytest.raises(PanelError, match=message):
        PanelDataset(panel, SEGMENTS, **kwargs)


@pytest.mark.parametrize(
    ("segments", "message"),
    [
        ({"train": ("2020-01-10", "2020-01-01")}, r"segment 'train': start 2020-01-10 is after"),
        ({"train": ("2020-01-01",)}, r"segment 'train': expected a \(start, end\) pair"),
        ({"test": ("soon", None)}, r"segment 'test': start 'soon' is not a date"),
        ([("2020-01-01", "2020-01-10")], r"segments: expected a \{name: \(start, end\)\}"),
    ],
)
def test_bad_segments_are_named(panel, segments, message):
    with pytest.raises(PanelError, match=message):
        PanelDataset(panel, segments)


def test_bad_prepare_arguments_are_named(panel):
    ds = PanelDataset(panel, SEGMENTS)
    with pytest.raises(PanelError, match=r"col_set must be .* got 'features'"):
        ds.prepare("train", col_set="features")
    with pytest.raises(PanelError, match=r"data_key must be .* got 'train'"):
        ds.prepare("train", data_key="train")


def test_bad_sources_are_named(panel, tmp_path):
    with pytest.raises(PanelError, match="exactly one"):
        PanelDataset(panel, SEGMENTS, handler=panel)
    with pytest.raises(PanelError, match=r"data: needs 'datetime' and 'instrument'"):
        PanelDataset(panel.reset_index(drop=True), SEGMENTS)
    with pytest.raises(PanelError, match=r"two rows for 'AAA' on 2020-01-01"):
        PanelDataset(pd.concat([panel.iloc[:1], panel]), SEGMENTS)
    with pytest.raises(PanelError, match=r"panel file .*missing\.parquet: cannot read it"):
        PanelDataset(str(tmp_path / "missing.parquet"), SEGMENTS)
    with pytest.raises(PanelError, match=r"expected a \.parquet, \.pq or \.csv file"):
        PanelDataset(str(tmp_path / "panel.xlsx"), SEGMENTS)
