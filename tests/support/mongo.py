"""A MongoDB-protocol server for the test session: a real MongoDB or a SecantusDB process.

No ``mongod`` can be installed on the build machines, so the Mongo backend is tested over a
real TCP socket against SecantusDB (a MongoDB-wire server on WiredTiger). It is GPL-licensed,
so it lives in a virtualenv of its own and is only ever *run* as a separate process, never
imported. The suite provisions that virtualenv itself on first use, in the user's cache
(:func:`secantus_venv`), so a fresh clone runs every Mongo test with plain ``python -m
pytest``; later sessions reuse it.

Two environment variables choose differently:

* ``TASKLOOM_TEST_MONGO_URI=mongodb://...``: test against that server (a real MongoDB, a
  replica set, Atlas); SecantusDB is neither built nor started.
* ``TASKLOOM_TEST_MONGO=off``: skip the Mongo tests (saying so), e.g. on a machine without
  network access where the build cannot succeed anyway.
* ``TASKLOOM_TEST_MONGO=require``: a server that cannot be built is an error instead of a
  skip; CI sets it so the Mongo tests can never quietly go missing.

``tests/conftest.py`` builds the session fixtures on :func:`mongo_switch`,
:func:`ensure_secantus`, :func:`start_secantus` and :func:`stop_server`.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

URI_ENV = "TASKLOOM_TEST_MONGO_URI"
#: ``off`` skips the Mongo tests; unset or ``auto`` uses the URI or provisions SecantusDB
#: (skipping if it cannot be built); ``require`` makes a failed build an error
SWITCH_ENV = "TASKLOOM_TEST_MONGO"
SWITCHES = ("auto", "off", "require")
SECANTUS_VERSION = "0.7.0b3"
SECANTUS_REQUIREMENT = f"secantusdb=={SECANTUS_VERSION}"
#: generous: pip downloads about 60 MB of wheels
BUILD_TIMEOUT_S = 1800
#: variables that would make the build's pip see or install into somewhere other than the venv
#: (index settings such as PIP_INDEX_URL are kept: they are how a user reaches a registry)
NOT_FOR_THE_BUILD = ("PYTHONPATH", "PYTHONHOME", "PIP_TARGET", "PIP_PREFIX", "PIP_ROOT",
                     "PIP_USER")


class BuildError(Exception):
    """The SecantusDB virtualenv could not be built; the message says why and where the log is."""


@dataclass
class MongoServer:
    """A reachable server: its URI (no database in the path) and the process we started."""

    uri: str
    process: subprocess.Popen[bytes] | None = None


def with_database(uri: str, database: str) -> str:
    """``uri`` with ``database`` as its path, keeping hosts, credentials and options."""
    parts = urlsplit(uri)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, ""))


def cache_root() -> Path:
    """Where the test suite keeps what it builds: ``$XDG_CACHE_HOME/taskloom-test``.

    ``XDG_CACHE_HOME`` defaults to ``~/.cache``, as the XDG base-directory spec says.
    """
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "taskloom-test"


def secantus_venv(cache: Path | None = None) -> Path:
    """The SecantusDB virtualenv's folder in ``cache`` (default :func:`cache_root`)."""
    return (cache or cache_root()) / f"secantusdb-{SECANTUS_VERSION}"


def _venv_python(venv: Path) -> Path:
    """The interpreter of ``venv`` (POSIX layout; the suite's process handling is POSIX too)."""
    return venv / "bin" / "python"


def is_ready(venv: Path) -> bool:
    """Whether ``venv`` is a finished build whose interpreter still exists.

    A build only appears under its final name once it is complete (see
    :func:`ensure_secantus`), so the folder existing means the install finished; the
    interpreter check catches a base Python that was removed since.
    """
    return _venv_python(venv).exists()


