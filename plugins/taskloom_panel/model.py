"""``SklearnModel``: qlib's model contract (``fit(dataset)``, ``predict(dataset, segment)``)
around any scikit-learn-style estimator.

The estimator is given as a config (``{"class": "sklearn.linear_model:Ridge", "kwargs": ...}``)
or as an object; it needs only ``fit(X, y)`` and ``predict(X)``, so LightGBM's or XGBoost's
scikit-learn classes work as well as scikit-learn's own. The dataset is read the way qlib's
models read a DatasetH (``prepare`` with ``col_set`` and ``data_key``), so the adapter is
meant for qlib's own DatasetH as well as :class:`~taskloom_panel.dataset.PanelDataset` (only
the latter is tested: qlib is not a dependency).
"""

from __future__ import annotations

import inspect
from typing import Any

import pandas as pd
from taskloom.instantiate import instantiate

from taskloom_panel.dataset import CS_FEATURE, CS_LABEL, DK_INFER, DK_LEARN, PanelError


class SklearnModel:
    """A scikit-learn-style estimator trained on a dataset's train segment.

    ``fit`` also hands the valid segment to estimators that can use it: ``X_val``/``y_val``
    (scikit-learn's HistGradientBoosting, for early stopping when it is on) or ``eval_set``
    (LightGBM, XGBoost). Other estimators train on the train segment only; the valid segment
    is never merged into the training rows. Rows whose label is NaN are dropped before
    fitting. Results are as deterministic as the estimator (set its ``random_state``).
    """

    def __init__(self, estimator: Any, *, use_valid: bool = True,
                 valid_segment: str = "valid") -> None:
        self.estimator = instantiate(estimator, config_path="estimator")
        for method in ("fit", "predict"):
            if not callable(getattr(self.estimator, method, None)):
                raise PanelError(
                    f"estimator: {type(self.estimator).__name__} has no {method}() method; "
                    "SklearnModel needs a scikit-learn-style estimator"
                )
        self.use_valid = use_valid
        self.valid_segment = valid_segment
        #: the feature columns the estimator was fitted on (None before fit)
        self.feature_names: list[str] | None = None

    def fit(self, dataset: Any) -> SklearnModel:
        """Fit the estimator on the ``train`` segment (and ``valid``, see the class doc)."""
        x_train, y_train = _learn_rows(dataset, "train")
        if x_train.empty:
            raise PanelError("fit: segment 'train' has no row with a label")
        extra: dict[str, Any] = {}
        if self.use_valid and self.valid_segment in getattr(dataset, "segments", {}):
            extra = self._valid_kwargs(dataset)
        self.estimator.fit(x_train, y_train, **extra)
        self.feature_names = list(x_train.columns)
        return self

    def predict(self, dataset: Any, segment: Any = "test") -> pd.Series:
        """Predictions for ``segment`` as a Series named ``score`` on the panel's index."""
        if self.feature_names is None:
            raise PanelError("predict: the model is not fitted yet; call fit(dataset) first")
        features = dataset.prepare(segment, col_set=CS_FEATURE, data_key=DK_INFER)
        if not isinstance(features, pd.DataFrame):
            raise PanelError(f"predict: segment must name one segment or range, got {segment!r}")
        if features.empty:
            return pd.Series([], index=features.index, name="score", dtype="float64")
        scores = self.estimator.predict(features)
        return pd.Series(scores, index=features.index, name="score", dtype="float64")

    def __repr__(self) -> str:
        """The adapter and its estimator's own repr."""
        return f"SklearnModel({self.estimator!r})"

    def _valid_kwargs(self, dataset: Any) -> dict[str, Any]:
        """The fit keywords that pass the valid segment to an estimator that takes it."""
        try:
            params = inspect.signature(self.estimator.fit).parameters
        except (TypeError, ValueError):
            return {}
        if "X_val" in params and "y_val" in params:
            if getattr(self.estimator, "early_stopping", True) is False:
                return {}  # HistGradientBoosting refuses X_val without early stopping
            x_valid, y_valid = _learn_rows(dataset, self.valid_segment)
            return {"X_val": x_valid, "y_val": y_valid} if len(x_valid) else {}
        if "eval_set" in params:
            x_valid, y_valid = _learn_rows(dataset, self.valid_segment)
            return {"eval_set": [(x_valid, y_valid)]} if len(x_valid) else {}
        return {}


def _learn_rows(dataset: Any, segment: str) -> tuple[pd.DataFrame, pd.Series]:
    """Features and label of ``segment`` for learning, rows with a NaN label dropped."""
    frame = dataset.prepare(segment, col_set=[CS_FEATURE, CS_LABEL], data_key=DK_LEARN)
    labels = frame[CS_LABEL]
    if labels.shape[1] != 1:
        raise PanelError(
            f"fit: segment {segment!r} has {labels.shape[1]} label columns; "
            "SklearnModel fits one label"
        )
    label = labels.iloc[:, 0]
    keep = label.notna().to_numpy()
    return frame[CS_FEATURE][keep], label[keep]
