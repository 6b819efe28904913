"""The systems under test: direct (no hop), nginx (the floor for a proxy hop), the gateway.

A scenario starts its system (pinned to the SUT CPU) in front of the shared demo upstream and
returns a :class:`Target`; when it cannot run here it raises :class:`Unavailable` with the reason,
which the report shows instead of failing the whole run. Adding a scenario (issue 8: full path,
LiteLLM, Portkey) = one more class with ``name``, ``description`` and ``start(ctx)``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from . import procs

BENCH_MODEL = "bench-model"
BENCH_KEY = "sk-bench-0123456789abcdef"
CHAT_PATH = "/v1/chat/completions"

#: How the gateway is started. Placeholders: {newapi} (console script), {port}, and the files
#: written by :func:`gateway_files` ({routes}, {keys}, {credentials}). Override with --gateway-cmd.
DEFAULT_GATEWAY_COMMAND = (
    "{newapi} gateway --routes {routes} --keys {keys} --upstream-credentials {credentials} "
    "--host 127.0.0.1 --port {port} --log-level warning"
)
#: Path polled until the gateway is ready (2xx).
GATEWAY_READY_PATH = "/readyz"


class Unavailable(Exception):
    """The scenario cannot run on this machine/checkout; the message says why."""


@dataclass
class Context:
    """What every scenario gets: the demo upstream's base URL, a work dir, the CPUs, tools."""

    upstream_url: str
    upstream_pid: int
    workdir: Path
    sut_cpus: str
    tools: dict[str, str]
    #: CPU of the load side (state servers of the full path run there too)
    load_cpu: int | None = None


@dataclass
class Target:
    """A running system under test: where to send requests, which process tree to measure."""

    url: str
    pid: int
    headers: dict[str, str] = field(default_factory=dict)
    note: str = ""
    close: Callable[[], None] = lambda: None
    #: cumulative counters (e.g. PostgreSQL transactions, Redis commands); per-request deltas are reported
    counters: Callable[[], dict[str, float]] | None = None
    #: called before each measurement (e.g. to keep new PostgreSQL backends in the background)
    before_run: Callable[[], None] | None = None


class Scenario(Protocol):
    name: str
    description: str

    def start(self, ctx: Context) -> Target: ...


def _pinned(cpus: str, cmd: list[str]) -> list[str]:
    return ["taskset", "-c", cpus, *cmd]


def _log_tail(path: Path, limit: int = 1500) -> str:
    try:
        text = path.read_text(errors="replace").strip()
    except OSError:
        return "(no log)"
    return text[-limit:] or "(empty log)"


class Direct:
    """wrk -> demo upstream, no hop (CPU 0 idle; RSS shown is the upstream's)."""

    name = "direct"
    description = "load generator -> demo upstream, no proxy"

    def start(self, ctx: Context) -> Target:
        return Target(
            url=ctx.upstream_url,
            pid=ctx.upstream_pid,
            headers={"Authorization": f"Bearer {BENCH_KEY}"},
            note="no hop; RSS/CPU are the demo upstream's",
        )


def nginx_conf(workdir: Path, listen_port: int, upstream_host: str, upstream_port: int, as_root: bool) -> str:
    """nginx.conf: one worker, upstream keepalive, proxy_buffering off, no access log."""
    temp = workdir / "nginx-temp"
    return f"""
{"user root;" if as_root else ""}
worker_processes 1;
daemon off;
pid {workdir / "nginx.pid"};
error_log {workdir / "nginx-error.log"} warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {temp}/client;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    keepalive_requests 1000000;
    upstream demo {{
        server {upstream_host}:{upstream_port};
        keepalive 256;
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{listen_port};
        location / {{
            proxy_pass http://demo;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }}
    }}
}}
"""