@contextmanager
def _exclusive(lock_file: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_file``: one build at a time across sessions."""
    with lock_file.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run_logged(args: list[str | Path], log: Path, what: str) -> None:
    """Run ``args`` appending its output to ``log``; raise BuildError naming ``what`` on failure."""
    env = {key: value for key, value in os.environ.items() if key not in NOT_FOR_THE_BUILD}
    with log.open("ab") as out:
        out.write(f"$ {' '.join(map(str, args))}\n".encode())
        out.flush()
        try:
            code = subprocess.run(args, stdout=out, stderr=subprocess.STDOUT, env=env,
                                  timeout=BUILD_TIMEOUT_S).returncode
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BuildError(f"{what} failed ({exc}); log: {log}") from exc
    if code != 0:
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
        last = f": {lines[-1].strip()}" if lines else ""
        raise BuildError(f"{what} failed with exit code {code}{last} (log: {log})")


def ensure_secantus(cache: Path | None = None) -> tuple[Path, bool]:
    """The interpreter of a ready SecantusDB virtualenv, building it first if needed.

    Returns ``(python, built)``, where ``built`` says whether this call did the build.
    The venv is built in a staging folder next to its final place and renamed into place
    only once ``pip install`` has succeeded, so a killed build never leaves a folder that
    looks finished. A lock file serialises builds: a second session waiting on it finds
    the first one's venv and uses it. Raises :class:`BuildError` (with the reason and the
    log's path) when the build fails, e.g. without network access.

    The staging folder is renamed, so the venv's console scripts (whose ``#!`` line names
    the staging path) are never used: the server runs as ``python -m secantus``.
    """
    venv = secantus_venv(cache)
    if is_ready(venv):
        return _venv_python(venv), False
    venv.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive(venv.parent / f"{venv.name}.lock"):
        if is_ready(venv):
            return _venv_python(venv), False
        # Under the lock nobody else is building: whatever is left is from a killed or
        # broken build.
        for leftover in venv.parent.glob(f"{venv.name}.building-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        shutil.rmtree(venv, ignore_errors=True)
        staging = Path(tempfile.mkdtemp(prefix=f"{venv.name}.building-", dir=venv.parent))
        log = venv.parent / f"{venv.name}.build.log"
        log.write_text("")
        try:
            _run_logged([sys.executable, "-m", "venv", staging], log, "python -m venv")
            python = _venv_python(staging)
            _run_logged([python, "-m", "pip", "install", "--disable-pip-version-check",
                         "--no-input", "--quiet", SECANTUS_REQUIREMENT],
                        log, f"pip install {SECANTUS_REQUIREMENT}")
            _run_logged([python, "-I", "-c", "import secantus.cli"], log,
                        "importing the installed SecantusDB")
            staging.rename(venv)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return _venv_python(venv), True


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ping(uri: str, timeout_ms: int) -> None:
    """Raise unless the server at ``uri`` answers ``ping`` within ``timeout_ms``."""
    import pymongo

    client: pymongo.MongoClient = pymongo.MongoClient(uri, serverSelectionTimeoutMS=timeout_ms)
    try:
        client.admin.command("ping")
    finally:
        client.close()


def start_secantus(python: Path, data_dir: Path, timeout: float = 30.0) -> MongoServer:
    """Start SecantusDB with ``python`` on a free port in its own process group; wait for it.

    ``-I`` keeps the test run's ``PYTHONPATH`` and working directory out of the server.
    """
    port = _free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir.parent / f"secantusd-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(python), "-I", "-m", "secantus", "--host", "127.0.0.1", "--port", str(port),
             "--storage-path", str(data_dir), "--log-level", "WARNING"],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    uri = f"mongodb://127.0.0.1:{port}/?directConnection=true"
    server = MongoServer(uri, process)
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"SecantusDB exited with {process.returncode}; see {log}")
        try:
            ping(uri, 500)
            return server
        except Exception as exc:
            if time.monotonic() > deadline:
                stop_server(server)
                raise RuntimeError(
                    f"SecantusDB did not answer within {timeout} s; see {log}"
                ) from exc
            time.sleep(0.2)


def stop_server(server: MongoServer) -> None:
    """SIGTERM the server's process group, SIGKILL it if it has not exited after 10 s."""
    process = server.process
    if process is None or process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def mongo_switch() -> str:
    """``off``, ``auto`` or ``require``, from ``TASKLOOM_TEST_MONGO`` (unset means ``auto``).

    Any other value raises ValueError: a typo must neither skip nor run the tests silently.
    """
    switch = os.environ.get(SWITCH_ENV, "auto").strip().lower() or "auto"
    if switch not in SWITCHES:
        raise ValueError(f"{SWITCH_ENV} must be one of {', '.join(SWITCHES)}, got {switch!r}")
    return switch


def describe() -> str:
    """Which server the Mongo tests will use, for the pytest header."""
    if mongo_switch() == "off":
        return f"none, {SWITCH_ENV}=off (the Mongo tests will be skipped)"
    if os.environ.get(URI_ENV):
        return f"{URI_ENV} is set (host {urlsplit(os.environ[URI_ENV]).hostname})"
    venv = secantus_venv()
    state = "" if is_ready(venv) else ", built there on first use (about a minute)"
    return f"SecantusDB {SECANTUS_VERSION} from {venv}{state}"


def corrupt_mongo_task(store: Any, pool_name: str, task_id: str) -> None:
    """Make one stored task unreadable the way a qlib-era pool is: a pickled ``def``.

    The contract suite's ``corrupt_task`` for the MongoDB backend, on a server or mongomock.
    """
    from bson import Binary, ObjectId

    store.db[pool_name].update_one({"_id": ObjectId(task_id)},
                                   {"$set": {"def": Binary(b"\x80\x04pickle")}})
