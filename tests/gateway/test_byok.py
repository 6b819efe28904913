"""BYOK pass-through: the customer's provider key is used for that one request, on a byok-passthrough
channel only, never fails over, and never shows up in logs (debug), traces, metrics or error bodies."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest

from newapi_gateway.demo_upstream import DemoUpstreamProcess

from .gateway_fixtures import GatewayProcess, channel, run_gateway, sync_poll_until, write_json, write_table

BYOK_KEY = "sk-byok-CUSTOMER-SECRET-9f8e7d6c5b4a"
OPERATOR_KEY = "sk-operator-regular-0001"
HELLO = [{"role": "user", "content": "hello byok"}]
FRAGMENTS = [BYOK_KEY, BYOK_KEY[:8], BYOK_KEY[-6:], "CUSTOMER-SECRET", BYOK_KEY[-4:]]


@dataclass
class Byok:
    gateway: GatewayProcess
    provider: DemoUpstreamProcess  # the customer's provider (accepts only the BYOK key)
    other: DemoUpstreamProcess  # the operator's upstream (and a second byok channel)
    routes: Path

    def client(self, provider: str | None = "openai", key: str = BYOK_KEY) -> openai.OpenAI:
        headers = {"X-Provider-Key": key}
        if provider:
            headers["X-Provider"] = provider
        return openai.OpenAI(base_url=self.gateway.base_url, api_key="sk-cust", max_retries=0, timeout=20,
                             default_headers=headers)


def channels(provider: DemoUpstreamProcess, other: DemoUpstreamProcess) -> list[dict[str, object]]:
    return [
        channel("byok", ["gpt-4o", "claude-byok"], type="byok-passthrough", priority=10,
                allowedProviders=["openai", "anthropic"],
                providerEndpoints={"openai": provider.openai_base_url, "anthropic": provider.anthropic_base_url}),
        channel("byok-second", ["gpt-4o"], type="byok-passthrough", allowedProviders=["openai"],
                providerEndpoints={"openai": other.openai_base_url}),
        channel("regular", ["gpt-4o"], type="openai-compatible", endpoint=other.openai_base_url, credential="op"),
    ]


@pytest.fixture(scope="module")
def byok(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Byok]:
    tmp: Path = tmp_path_factory.mktemp("byok")
    provider = DemoUpstreamProcess.spawn(name="prov", api_keys=[BYOK_KEY])
    other = DemoUpstreamProcess.spawn(name="other", api_keys=[OPERATOR_KEY])
    try:
        write_table(tmp / "routes.json", channels(provider, other))
        write_json(tmp / "creds.json", {"op": OPERATOR_KEY})
        write_json(tmp / "keys.json", [{"key": "sk-cust", "id": "k-cust", "customer": "cust"}])
        with run_gateway(tmp, "--routes", str(tmp / "routes.json"), "--upstream-credentials", str(tmp / "creds.json"),
                         "--keys", str(tmp / "keys.json"), "--otel-exporter", "console", log_level="debug") as gw:
            yield Byok(gw, provider, other, tmp / "routes.json")
    finally:
        provider.stop()
        other.stop()


@pytest.fixture
def b(byok: Byok) -> Byok:
    byok.provider.reset()
    byok.other.reset()
    return byok


def test_byok_key_is_used_for_its_request(b: Byok) -> None:
    r = b.client().chat.completions.create(model="gpt-4o", messages=HELLO)  # type: ignore[arg-type]
    assert r.choices[0].message.content == "echo: hello byok"
    seen = b.provider.last_request()
    assert seen["headers"]["authorization"] == f"Bearer {BYOK_KEY}"
    assert "x-provider-key" not in seen["headers"]  # the BYOK headers themselves are not forwarded
    assert b.other.requests() == []


def test_byok_to_anthropic_provider(b: Byok) -> None:
    r = b.client("anthropic").chat.completions.create(model="claude-byok", messages=HELLO, max_tokens=20)  # type: ignore[arg-type]
    assert r.choices[0].message.content == "echo: hello byok"
    seen = b.provider.last_request()
    assert seen["path"] == "/v1/messages"
    assert seen["headers"]["x-api-key"] == BYOK_KEY


def test_byok_key_is_never_reused(b: Byok) -> None:
    b.client().chat.completions.create(model="gpt-4o", messages=HELLO)  # type: ignore[arg-type]
    plain = openai.OpenAI(base_url=b.gateway.base_url, api_key="sk-cust", max_retries=0)
    r = plain.chat.completions.create(model="gpt-4o", messages=HELLO)  # type: ignore[arg-type]
    assert r.system_fingerprint == "fp_other"  # the regular channel, with the operator's key
    assert b.other.last_request()["headers"]["authorization"] == f"Bearer {OPERATOR_KEY}"
    assert BYOK_KEY not in json.dumps(b.other.requests())


def test_provider_header_needed_when_ambiguous_and_validated(b: Byok) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        b.client(provider=None).chat.completions.create(model="gpt-4o", messages=HELLO)  # type: ignore[arg-type]
    assert info.value.param == "X-Provider"
    with pytest.raises(openai.BadRequestError):
        b.client(provider="mistral").chat.completions.create(model="gpt-4o", messages=HELLO)  # type: ignore[arg-type]
    with pytest.raises(openai.NotFoundError):  # google is not allowed by any channel serving gpt-4o
        b.client(provider="google").chat.completions.create(model="gpt-4o", messages=HELLO)  # type: ignore[arg-type]
    assert b.provider.requests() == []
    assert b.other.requests() == []


def test_byok_upstream_rejection_is_scrubbed_and_not_failed_over(b: Byok) -> None:
    wrong = "sk-byok-WRONG-KEY-0123456789"
    with pytest.raises(openai.AuthenticationError) as info:
        b.client(key=wrong).chat.completions.create(model="gpt-4o", messages=HELLO)  # type: ignore[arg-type]
    text = json.dumps(info.value.body)
    assert wrong not in text
    assert wrong[-4:] not in text
    assert wrong[:8] not in text
    assert "[redacted]" in text
    assert len(b.provider.requests()) == 1
    assert b.other.requests() == []  # neither the second byok channel nor the regular one


def test_byok_never_fails_over(b: Byok) -> None:
    b.provider.fail_next(1, status=503)
    with pytest.raises(openai.APIStatusError) as info:
        b.client().chat.completions.create(model="gpt-4o", messages=HELLO)  # type: ignore[arg-type]
    assert info.value.status_code == 503
    assert b.other.requests() == []


def test_byok_stream_and_client_abort(b: Byok) -> None:
    chunks = list(b.client().chat.completions.create(model="gpt-4o", messages=HELLO, stream=True))  # type: ignore[arg-type]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: hello byok"
    b.provider.set_behavior(tokens=50, chunk_delay_ms=20, times=1)
    with httpx.stream("POST", b.gateway.base_url + "/chat/completions", timeout=20,
                      headers={"Authorization": "Bearer sk-cust", "X-Provider-Key": BYOK_KEY, "X-Provider": "openai"},
                      json={"model": "gpt-4o", "messages": HELLO, "stream": True}) as r:
        for _ in r.iter_raw():
            break  # the client goes away after the first chunk
    sync_poll_until(lambda: 'gateway_stream_aborts_total{side="client"}' in b.gateway.metrics())


def test_byok_disabled_by_policy(b: Byok) -> None:
    write_table(b.routes, channels(b.provider, b.other), {"byok": {"scope": "never"}})
    try:
        sync_poll_until(lambda: "byok_disabled" in httpx.post(
            b.gateway.base_url + "/chat/completions", json={"model": "gpt-4o", "messages": HELLO},
            headers={"Authorization": "Bearer sk-cust", "X-Provider-Key": BYOK_KEY, "X-Provider": "openai"}).text)
        b.provider.clear_requests()  # requests sent while waiting for the reload
        with pytest.raises(openai.PermissionDeniedError) as info:
            b.client().chat.completions.create(model="gpt-4o", messages=HELLO)  # type: ignore[arg-type]
        assert info.value.code == "byok_disabled"
        assert b.provider.requests() == []
    finally:
        write_table(b.routes, channels(b.provider, b.other))
        sync_poll_until(lambda: "byok_disabled" not in httpx.post(
            b.gateway.base_url + "/chat/completions", json={"model": "gpt-4o", "messages": HELLO},
            headers={"Authorization": "Bearer sk-cust", "X-Provider-Key": BYOK_KEY, "X-Provider": "openai"}).text)


def test_zz_byok_key_absent_from_logs_traces_and_metrics(b: Byok) -> None:
    """Runs last in the module: everything above used the key (success, errors, stream, abort)."""
    b.client().chat.completions.create(model="gpt-4o", messages=HELLO)  # type: ignore[arg-type]
    metrics = b.gateway.metrics()
    sync_poll_until(lambda: '"name": "gateway.upstream"' in b.gateway.logs(), timeout=15)  # spans are exported
    logs = b.gateway.logs()
    assert '"level": "debug"' in logs  # debug logging really was on
    for fragment in FRAGMENTS:
        assert fragment not in logs, f"BYOK key fragment {fragment!r} in the gateway's logs/traces"
        assert fragment not in metrics, f"BYOK key fragment {fragment!r} in /metrics"
