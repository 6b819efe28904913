"""Hot reload of the routing table, credentials and keys (standalone files) on a running gateway."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from newapi_gateway.demo_upstream import DemoUpstreamProcess

from .gateway_fixtures import GatewayProcess, channel, run_gateway, sync_poll_until, write_json, write_table

HELLO = [{"role": "user", "content": "hello reload"}]


@dataclass
class Env:
    gateway: GatewayProcess
    a: DemoUpstreamProcess
    b: DemoUpstreamProcess
    tmp: Path

    def version(self) -> str:
        return str(httpx.get(self.gateway.url + "/readyz").json()["routingTableVersion"])

    def route_to(self, upstream: DemoUpstreamProcess, **policy: Any) -> str:
        t = write_table(self.tmp / "routes.json",
                        [channel("c", ["m"], type="openai-compatible", endpoint=upstream.openai_base_url,
                                 credential="cred")], policy or None)
        assert t.version
        sync_poll_until(lambda: self.version() == t.version)
        return t.version

    def client(self, key: str = "sk-1") -> openai.OpenAI:
        return openai.OpenAI(base_url=self.gateway.base_url, api_key=key, max_retries=0, timeout=20)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp: Path = tmp_path_factory.mktemp("reload")
    a = DemoUpstreamProcess.spawn(name="a")
    b = DemoUpstreamProcess.spawn(name="b")
    try:
        write_table(tmp / "routes.json", [channel("c", ["m"], type="openai-compatible", endpoint=a.openai_base_url,
                                                  credential="cred")])
        write_json(tmp / "creds.json", {"cred": "sk-cred-1"})
        write_json(tmp / "keys.json", [{"key": "sk-1"}])
        with run_gateway(tmp, "--routes", str(tmp / "routes.json"), "--upstream-credentials", str(tmp / "creds.json"),
                         "--keys", str(tmp / "keys.json")) as gw:
            yield Env(gw, a, b, tmp)
    finally:
        a.stop()
        b.stop()


@pytest.fixture
def e(env: Env) -> Env:
    env.route_to(env.a)
    env.a.reset()
    env.b.reset()
    return env


def test_reload_during_a_running_stream(e: Env) -> None:
    e.a.set_behavior(tokens=30, chunk_delay_ms=40, times=1)
    got: list[bytes] = []
    first = threading.Event()
    done = threading.Event()

    def consume() -> None:
        with httpx.stream("POST", e.gateway.base_url + "/chat/completions", timeout=30,
                          headers={"Authorization": "Bearer sk-1"},
                          json={"model": "m", "messages": HELLO, "stream": True}) as r:
            for chunk in r.iter_raw():
                got.append(chunk)
                first.set()
        done.set()

    t = threading.Thread(target=consume)
    t.start()
    assert first.wait(10)
    e.route_to(e.b)  # swap the channel's endpoint while the stream runs
    r = e.client().chat.completions.create(model="m", messages=HELLO)  # type: ignore[arg-type]
    assert r.system_fingerprint == "fp_b"  # new requests use the new table
    assert not done.is_set(), "the stream finished before the reload; make it slower"
    t.join(30)
    body = b"".join(got)
    assert body.rstrip().endswith(b"data: [DONE]")  # the old stream finished, on its own snapshot
    assert body.count(b"fp_a") >= 30
    assert b"fp_b" not in body
    assert len(e.b.requests()) == 1


def test_invalid_tables_are_rejected_and_the_old_one_kept(e: Env) -> None:
    before = e.version()
    (e.tmp / "routes.json").write_text("{this is not json")
    rejected = 'gateway_routing_table_reloads_total{source="file",result="rejected"}'
    sync_poll_until(lambda: rejected in e.gateway.metrics())
    assert e.version() == before
    assert e.client().chat.completions.create(model="m", messages=HELLO).system_fingerprint == "fp_a"  # type: ignore[arg-type]
    # a well-formed document breaking a rule: rejected with the field named in the log
    doc = {"instance": "x", "channels": [channel("c", ["m"]), channel("c", ["m"])]}
    write_json(e.tmp / "routes.json", doc)
    sync_poll_until(lambda: "duplicate channel name 'c'" in e.gateway.logs())
    assert e.version() == before
    assert "rejected invalid configuration; keeping the current one" in e.gateway.logs()
    assert e.client().chat.completions.create(model="m", messages=HELLO).system_fingerprint == "fp_a"  # type: ignore[arg-type]


def test_credentials_reload(e: Env) -> None:
    e.client().chat.completions.create(model="m", messages=HELLO)  # type: ignore[arg-type]
    assert e.a.last_request()["headers"]["authorization"] == "Bearer sk-cred-1"
    write_json(e.tmp / "creds.json", {"cred": "sk-cred-2"})
    try:
        def uses_new() -> bool:
            e.client().chat.completions.create(model="m", messages=HELLO)  # type: ignore[arg-type]
            return bool(e.a.last_request()["headers"]["authorization"] == "Bearer sk-cred-2")
        sync_poll_until(uses_new)
        write_json(e.tmp / "creds.json", {"other": "x"})  # the channel's credential disappears
        sync_poll_until(lambda: httpx.get(e.gateway.url + "/readyz").json()["unusableChannels"] != {})
        with pytest.raises(openai.NotFoundError):
            e.client().chat.completions.create(model="m", messages=HELLO)  # type: ignore[arg-type]
    finally:
        write_json(e.tmp / "creds.json", {"cred": "sk-cred-1"})
        sync_poll_until(lambda: httpx.get(e.gateway.url + "/readyz").json()["unusableChannels"] == {})


def test_key_file_reload(e: Env) -> None:
    with pytest.raises(openai.AuthenticationError):
        e.client("sk-new").chat.completions.create(model="m", messages=HELLO)  # type: ignore[arg-type]
    write_json(e.tmp / "keys.json", [{"key": "sk-1"}, {"key": "sk-new", "id": "k-new"}])
    try:
        sync_poll_until(lambda: httpx.get(e.gateway.base_url + "/models",
                                          headers={"Authorization": "Bearer sk-new"}).status_code == 200)
        assert e.client("sk-new").chat.completions.create(model="m", messages=HELLO).choices  # type: ignore[arg-type]
    finally:
        write_json(e.tmp / "keys.json", [{"key": "sk-1"}])
