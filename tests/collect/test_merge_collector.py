"""MergeCollector (the ``merge`` collector): qlib's semantics and its errors."""

from __future__ import annotations

from typing import Any

import pytest
import taskloom
from taskloom import Collector
from taskloom.registry import contributions


class FixedCollector(Collector):
    """A collector whose ``collect`` returns a fixed dict."""

    def __init__(self, collected: dict[Any, Any], process_list: Any = None) -> None:
        super().__init__(process_list=process_list)
        self.collected = collected

    def collect(self) -> dict[Any, Any]:
        return self.collected


def test_merge_is_registered_by_the_merge_plugin():
    assert contributions("collector")["merge"].provider == "merge"
    merge = taskloom.get_collector("merge")
    assert merge.__name__ == "MergeCollector" and issubclass(merge, Collector)


def test_without_merge_func_keys_are_collector_key_and_result_key():
    merge = taskloom.get_collector("merge")({
        "train": FixedCollector({"pred": 1, "label": 2}),
        "online": FixedCollector({"pred": 3}),
    })
    assert merge() == {("train", "pred"): 1, ("train", "label"): 2, ("online", "pred"): 3}


def test_merge_func_builds_the_keys_and_a_later_collector_wins_a_clash():
    merge = taskloom.get_collector("merge")(
        {"a": FixedCollector({"pred": "from a"}), "b": FixedCollector({"pred": "from b"})},
        merge_func=lambda collector_key, key: key,
    )
    assert merge.collect() == {"pred": "from b"}


def test_each_childs_processors_run_before_the_merge_and_its_own_after():
    seen = []

    def child_processor(value):
        seen.append(("child", value))
        return value * 10

    def own_processor(value):
        seen.append(("merge", value))
        return value + 1

    merge = taskloom.get_collector("merge")(
        {"c": FixedCollector({"pred": 1}, process_list=child_processor)},
        process_list=[own_processor],
    )
    assert merge() == {("c", "pred"): 11}
    assert seen == [("child", 1), ("merge", 10)]


def test_merged_results_go_through_the_merge_collectors_processors_per_key():
    merge = taskloom.get_collector("merge")(
        {"LGB": FixedCollector({"pred": {"w1": 1.0, "w2": 3.0}}),
         "MLP": FixedCollector({"pred": {"w1": 5.0}})},
        process_list=[lambda windows: sum(windows.values()) / len(windows)],
    )
    assert merge() == {("LGB", "pred"): 2.0, ("MLP", "pred"): 5.0}


def test_a_child_that_is_not_a_collector_is_named():
    with pytest.raises(TypeError, match=r"collector_dict\['bad'\] is 42"):
        taskloom.get_collector("merge")({"bad": 42})


def test_a_child_returning_something_else_than_a_dict_is_named():
    merge = taskloom.get_collector("merge")({"listy": lambda: [1, 2]})
    with pytest.raises(TypeError, match=r"collector_dict\['listy'\] returned a list"):
        merge()
