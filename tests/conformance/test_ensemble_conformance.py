"""Every case of ``tests/conformance/ensemble/qlib_ensemble.json``, one test id each.

The fixture's values are decoded into Python and pandas objects as its README says; the
processors are looked up by their registered names, exactly as a user would. Results are
compared by the README's rules: the kind must match, dict key order does not matter, pandas
objects must agree on index rows (in order), index names and kinds, columns or name, dtypes,
and on every value within ``math.isclose(rel_tol=1e-12, abs_tol=1e-12)`` (or both NaN).
"""

from __future__ import annotations

import builtins
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import taskloom

FIXTURE_FILE = Path(__file__).resolve().parent / "ensemble" / "qlib_ensemble.json"
FIXTURES = json.loads(FIXTURE_FILE.read_text(encoding="utf-8"))
CASES = FIXTURES["cases"]

#: the fixture's qlib class names -> taskloom's registered processor names
PROCESSOR_NAMES = {
    "Group": "group",
    "RollingGroup": "rolling_group",
    "RollingEnsemble": "rolling_ensemble",
    "AverageEnsemble": "average_ensemble",
    "SingleKeyEnsemble": "single_key_ensemble",
}


def by_model(results: dict[Any, Any]) -> dict[Any, dict[Any, Any]]:
    """The fixture's ``by_model`` group_func: ``{(m, r): v}`` -> ``{m: {r: v}}``."""
    grouped: dict[Any, dict[Any, Any]] = {}
    for (model, rolling_key), value in results.items():
        grouped.setdefault(model, {})[rolling_key] = value
    return grouped


GROUP_FUNCS: dict[str, Callable[..., Any]] = {"by_model": by_model}


def decode_key(key: Any) -> Any:
    """A JSON dict key: an array is a tuple (nested arrays nest), a string stays a string."""
    if isinstance(key, list):
        return tuple(decode_key(item) for item in key)
    return key


def decode_index(encoded: dict[str, Any]) -> pd.MultiIndex:
    """The named MultiIndex of an encoded pandas object."""
    levels = []
    for position, kind in enumerate(encoded["index_dtypes"]):
        values = [row[position] for row in encoded["index"]]
        if kind == "datetime64":
            levels.append(pd.to_datetime(values))
        elif kind == "string":
            levels.append(values)
        else:
            raise AssertionError(f"unknown index dtype {kind!r}")
    return pd.MultiIndex.from_arrays(levels, names=encoded["index_names"])


def nan_for_null(value: float | None) -> float:
    return math.nan if value is None else value


def decode(value: Any) -> Any:
    """A fixture VALUE as the Python or pandas object it encodes."""
    if not isinstance(value, dict):
        return value
    if value["type"] == "dict":
        return {decode_key(item["key"]): decode(item["value"]) for item in value["items"]}
    if value["type"] == "DataFrame":
        data = [[nan_for_null(cell) for cell in row] for row in value["data"]]
        frame = pd.DataFrame(data, index=decode_index(value), columns=value["columns"])
        return frame.astype(dict(zip(value["columns"], value["dtypes"], strict=True)))
    if value["type"] == "Series":
        data = [nan_for_null(cell) for cell in value["data"]]
        return pd.Series(data, index=decode_index(value), name=value["name"], dtype=value["dtype"])
    raise AssertionError(f"unknown encoded type {value['type']!r}")


def index_kind(level: pd.Index) -> str:
    """The README's index dtype: datetime64 (any unit) or string (object or str dtype)."""
    if pd.api.types.is_datetime64_dtype(level.dtype):
        return "datetime64"
    if pd.api.types.is_string_dtype(level.dtype):
        return "string"
    return str(level.dtype)


def index_rows(index: pd.Index) -> list[list[str]]:
    """The index as ``[level0, level1]`` rows, dates as ISO days, as in the fixture."""
    rows = []
    for entry in index:
        entry = entry if isinstance(entry, tuple) else (entry,)
        rows.append([item.strftime("%Y-%m-%d") if isinstance(item, pd.Timestamp) else item
                     for item in entry])
    return rows


