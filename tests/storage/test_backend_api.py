"""The backend API is one import, and the contract does not depend on the plugin registry."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import taskloom.backend

ROOT = Path(__file__).resolve().parents[2]
BACKENDS = [ROOT / "plugins" / name for name in ("taskloom_memory", "taskloom_sqlite",
                                                 "taskloom_mongo")]
BACKENDS.append(ROOT / "examples" / "backend-example" / "taskloom_jsonfile")


def _taskloom_imports(path: Path) -> set[str]:
    """The ``taskloom...`` modules a source file imports (``taskloom_x`` plugins aside)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "taskloom":
            found.update(f"taskloom.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.startswith("taskloom.")}


@pytest.mark.parametrize("package", BACKENDS, ids=lambda path: path.name)
def test_backends_reach_the_core_only_through_taskloom_backend(package: Path) -> None:
    for path in sorted(package.glob("*.py")):
        assert _taskloom_imports(path) <= {"taskloom.backend"}, path


def test_every_name_taskloom_backend_exports_exists() -> None:
    missing = [name for name in taskloom.backend.__all__ if not hasattr(taskloom.backend, name)]
    assert missing == []


def test_the_contract_module_does_not_import_the_registry() -> None:
    imports = _taskloom_imports(ROOT / "core" / "taskloom" / "storage.py")
    assert "taskloom.registry" not in imports and "taskloom.stores" not in imports
    assert "taskloom.registry" in _taskloom_imports(ROOT / "core" / "taskloom" / "stores.py")
