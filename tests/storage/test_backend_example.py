"""The example third-party backend (examples/backend-example) passes the shipped contract suite.

The example is made importable from a temporary folder, not installed into the environment
under test: the folder gets the distribution's metadata (``METADATA`` and the
``taskloom.plugins`` entry point read from its ``pyproject.toml``, what ``pip install
--target`` would write) and goes on ``PYTHONPATH`` next to the example's source. Its own test
module then runs in a separate pytest, exactly as the backend's author would run it, and
its spawned worker processes find the backend through the entry point too.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "backend-example"


def _metadata_folder(target: Path) -> Path:
    """Write the example's distribution metadata under ``target``, as an installer would."""
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    name = project["name"].replace("-", "_")
    info = target / f"{name}-{project['version']}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    entry_points = "".join(
        f"[{group}]\n" + "".join(f"{key} = {value}\n" for key, value in points.items())
        for group, points in project["entry-points"].items())
    (info / "entry_points.txt").write_text(entry_points)
    return target


def test_the_example_backend_passes_the_contract_suite(tmp_path: Path) -> None:
    site = _metadata_folder(tmp_path / "site")
    paths = [str(site), str(EXAMPLE), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs",
         "--basetemp", str(tmp_path / "basetemp"), str(EXAMPLE / "tests")],
        cwd=EXAMPLE, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    summary = result.stdout.strip().splitlines()[-1]
    assert " passed" in summary and "failed" not in summary, summary
    assert "private to one process" not in result.stdout  # the multi-process test ran
