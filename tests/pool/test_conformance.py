"""qlib's TaskManager scenario (tests/conformance/taskmanager) on every backend.

The 56 steps were recorded from qlib's own TaskManager; the rules for reading them are in
tests/conformance/README.md ("TaskManager scenario") and in the file's ``convention``. This
runner applies them literally: steps run in order on one TaskManager and the run stops at the
first step whose expectation or ``after`` state does not hold.
"""

from __future__ import annotations

import builtins
import contextlib
import copy
import io
import json
import time
from pathlib import Path
from typing import Any

import pytest
from taskloom import to_jsonable
from taskloom.manager import TaskManager, run_task
from taskloom.storage import Store

SCENARIO = json.loads(
    (Path(__file__).resolve().parents[1] / "conformance" / "taskmanager" /
     "qlib_taskmanager.json").read_text()
)


def is_symbol(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("$t") and value[2:].isdigit()


class Scenario:
    """The state of one run: bound ids, step results, and the task function's calls."""

    def __init__(self, tm: TaskManager, store: Store) -> None:
        self.tm = tm
        self.store = store
        self.defs: dict[str, Any] = SCENARIO["task_defs"]
        self.ids: dict[str, str] = {}
        self.results: dict[str, Any] = {}
        self.calls: list[dict[str, Any]] = []
        self.raised_in_body: BaseException | None = None

    # -- references ----------------------------------------------------------------------

    def substitute(self, value: Any) -> Any:
        if isinstance(value, dict):
            if "$def" in value:
                return copy.deepcopy(self.defs[value["$def"]])
            if "$task_from" in value:
                found = self.results[value["$task_from"]]
                wanted = self.ids[value["_id"]]
                if isinstance(found, list):
                    (found,) = [task for task in found if task["_id"] == wanted]
                assert found["_id"] == wanted
                return found
            return {key: self.substitute(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.substitute(item) for item in value]
        if is_symbol(value):
            return self.ids[value]
        return value

    def bind(self, symbol: str, actual: Any) -> None:
        if symbol in self.ids:
            assert actual == self.ids[symbol], f"{symbol} is {self.ids[symbol]!r}, got {actual!r}"
            return
        assert actual not in self.ids.values(), f"{symbol} got the id of another symbol"
        self.ids[symbol] = actual

    def def_name(self, definition: Any) -> str | None:
        normal = to_jsonable(definition)
        names = [name for name, known in self.defs.items() if known == normal]
        return names[0] if names else None

    # -- the task function ---------------------------------------------------------------

    def task_func(self, param: Any, tag: str = "x") -> dict[str, Any]:
        if isinstance(param, dict) and "dataset" in param:
            name = self.def_name(param)
            self.calls.append({"def": name, "tag": tag})
            return {"stage": 1, "def_name": name}
        self.calls.append({"param": param, "tag": tag})
        return {"stage": 2, "prev": param}

    # -- summaries -----------------------------------------------------------------------

    def matches(self, task: Any, summary: dict[str, Any], fields: list[str] | None = None) -> bool:
        if task is None:
            return False
        checked = fields or list(summary)
        for field in checked:
            if field == "_id" and task["_id"] != self.ids.get(summary["_id"]):
                return False
            if field == "def" and self.def_name(task["def"]) != summary["def"]:
                return False
            if field in ("status", "priority", "res") and task.get(field) != summary[field]:
                return False
        if fields is None and "res" not in summary and task.get("res") is not None:
            return False
        return True

    def check_summary(self, task: Any, summary: dict[str, Any] | None, what: str) -> None:
        if summary is None:
            assert task is None, f"{what}: expected None, got {task!r}"
            return
        assert self.matches(task, summary), f"{what}: {task!r} does not match {summary!r}"

    def check_unordered(self, tasks: list[Any], summaries: list[dict], fields: list[str] | None
                        ) -> None:
        assert len(tasks) == len(summaries), f"{len(tasks)} tasks, expected {len(summaries)}"
        left = list(tasks)
        for summary in summaries:
            hits = [task for task in left if self.matches(task, summary, fields)]
            assert hits, f"no task matches {summary!r} in {left!r}"
            left.remove(hits[0])

    # -- one step ------------------------------------------------------------------------

    def call(self, step: dict[str, Any]) -> Any:
        """Run the step's call and return what it returned (or, for safe_fetch_task, yielded)."""
        args = self.substitute({k: v for k, v in step["args"].items() if k != "body"})
        name = step["call"]
        tm = self.tm
        if name == "list":
            return TaskManager.list(self.store)
        if name == "query":
            return list(tm.query(**args))
        if name == "task_fetcher_iter":
            return list(tm.task_fetcher_iter(**args))
        if name == "run_task":
            kwargs = args.pop("kwargs", {})
            return run_task(self.task_func, tm.task_pool, storage=self.store, **args, **kwargs)
        if name == "safe_fetch_task":
            body = step["args"]["body"]
            self.results[step["id"]] = None
            with tm.safe_fetch_task(**args) as task:
                self.results[step["id"]] = task
                if body != "return":
                    kind = getattr(builtins, body["raise"]["type"])
                    self.raised_in_body = kind(body["raise"]["message"])
                    raise self.raised_in_body
            return task
        return getattr(tm, name)(**args)

    def run_step(self, step: dict[str, Any]) -> None:
        expect = step["expect"]
        inputs = copy.deepcopy(self.substitute(step["args"].get("task_def_l")))
        self.calls = []
        out = io.StringIO()
        started = time.monotonic()
        error: BaseException | None = None
        with contextlib.redirect_stdout(out):
            try:
                result = self.call(step)
            except Exception as exc:
                error = exc
                result = self.results.get(step["id"])
        elapsed = time.monotonic() - started
        if step["call"] != "safe_fetch_task":
            self.results[step["id"]] = result
        if "error" in expect:
            kind = getattr(builtins, expect["error"])
            assert isinstance(error, kind), f"expected {expect['error']}, got {error!r}"
            message = expect["message_contains"]
            for symbol, task_id in self.ids.items():
                message = message.replace(symbol, str(task_id))
            assert message.lower() in str(error).lower(), f"{message!r} not in {str(error)!r}"
        elif error is not None:
            raise error
        if expect.get("same_exception"):
            assert error is not None and error is self.raised_in_body, "not the same exception"
        if "returns" in expect:
            self.check_returns(step["call"], result, expect["returns"])
        if "returns_unordered" in expect:
            self.check_unordered(result, expect["returns_unordered"], expect.get("fields"))
        if "yields" in expect:
            assert len(result) == len(expect["yields"]), result
            for task, summary in zip(result, expect["yields"], strict=True):
                self.check_summary(task, summary, "yielded task")
        if "yielded" in expect:
            self.check_summary(self.results[step["id"]], expect["yielded"], "yielded")
        if expect.get("inputs_unchanged"):
            assert step["args"]["task_def_l"] and inputs == self.substitute(
                step["args"]["task_def_l"]
            )
        for text, count in expect.get("stdout_occurrences", {}).items():
            assert out.getvalue().count(text) == count, (text, out.getvalue())
        if "task_func_calls" in expect:
            assert self.calls == expect["task_func_calls"]
        if expect.get("includes_pool"):
            assert self.tm.task_pool in result
        if "returns_within_s" in expect:
            assert error is None and elapsed < expect["returns_within_s"]
        self.check_after(step["after"])

    def check_returns(self, call: str, result: Any, expected: Any) -> None:
        if call == "create_task":
            assert isinstance(result, list) and len(result) == len(expected), result
            for symbol, actual in zip(expected, result, strict=True):
                self.bind(symbol, actual)
        elif isinstance(expected, dict) and "_id" in expected:
            self.check_summary(result, expected, "returned task")
        elif expected is None:
            assert result is None, result
        else:
            assert result == expected, f"returned {result!r}, expected {expected!r}"

    def check_after(self, after: dict[str, Any]) -> None:
        assert self.tm.task_stat() == after["counts"]
        tasks = list(self.tm.query({}))
        assert sorted(task["_id"] for task in tasks) == sorted(
            self.ids[symbol] for symbol in after["tasks"]
        )
        by_id = {task["_id"]: task for task in tasks}
        for symbol, state in after["tasks"].items():
            summary = {"_id": symbol, "def": SCENARIO["ids"][symbol]["def"], **state}
            self.check_summary(by_id[self.ids[symbol]], summary, f"after: {symbol}")


def test_qlib_taskmanager_scenario(store: Store) -> None:
    """All 56 steps hold, in order, on a fresh pool of each backend."""
    tm = TaskManager(SCENARIO["pool"], store)
    run = Scenario(tm, store)
    assert len(SCENARIO["steps"]) == SCENARIO["meta"]["n_steps"] == 56
    for step in SCENARIO["steps"]:
        try:
            run.run_step(step)
        except AssertionError as exc:
            pytest.fail(f"step {step['id']} ({step['call']}): {exc}")
