"""Shared builders for the gateway tests: routing tables (with the seed's tier table), key files,
and a real gateway process (``python -m newapi_operator gateway``) on a free port."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from newapi_gateway.routing_table import RoutingTable, dump_table, parse_table

#: The seed's tier table (product seed 002: Free 10 / Pro 1,000 / Enterprise unlimited; model routing).
SEED_TIERS: dict[str, Any] = {
    "free": {
        "dailyRequestQuota": 10,
        "free": True,
        "modelDowngrades": {"claude-3-opus": "qwen3-32b", "claude-3-sonnet": "qwen3-32b", "gpt-4": "qwen3-32b"},
    },
    "pro": {
        "dailyRequestQuota": 1000,
        "modelDowngrades": {
            "claude-3-opus": "claude-3-haiku",
            "claude-3-sonnet": "claude-3-haiku",
            "claude-3-haiku": "claude-3-haiku",
            "gpt-4": "qwen3-32b",
        },
    },
    "enterprise": {"unlimitedCredit": True},
}


def channel(name: str, models: list[str], **kw: Any) -> dict[str, Any]:
    """A channel document (vllm by default: no credential needed)."""
    kind = kw.pop("type", "vllm")
    default_attestation = {
        "vllm": {"kind": "in-cluster", "owner": "ops"},
        "byok-passthrough": {"kind": "byok"},
    }.get(kind, {"kind": "commercial-contract", "provider": "Demo", "contractRef": "c-1"})
    ch: dict[str, Any] = {"name": name, "type": kind, "models": models, "attestation": default_attestation}
    ch.update(kw)
    if ch["type"] != "byok-passthrough":
        ch.setdefault("endpoint", "http://127.0.0.1:9/v1")
    return ch


def table_doc(
    channels: list[dict[str, Any]], policy: dict[str, Any] | None = None, instance: str = "test"
) -> dict[str, Any]:
    return {"schemaVersion": 1, "instance": instance, "channels": channels, "policy": policy or {}}


def table(channels: list[dict[str, Any]], policy: dict[str, Any] | None = None) -> RoutingTable:
    return parse_table(table_doc(channels, policy))


def write_table(path: Path, channels: list[dict[str, Any]], policy: dict[str, Any] | None = None) -> RoutingTable:
    t = table(channels, policy)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(dump_table(t))
    os.replace(tmp, path)
    return t


def write_json(path: Path, doc: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class GatewayProcess:
    url: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def metrics(self) -> str:
        return httpx.get(self.url + "/metrics", timeout=10).text


def wait_http(url: str, timeout: float = 30.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError as err:
            last = err
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer 200 within {timeout}s ({last})")


@contextmanager
def run_gateway(tmp: Path, *args: str, ready: bool = True, log_level: str = "info") -> Iterator[GatewayProcess]:
    """Start ``newapi gateway`` as a real process on a free port; stop it (SIGTERM) at exit."""
    port = free_port()
    log_path = tmp / f"gateway-{port}.log"
    cmd = [sys.executable, "-m", "newapi_operator", "gateway", "--host", "127.0.0.1", "--port", str(port),
           "--log-level", log_level, "--reload-interval", "0.1", *args]
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    gw = GatewayProcess(f"http://127.0.0.1:{port}", proc, log_path)
    try:
        wait_http(gw.url + ("/readyz" if ready else "/healthz"), proc=proc)
        yield gw
    except BaseException:
        if log_path.exists():
            sys.stderr.write(f"--- gateway log ({log_path}) ---\n{gw.logs()[-5000:]}\n")
        raise
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def poll_until(predicate: Any, timeout: float = 20.0, interval: float = 0.05) -> None:  # noqa: ASYNC109
    """Await until ``predicate()`` (sync or async) is truthy; fail with a clear message after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


def sync_poll_until(predicate: Any, timeout: float = 20.0, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)
