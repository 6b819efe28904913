"""Throwaway PostgreSQL and Redis servers for tests, started from the installed binaries.

Every test session gets its own server processes on free ports (nothing is shared with other
sessions or with a system-wide server); every test gets a fresh database and a fresh Redis logical
database. A missing server binary fails the run at fixture setup with what to install; it never
skips.

PostgreSQL refuses to run as root. When the tests run as uid 0 (CI containers), the data directory
is owned by the ``postgres`` user and ``initdb``/``pg_ctl`` run through ``runuser -u postgres --``.

Fixtures (exposed to the whole suite through ``tests/conftest.py``):

- ``postgres_server`` (session): a running :class:`PostgresServer`; ``.dsn(dbname)`` builds DSNs,
  ``.create_database()`` makes a fresh empty database;
- ``pg_dsn``: the DSN of a fresh empty database on the session server;
- ``postgres_factory`` / ``redis_factory`` (session): start *extra* servers a test may stop and
  restart (outage tests) without disturbing the shared ones;
- ``redis_server`` (session): a running :class:`RedisServer`;
- ``redis_url``: ``redis://`` URL of a flushed logical database on the session server.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

PG_INSTALL_HINT = (
    "PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found in /usr/lib/postgresql/*/bin, "
    "/usr/local/bin or PATH. Install them (Debian/Ubuntu: `apt-get install -y postgresql`; the README's "
    "test command does this) and run the tests again."
)
REDIS_INSTALL_HINT = (
    "redis-server was not found in /usr/bin or PATH. Install it (Debian/Ubuntu: `apt-get install -y "
    "redis-server`, or valkey-server; the README's test command does this) and run the tests again."
)


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")


def run_async(coro_factory: Callable[[], Any]) -> Any:
    """Run a coroutine to completion in a private thread and loop (safe inside a running loop)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(coro_factory())).result()


# ------------------------------------------------------------------------------------------
# PostgreSQL
# ------------------------------------------------------------------------------------------


def find_pg_bindir() -> Path | None:
    """The directory holding initdb, pg_ctl and postgres (newest installed major first)."""
    candidates: list[Path] = []
    versioned = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    candidates.extend(versioned)
    candidates.append(Path("/usr/local/bin"))
    which = shutil.which("pg_ctl")
    if which:
        candidates.append(Path(which).resolve().parent)
    for d in candidates:
        if all((d / b).exists() for b in ("initdb", "pg_ctl", "postgres")):
            return d
    return None


def _as_root() -> bool:
    return os.geteuid() == 0


class PostgresServer:
    """One PostgreSQL server process with its own data directory, port and socket directory."""

    def __init__(self, bindir: Path, base: Path, template_data: Path | None = None) -> None:
        self.bindir = bindir
        self.base = base
        self.data = base / "data"
        self.sockdir = base / "sock"
        self.log = base / "postgres.log"
        self.port = free_port()
        self._counter = itertools.count(1)
        self.sockdir.mkdir(parents=True, exist_ok=True)
        if template_data is not None:
            shutil.copytree(template_data, self.data, symlinks=True)
        else:
            self._initdb()
        self._own()

    def _cmd(self, *argv: str) -> list[str]:
        if _as_root():
            if not shutil.which("runuser"):
                pytest.fail("running as root needs `runuser` (util-linux) to start PostgreSQL as user postgres")
            return ["runuser", "-u", "postgres", "--", *argv]
        return list(argv)

    def _own(self) -> None:
        if not _as_root():
            return
        shutil.chown(self.base, "postgres", "postgres")
        for root, dirs, files in os.walk(self.base):
            for name in (*dirs, *files):
                shutil.chown(os.path.join(root, name), "postgres", "postgres")

    def _initdb(self) -> None:
        self._own()  # initdb runs as postgres when we are root: it must be able to write here
        proc = subprocess.run(
            self._cmd(
                str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                "--no-sync", "-E", "UTF8", "--locale=C",
            ),
            capture_output=True, text=True, check=False,
        )
        if proc.returncode != 0:
            pytest.fail(f"initdb failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")

    def start(self) -> None:
        """Start (or restart, on the same port) and wait until it accepts connections."""
        opts = (
            f"-p {self.port} -k {self.sockdir} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c full_page_writes=off -c shared_buffers=16MB -c max_connections=200 "
            "-c max_wal_size=256MB -c log_min_messages=warning -c logging_collector=off"
        )
        proc = subprocess.run(
            self._cmd(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
                      "-o", opts, "start"),
            capture_output=True, text=True, check=False,
        )
        if proc.returncode != 0:
            log = self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""
            raise RuntimeError(f"pg_ctl start failed ({proc.returncode}): {proc.stdout}{proc.stderr}\n{log}")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``, or ``immediate`` to simulate a crash)."""
        subprocess.run(
            self._cmd(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop"),
            capture_output=True, text=True, check=False,
        )

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)

    def dsn(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def execute(self, sql: str, dbname: str = "postgres") -> None:
        """Run one SQL statement as the superuser."""
        import asyncpg

        async def go() -> None:
            conn = await asyncpg.connect(self.dsn(dbname), timeout=30)
            try:
                await conn.execute(sql)
            finally:
                await conn.close()

        run_async(go)

    def create_database(self) -> str:
        """Create a fresh, empty database and return its DSN."""
        name = f"t{os.getpid()}_{next(self._counter)}"
        self.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        return self.dsn(name)


class PostgresFactory:
    """Starts PostgreSQL servers from one initdb'd template data directory (initdb runs once)."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self._template: Path | None = None
        self._servers: list[PostgresServer] = []

    def _base(self) -> Path:
        base = Path(tempfile.mkdtemp(prefix="newapi-pg-"))
        base.chmod(0o755)
        return base

    def new(self, start: bool = True) -> PostgresServer:
        if self._template is None:
            seed = PostgresServer(self.bindir, self._base())
            self._template = seed.data
        server = PostgresServer(self.bindir, self._base(), template_data=self._template)
        self._servers.append(server)
        if start:
            server.start()
        return server

    def close(self) -> None:
        for s in self._servers:
            s.destroy()
        if self._template is not None:
            shutil.rmtree(self._template.parent, ignore_errors=True)


