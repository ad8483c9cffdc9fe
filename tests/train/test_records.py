"""Record templates: the signal analysis checked against scipy, and how templates resolve."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import taskloom
from scipy import stats
from taskloom.errors import ConfigError, UnknownNameError
from taskloom.recordtemplates import build_record, fill_placeholders, record_configs
from taskloom.train import TrainError, train_values
from taskloom_panel import SigAnaRecord, SignalRecord
from taskloom_panel.records import RecordError

D1, D2, D3, D4 = pd.to_datetime(["2020-01-02", "2020-01-03", "2020-01-06", "2020-01-07"])


def tiny_panel() -> tuple[pd.Series, pd.DataFrame]:
    """Predictions and a label frame over four days that exercise every edge of the IC.

    D1: four instruments, one label NaN (three pairs left); D2: one instrument (undefined);
    D3: a constant prediction (undefined); D4: ten instruments, one tie in the predictions.
    """
    rows = [
        (D1, "A", 0.3, 0.02), (D1, "B", -0.1, -0.01), (D1, "C", 0.5, np.nan), (D1, "D", 0.0, 0.04),
        (D2, "A", 0.2, 0.01),
        (D3, "A", 0.1, 0.03), (D3, "B", 0.1, -0.02), (D3, "C", 0.1, 0.00),
    ]
    preds = [0.9, -0.4, 0.3, 0.3, 1.2, -0.8, 0.05, 0.6, -0.2, 0.7]
    labels = [0.03, -0.02, 0.01, -0.01, 0.05, -0.04, 0.0, 0.02, 0.01, 0.015]
    rows += [(D4, f"I{i}", p, y) for i, (p, y) in enumerate(zip(preds, labels, strict=True))]
    frame = pd.DataFrame(rows, columns=["datetime", "instrument", "score", "label"])
    frame = frame.set_index(["datetime", "instrument"])
    return frame["score"], frame[["label"]]


def test_sig_ana_record_matches_scipy_day_by_day_with_nan_lonely_and_constant_days():
    pred, label = tiny_panel()
    values = SigAnaRecord().generate(pred=pred, label=label)
    daily = values["sig_analysis"]
    assert list(daily.index) == [D1, D2, D3, D4]
    expected = {}
    for day in (D1, D4):
        both = pd.concat([pred.xs(day), label["label"].xs(day)], axis=1).dropna()
        expected[day] = (stats.pearsonr(both.iloc[:, 0], both.iloc[:, 1])[0],
                         stats.spearmanr(both.iloc[:, 0], both.iloc[:, 1])[0])
    for day, (ic, rank_ic) in expected.items():
        assert daily.loc[day, "ic"] == pytest.approx(ic)
        assert daily.loc[day, "rank_ic"] == pytest.approx(rank_ic)
    assert daily.loc[[D2, D3]].isna().all().all()
    ics = np.array([ic for ic, _ in expected.values()])
    rank_ics = np.array([rank_ic for _, rank_ic in expected.values()])
    assert values["IC"] == pytest.approx(ics.mean())
    assert values["ICIR"] == pytest.approx(ics.mean() / ics.std(ddof=1))
    assert values["Rank IC"] == pytest.approx(rank_ics.mean())
    assert values["Rank ICIR"] == pytest.approx(rank_ics.mean() / rank_ics.std(ddof=1))
    assert set(values) == {"IC", "ICIR", "Rank IC", "Rank ICIR", "sig_analysis"}


def test_sig_ana_record_long_short_returns_by_hand():
    pred, label = tiny_panel()
    values = SigAnaRecord(ana_long_short=True, ann_scaler=250).generate(pred=pred, label=label)
    daily = values["sig_analysis"]
    # D4: ten instruments, the top and bottom 20% are two each
    day = pd.DataFrame({"p": pred.xs(D4), "y": label["label"].xs(D4)}).sort_values("p")
    spread = (day["y"].iloc[-2:].mean() - day["y"].iloc[:2].mean()) / 2
    assert daily.loc[D4, "long_short"] == pytest.approx(spread)
    assert daily.loc[D4, "long_avg"] == pytest.approx(day["y"].mean())
    # D1 has three pairs: int(3 * 0.2) = 0 instruments a side, no spread
    assert math.isnan(daily.loc[D1, "long_short"])
    assert daily.loc[D1, "long_avg"] == pytest.approx(np.mean([0.02, -0.01, 0.04]))
    long_avg = daily["long_avg"].dropna()
    assert values["Long-Avg Ann Return"] == pytest.approx(long_avg.mean() * 250)
    assert values["Long-Avg Ann Sharpe"] == pytest.approx(
        long_avg.mean() / long_avg.std() * math.sqrt(250))
    assert values["Long-Short Ann Return"] == pytest.approx(spread * 250)
    assert math.isnan(values["Long-Short Ann Sharpe"])  # one day of spread: no deviation


def test_sig_ana_record_picks_the_label_column_by_position_or_name():
    pred, label = tiny_panel()
    two = label.assign(other=-label["label"])
    first = SigAnaRecord().generate(pred=pred, label=two)
    assert first["IC"] == pytest.approx(SigAnaRecord().generate(pred=pred, label=label)["IC"])
    by_name = SigAnaRecord(label_col="other").generate(pred=pred, label=two)
    assert by_name["IC"] == pytest.approx(-first["IC"])
    with pytest.raises(RecordError, match="no column 'nope'.*'label', 'other'"):
        SigAnaRecord(label_col="nope").generate(pred=pred, label=two)


def test_sig_ana_record_needs_a_label_and_a_datetime_level():
    pred, label = tiny_panel()
    with pytest.raises(RecordError, match="needs the test label"):
        SigAnaRecord().generate(pred=pred, label=None)
    flat = pred.reset_index(drop=True)
    with pytest.raises(RecordError, match="no 'datetime' level"):
        SigAnaRecord().generate(pred=flat, label=label.reset_index(drop=True))


def test_signal_record_returns_the_prediction_and_the_label():
    pred, label = tiny_panel()
    values = SignalRecord().generate(pred=pred, label=label)
    assert values.keys() == {"pred", "label"}
    assert values["pred"] is pred and values["label"] is label
    assert SignalRecord().generate(pred=pred, label=None).keys() == {"pred"}


def test_registered_templates_resolve_by_bare_name():
    assert taskloom.get_record("SignalRecord") is SignalRecord
    built = build_record({"class": "SigAnaRecord", "kwargs": {"ana_long_short": True}},
                         model=None, dataset=None)
    assert isinstance(built, SigAnaRecord) and built.ana_long_short
    assert isinstance(build_record("SignalRecord", model=None, dataset=None), SignalRecord)
    with pytest.raises(UnknownNameError, match="SigAnaRecord"):
        build_record({"class": "PortAnaRecord"}, model=None, dataset=None)


def test_placeholders_are_filled_in_a_copy():
    model, dataset = object(), object()
    config = {"class": "X", "kwargs": {"m": "<MODEL>", "pair": ["<DATASET>", ("<MODEL>", 1)]}}
    filled = fill_placeholders(config, {"<MODEL>": model, "<DATASET>": dataset})
    assert filled["kwargs"] == {"m": model, "pair": [dataset, (model, 1)]}
    assert config["kwargs"] == {"m": "<MODEL>", "pair": ["<DATASET>", ("<MODEL>", 1)]}


def test_record_configs_take_one_dict_or_a_list():
    assert record_configs({}) == []
    assert record_configs({"record": {"class": "SignalRecord"}}) == [{"class": "SignalRecord"}]
    assert len(record_configs({"record": [{"class": "A"}, {"class": "B"}]})) == 2
    with pytest.raises(ConfigError, match="record: expected"):
        record_configs({"record": 3})


class FeatureModel:
    """Predicts the ``score`` feature itself: no fitting."""

    def fit(self, dataset):
        return self

    def predict(self, dataset, segment="test"):
        return dataset.prepare(segment, col_set="feature")["score"].rename("score")


class TinyDataset:
    """The tiny panel as a dataset: ``score`` is the one feature, ``label`` the label."""

    segments = {"test": (D1, D4)}

    def prepare(self, segment, col_set="__all", data_key="infer"):
        pred, label = tiny_panel()
        return label if col_set == "label" else pred.to_frame()


TINY_TASK = {"model": {"class": FeatureModel}, "dataset": {"class": TinyDataset}}


class MeanRecord:
    """A plugin's template: the mean prediction, and which model it was given."""

    def __init__(self, model=None, scale=1.0):
        self.model = model
        self.scale = scale

    def generate(self, *, pred, label, **context):
        return {"pred_mean": float(pred.mean()) * self.scale,
                "model_class": type(self.model).__name__}