class Nginx:
    """Debian nginx-light, one worker pinned to the SUT CPU, as the floor of any proxy hop."""

    name = "nginx"
    description = "nginx-light reverse proxy (1 worker, upstream keepalive, proxy_buffering off)"

    def start(self, ctx: Context) -> Target:
        nginx = ctx.tools.get("nginx")
        if not nginx:
            raise Unavailable("nginx is not installed (apt-get install -y nginx-light)")
        workdir = ctx.workdir / "nginx"
        (workdir / "nginx-temp").mkdir(parents=True, exist_ok=True)
        port = procs.free_port()
        host, _, up_port = ctx.upstream_url.removeprefix("http://").rpartition(":")
        conf = workdir / "nginx.conf"
        conf.write_text(nginx_conf(workdir, port, host, int(up_port), os.geteuid() == 0))
        log = workdir / "nginx-error.log"
        cmd = _pinned(ctx.sut_cpus, [nginx, "-p", str(workdir), "-c", str(conf), "-e", str(log)])
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            procs.wait_http(url + "/__demo/health", 20, proc)
        except procs.BenchSetupError as exc:
            procs.stop(proc)
            raise Unavailable(f"nginx did not start: {exc}; log: {_log_tail(log)}") from None
        return Target(
            url=url, pid=proc.pid, headers={"Authorization": f"Bearer {BENCH_KEY}"}, close=lambda: procs.stop(proc)
        )


def gateway_files(workdir: Path, upstream_url: str) -> dict[str, str]:
    """Routing table, key file and upstream credentials for a pass-through gateway to the demo upstream."""
    routes = {
        "schemaVersion": 1,
        "instance": "bench",
        "channels": [
            {
                "name": "demo",
                "type": "vllm",
                "endpoint": upstream_url + "/v1",
                "models": [BENCH_MODEL],
                "attestation": {"kind": "in-cluster", "owner": "bench"},
            }
        ],
        "policy": {},
    }
    keys = {"keys": [{"key": BENCH_KEY, "id": "bench", "customer": "bench"}]}
    paths = {"routes": workdir / "routes.json", "keys": workdir / "keys.json", "credentials": workdir / "creds.json"}
    paths["routes"].write_text(json.dumps(routes, indent=2))
    paths["keys"].write_text(json.dumps(keys, indent=2))
    paths["credentials"].write_text("{}")
    return {name: str(path) for name, path in paths.items()}


def newapi_script() -> str | None:
    """The ``newapi`` console script of this interpreter's environment."""
    candidate = Path(sys.executable).parent / "newapi"
    return str(candidate) if candidate.exists() else None


class Gateway:
    """``newapi gateway`` pass-through, pinned to the SUT CPU; command from a template."""

    description = "newapi gateway, pass-through (static key file, one vllm channel)"

    def __init__(
        self,
        command: str = DEFAULT_GATEWAY_COMMAND,
        name: str = "gateway",
        files: Callable[[Path, str], dict[str, str]] = gateway_files,
        ready_path: str = GATEWAY_READY_PATH,
    ) -> None:
        self.command = command
        self.name = name
        self.files = files
        self.ready_path = ready_path

    def start(self, ctx: Context) -> Target:
        newapi = newapi_script()
        if newapi is None:
            raise Unavailable(f"no newapi console script next to {sys.executable} (pip install -e . in that venv)")
        probe = subprocess.run([newapi, "gateway", "--help"], capture_output=True, text=True, timeout=60)
        if probe.returncode != 0 or "not implemented" in (probe.stdout + probe.stderr):
            raise Unavailable(
                f"`newapi gateway` is not implemented yet ({(probe.stderr or probe.stdout).strip()[:200]})"
            )
        workdir = ctx.workdir / self.name
        workdir.mkdir(parents=True, exist_ok=True)
        port = procs.free_port()
        values = {"newapi": newapi, "port": str(port), **self.files(workdir, ctx.upstream_url)}
        try:
            cmd = shlex.split(self.command.format(**values))
        except KeyError as exc:
            raise Unavailable(
                f"gateway command template uses unknown placeholder {exc}; known: {sorted(values)}"
            ) from None
        log = workdir / "gateway.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                _pinned(ctx.sut_cpus, cmd), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        url = f"http://127.0.0.1:{port}"
        try:
            procs.wait_http(url + self.ready_path, 60, proc)
        except procs.BenchSetupError as exc:
            procs.stop(proc)
            raise Unavailable(
                f"gateway did not become ready ({shlex.join(cmd)}): {exc}; log: {_log_tail(log)}"
            ) from None
        return Target(
            url=url,
            pid=proc.pid,
            headers={"Authorization": f"Bearer {BENCH_KEY}"},
            note=f"log: {log}",
            close=lambda: procs.stop(proc),
        )


