"""Ensembles of several models' results: qlib's ``AverageEnsemble`` and ``SingleKeyEnsemble``."""

from __future__ import annotations

from typing import Any

from taskloom.ensemble import FLATTEN_TUPLE, Ensemble, datetime_level, flatten_dict


class AverageEnsemble(Ensemble):
    """The mean of cross-sectionally z-scored predictions: one signal from several models.

    Nested dicts are flattened first (tuple keys). The values are joined side by side (an
    outer join on the index, NaN where one has no row); every column is z-scored per datetime,
    ``(x - mean) / std`` with ddof=1, so a date with one instrument or a column constant on a
    date gives NaN there; the row mean, NaN skipped, is returned as an unnamed Series sorted by
    index. Every column is averaged, so pass single-column predictions (no label column).
    """

    def __call__(self, ensemble_dict: dict[Any, Any], *args: Any, **kwargs: Any) -> Any:
        """The averaged z-scores of every column of every value, as an unnamed Series."""
        import pandas as pd

        flat = flatten_dict(ensemble_dict, sep=FLATTEN_TUPLE)
        if not flat:
            raise ValueError("AverageEnsemble got an empty dict: there are no predictions "
                             "to average")
        for key, value in flat.items():
            datetime_level(value, key)
        frame = pd.concat(list(flat.values()), axis=1)
        by_date = frame.groupby(level=datetime_level(frame, "joined"), group_keys=False)
        std = by_date.transform("std")
        zscores = (frame - by_date.transform("mean")) / std.where(std > 0)
        return zscores.mean(axis=1).sort_index()


class SingleKeyEnsemble(Ensemble):
    """Unwraps dicts that hold one value: ``{("LGBModel",): pred}`` becomes ``pred``.

    A value that is not a dict is returned as it is. With ``recursion`` the values are
    unwrapped first, innermost first; a dict left with one key is then replaced by its value,
    any other dict is returned (as a new dict: the input is not modified).
    """

    def __call__(self, ensemble_dict: Any, recursion: bool = True, *args: Any,
                 **kwargs: Any) -> Any:
        """``ensemble_dict`` with every single-key dict replaced by its one value."""
        if not isinstance(ensemble_dict, dict):
            return ensemble_dict
        if recursion:
            ensemble_dict = {key: self(value, recursion) for key, value in ensemble_dict.items()}
        if len(ensemble_dict) == 1:
            return next(iter(ensemble_dict.values()))
        return ensemble_dict