def test_hook_taskloom_register_records(register_plugin):
    class Plugin:
        @taskloom.hookimpl
        def taskloom_register_records(self, register):
            register("MeanRecord", MeanRecord)

    register_plugin(Plugin())
    assert taskloom.get_record("MeanRecord") is MeanRecord
    task = {**TINY_TASK, "record": [{"class": "MeanRecord", "kwargs": {"scale": 2.0}}]}
    values = train_values(task)
    pred, _ = tiny_panel()
    assert values["pred_mean"] == pytest.approx(pred.mean() * 2)
    assert values["model_class"] == "FeatureModel"  # the trained model, by try_kwargs


def test_a_third_party_template_is_a_class_path(tmp_path):
    (tmp_path / "myrecords.py").write_text(
        "class CountRecord:\n"
        "    def __init__(self, dataset, what='rows'):\n"
        "        self.dataset, self.what = dataset, what\n"
        "    def generate(self, *, pred, label, **context):\n"
        "        return {self.what: len(pred), 'task_keys': sorted(context['task'])}\n")
    task = {**TINY_TASK, "record": {"class": "CountRecord",
                                    "module_path": str(tmp_path / "myrecords.py"),
                                    "kwargs": {"what": "n", "dataset": "<DATASET>"}}}
    values = train_values(task)
    assert values["n"] == len(tiny_panel()[0])
    assert values["task_keys"] == ["dataset", "model", "record"]
    assert task["record"]["kwargs"]["dataset"] == "<DATASET>"


class NoGenerate:
    """Not a record template."""


class ReturnsList:
    def generate(self, **context):
        return [1, 2]


class ReturnsPred:
    def generate(self, **context):
        return {"pred": pd.Series([1.0])}


@pytest.mark.parametrize(("record", "error", "message"), [
    ({"class": NoGenerate}, ConfigError, r"record\.0: NoGenerate is not a record template"),
    ({"class": ReturnsList}, TrainError, r"record\.0: ReturnsList\.generate returned a list"),
    ({"class": ReturnsPred}, TrainError, r"record\.0: ReturnsPred returned 'pred'"),
])
def test_a_bad_template_is_an_error_naming_it(record, error, message):
    with pytest.raises(error, match=message):
        train_values({**TINY_TASK, "record": [record]})