# --------------------------------------------------------------------------------------------
# Full path: the gateway with its state (PostgreSQL + Redis), key auth, limits, hold/settle, ledger
# --------------------------------------------------------------------------------------------

#: The full-path gateway: the store instead of a key file, and the admin listener (used once, to
#: register the bench key and its credit). Extra placeholders: {database_url}, {redis_url},
#: {admin_port}, {admin_token_file}.
DEFAULT_FULLPATH_COMMAND = (
    "{newapi} gateway --routes {routes} --upstream-credentials {credentials} --database-url {database_url} "
    "--redis-url {redis_url} --host 127.0.0.1 --port {port} --admin-port {admin_port} "
    "--admin-token-file {admin_token_file} --log-level warning"
)
FULLPATH_ADMIN_TOKEN = "bench-admin-token-0123456789abcdef"
FULLPATH_TIER = "bench"
#: Plenty of credit (micro-credits) and limits far above what the run can reach: every check runs,
#: none refuses.
FULLPATH_CREDIT = 10**15
FULLPATH_LIMITS = {"rpm": 1_000_000_000, "tpm": 1_000_000_000}
FULLPATH_DAILY_QUOTA = 1_000_000_000


def fullpath_files(workdir: Path, upstream_url: str, compliance: bool = True) -> dict[str, str]:
    """Routing table (priced channel, one tier with a daily quota) and credentials for the full path;
    ``compliance=False`` turns the compliance plane's per-request work off: the audit row
    (``policy.audit.enabled: false``) and the AUP check (``policy.aup.enforcement: off``, allowed
    because the bench channel is in-cluster)."""
    routes = {
        "schemaVersion": 1,
        "instance": "bench",
        "channels": [
            {
                "name": "demo",
                "type": "vllm",
                "endpoint": upstream_url + "/v1",
                "models": [BENCH_MODEL],
                "pricing": {"inputPerMillion": 500_000, "outputPerMillion": 1_500_000},
                "attestation": {"kind": "in-cluster", "owner": "bench"},
            }
        ],
        "policy": {"tiers": {FULLPATH_TIER: {"dailyRequestQuota": FULLPATH_DAILY_QUOTA}},
                   "audit": {"enabled": compliance},
                   **({} if compliance else {"aup": {"enforcement": "off"}})},
    }
    paths = {"routes": workdir / "routes.json", "credentials": workdir / "creds.json",
             "admin_token_file": workdir / "admin-token"}
    paths["routes"].write_text(json.dumps(routes, indent=2))
    paths["credentials"].write_text("{}")
    paths["admin_token_file"].write_text(FULLPATH_ADMIN_TOKEN + "\n")
    return {name: str(path) for name, path in paths.items()}


def find_pg_bindir() -> Path | None:
    """initdb/pg_ctl/postgres of the newest installed PostgreSQL (Debian layout first)."""
    versioned = sorted(Path("/usr/lib/postgresql").glob("*/bin"),
                       key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0, reverse=True)
    found = shutil.which("pg_ctl")
    for d in [*versioned, Path("/usr/local/bin"), *([Path(found).resolve().parent] if found else [])]:
        if all((d / b).exists() for b in ("initdb", "postgres")):
            return d
    return None


