"""The CLI root: version, plugin table, and the one-line error policy."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import taskloom


def test_version():
    result = subprocess.run(
        [sys.executable, "-m", "taskloom", "--version"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0
    assert result.stdout.strip() == f"taskloom, version {taskloom.__version__}"


def test_console_script_lists_the_builtin_plugins():
    script = Path(sys.executable).with_name("taskloom")  # the installed console script
    result = subprocess.run([str(script), "plugins"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    rows = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if "│" in line}
    for name, contribution in [
        ("rolling", "generator rolling"),
        ("multi_horizon", "generator multi_horizon"),
        ("sqlite", "storage scheme sqlite"),
        ("memory", "storage scheme memory"),
        ("mongo", "storage scheme mongodb"),
        ("handlers", "handler noop"),
    ]:
        assert contribution in result.stdout, contribution
        assert "taskloom" in rows[name] and "loaded" in rows[name]
