"""Meta-tests: every hook is documented in docs/plugins.md and has a test of its own."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest
from taskloom import hookspecs

ROOT = Path(__file__).resolve().parents[2]
HOOKS = sorted(
    name
    for name, value in vars(hookspecs).items()
    if name.startswith("taskloom_") and inspect.isfunction(value)
)


def _signature(name: str) -> str:
    params = inspect.signature(getattr(hookspecs, name)).parameters
    return f"{name}({', '.join(params)})"


def _test_function_names() -> set[str]:
    names: set[str] = set()
    for path in (ROOT / "tests").rglob("test_*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                names.add(node.name)
    return names


def test_there_are_hooks_to_check():
    assert "taskloom_register_generators" in HOOKS and "taskloom_task_failed" in HOOKS


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_documented(hook):
    docs = (ROOT / "docs" / "plugins.md").read_text()
    assert f"### {hook}\n" in docs, f"docs/plugins.md has no '### {hook}' section"
    assert _signature(hook) in docs, f"docs/plugins.md does not show {_signature(hook)}"


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_has_a_test(hook):
    assert f"test_hook_{hook}" in _test_function_names(), f"no test named test_hook_{hook}"


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_has_a_docstring_with_an_example(hook):
    doc = inspect.getdoc(getattr(hookspecs, hook)) or ""
    assert "Example::" in doc and "@hookimpl" in doc
