"""A metered gateway as a real process: store flags, the admin listener, the admin API as a client.

Used by tests/gateway/metering and tests/gateway/admin. :class:`MeteredGateway` starts
``python -m newapi_operator gateway`` on two free ports (customer and admin) against one state
back end (:class:`StateBackend`: an SQLite file, or PostgreSQL + Redis), can be stopped, SIGKILLed
and restarted on the same ports and database.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.gateway.gateway_fixtures import channel, free_port, table_doc, write_json

ADMIN_TOKEN = "test-admin-token-0123456789abcdef"
#: The state back ends every metering test runs against.
BACKENDS = ["sqlite", "postgres"]
ADMIN_BASE = "/api/v1/admin"
#: 1 micro-credit per input token, 2 per output token: costs are easy to check by hand.
PRICING = {"inputPerMillion": 1_000_000, "outputPerMillion": 2_000_000}
PAID_MODEL = "m-paid"
BYOK_MODEL = "m-byok"
#: The seed's tiers (Free 10 / Pro 1,000 / Enterprise unlimited), priced; plus "double" (200 %).
TIERS: dict[str, Any] = {
    "free": {"dailyRequestQuota": 10, "free": True},
    "pro": {"dailyRequestQuota": 1000},
    "enterprise": {"unlimitedCredit": True},
    "double": {"priceMultiplierPercent": 200},
}


@dataclass
class StateBackend:
    """Where a gateway keeps its state; several gateways on one backend share it."""

    name: str  # "sqlite" or "postgres"
    args: list[str]
    dsn: str | None = None
    redis_url: str | None = None
    sqlite_path: Path | None = None


#: ``fresh_backend(name)``: a new, empty back end of that kind (fixture in conftest.py).
FreshBackend = Callable[[str], StateBackend]


def sqlite_backend(tmp: Path) -> StateBackend:
    tmp.mkdir(parents=True, exist_ok=True)
    return StateBackend("sqlite", ["--state-dir", str(tmp)], sqlite_path=tmp / "newapi.db")


def postgres_backend(dsn: str, redis_url: str) -> StateBackend:
    return StateBackend("postgres", ["--database-url", dsn, "--redis-url", redis_url], dsn=dsn, redis_url=redis_url)


def backend(name: str, state_dir: Path, postgres: Any, redis: Any) -> StateBackend:
    """A fresh state back end by name: a new SQLite file under ``state_dir``, or a new PostgreSQL
    database plus a fresh Redis logical database on the session's throwaway servers."""
    if name == "sqlite":
        return sqlite_backend(state_dir)
    return postgres_backend(postgres.create_database(), redis.fresh_url())


def write_routes(path: Path, upstream_url: str, extra_channels: list[dict[str, Any]] | None = None) -> Path:
    """A priced channel to the demo upstream (every tier), and a BYOK channel to it (OpenAI provider)."""
    channels = [
        channel("paid", [PAID_MODEL], endpoint=upstream_url + "/v1", pricing=PRICING),
        channel("byok", [BYOK_MODEL], type="byok-passthrough", allowedProviders=["openai"],
                providerEndpoints={"openai": upstream_url + "/v1"}),
        *(extra_channels or []),
    ]
    # no geo source in these tables: allow unknown countries, or BYOK (treated as commercial) would get 451
    write_json(path, table_doc(channels, {"tiers": TIERS, "geo": {"unknownCountry": "allow"}}))
    return path


