"""A MongoDB-protocol server for the test session: a real MongoDB or a SecantusDB process.

No ``mongod`` can be installed on the build machines, so the Mongo backend is tested over a
real TCP socket against SecantusDB (a MongoDB-wire server on WiredTiger). It is GPL-licensed
and lives in its own virtualenv (``.venv-mongo``): it is only ever *run* as a separate
process, never imported. With ``TASKLOOM_TEST_MONGO_URI`` set, that server is used instead.

Use :func:`find_server` once per session and :func:`stop_server` at its end; see
``tests/storage/conftest.py`` for the pytest fixtures built on it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

URI_ENV = "TASKLOOM_TEST_MONGO_URI"
#: the SecantusDB server script; override with TASKLOOM_TEST_SECANTUSD
SECANTUSD = Path(
    os.environ.get(
        "TASKLOOM_TEST_SECANTUSD",
        Path(__file__).resolve().parents[2] / ".venv-mongo" / "bin" / "secantusd-py",
    )
)


@dataclass
class MongoServer:
    """A reachable server: its URI (no database in the path) and the process we started."""

    uri: str
    process: subprocess.Popen[bytes] | None = None


def with_database(uri: str, database: str) -> str:
    """``uri`` with ``database`` as its path, keeping hosts, credentials and options."""
    parts = urlsplit(uri)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, ""))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ping(uri: str, timeout_ms: int) -> None:
    import pymongo

    client: pymongo.MongoClient = pymongo.MongoClient(uri, serverSelectionTimeoutMS=timeout_ms)
    try:
        client.admin.command("ping")
    finally:
        client.close()


def start_secantus(data_dir: Path, timeout: float = 30.0) -> MongoServer:
    """Start SecantusDB on a free port in its own process group and wait until it answers."""
    port = _free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir.parent / f"secantusd-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(SECANTUSD), "--host", "127.0.0.1", "--port", str(port),
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
            _ping(uri, 500)
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


def find_server(data_dir: Path) -> MongoServer | str:
    """The server to test against, or the reason there is none (for ``pytest.skip``).

    ``TASKLOOM_TEST_MONGO_URI`` wins; otherwise SecantusDB is started if it is installed.
    """
    uri = os.environ.get(URI_ENV)
    if uri:
        _ping(uri, 10_000)
        return MongoServer(uri)
    if not SECANTUSD.exists():
        return f"MongoDB backend tests skipped: {describe()}"
    return start_secantus(data_dir)


def describe() -> str:
    """Which server the Mongo tests will use, for the pytest header and skip messages."""
    if os.environ.get(URI_ENV):
        return f"{URI_ENV} is set (host {urlsplit(os.environ[URI_ENV]).hostname})"
    if SECANTUSD.exists():
        return f"SecantusDB, started from {SECANTUSD}"
    return (
        f"{URI_ENV} is not set and SecantusDB is not installed at {SECANTUSD} "
        "(python3 -m venv .venv-mongo && .venv-mongo/bin/pip install secantusdb==0.7.0b3)"
    )
