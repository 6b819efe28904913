"""Failover and circuit breaking through a real gateway process and two real demo upstreams."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest

from newapi_gateway.demo_upstream import DemoUpstreamProcess

from .gateway_fixtures import GatewayProcess, channel, free_port, run_gateway, sync_poll_until, write_json, write_table

HELLO = [{"role": "user", "content": "hello failover"}]
COOLDOWN_MS = 1500


@dataclass
class Pair:
    gateway: GatewayProcess
    a: DemoUpstreamProcess
    b: DemoUpstreamProcess

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.gateway.base_url, api_key="sk-k", max_retries=0, timeout=20)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    tmp: Path = tmp_path_factory.mktemp("failover")
    a = DemoUpstreamProcess.spawn(name="a")
    b = DemoUpstreamProcess.spawn(name="b")
    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    try:
        write_table(
            tmp / "routes.json",
            [
                channel("a", ["m", "m-slow"], endpoint=a.openai_base_url, priority=10,
                        timeouts={"connectMs": 1000, "readMs": 400}),
                channel("dead", ["m-dead"], endpoint=dead, priority=10),
                channel("b", ["m", "m-slow", "m-dead"], endpoint=b.openai_base_url, priority=0),
            ],
            {"gateway": {"breaker": {"failureThreshold": 3, "cooldownMs": COOLDOWN_MS}}},
        )
        write_json(tmp / "keys.json", [{"key": "sk-k", "id": "k"}])
        with run_gateway(tmp, "--routes", str(tmp / "routes.json"), "--keys", str(tmp / "keys.json")) as gw:
            yield Pair(gw, a, b)
    finally:
        a.stop()
        b.stop()


@pytest.fixture
def p(pair: Pair) -> Pair:
    """Every test starts with both breakers closed and no failures counted."""
    pair.a.reset()
    pair.b.reset()
    m = pair.gateway.metrics()
    a_closed = 'gateway_circuit_state{channel="a"} 1' not in m and 'gateway_circuit_state{channel="a"} 2' not in m
    b_closed = 'gateway_circuit_state{channel="b"} 1' not in m and 'gateway_circuit_state{channel="b"} 2' not in m
    if not (a_closed and b_closed):
        time.sleep(COOLDOWN_MS / 1000 + 0.1)
    if not b_closed:
        pair.a.fail_next(1, status=503)  # push one request through to b: its probe succeeds
        pair.client().chat.completions.create(model="m", messages=HELLO)  # type: ignore[arg-type]
    pair.client().chat.completions.create(model="m", messages=HELLO)  # type: ignore[arg-type]  # a succeeds
    sync_poll_until(lambda: 'gateway_circuit_state{channel="b"} 1' not in pair.gateway.metrics())
    pair.a.reset()
    pair.b.reset()
    return pair


def served_by(r: openai.types.chat.ChatCompletion) -> str:
    return (r.system_fingerprint or "").removeprefix("fp_")


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_failover_on_5xx_and_429(p: Pair, status: int) -> None:
    p.a.fail_next(1, status=status)
    r = p.client().chat.completions.create(model="m", messages=HELLO)  # type: ignore[arg-type]
    assert served_by(r) == "b"
    assert len(p.a.requests()) == 1
    assert len(p.b.requests()) == 1
    assert f'gateway_failovers_total{{channel="a",reason="{status}"}}' in p.gateway.metrics()


def test_failover_on_connect_error(p: Pair) -> None:
    r = p.client().chat.completions.create(model="m-dead", messages=HELLO)  # type: ignore[arg-type]
    assert served_by(r) == "b"
    assert 'gateway_failovers_total{channel="dead",reason="connect"}' in p.gateway.metrics()


def test_failover_on_read_timeout(p: Pair) -> None:
    p.a.set_behavior(delay_ms=3000, times=1)
    started = time.monotonic()
    r = p.client().chat.completions.create(model="m-slow", messages=HELLO)  # type: ignore[arg-type]
    assert served_by(r) == "b"
    assert time.monotonic() - started < 2.5  # the channel's 400 ms read timeout, not the upstream's 3 s
    assert 'gateway_failovers_total{channel="a",reason="timeout"}' in p.gateway.metrics()


def test_stream_fails_over_before_the_first_byte(p: Pair) -> None:
    p.a.fail_next(1, status=503, stream=True)
    chunks = list(p.client().chat.completions.create(model="m", messages=HELLO, stream=True))  # type: ignore[arg-type]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: hello failover"
    assert chunks[0].system_fingerprint == "fp_b"


def test_no_failover_after_the_first_byte(p: Pair) -> None:
    p.a.set_behavior(disconnect_after=3, tokens=20, times=1)
    with httpx.stream("POST", p.gateway.base_url + "/chat/completions", timeout=20,
                      headers={"Authorization": "Bearer sk-k"},
                      json={"model": "m", "messages": HELLO, "stream": True}) as r:
        assert r.status_code == 200
        body = b"".join(r.iter_bytes())
    assert b"fp_a" in body  # what the client got came from a
    assert not body.rstrip().endswith(b"data: [DONE]")  # the cut is visible, not papered over
    assert p.b.requests() == []  # and nothing was retried on b mid-stream
    assert 'gateway_stream_aborts_total{side="upstream"}' in p.gateway.metrics()


def test_all_candidates_failing_gives_the_upstream_error(p: Pair) -> None:
    p.a.fail_next(1, status=503)
    p.b.fail_next(1, status=503)
    with pytest.raises(openai.APIStatusError) as info:
        p.client().chat.completions.create(model="m", messages=HELLO)  # type: ignore[arg-type]
    assert info.value.status_code == 503


def test_breaker_opens_after_n_failures_and_probes_after_cooldown(p: Pair) -> None:
    client = p.client()
    p.a.fail_next(3, status=503)
    for i in range(2):
        assert served_by(client.chat.completions.create(model="m", messages=HELLO)) == "b"  # type: ignore[arg-type]
        assert 'gateway_circuit_state{channel="a"} 0' in p.gateway.metrics(), f"opened after {i + 1} failure(s)"
    assert served_by(client.chat.completions.create(model="m", messages=HELLO)) == "b"  # type: ignore[arg-type]
    assert 'gateway_circuit_state{channel="a"} 1' in p.gateway.metrics()
    assert len(p.a.requests()) == 3
    for _ in range(5):  # open: a is never tried
        assert served_by(client.chat.completions.create(model="m", messages=HELLO)) == "b"  # type: ignore[arg-type]
    assert len(p.a.requests()) == 3
    assert "circuit breaker closed -> open" in p.gateway.logs()
    time.sleep(COOLDOWN_MS / 1000 + 0.2)
    # after the cooldown one probe goes to a; a is healthy again, so the breaker closes
    assert served_by(client.chat.completions.create(model="m", messages=HELLO)) == "a"  # type: ignore[arg-type]
    sync_poll_until(lambda: 'gateway_circuit_state{channel="a"} 0' in p.gateway.metrics())
    m = p.gateway.metrics()
    assert 'gateway_circuit_transitions_total{channel="a",state="half-open"} ' in m
    assert 'gateway_circuit_transitions_total{channel="a",state="closed"} ' in m


def test_every_circuit_open_is_503_with_retry_after(p: Pair) -> None:
    client = p.client()
    p.a.fail_next(3, status=500)
    p.b.fail_next(3, status=500)
    for _ in range(3):
        with pytest.raises(openai.APIStatusError):
            client.chat.completions.create(model="m", messages=HELLO)  # type: ignore[arg-type]
    r = httpx.post(p.gateway.base_url + "/chat/completions", headers={"Authorization": "Bearer sk-k"},
                   json={"model": "m", "messages": HELLO})
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "channel_unavailable"
    assert int(r.headers["Retry-After"]) >= 1
    assert len(p.a.requests()) == 3
    assert len(p.b.requests()) == 3
