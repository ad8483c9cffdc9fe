"""A qlib-shaped rolling study on the synthetic market: tasks built by instantiate, fitted,
predicted, stitched; the planted signal shows in the predictions, the noise does not."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import taskloom
from taskloom_panel import LABEL, NOISE_FEATURES, SIGNAL_FEATURES, panel_task, write_panel

from train.metrics import mean_rank_ic


def template(path: str, features: list[str], estimator: dict) -> dict:
    """A task as qlib's examples write one, with this plugin's model and dataset."""
    return panel_task(path, estimator, features,
                      {"train": ("2015-01-01", "2016-06-30"), "valid": ("2016-07-01", "2016-12-31"),
                       "test": ("2017-01-01", None)})


def rolling_predictions(tasks: list[dict]) -> pd.Series:
    """Every task's test predictions, built and fitted from its config, stitched together."""
    parts = []
    for task in tasks:
        model = taskloom.instantiate(task["model"], config_path="model")
        dataset = taskloom.instantiate(task["dataset"], config_path="dataset")
        model.fit(dataset)
        parts.append(model.predict(dataset, segment="test"))
    return pd.concat(parts).sort_index()


@pytest.fixture(scope="module")
def market_file(market, tmp_path_factory) -> str:
    return str(write_panel(market, tmp_path_factory.mktemp("market") / "market.parquet"))


@pytest.mark.parametrize(
    "estimator",
    [{"class": "Ridge", "module_path": "sklearn.linear_model", "kwargs": {"alpha": 10.0}},
     {"class": "sklearn.ensemble.HistGradientBoostingRegressor",
      "kwargs": {"max_iter": 20, "max_depth": 3, "early_stopping": False}}],
    ids=["ridge", "hist_gradient_boosting"],
)
def test_a_rolling_study_finds_the_planted_signal_and_not_the_noise(market, market_file,
                                                                     estimator):
    days = market.index.get_level_values("datetime").unique()
    gen = taskloom.get_generator("rolling")(step=125, rtype="sliding",
                                           calendar=taskloom.TradingCalendar(days))
    signal_tasks = taskloom.task_generator(
        template(market_file, list(SIGNAL_FEATURES), estimator), gen)
    test_days = int((days >= pd.Timestamp("2017-01-01")).sum())
    assert len(signal_tasks) == -(-test_days // 125)  # 2017-2018 in windows of 125 days
    # tasks come back from a pool as JSON; their lists of ISO dates work as well
    pooled = [json.loads(taskloom.canonical_json(task)) for task in signal_tasks]
    signal = rolling_predictions(pooled)
    assert signal.index.is_unique  # each test day predicted once
    test_days = signal.index.get_level_values("datetime")
    assert test_days.min() == pd.Timestamp("2017-01-02") and test_days.max() == days[-1]
    assert mean_rank_ic(signal, market[LABEL]) > 0.03

    noise_tasks = taskloom.task_generator(
        template(market_file, list(NOISE_FEATURES), estimator), gen)
    noise = rolling_predictions(noise_tasks)
    assert abs(mean_rank_ic(noise, market[LABEL])) < 0.02


def test_a_panel_task_loads_from_the_train_start_to_the_valid_end_and_needs_every_segment():
    segments = {"train": ("2015-01-01", "2015-12-31"), "valid": ("2016-01-01", "2016-06-30"),
                "test": ("2016-07-01", None)}
    task = panel_task("m.parquet", {"class": "sklearn.linear_model:Ridge"}, ["f0"], segments)
    handler = task["dataset"]["kwargs"]["handler"]["kwargs"]
    assert (handler["start_time"], handler["end_time"]) == ("2015-01-01", "2016-06-30")
    assert task["dataset"]["kwargs"]["segments"] == segments
    assert json.loads(json.dumps(task))["model"]["kwargs"]["estimator"]["class"].endswith("Ridge")
    with pytest.raises(ValueError, match=r"segments: \['valid'\] missing"):
        panel_task("m.parquet", {}, ["f0"], {"train": segments["train"], "test": (None, None)})