def find_redis() -> str | None:
    return shutil.which("redis-server") or shutil.which("valkey-server")


class StateServers:
    """Throwaway PostgreSQL and Redis for the full path, pinned to the load CPU; stopped by ``close``.

    As root, PostgreSQL runs as the ``postgres`` user (``runuser -u postgres``). Durability stays
    at PostgreSQL's defaults (fsync on): debits are committed synchronously, as in production.
    """

    def __init__(self, workdir: Path, cpus: str) -> None:
        self.workdir = workdir
        self.cpus = cpus
        self.pg_port = procs.free_port()
        self.redis_port = procs.free_port()
        self.pg: subprocess.Popen[bytes] | None = None
        self.redis: subprocess.Popen[bytes] | None = None

    def _as_postgres(self, cmd: list[str]) -> list[str]:
        if os.geteuid() == 0:
            if not shutil.which("runuser"):
                raise Unavailable("running as root needs runuser (util-linux) to start PostgreSQL as user postgres")
            return ["runuser", "-u", "postgres", "--", *cmd]
        return cmd

    def start(self) -> None:
        bindir = find_pg_bindir()
        if bindir is None:
            raise Unavailable("PostgreSQL server binaries not found (apt-get install -y postgresql)")
        redis = find_redis()
        if redis is None:
            raise Unavailable("redis-server not found (apt-get install -y redis-server)")
        data, sock = self.workdir / "pgdata", self.workdir / "pgsock"
        sock.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            # the postgres user must reach its directory through the (0700) temporary work dirs
            for parent in self.workdir.parents:
                if parent in (Path("/"), Path(tempfile.gettempdir())):
                    break
                parent.chmod(parent.stat().st_mode | 0o011)
            for path in (self.workdir, sock):
                shutil.chown(path, "postgres", "postgres")
        init = subprocess.run(
            self._as_postgres([str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                               "--locale=C", "--no-sync"]),
            capture_output=True, text=True, check=False,
        )
        if init.returncode != 0:
            raise Unavailable(f"initdb failed: {init.stderr.strip()[-500:]}")
        pg_log = self.workdir / "postgres.log"
        with pg_log.open("wb") as out:
            self.pg = subprocess.Popen(
                _pinned(self.cpus, self._as_postgres([
                    str(bindir / "postgres"), "-D", str(data), "-p", str(self.pg_port), "-k", str(sock),
                    "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=100", "-c", "shared_buffers=128MB",
                ])),
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        redis_log = self.workdir / "redis.log"
        with redis_log.open("wb") as out:
            self.redis = subprocess.Popen(
                _pinned(self.cpus, [redis, "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "",
                                    "--appendonly", "no", "--dir", str(self.workdir)]),
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        try:
            self._wait(lambda: self.sql("SELECT 1", "postgres") is not None, "PostgreSQL", pg_log)
            self._wait(lambda: self.redis_info("server") != {}, "Redis", redis_log)
        except Unavailable:
            self.close()
            raise
        self.sql("CREATE DATABASE bench", "postgres")

    def _wait(self, check: Callable[[], bool], what: str, log: Path) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if check():
                    return
            except Exception:  # not up yet: connection refused, "the database system is starting up"
                pass
            time.sleep(0.1)
        raise Unavailable(f"{what} did not start; log: {_log_tail(log)}")

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.pg_port}/bench"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    def sql(self, statement: str, dbname: str = "bench") -> list[tuple[object, ...]] | None:
        """Run one statement (asyncpg, from this interpreter's environment)."""
        import asyncio

        import asyncpg

        async def go() -> list[tuple[object, ...]]:
            conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{self.pg_port}/{dbname}", timeout=5)
            try:
                return [tuple(r) for r in await conn.fetch(statement)]
            finally:
                await conn.close()

        return asyncio.run(go())

    def redis_info(self, section: str) -> dict[str, str]:
        with socket.create_connection(("127.0.0.1", self.redis_port), timeout=5) as s:
            s.sendall(f"INFO {section}\r\n".encode())
            buf = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
                head, _, rest = buf.partition(b"\r\n")
                if head.startswith(b"$") and len(rest) >= int(head[1:]):
                    break
        out: dict[str, str] = {}
        for line in buf.decode(errors="replace").splitlines()[1:]:
            if ":" in line and not line.startswith("#"):
                name, _, value = line.partition(":")
                out[name] = value
        return out

    def counters(self) -> dict[str, float]:
        """Cumulative PostgreSQL and Redis counters of the bench database (for per-request deltas).

        PostgreSQL publishes a backend's statistics when it goes idle (at most once a second), so
        this waits until two readings half a second apart agree (at most ~12 s).
        """
        def read() -> dict[str, float]:
            rows = self.sql(
                "SELECT xact_commit, tup_inserted, tup_updated, tup_deleted FROM pg_stat_database "
                "WHERE datname = 'bench'"
            ) or [(0, 0, 0, 0)]
            wal = self.sql("SELECT wal_records, wal_bytes FROM pg_stat_wal") or [(0, 0)]
            commit, ins, upd, dele = (float(str(v)) for v in rows[0])
            out = {"pg_transactions": commit, "pg_rows_inserted": ins, "pg_rows_updated": upd,
                   "pg_rows_deleted": dele, "pg_rows_written": ins + upd + dele,
                   "pg_wal_records": float(str(wal[0][0])), "pg_wal_bytes": float(str(wal[0][1]))}
            stats = self.redis_info("commandstats")
            calls = {name.removeprefix("cmdstat_"): int(v.split("calls=")[1].split(",")[0])
                     for name, v in stats.items() if name.startswith("cmdstat_")}
            # Commands a Lua script runs (GET, SET, HSET, ... inside EVALSHA) are counted by Redis too;
            # a round trip is a command the gateway sent: everything but those and our own INFO.
            in_scripts = ("get", "set", "hmget", "hset", "pexpire", "time")
            sent = {c: n for c, n in calls.items() if c not in ("info", "select", *in_scripts)}
            out["redis_round_trips"] = float(sum(sent.values()))
            out["redis_evalsha"] = float(calls.get("evalsha", 0) + calls.get("eval", 0))
            out["redis_commands_in_scripts"] = float(sum(calls.get(c, 0) for c in in_scripts))
            # CPU of the state servers (on the load CPU), microseconds
            trees = [pid for p in (self.pg, self.redis) if p is not None for pid in procs.process_tree(p.pid)]
            out["state_servers_cpu_us"] = procs.cpu_seconds(trees) * 1e6
            return out

        last = read()
        deadline = time.monotonic() + 12
        while time.monotonic() < deadline:
            time.sleep(0.5)
            now = read()
            # our own reading transactions (3 per read) and CPU are the only expected changes
            if all(now[k] == last[k] for k in now if k not in ("pg_transactions", "state_servers_cpu_us")) and \
                    now["pg_transactions"] - last["pg_transactions"] <= 3:
                return now
            last = now
        return last

    def background_postgres(self) -> None:
        """PostgreSQL (postmaster and every backend, including ones opened since the last call) at
        nice 19 on the load CPU: its batch transactions (a 20 ms settle batch runs 1-3 ms) then wait
        for wrk, the mock upstream and Redis instead of holding the CPU while they are runnable
        (perf sched showed them delayed by 1.3-3 ms, and the gateway idle, during each such
        transaction). Redis, which answers on the request path, keeps the default priority."""
        if self.pg is not None:
            procs.make_background(procs.process_tree(self.pg.pid))

    def close(self) -> None:
        for proc in (self.pg, self.redis):
            if proc is not None:
                procs.stop(proc, timeout=30)
        self.pg = self.redis = None


def _admin_call(url: str, method: str, path: str, body: dict[str, object]) -> None:
    request = urllib.request.Request(
        url + "/api/v1/admin" + path, method=method, data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {FULLPATH_ADMIN_TOKEN}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        raise Unavailable(f"admin API {method} {path} answered {exc.code}: {exc.read()[:300]!r}") from None


class FullPath:
    """The gateway with its state: key from PostgreSQL (cached), RPM/TPM/quota in Redis, a hold before
    and a debit + ledger row + rollup after every request, plus (``compliance``, the default, as in
    production) the compliance plane: the AUP check of the request text and the audit row in the
    debit's transaction. PostgreSQL and Redis run on the load CPU. ``compliance=False`` is issue 5's
    full path exactly (scenario ``fullpath-metering``)."""

    def __init__(
        self, command: str = DEFAULT_FULLPATH_COMMAND, load_cpu: int = 1, *, compliance: bool = True
    ) -> None:
        self.command = command
        self.load_cpu = load_cpu
        self.compliance = compliance
        self.name = "fullpath" if compliance else "fullpath-metering"
        self.description = (
            "newapi gateway, full path (key auth + limits + hold/settle + ledger"
            + (" + AUP check + audit row" if compliance else "; compliance plane off") + "; PostgreSQL + Redis)"
        )

    def start(self, ctx: Context) -> Target:
        newapi = newapi_script()
        if newapi is None:
            raise Unavailable(f"no newapi console script next to {sys.executable} (pip install -e . in that venv)")
        workdir = ctx.workdir / self.name
        workdir.mkdir(parents=True, exist_ok=True)
        servers = StateServers(workdir / "state", str(ctx.load_cpu if ctx.load_cpu is not None else self.load_cpu))
        servers.start()
        port, admin_port = procs.free_port(), procs.free_port()
        values = {"newapi": newapi, "port": str(port), "admin_port": str(admin_port),
                  "database_url": servers.dsn, "redis_url": servers.redis_url,
                  **fullpath_files(workdir, ctx.upstream_url, self.compliance)}
        try:
            cmd = shlex.split(self.command.format(**values))
        except KeyError as exc:
            servers.close()
            raise Unavailable(f"full-path command template uses unknown placeholder {exc}; known: {sorted(values)}"
                              ) from None
        log = workdir / "gateway.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(_pinned(ctx.sut_cpus, cmd), stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL)

        def close() -> None:
            procs.stop(proc)
            servers.close()

        url = f"http://127.0.0.1:{port}"
        try:
            procs.wait_http(url + GATEWAY_READY_PATH, 60, proc)
            admin = f"http://127.0.0.1:{admin_port}"
            _admin_call(admin, "PUT", "/customers/bench", {"displayName": "benchmark"})
            _admin_call(admin, "POST", "/customers/bench/keys", {
                "keyHash": hashlib.sha256(BENCH_KEY.encode()).hexdigest(), "keyPrefix": BENCH_KEY[:11],
                "tier": FULLPATH_TIER, "rateLimit": FULLPATH_LIMITS,
            })
            _admin_call(admin, "POST", "/customers/bench/credits",
                        {"amount": FULLPATH_CREDIT, "idempotencyKey": "bench-credit"})
        except (procs.BenchSetupError, Unavailable) as exc:
            close()
            raise Unavailable(f"full-path gateway did not become ready ({shlex.join(cmd)}): {exc}; "
                              f"log: {_log_tail(log)}") from None
        return Target(
            url=url,
            pid=proc.pid,
            headers={"Authorization": f"Bearer {BENCH_KEY}"},
            note=f"log: {log}; PostgreSQL {servers.dsn}, Redis {servers.redis_url} on CPU {servers.cpus}",
            close=close,
            counters=servers.counters,
            before_run=servers.background_postgres,
        )
