"""BYOK isolation proof: after BYOK requests through a real gateway PROCESS (success, stream, upstream errors
that echo the key, a client abort mid-stream, concurrent customers) on BOTH stores — embedded SQLite, and
PostgreSQL + Redis — the key bytes appear nowhere:

* the SQLite files (database, WAL, shared memory: raw bytes) / ``pg_dump`` of the whole database;
* Redis: every key (``SCAN``) with its ``DUMP`` and its values;
* the gateway's output at debug level, which also holds its traces (``--otel-exporter console``);
* ``/metrics``, the audit rows (admin API, with ``audit.logPromptContent`` ON), every body and header
  returned to the client;

and a BYOK request never falls back to another channel (a second BYOK channel, the operator's commercial
channel for the same model) nor travels with another customer's key.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from newapi_gateway.demo_upstream import DemoUpstreamProcess
from tests.gateway.gateway_fixtures import channel
from tests.gateway.metering.metered import PRICING, StateBackend, postgres_backend, sqlite_backend
from tests.services import PostgresServer, RedisServer, find_pg_bindir

from .stack import OPERATOR_KEY, Stack, routes_doc, running_stack, signup

MODEL = "m-byok"


def byok_key(label: str) -> str:
    return f"sk-byok-{label}-" + secrets.token_urlsafe(24)


def forms(key: str) -> dict[str, bytes]:
    """Every recognisable form of a key: itself, its random tail, its SHA-256 (hex and raw)."""
    digest = hashlib.sha256(key.encode()).digest()
    return {"key": key.encode(), "tail": key[-12:].encode(), "sha256-hex": digest.hex().encode(), "sha256": digest}


@dataclass
class Scene:
    stack: Stack
    backend: StateBackend
    provider: DemoUpstreamProcess  # the customers' provider: accepts KEY_A and KEY_B only
    other: DemoUpstreamProcess  # second BYOK channel and the operator's channel for the same model
    keys: dict[str, str]  # label -> BYOK key (all of them must stay invisible)
    customers: dict[str, str] = field(default_factory=dict)  # label -> gateway key
    seen: list[str] = field(default_factory=list)  # everything the client received (bodies and headers)
    request_ids: list[str] = field(default_factory=list)

    def send(self, who: str, byok: str, text: str = "hello", stream: bool = False,
             provider: str | None = "openai") -> httpx.Response:
        headers = {"X-Provider-Key": byok}
        if provider:
            headers["X-Provider"] = provider
        r = self.stack.chat(self.customers[who], MODEL, text=text, stream=stream, **headers)
        self.record(r)
        return r

    def record(self, r: httpx.Response) -> None:
        self.seen.append(r.text)
        self.seen.append(json.dumps(dict(r.headers)))
        if "x-request-id" in r.headers:
            self.request_ids.append(r.headers["x-request-id"])


def table(provider: DemoUpstreamProcess, other: DemoUpstreamProcess) -> dict[str, Any]:
    channels = [
        channel("byok-main", [MODEL], type="byok-passthrough", priority=10, allowedProviders=["openai"],
                providerEndpoints={"openai": provider.openai_base_url}),
        channel("byok-second", [MODEL], type="byok-passthrough", allowedProviders=["openai"],
                providerEndpoints={"openai": other.openai_base_url}),
        channel("operator", [MODEL], type="openai-compatible", endpoint=other.openai_base_url, credential="op",
                pricing=PRICING, attestation={"kind": "commercial-contract", "provider": "Demo", "contractRef": "c"}),
    ]
    return routes_doc(provider.url, {"audit": {"logPromptContent": True}}, channels)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def scene(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
          postgres_server: PostgresServer, redis_server: RedisServer) -> Iterator[Scene]:
    keys = {"a": byok_key("a"), "b": byok_key("b"), "wrong": byok_key("wrong")}
    tmp = tmp_path_factory.mktemp(f"byok-{request.param}")
    backend = (sqlite_backend(tmp / "state") if request.param == "sqlite"
               else postgres_backend(postgres_server.create_database(), redis_server.fresh_url()))
    provider = DemoUpstreamProcess.spawn(name="provider", api_keys=[keys["a"], keys["b"]])
    other = DemoUpstreamProcess.spawn(name="other", api_keys=[OPERATOR_KEY])
    try:
        with running_stack(tmp, provider.url, backend, "--otel-exporter", "console", routes=table(provider, other),
                           log_level="debug") as stack:
            s = Scene(stack, backend, provider, other, keys)
            s.customers = {who: signup(stack.admin, f"byok-{who}-{request.param}") for who in ("a", "b")}
            yield s
    finally:
        provider.stop()
        other.stop()


def test_byok_requests_succeed_with_the_senders_key_only(scene: Scene) -> None:
    ok = scene.send("a", scene.keys["a"], text="first question")
    assert ok.status_code == 200, ok.text
    streamed = scene.send("a", scene.keys["a"], text="streamed question", stream=True)
    assert streamed.status_code == 200
    assert "data: [DONE]" in streamed.text
    auth = [r["headers"].get("authorization") for r in scene.provider.requests()]
    assert auth == [f"Bearer {scene.keys['a']}"] * 2
    assert scene.other.requests() == []


def test_concurrent_customers_never_share_keys(scene: Scene) -> None:
    scene.provider.clear_requests()
    jobs = [("a" if i % 2 == 0 else "b", f"probe-{i}") for i in range(16)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda j: scene.send(j[0], scene.keys[j[0]], text=j[1]), jobs))
    assert all(r.status_code == 200 for r in answers)
    arrived = {}
    for r in scene.provider.requests():
        text = r["body"]["messages"][-1]["content"]
        arrived[text] = r["headers"]["authorization"]
    assert arrived == {text: f"Bearer {scene.keys[who]}" for who, text in jobs}
    assert scene.other.requests() == []


def test_upstream_errors_are_scrubbed_and_never_fail_over(scene: Scene) -> None:
    scene.provider.clear_requests()
    rejected = scene.send("a", scene.keys["wrong"])  # the provider answers 401 and echoes the key, masked
    assert rejected.status_code == 401
    assert "[redacted]" in rejected.text
    scene.provider.fail_next(1, 500, message=f"upstream crashed while using key {scene.keys['a']} for you")
    failed = scene.send("a", scene.keys["a"])
    assert failed.status_code >= 500
    assert "[redacted]" in failed.text
    scene.provider.fail_next(1, 503)
    unavailable = scene.send("b", scene.keys["b"], stream=True)
    assert unavailable.status_code == 503
    assert len(scene.provider.requests()) == 3
    assert scene.other.requests() == [], "no other BYOK channel, no operator channel, ever"
    missing_provider = scene.send("b", scene.keys["b"], provider="anthropic")  # not allowed on any channel
    assert missing_provider.status_code in (400, 404)
    assert scene.other.requests() == []


def test_client_abort_mid_stream(scene: Scene) -> None:
    scene.provider.clear_requests()
    body = {"model": MODEL, "stream": True, "max_tokens": 200, "messages": [
        {"role": "user", "content": "tell a long story [[demo:tokens=200; chunk_delay_ms=30]]"}]}
    headers = {"Authorization": f"Bearer {scene.customers['b']}", "CF-IPCountry": "DE",
               "X-Provider-Key": scene.keys["b"], "X-Provider": "openai"}
    with httpx.Client(base_url=scene.stack.url, timeout=30) as client, \
            client.stream("POST", "/v1/chat/completions", json=body, headers=headers) as r:
        assert r.status_code == 200
        scene.request_ids.append(r.headers["x-request-id"])
        for _chunk in r.iter_bytes():
            break  # hang up after the first bytes
    row = scene.stack.audit_row(scene.request_ids[-1])
    assert row["decisions"]["outcome"] == "client_abort"
    assert scene.other.requests() == []


def pg_dump(dsn: str, out: Path) -> bytes:
    bindir = find_pg_bindir()
    assert bindir is not None, "PostgreSQL binaries not found"
    assert (bindir / "pg_dump").exists(), f"pg_dump not found in {bindir}"
    proc = subprocess.run([str(bindir / "pg_dump"), "--no-owner", "--data-only", "--inserts", "-d", dsn],
                          capture_output=True, check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    schema = subprocess.run([str(bindir / "pg_dump"), "--no-owner", "-d", dsn], capture_output=True, check=True,
                            timeout=120).stdout
    out.write_bytes(proc.stdout + schema)
    return proc.stdout + schema


def redis_everything(url: str) -> tuple[int, bytes]:
    client = redis.Redis.from_url(url)
    try:
        parts: list[bytes] = []
        count = 0
        for key in client.scan_iter(count=1000):
            count += 1
            parts.append(key)
            parts.append(client.dump(key) or b"")
            kind = client.type(key).decode()
            value: Any = {"string": client.get, "hash": client.hgetall, "list": lambda k: client.lrange(k, 0, -1),
                          "set": client.smembers, "zset": lambda k: client.zrange(k, 0, -1, withscores=True),
                          "stream": client.xrange}.get(kind, lambda k: b"")(key)
            parts.append(repr(value).encode())
        return count, b"\n".join(parts)
    finally:
        client.close()


def test_zz_the_keys_are_nowhere(scene: Scene, tmp_path: Path) -> None:
    stack = scene.stack
    assert len(scene.request_ids) >= 20
    for rid in scene.request_ids:  # every BYOK request has its audit row (written in batches)
        stack.audit_row(rid)
    rows = stack.audit(minutes=60)
    byok_rows = [r for r in rows if r["requestId"] in scene.request_ids]
    assert byok_rows
    assert all(r["decisions"].get("byok") is True for r in byok_rows)
    assert all(r["prompt"] is None and r["completion"] is None for r in byok_rows), "logPromptContent is on"
    metrics = httpx.get(stack.url + "/metrics", timeout=10).text
    assert "gateway_requests_total" in metrics
    export = stack.admin.http.get("/audit/export", params={"since": "2000-01-01T00:00:00Z",
                                                          "until": "2100-01-01T00:00:00Z"}).text
    backend = scene.backend
    live: dict[str, bytes] = {}
    if backend.name == "sqlite":  # while running: the WAL holds the latest pages
        assert backend.sqlite_path is not None
        live = {f"SQLite file {p.name} (running)": p.read_bytes()
                for p in sorted(backend.sqlite_path.parent.iterdir()) if p.is_file()}
        assert any("-wal" in name for name in live), sorted(live)
    stack.gateway.stop()  # flush everything the process holds (SQLite checkpoint, queued rows, spans)
    logs = stack.gateway.logs()
    assert '"level": "debug"' in logs, "the gateway ran at debug level"
    assert "gateway.request" in logs, "the console exporter printed the traces"
    assert "gateway.upstream" in logs

    haystacks: dict[str, bytes] = {
        "gateway output (logs + traces)": logs.encode(),
        "/metrics": metrics.encode(),
        "audit rows (admin API)": json.dumps(rows).encode() + export.encode(),
        "answers to the client": "\n".join(scene.seen).encode(),
    }
    haystacks.update(live)
    if backend.name == "sqlite":
        assert backend.sqlite_path is not None
        folder = backend.sqlite_path.parent
        files = sorted(p for p in folder.iterdir() if p.is_file())
        assert any(p.name == "newapi.db" for p in files)
        for p in files:
            haystacks[f"SQLite file {p.name}"] = p.read_bytes()
    else:
        assert backend.dsn is not None
        assert backend.redis_url is not None
        haystacks["pg_dump"] = pg_dump(backend.dsn, tmp_path / "dump.sql")
        assert b"audit_events" in haystacks["pg_dump"]
        count, dump = redis_everything(backend.redis_url)
        assert count > 0, "the gateway keeps limiter counters in Redis: the scan must see them"
        haystacks[f"Redis ({count} keys)"] = dump
    # the search can see: what the gateway does store is found in the same haystacks
    gateway_key = forms(scene.customers["a"])
    stored = haystacks.get("pg_dump") or b"".join(v for k, v in haystacks.items() if k.startswith("SQLite"))
    assert (gateway_key["sha256-hex"] if backend.name == "postgres" else gateway_key["sha256"]) in stored, \
        "the customer key's hash (stored by design) must be visible to this search"
    assert scene.request_ids[0].encode() in haystacks["gateway output (logs + traces)"]
    assert b'channel="byok-main"' in haystacks["/metrics"]
    for label, key in scene.keys.items():
        for form, needle in forms(key).items():
            for where, data in haystacks.items():
                assert needle not in data, f"BYOK key {label} ({form}) found in {where}"
