"""Stitching rolling windows back together: qlib's ``RollingEnsemble`` and ``RollingGroup``.

A rolling study predicts each test window with its own model. Collected, that is
``{(model, window): pred}``; ``RollingGroup`` groups by everything but the window and
``RollingEnsemble`` concatenates each model's windows into one continuous prediction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from taskloom.ensemble import Ensemble, Group, datetime_level


class RollingEnsemble(Ensemble):
    """Concatenates rolling windows' predictions; where windows overlap the later one wins.

    The values (DataFrames or Series, with an index level named ``datetime``) are sorted by
    their first date, stably, so windows starting on the same date keep the dict's order;
    they are concatenated, a repeated index entry keeps its last occurrence, and the index is
    sorted. The keys are ignored. The result has the type of the values (columns unioned).
    """

    def __call__(self, ensemble_dict: dict[Any, Any], *args: Any, **kwargs: Any) -> Any:
        """One prediction covering every window of ``ensemble_dict``."""
        import pandas as pd

        if not ensemble_dict:
            raise ValueError("RollingEnsemble got an empty dict: there are no windows to join")
        starts = []
        for key, value in ensemble_dict.items():
            level = datetime_level(value, key)
            first = value.index.get_level_values(level).min()
            # an empty window has no first date: it sorts first and adds no rows
            starts.append((0, 0) if pd.isna(first) else (1, first))
        values = list(ensemble_dict.values())
        order = sorted(range(len(values)), key=starts.__getitem__)
        joined = pd.concat([values[position] for position in order])
        joined = joined[~joined.index.duplicated(keep="last")]
        return joined.sort_index()


class RollingGroup(Group):
    """Groups ``{(*group_key, window): pred}`` by ``group_key`` and joins each group's windows.

    Every key must be a tuple whose last element is the rolling window (a TypeError names a
    key that is not); ``(model, window)`` keys give the group keys ``(model,)``.
    """

    def __init__(self, ens: Callable[..., Any] = RollingEnsemble()) -> None:
        super().__init__(ens=ens)

    def group(self, rolling_dict: dict[Any, Any], *args: Any, **kwargs: Any) -> dict[Any, Any]:
        """``{key[:-1]: {key[-1]: value}}``: groups in first-seen order, members in order."""
        grouped: dict[Any, dict[Any, Any]] = {}
        for key, value in rolling_dict.items():
            if not isinstance(key, tuple) or not key:
                raise TypeError(
                    f"RollingGroup needs tuple keys ending with the rolling window, such as "
                    f"(model, test_segment); got the key {key!r} ({type(key).__name__})"
                )
            grouped.setdefault(key[:-1], {})[key[-1]] = value
        return grouped
