"""Group, the ensembles, flatten_dict and Collector.process_collect beyond the qlib fixtures.

The conformance file pins qlib's numbers; these tests pin what a user relies on besides:
names resolve to the right classes from the right plugins, parallel reduction changes
nothing, bad input is a clear error naming the culprit, inputs are not modified, and a
collector's processors run in the documented order.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np
import pandas as pd
import pytest
import taskloom
from taskloom import FLATTEN_TUPLE, Collector, Ensemble, Group, flatten_dict
from taskloom.registry import contributions

INSTRUMENTS = ["SH600000", "SH600004", "SZ000001"]


def prediction(start: str, days: int, seed: int, column: str = "score") -> pd.DataFrame:
    """A (datetime, instrument) prediction frame over ``days`` business days from ``start``."""
    dates = pd.bdate_range(start, periods=days)
    index = pd.MultiIndex.from_product([dates, INSTRUMENTS], names=["datetime", "instrument"])
    values = np.random.default_rng(seed).normal(size=len(index))
    return pd.DataFrame({column: values}, index=index)


def rolling_windows(model: str, seed: int) -> dict[tuple[str, str], pd.DataFrame]:
    """Three overlapping test windows of one model, keyed ``(model, window_start)``."""
    return {
        (model, start): prediction(start, days, seed + offset)
        for offset, (start, days) in enumerate(
            [("2021-01-04", 6), ("2021-01-08", 6), ("2021-01-14", 6)])
    }


# ---------------------------------------------------------------- lookups by name

@pytest.mark.parametrize(
    ("name", "plugin", "class_name"),
    [
        ("group", "ensemble", "Group"),
        ("average_ensemble", "ensemble", "AverageEnsemble"),
        ("single_key_ensemble", "ensemble", "SingleKeyEnsemble"),
        ("rolling_ensemble", "rolling", "RollingEnsemble"),
        ("rolling_group", "rolling", "RollingGroup"),
    ],
)
def test_each_processor_is_registered_by_its_plugin(name, plugin, class_name):
    registered = contributions("processor")[name]
    assert registered.provider == plugin
    assert taskloom.get_processor(name).__name__ == class_name


def test_group_by_name_is_the_core_group():
    assert taskloom.get_processor("group") is taskloom.Group


def test_the_ensembles_are_ensembles_and_the_groups_are_groups():
    for name in ("average_ensemble", "single_key_ensemble", "rolling_ensemble"):
        assert isinstance(taskloom.get_processor(name)(), Ensemble)
    assert issubclass(taskloom.get_processor("rolling_group"), Group)


def test_rolling_group_defaults_to_a_rolling_ensemble_and_takes_another():
    rolling_group = taskloom.get_processor("rolling_group")
    rolling_ensemble = taskloom.get_processor("rolling_ensemble")
    windows = rolling_windows("LGB", seed=1)
    joined = rolling_group()(windows)
    assert list(joined) == [("LGB",)]
    pd.testing.assert_frame_equal(joined[("LGB",)], rolling_ensemble()(
        {key[-1]: value for key, value in windows.items()}))
    averaged = rolling_group(ens=taskloom.get_processor("average_ensemble")())(windows)
    assert isinstance(averaged[("LGB",)], pd.Series)


# ---------------------------------------------------------------- Group

def by_model(results: dict[Any, Any]) -> dict[Any, dict[Any, Any]]:
    grouped: dict[Any, dict[Any, Any]] = {}
    for (model, window), value in results.items():
        grouped.setdefault(model, {})[window] = value
    return grouped


def many_models() -> dict[tuple[str, str], pd.DataFrame]:
    results: dict[tuple[str, str], pd.DataFrame] = {}
    for seed, model in enumerate(["LGB", "MLP", "GRU", "XGB", "TFT", "ALSTM"]):
        results.update(rolling_windows(model, seed * 10))
    return results


@pytest.mark.parametrize("n_jobs", [2, -1, None])
def test_group_in_parallel_equals_group_in_sequence(n_jobs):
    group = Group(group_func=by_model, ens=taskloom.get_processor("rolling_ensemble")())
    results = many_models()
    sequential = group(results, n_jobs=1)
    parallel = group(results, n_jobs=n_jobs)
    assert list(parallel) == list(sequential) == ["LGB", "MLP", "GRU", "XGB", "TFT", "ALSTM"]
    for model, frame in sequential.items():
        pd.testing.assert_frame_equal(parallel[model], frame)


def test_group_with_n_jobs_reduces_on_several_threads():
    seen: set[int] = set()
    barrier = threading.Barrier(2, timeout=10)

    def reduce_after_meeting(members):
        seen.add(threading.get_ident())
        barrier.wait()  # returns only once two groups are being reduced at the same time
        return len(members)

    group = Group(group_func=by_model, ens=reduce_after_meeting)
    assert group(many_models(), n_jobs=2) == {model: 3 for model in by_model(many_models())}
    assert len(seen) == 2


def test_group_n_jobs_zero_is_an_error():
    group = Group(group_func=by_model, ens=len)
    with pytest.raises(ValueError, match="n_jobs"):
        group(many_models(), n_jobs=0)


def test_an_error_in_a_parallel_reduction_reaches_the_caller():
    def fail_for(members):
        raise RuntimeError(f"bad group of {len(members)}")

    group = Group(group_func=by_model, ens=fail_for)
    with pytest.raises(RuntimeError, match="bad group of 3"):
        group(many_models(), n_jobs=3)


def test_group_passes_extra_arguments_to_group_and_logs_when_verbose(caplog):
    calls = []

    def group_func(results, *args, **kwargs):
        calls.append((args, kwargs))
        return by_model(results)

    group = Group(group_func=group_func, ens=len)
    with caplog.at_level(logging.INFO, logger="taskloom.ensemble"):
        assert group(many_models(), 1, 1, "extra", flag=True)["LGB"] == 3
    assert calls == [(("extra",), {"flag": True})]
    assert "reduced group 'LGB'" in caplog.text


def test_group_without_ens_is_not_implemented():
    with pytest.raises(NotImplementedError, match="ens"):
        Group(group_func=by_model)(many_models())


def test_a_group_subclass_may_override_group_and_reduce():
    class FirstWindow(Group):
        def group(self, results):
            return by_model(results)

        def reduce(self, members):
            return next(iter(members))

    assert FirstWindow()(many_models())["GRU"] == "2021-01-04"


# ---------------------------------------------------------------- RollingGroup

def test_rolling_group_refuses_a_key_that_is_not_a_tuple():
    rolling_group = taskloom.get_processor("rolling_group")()
    with pytest.raises(TypeError, match=r"'LGB_2021'.*str"):
        rolling_group({"LGB_2021": prediction("2021-01-04", 3, 0)})
    with pytest.raises(TypeError, match=r"\(\)"):
        rolling_group.group({(): prediction("2021-01-04", 3, 0)})


# ---------------------------------------------------------------- RollingEnsemble

def test_rolling_ensemble_predicts_every_date_exactly_once_and_the_later_window_wins():
    windows = {key[-1]: value for key, value in rolling_windows("LGB", seed=3).items()}
    joined = taskloom.get_processor("rolling_ensemble")()(dict(reversed(windows.items())))
    assert joined.index.is_unique and joined.index.is_monotonic_increasing
    dates = joined.index.get_level_values("datetime").unique()
    assert list(dates) == list(pd.bdate_range("2021-01-04", "2021-01-21"))
    overlap = pd.Timestamp("2021-01-11")  # in the first two windows: the second starts later
    pd.testing.assert_frame_equal(joined.loc[[overlap]], windows["2021-01-08"].loc[[overlap]])


def test_rolling_ensemble_finds_the_datetime_level_in_any_position():
    windows = {key[-1]: value.swaplevel().sort_index()
               for key, value in rolling_windows("LGB", seed=4).items()}
    joined = taskloom.get_processor("rolling_ensemble")()(windows)
    assert joined.index.names == ["instrument", "datetime"]
    assert len(joined) == len(pd.bdate_range("2021-01-04", "2021-01-21")) * len(INSTRUMENTS)


def test_rolling_ensemble_keeps_an_empty_window_without_breaking_the_order():
    windows = {key[-1]: value for key, value in rolling_windows("LGB", seed=5).items()}
    empty = windows["2021-01-14"].iloc[:0]
    joined = taskloom.get_processor("rolling_ensemble")()({"empty": empty, **windows})
    expected = taskloom.get_processor("rolling_ensemble")()(windows)
    pd.testing.assert_frame_equal(joined, expected)


def test_rolling_ensemble_names_a_value_that_is_not_a_prediction():
    with pytest.raises(TypeError, match=r"'w2'.*list"):
        taskloom.get_processor("rolling_ensemble")()(
            {"w1": prediction("2021-01-04", 3, 0), "w2": [1, 2, 3]})


def test_rolling_ensemble_names_a_duplicated_datetime_level():
    frame = prediction("2021-01-04", 3, 0)
    doubled = pd.concat({date: part for date, part in frame.groupby(level="datetime")},
                        names=["datetime"])
    assert list(doubled.index.names) == ["datetime", "datetime", "instrument"]
    with pytest.raises(ValueError, match=r"'w1' has 2 index levels named 'datetime'"):
        taskloom.get_processor("rolling_ensemble")()({"w1": doubled})


# ---------------------------------------------------------------- AverageEnsemble

def test_average_ensemble_gives_nan_for_a_constant_column_even_with_rounding():
    frame = prediction("2021-01-04", 2, 0)
    constant = frame.copy()
    constant.loc[pd.Timestamp("2021-01-04"), "score"] = 0.1  # 0.1 * 3 / 3 != 0.1 in binary
    averaged = taskloom.get_processor("average_ensemble")()({"a": constant, "b": frame})
    zscore = (frame.loc["2021-01-04", "score"] - frame.loc["2021-01-04", "score"].mean()) / (
        frame.loc["2021-01-04", "score"].std())
    first_day = averaged.loc["2021-01-04"]
    assert np.isfinite(first_day).all()
    np.testing.assert_allclose(first_day.to_numpy(), zscore.to_numpy(), rtol=1e-12)


def test_average_ensemble_averages_models_on_an_index_with_the_date_second():
    a, b = prediction("2021-01-04", 4, 1), prediction("2021-01-04", 4, 2)
    expected = taskloom.get_processor("average_ensemble")()({"a": a, "b": b})
    swapped = taskloom.get_processor("average_ensemble")()(
        {"a": a.swaplevel(), "b": b.swaplevel()})
    pd.testing.assert_series_equal(swapped.swaplevel().sort_index(), expected)


def test_average_ensemble_names_a_value_without_a_datetime_level():
    frame = prediction("2021-01-04", 3, 0).rename_axis(["date", "instrument"])
    with pytest.raises(KeyError, match=r"\('LGB', 'r0'\).*'date', 'instrument'"):
        taskloom.get_processor("average_ensemble")()({"LGB": {"r0": frame}})


# ---------------------------------------------------------------- SingleKeyEnsemble

def test_single_key_ensemble_does_not_modify_its_input():
    nested = {"A": {"x": 1}, "B": {"y": {"z": 2}}}
    assert taskloom.get_processor("single_key_ensemble")()(nested) == {"A": 1, "B": 2}
    assert nested == {"A": {"x": 1}, "B": {"y": {"z": 2}}}


def test_single_key_ensemble_without_recursion_unwraps_only_the_outer_dict():
    single_key = taskloom.get_processor("single_key_ensemble")()
    assert single_key({"only": {"inner": 7}}, recursion=False) == {"inner": 7}
    assert single_key({"a": {"x": 1}, "b": 2}, recursion=False) == {"a": {"x": 1}, "b": 2}


# ---------------------------------------------------------------- flatten_dict

def test_flatten_dict_joins_nested_keys_with_the_separator():
    nested = {"model": {"class": "LGB", "kwargs": {"lr": 0.1, "layers": [2, 3]}}, "seed": 1}
    assert flatten_dict(nested) == {
        "model.class": "LGB", "model.kwargs.lr": 0.1, "model.kwargs.layers": [2, 3], "seed": 1}
    assert flatten_dict(nested, sep="/")["model/kwargs/lr"] == 0.1
    assert flatten_dict({"lr": 0.1, "opt": {"b": 2}}, parent_key="model") == {
        "model.lr": 0.1, "model.opt.b": 2}


def test_flatten_dict_with_tuples_keeps_each_key_as_one_element():
    nested = {("LGB", "alpha158"): {"r0": 1, "r1": {"x": 2}}, "MLP": 3, "empty": {}}
    assert flatten_dict(nested, sep=FLATTEN_TUPLE) == {
        (("LGB", "alpha158"), "r0"): 1, (("LGB", "alpha158"), "r1", "x"): 2, "MLP": 3}


# ---------------------------------------------------------------- Collector

class FixedCollector(Collector):
    """A collector whose ``collect`` returns a fixed dict and counts its calls."""

    def __init__(self, collected: dict[Any, Any], process_list: Any = None) -> None:
        super().__init__(process_list=process_list)
        self.collected = collected
        self.collect_calls: list[tuple[Any, ...]] = []

    def collect(self, *args: Any) -> dict[Any, Any]:
        self.collect_calls.append(args)
        return self.collected


def test_a_lone_processor_is_wrapped_in_a_list():
    single_key = taskloom.get_processor("single_key_ensemble")()
    collector = FixedCollector({"pred": {"only": 5}}, process_list=single_key)
    assert collector.process_list == [single_key]
    assert collector() == {"pred": 5}


def test_processors_run_in_order_on_every_top_level_value_with_the_call_arguments():
    log = []

    def tag(label):
        def processor(value, *args, **kwargs):
            log.append((label, value, args, kwargs))
            return f"{value}>{label}"
        return processor

    collector = FixedCollector({"pred": "p", "label": "l"}, process_list=[tag("a"), tag("b")])
    assert collector("extra", flag=1) == {"pred": "p>a>b", "label": "l>a>b"}
    assert collector.collect_calls == [()]  # collect() itself takes no arguments
    assert log[0] == ("a", "p", ("extra",), {"flag": 1})
    assert [entry[0] for entry in log] == ["a", "b", "a", "b"]


def test_a_processor_that_is_not_callable_is_a_type_error_naming_its_position():
    with pytest.raises(TypeError, match=r"process_list\[1\] is 'rolling_group'"):
        Collector.process_collect({"pred": {}}, [lambda value: value, "rolling_group"])


def test_the_rolling_flow_from_collected_windows_to_one_prediction_per_model():
    collected = {"pred": {**rolling_windows("LGB", 1), **rolling_windows("MLP", 2)}}
    collector = FixedCollector(collected, process_list=[
        taskloom.get_processor("rolling_group")(),
        taskloom.get_processor("single_key_ensemble")()])
    assert list(collector()["pred"]) == [("LGB",), ("MLP",)]
    one_model = FixedCollector({"pred": rolling_windows("LGB", 1)},
                               collector.process_list)()["pred"]
    assert isinstance(one_model, pd.DataFrame)
    assert one_model.index.is_unique
    assert one_model.index.get_level_values("datetime").nunique() == 14