# ------------------------------------------------------------------------------------------
# Redis
# ------------------------------------------------------------------------------------------


def find_redis_server() -> Path | None:
    for candidate in ("/usr/bin/redis-server", "/usr/bin/valkey-server"):
        if Path(candidate).exists():
            return Path(candidate)
    for name in ("redis-server", "valkey-server"):
        found = shutil.which(name)
        if found:
            return Path(found)
    return None


class RedisServer:
    """One redis-server process (no persistence) on a free port; can be stopped and restarted."""

    DATABASES = 256

    def __init__(self, binary: Path, base: Path) -> None:
        self.binary = binary
        self.base = base
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._db = itertools.count(1)

    def start(self) -> None:
        """Start (or restart, on the same port) and wait until it answers PING."""
        log = open(self.base / "redis.log", "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            [str(self.binary), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--databases", str(self.DATABASES), "--dir", str(self.base), "--protected-mode", "no"],
            stdout=log, stderr=subprocess.STDOUT,
        )
        log.close()
        _wait_for(self._pings, 30, f"redis-server on port {self.port}")

    def _pings(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            text = (self.base / "redis.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"redis-server exited with {self.proc.returncode}:\n{text}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def fresh_url(self) -> str:
        """URL of a flushed logical database (cycled through the server's databases)."""
        db = next(self._db) % self.DATABASES
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s:
            s.sendall(f"SELECT {db}\r\nFLUSHDB\r\n".encode())
            buf = b""
            while buf.count(b"\r\n") < 2:
                chunk = s.recv(64)
                if not chunk:
                    break
                buf += chunk
        return self.url(db)


class RedisFactory:
    def __init__(self, binary: Path) -> None:
        self.binary = binary
        self._servers: list[RedisServer] = []

    def new(self, start: bool = True) -> RedisServer:
        server = RedisServer(self.binary, Path(tempfile.mkdtemp(prefix="newapi-redis-")))
        self._servers.append(server)
        if start:
            server.start()
        return server

    def close(self) -> None:
        for s in self._servers:
            s.destroy()


# ------------------------------------------------------------------------------------------
# Fixtures
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_factory() -> Iterator[PostgresFactory]:
    """Starts PostgreSQL servers; each is stopped and deleted at the end of the session."""
    bindir = find_pg_bindir()
    if bindir is None:
        pytest.fail(PG_INSTALL_HINT)
    factory = PostgresFactory(bindir)
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture(scope="session")
def postgres_server(postgres_factory: PostgresFactory) -> PostgresServer:
    """The session's shared PostgreSQL server (do not stop it; use ``postgres_factory`` for that)."""
    return postgres_factory.new()


@pytest.fixture
def pg_dsn(postgres_server: PostgresServer) -> str:
    """DSN of a fresh, empty database on the session server."""
    return postgres_server.create_database()


@pytest.fixture(scope="session")
def redis_factory() -> Iterator[RedisFactory]:
    """Starts redis-server processes; each is stopped and deleted at the end of the session."""
    binary = find_redis_server()
    if binary is None:
        pytest.fail(REDIS_INSTALL_HINT)
    factory = RedisFactory(binary)
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture(scope="session")
def redis_server(redis_factory: RedisFactory) -> RedisServer:
    """The session's shared redis-server (do not stop it; use ``redis_factory`` for that)."""
    return redis_factory.new()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """URL of a flushed logical database on the session server."""
    return redis_server.fresh_url()
