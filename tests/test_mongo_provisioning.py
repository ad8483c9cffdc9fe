"""How the suite finds its MongoDB test server: built on first use, reused, or skipped with why.

The session-level paths run a small probe test in a pytest subprocess that loads
``tests/conftest.py`` as a plugin, with its own cache folder (``XDG_CACHE_HOME``), so they
never touch the cache the rest of the suite uses.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.mongo import SECANTUS_VERSION, SWITCH_ENV, URI_ENV, ensure_secantus, secantus_venv

TESTS = Path(__file__).resolve().parent
PROBE = "def test_probe(mongo_url):\n    assert mongo_url.startswith('mongodb')\n"


def run_probe(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    """Run one test that needs the Mongo server, in a fresh pytest session."""
    (tmp_path / "test_probe.py").write_text(PROBE)
    environ = {k: v for k, v in os.environ.items() if k not in (URI_ENV, SWITCH_ENV)}
    environ.update(PYTHONPATH=str(TESTS), XDG_CACHE_HOME=str(tmp_path / "cache"), **env)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "conftest", "-p", "no:cacheprovider", "-rs",
         str(tmp_path / "test_probe.py")],
        capture_output=True, text=True, cwd=tmp_path, env=environ, timeout=300,
    )


def test_opting_out_skips_the_mongo_tests_and_says_so(tmp_path):
    result = run_probe(tmp_path, TASKLOOM_TEST_MONGO="off")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 skipped" in result.stdout
    assert "MongoDB tests skipped: TASKLOOM_TEST_MONGO=off" in result.stdout
    assert not (tmp_path / "cache").exists()


def test_a_misspelt_switch_stops_the_session(tmp_path):
    result = run_probe(tmp_path, TASKLOOM_TEST_MONGO="of")
    assert result.returncode == pytest.ExitCode.USAGE_ERROR
    assert "TASKLOOM_TEST_MONGO must be one of auto, off, require, got 'of'" in result.stderr


def test_a_failed_build_skips_with_the_reason_and_leaves_no_venv(tmp_path):
    venv = secantus_venv(tmp_path / "cache" / "taskloom-test")
    killed = venv.parent / f"{venv.name}.building-killed"
    (killed / "bin").mkdir(parents=True)
    # No package index: pip cannot find secantusdb, as on a machine without network.
    result = run_probe(tmp_path, PIP_NO_INDEX="1", PIP_FIND_LINKS="")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 skipped" in result.stdout
    assert f"could not build SecantusDB: pip install secantusdb=={SECANTUS_VERSION}" in (
        result.stdout
    )
    assert "building the MongoDB test server" in result.stdout
    assert not venv.exists()
    assert not killed.exists()
    assert list(venv.parent.glob("*.building-*")) == []


def test_a_failed_build_is_an_error_when_the_server_is_required(tmp_path):
    result = run_probe(tmp_path, TASKLOOM_TEST_MONGO="require", PIP_NO_INDEX="1",
                       PIP_FIND_LINKS="")
    assert result.returncode == pytest.ExitCode.TESTS_FAILED
    assert "1 error" in result.stdout
    assert f"could not build SecantusDB: pip install secantusdb=={SECANTUS_VERSION}" in (
        result.stdout
    )


def test_a_built_venv_is_reused_without_building(tmp_path, monkeypatch):
    venv = secantus_venv(tmp_path)
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    # Building would need pip to reach an index; with none, only reuse can succeed.
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", "")
    assert ensure_secantus(tmp_path) == (venv / "bin" / "python", False)
