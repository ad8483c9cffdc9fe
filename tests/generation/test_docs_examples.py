"""The runnable examples of docs/generation.md run as written (from the repository root)."""

from __future__ import annotations

import re
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
GENERATION_DOC = REPO_ROOT / "docs" / "generation.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


def test_the_task_copy_func_example_runs_and_keeps_generation_pure(monkeypatch):
    (block,) = [b for b in python_blocks(GENERATION_DOC.read_text(encoding="utf-8"))
                if "task_copy_func=share_handler" in b]
    monkeypatch.chdir(REPO_ROOT)
    namespace: dict = {"__name__": "docs_example"}
    exec(compile(block, "docs/generation.md (Copies)", "exec"), namespace)  # noqa: S102
    tasks, heavy = namespace["tasks"], namespace["heavy"]
    assert len({id(task) for task in tasks}) == 4
    assert all(task["dataset"]["kwargs"]["handler"] is heavy for task in tasks)