class Admin:
    """The admin API over HTTP (sync httpx, bearer token)."""

    def __init__(self, url: str, token: str = ADMIN_TOKEN) -> None:
        self.url = url
        self.http = httpx.Client(base_url=url + ADMIN_BASE, headers={"Authorization": f"Bearer {token}"},
                                 timeout=30)

    def call(self, method: str, path: str, body: Any = None, **params: Any) -> httpx.Response:
        return self.http.request(method, path, json=body, params=params or None)

    def ok(self, method: str, path: str, body: Any = None, **params: Any) -> dict[str, Any]:
        rsp = self.call(method, path, body, **params)
        assert rsp.status_code < 300, f"{method} {path}: {rsp.status_code} {rsp.text}"
        doc: dict[str, Any] = rsp.json()
        return doc

    def signup(self, external_id: str, tier: str = "pro", credit: int = 0, **attrs: Any) -> tuple[str, dict[str, Any]]:
        """A customer with one gateway-generated key and ``credit``; returns ``(key, key record)``."""
        body = {"externalId": external_id, "tier": tier, "idempotencyKey": f"signup-{external_id}", **attrs}
        if credit:
            body["creditGrant"] = credit
        doc = self.ok("POST", "/users", body)
        return doc["key"]["key"], doc["key"]

    def balance(self, external_id: str) -> dict[str, Any]:
        return self.ok("GET", f"/customers/{external_id}/balance")

    def ledger(self, external_id: str, limit: int = 1000) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = self.ok("GET", f"/customers/{external_id}/ledger", limit=limit)["data"]
        return entries

    def debits(self, external_id: str) -> list[dict[str, Any]]:
        return [e for e in self.ledger(external_id) if e["kind"] == "debit"]

    def close(self) -> None:
        self.http.close()


@dataclass
class MeteredGateway:
    """One gateway process (restartable on the same ports and state)."""

    tmp: Path
    routes: Path
    backend: StateBackend
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    admin_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    @property
    def log_path(self) -> Path:
        return self.tmp / f"gateway-{self.port}.log"

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def command(self) -> list[str]:
        token = self.tmp / "admin-token"
        if not token.exists():
            token.write_text(ADMIN_TOKEN + "\n")
        return [sys.executable, "-m", "newapi_operator", "gateway", "--routes", str(self.routes),
                "--host", "127.0.0.1", "--port", str(self.port), "--admin-port", str(self.admin_port),
                "--admin-token-file", str(token), "--reload-interval", "0.1", "--log-level", "info",
                *self.backend.args, *self.extra_args]

    def start(self, timeout: float = 60.0) -> None:
        env = {k: v for k, v in os.environ.items()
               if k not in ("NEWAPI_DATABASE_URL", "SQL_DSN", "NEWAPI_REDIS_URL", "VALKEY_URL", "NEWAPI_ADMIN_TOKEN")}
        env.update(self.env)
        self.starts += 1
        with open(self.log_path, "ab") as out:
            out.write(f"--- start {self.starts} ---\n".encode())
            out.flush()
            self.proc = subprocess.Popen(self.command(), stdout=out, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.proc.returncode}:\n{self.logs()[-4000:]}")
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"gateway not ready within {timeout}s:\n{self.logs()[-4000:]}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL: no shutdown, no drain."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.proc = None

    def readyz(self) -> dict[str, Any]:
        doc: dict[str, Any] = httpx.get(self.url + "/readyz", timeout=10).json()
        return doc


@contextmanager
def metered_gateway(tmp: Path, upstream_url: str, backend: StateBackend, *extra_args: str,
                    env: dict[str, str] | None = None) -> Iterator[MeteredGateway]:
    tmp.mkdir(parents=True, exist_ok=True)
    gw = MeteredGateway(tmp, write_routes(tmp / "routes.json", upstream_url), backend, list(extra_args), env or {})
    try:
        gw.start()
        yield gw
    except BaseException:
        sys.stderr.write(f"--- gateway log ({gw.log_path}) ---\n{gw.logs()[-6000:]}\n")
        raise
    finally:
        gw.stop()


def poll(predicate: Any, timeout: float = 20.0, interval: float = 0.05, what: str = "condition") -> Any:
    """Call ``predicate`` until it returns something truthy; that value is returned."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout}s (last: {value!r})")
        time.sleep(interval)