def assert_same_numbers(actual: list[Any], expected: list[Any], where: str) -> None:
    assert len(actual) == len(expected), f"{where}: {len(actual)} values, expected {len(expected)}"
    for position, (got, want) in enumerate(zip(actual, expected, strict=True)):
        if want is None:
            assert math.isnan(got), f"{where}[{position}]: {got!r}, expected NaN"
        else:
            assert not math.isnan(got) and math.isclose(got, want, rel_tol=1e-12, abs_tol=1e-12), (
                f"{where}[{position}]: {got!r}, expected {want!r}")


def assert_same_pandas(actual: Any, expected: dict[str, Any], where: str) -> None:
    """The README's comparison of a DataFrame or Series with its encoding."""
    assert list(actual.index.names) == expected["index_names"], where
    assert [index_kind(actual.index.get_level_values(position))
            for position in range(actual.index.nlevels)] == expected["index_dtypes"], where
    assert index_rows(actual.index) == expected["index"], f"{where}: index rows differ"
    if expected["type"] == "DataFrame":
        assert list(actual.columns) == expected["columns"], where
        assert [str(dtype) for dtype in actual.dtypes] == expected["dtypes"], where
        for position, column in enumerate(expected["columns"]):
            assert_same_numbers(actual.iloc[:, position].tolist(),
                                [row[position] for row in expected["data"]], f"{where}[{column}]")
    else:
        assert actual.name == expected["name"], f"{where}: name {actual.name!r}"
        assert str(actual.dtype) == expected["dtype"], where
        assert_same_numbers(actual.tolist(), expected["data"], where)


def assert_matches(actual: Any, expected: Any, where: str = "result") -> None:
    """``actual`` equals the encoded ``expected`` under the README's comparison rules."""
    kind = expected["type"] if isinstance(expected, dict) else "plain value"
    if kind == "dict":
        assert type(actual) is dict, f"{where}: a {type(actual).__name__}, expected a dict"
        wanted = {decode_key(item["key"]): item["value"] for item in expected["items"]}
        assert set(actual) == set(wanted), f"{where}: keys {list(actual)}, expected {list(wanted)}"
        for key, value in wanted.items():
            assert_matches(actual[key], value, f"{where}[{key!r}]")
    elif kind in ("DataFrame", "Series"):
        assert type(actual).__name__ == kind, f"{where}: a {type(actual).__name__}, expected {kind}"
        assert_same_pandas(actual, expected, where)
    else:
        assert not isinstance(actual, dict | pd.DataFrame | pd.Series), f"{where}: {actual!r}"
        assert actual == expected, f"{where}: {actual!r}, expected {expected!r}"


def init_argument(value: Any) -> Any:
    """A constructor argument: a processor name is a default instance, a group_func by name."""
    if value in GROUP_FUNCS:
        return GROUP_FUNCS[value]
    if value in PROCESSOR_NAMES:
        return taskloom.get_processor(PROCESSOR_NAMES[value])()
    return value


def run_case(case: dict[str, Any]) -> Any:
    """Call what the case names on its decoded input and return the result."""
    data = decode(case["input"])
    kwargs = dict(case["kwargs"])
    if case["processor"] == "flatten_dict":
        if kwargs.get("sep") == "tuple":
            kwargs["sep"] = taskloom.FLATTEN_TUPLE
        return taskloom.flatten_dict(data, **kwargs)
    init = {name: init_argument(value) for name, value in case["init"].items()}
    processor = taskloom.get_processor(PROCESSOR_NAMES[case["processor"]])(**init)
    method = processor if case["method"] == "__call__" else getattr(processor, case["method"])
    return method(data, **kwargs)


def test_the_fixture_file_has_the_cases_the_readme_announces():
    assert FIXTURES["format"] == "taskloom-conformance/ensemble/1"
    assert len(CASES) == FIXTURES["meta"]["n_cases"] == 21
    assert len({case["id"] for case in CASES}) == 21


@pytest.mark.parametrize("case", CASES, ids=[case["id"] for case in CASES])
def test_case(case: dict[str, Any]) -> None:
    expect = case["expect"]
    if "error" in expect:
        error = getattr(builtins, expect["error"])
        with pytest.raises(error) as info:
            run_case(case)
        if expect["message_contains"] is not None:
            assert expect["message_contains"].lower() in str(info.value).lower()
    else:
        assert_matches(run_case(case), expect["value"])
