"""SklearnModel: qlib's fit(dataset) / predict(dataset, segment) around a scikit-learn estimator."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from taskloom.errors import ConfigError
from taskloom_panel import PanelDataset, PanelError, SklearnModel

HERE = __name__
SEGMENTS = {
    "train": ("2015-01-01", "2016-12-31"),
    "valid": ("2017-01-01", "2017-06-30"),
    "test": ("2017-07-01", "2017-12-31"),
}


class Recording:
    """An estimator that remembers what it was fitted on and predicts the first feature."""

    def fit(self, X, y):
        self.fit_X, self.fit_y = X, y
        return self

    def predict(self, X):
        return np.asarray(X.iloc[:, 0])


class RecordingWithValid(Recording):
    """Takes a validation set the way scikit-learn's HistGradientBoosting does."""

    def fit(self, X, y, sample_weight=None, *, X_val=None, y_val=None):
        self.X_val, self.y_val = X_val, y_val
        return super().fit(X, y)


class RecordingWithEvalSet(Recording):
    """Takes a validation set the way LightGBM and XGBoost do."""

    def fit(self, X, y, eval_set=None):
        self.eval_set = eval_set
        return super().fit(X, y)


@pytest.fixture
def dataset(market) -> PanelDataset:
    return PanelDataset(market, SEGMENTS, normalize="zscore")


@pytest.fixture
def small(market) -> PanelDataset:
    """Ten instruments: enough for gradient boosting to fit, quick enough to fit twice."""
    few = market.index.get_level_values("instrument").isin([f"S{i:04d}" for i in range(10)])
    return PanelDataset(market[few], SEGMENTS, normalize="zscore")


def test_predict_returns_a_score_series_on_the_segments_index(dataset):
    model = SklearnModel({"class": "sklearn.linear_model:Ridge", "kwargs": {"alpha": 1.0}})
    assert model.fit(dataset) is model
    scores = model.predict(dataset)
    test = dataset.prepare("test", col_set="feature")
    assert isinstance(scores, pd.Series) and scores.name == "score"
    assert scores.index.equals(test.index) and scores.index.names == ["datetime", "instrument"]
    assert scores.notna().all() and scores.dtype == "float64"
    valid = model.predict(dataset, segment="valid")
    assert valid.index.equals(dataset.prepare("valid").index)
    by_range = model.predict(dataset, segment=("2017-07-03", "2017-07-07"))
    pd.testing.assert_series_equal(by_range, scores.loc["2017-07-03":"2017-07-07"])
    assert model.feature_names == dataset.feature_columns


def test_fit_uses_the_train_rows_with_a_label_only(dataset):
    labelled = dataset.prepare("train", col_set="label", data_key="raw")["label"].notna()
    model = SklearnModel({"class": f"{HERE}:Recording"}).fit(dataset)
    fitted = model.estimator
    assert len(fitted.fit_X) == int(labelled.sum()) and fitted.fit_y.notna().all()
    assert fitted.fit_X.index.equals(fitted.fit_y.index)
    days = fitted.fit_X.index.get_level_values("datetime")
    assert days.min() >= pd.Timestamp("2015-01-01") and days.max() <= pd.Timestamp("2016-12-31")


def test_nan_labels_in_the_train_segment_are_dropped(market):
    holes = market.copy()
    holes.loc[holes.index[::3], "label"] = np.nan
    dataset = PanelDataset(holes, SEGMENTS)
    model = SklearnModel({"class": "sklearn.linear_model:LinearRegression"}).fit(dataset)
    train = dataset.prepare("train", col_set="label", data_key="raw")["label"]
    assert model.estimator.n_features_in_ == len(dataset.feature_columns)
    recorder = SklearnModel({"class": f"{HERE}:Recording"}).fit(dataset)
    assert len(recorder.estimator.fit_y) == int(train.notna().sum()) < len(train)


def test_the_valid_segment_reaches_estimators_that_take_it_and_never_the_train_rows(dataset):
    valid = dataset.prepare("valid", col_set="feature")
    x_val = SklearnModel({"class": f"{HERE}:RecordingWithValid"}).fit(dataset).estimator
    assert x_val.X_val.index.equals(valid.index) and len(x_val.y_val) == len(valid)
    assert x_val.fit_X.index.get_level_values("datetime").max() < pd.Timestamp("2017-01-01")
    eval_set = SklearnModel({"class": f"{HERE}:RecordingWithEvalSet"}).fit(dataset).estimator
    ((x_eval, y_eval),) = eval_set.eval_set
    assert x_eval.index.equals(valid.index) and len(y_eval) == len(valid)
    unused = SklearnModel({"class": f"{HERE}:RecordingWithValid"}, use_valid=False)
    assert unused.fit(dataset).estimator.X_val is None


def test_hist_gradient_boosting_with_early_stopping_uses_the_valid_segment(small):
    model = SklearnModel({"class": "sklearn.ensemble:HistGradientBoostingRegressor",
                          "kwargs": {"max_iter": 10, "early_stopping": True,
                                     "random_state": 0}}).fit(small)
    assert model.estimator.validation_score_.size > 0
    without = SklearnModel({"class": "sklearn.ensemble:HistGradientBoostingRegressor",
                            "kwargs": {"max_iter": 5, "early_stopping": False}}).fit(small)
    assert without.predict(small).notna().all()


def test_fitting_twice_with_a_random_state_gives_identical_predictions(small):
    config = {"class": "sklearn.ensemble:HistGradientBoostingRegressor",
              "kwargs": {"max_iter": 10, "random_state": 11, "early_stopping": True}}
    first = SklearnModel(config).fit(small).predict(small)
    second = SklearnModel(config).fit(small).predict(small)
    pd.testing.assert_series_equal(first, second, check_exact=True)


def test_an_estimator_object_is_used_as_given(dataset):
    from sklearn.linear_model import Ridge

    estimator = Ridge()
    model = SklearnModel(estimator).fit(dataset)
    assert model.estimator is estimator and hasattr(estimator, "coef_")


def test_mistakes_are_named(dataset):
    with pytest.raises(PanelError, match="not fitted yet"):
        SklearnModel({"class": "sklearn.linear_model:Ridge"}).predict(dataset)
    with pytest.raises(PanelError, match=r"estimator: int has no fit\(\) method"):
        SklearnModel(42)
    with pytest.raises(ConfigError, match=r"^estimator\.kwargs\.num_leaves: "):
        SklearnModel({"class": "sklearn.linear_model:Ridge", "kwargs": {"num_leaves": 3}})
    empty = PanelDataset(dataset.prepare((None, None)).droplevel(0, axis=1),
                         {"train": ("2030-01-01", None), "test": (None, None)})
    with pytest.raises(PanelError, match="segment 'train' has no row with a label"):
        SklearnModel({"class": "sklearn.linear_model:Ridge"}).fit(empty)
