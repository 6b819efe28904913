"""The gateway's endpoints through the official SDKs and raw HTTP: a real gateway process
(``python -m newapi_operator gateway``) in front of a real demo upstream process."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from newapi_gateway.demo_upstream import DemoUpstreamProcess

from .gateway_fixtures import SEED_TIERS, GatewayProcess, channel, run_gateway, write_json, write_table

UPSTREAM_KEY = "sk-upstream-operator-0001"
KEYS = [
    {"key": "sk-ent-1", "id": "k-ent", "customer": "c-ent", "tier": "enterprise"},
    {"key": "sk-free-1", "id": "k-free", "customer": "c-free", "tier": "free"},
    {"key": "sk-pro-1", "id": "k-pro", "customer": "c-pro", "tier": "pro"},
    {"key": "sk-limited-1", "id": "k-lim", "customer": "c-lim", "tier": "enterprise", "allowedModels": ["gpt-4o-mini"]},
]


@dataclass
class Stack:
    gateway: GatewayProcess
    upstream: DemoUpstreamProcess


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp: Path = tmp_path_factory.mktemp("endpoints")
    upstream = DemoUpstreamProcess.spawn(name="ep", api_keys=[UPSTREAM_KEY])
    try:
        write_table(
            tmp / "routes.json",
            [
                channel("oa", ["gpt-4o-mini", "gpt-4", "text-embedding-3-small", "gpt-3.5-turbo-instruct"],
                        type="openai-compatible", endpoint=upstream.openai_base_url, credential="demo"),
                channel("an", ["claude-sonnet-4", "claude-3-haiku"], type="anthropic",
                        endpoint=upstream.anthropic_base_url, credential="demo",
                        modelMapping={"claude-3-haiku": "claude-3-haiku-20240307"}),
                channel("local", ["qwen3-32b"], endpoint=upstream.openai_base_url, credential="demo"),
            ],
            {"tiers": SEED_TIERS, "gateway": {"maxRequestBytes": 16384}},
        )
        write_json(tmp / "creds.json", {"demo": UPSTREAM_KEY})
        write_json(tmp / "keys.json", KEYS)
        with run_gateway(tmp, "--routes", str(tmp / "routes.json"), "--upstream-credentials", str(tmp / "creds.json"),
                         "--keys", str(tmp / "keys.json")) as gw:
            yield Stack(gw, upstream)
    finally:
        upstream.stop()


@pytest.fixture
def up(stack: Stack) -> DemoUpstreamProcess:
    stack.upstream.reset()
    return stack.upstream


def oa(stack: Stack, key: str = "sk-ent-1") -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.gateway.base_url, api_key=key, max_retries=0, timeout=20)


def aoa(stack: Stack, key: str = "sk-ent-1") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=stack.gateway.base_url, api_key=key, max_retries=0, timeout=20)


def an(stack: Stack, key: str = "sk-ent-1") -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=stack.gateway.url, api_key=key, max_retries=0, timeout=20)


def aan(stack: Stack, key: str = "sk-ent-1") -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=stack.gateway.url, api_key=key, max_retries=0, timeout=20)


HELLO = [{"role": "user", "content": "hello gateway"}]


# -- OpenAI SDK --------------------------------------------------------------------------------


def test_openai_sync_chat(stack: Stack, up: DemoUpstreamProcess) -> None:
    r = oa(stack).chat.completions.create(model="gpt-4o-mini", messages=HELLO)  # type: ignore[arg-type]
    assert r.choices[0].message.content == "echo: hello gateway"
    assert r.usage is not None
    assert r.usage.completion_tokens > 0
    seen = up.last_request()
    assert seen["headers"]["authorization"] == f"Bearer {UPSTREAM_KEY}"  # the operator's key, not the customer's
    assert "sk-ent-1" not in json.dumps(seen)


def test_openai_sync_stream_with_and_without_usage(stack: Stack, up: DemoUpstreamProcess) -> None:
    client = oa(stack)
    chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=HELLO, stream=True))  # type: ignore[arg-type]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: hello gateway"
    assert all(c.usage is None for c in chunks)  # the client did not ask: the injected usage chunk is stripped
    assert up.last_request()["body"]["stream_options"] == {"include_usage": True}
    chunks = list(client.chat.completions.create(
        model="gpt-4o-mini", messages=HELLO, stream=True, stream_options={"include_usage": True}))  # type: ignore[arg-type]
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens > 0


async def test_openai_async_chat_and_stream(stack: Stack, up: DemoUpstreamProcess) -> None:
    client = aoa(stack)
    r = await client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)  # type: ignore[arg-type]
    assert r.choices[0].message.content == "echo: hello gateway"
    stream = await client.chat.completions.create(model="gpt-4o-mini", messages=HELLO, stream=True)  # type: ignore[arg-type]
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "echo: hello gateway"
    await client.close()


def test_openai_completions_and_embeddings(stack: Stack, up: DemoUpstreamProcess) -> None:
    client = oa(stack)
    c = client.completions.create(model="gpt-3.5-turbo-instruct", prompt="say hi", max_tokens=8)
    assert c.choices[0].text
    e = client.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    assert len(e.data) == 2
    assert len(e.data[0].embedding) > 0


def test_openai_client_to_anthropic_channel(stack: Stack, up: DemoUpstreamProcess) -> None:
    client = oa(stack)
    r = client.chat.completions.create(model="claude-3-haiku", messages=HELLO, max_tokens=50)  # type: ignore[arg-type]
    assert r.choices[0].message.content == "echo: hello gateway"
    seen = up.last_request()
    assert seen["path"] == "/v1/messages"
    assert seen["body"]["model"] == "claude-3-haiku-20240307"  # modelMapping
    assert seen["headers"]["x-api-key"] == UPSTREAM_KEY
    chunks = list(client.chat.completions.create(model="claude-sonnet-4", messages=HELLO, stream=True))  # type: ignore[arg-type]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: hello gateway"


def test_seed_downgrade_for_the_free_tier(stack: Stack, up: DemoUpstreamProcess) -> None:
    r = oa(stack, "sk-free-1").chat.completions.create(model="gpt-4", messages=HELLO)  # type: ignore[arg-type]
    assert r.choices[0].message.content == "echo: hello gateway"
    assert up.last_request()["body"]["model"] == "qwen3-32b"
    assert 'gateway_model_routes_total{from="gpt-4",to="qwen3-32b"}' in stack.gateway.metrics()


# -- Anthropic SDK -----------------------------------------------------------------------------


def test_anthropic_sync_messages_and_stream(stack: Stack, up: DemoUpstreamProcess) -> None:
    client = an(stack)
    m = client.messages.create(model="claude-sonnet-4", max_tokens=64, messages=HELLO)  # type: ignore[arg-type]
    assert m.content[0].type == "text"
    assert m.content[0].text == "echo: hello gateway"
    assert m.usage.output_tokens > 0
    with client.messages.stream(model="claude-sonnet-4", max_tokens=64, messages=HELLO) as s:  # type: ignore[arg-type]
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text == "echo: hello gateway"
    assert final.stop_reason == "end_turn"


async def test_anthropic_async_to_openai_channel(stack: Stack, up: DemoUpstreamProcess) -> None:
    client = aan(stack)
    m = await client.messages.create(model="gpt-4o-mini", max_tokens=64, messages=HELLO)  # type: ignore[arg-type]
    assert m.content[0].type == "text"
    assert m.content[0].text == "echo: hello gateway"
    assert up.last_request()["path"] == "/v1/chat/completions"
    async with client.messages.stream(model="gpt-4o-mini", max_tokens=64, messages=HELLO) as s:  # type: ignore[arg-type]
        text = "".join([t async for t in s.text_stream])
    assert text == "echo: hello gateway"
    await client.close()


def test_anthropic_errors_are_anthropic_shaped(stack: Stack, up: DemoUpstreamProcess) -> None:
    with pytest.raises(anthropic.AuthenticationError) as info:
        an(stack, "sk-wrong").messages.create(model="claude-sonnet-4", max_tokens=8, messages=HELLO)  # type: ignore[arg-type]
    assert info.value.status_code == 401
    assert info.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    with pytest.raises(anthropic.NotFoundError) as nf:
        an(stack).messages.create(model="nope", max_tokens=8, messages=HELLO)  # type: ignore[arg-type]
    assert nf.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    r = httpx.post(stack.gateway.url + "/v1/messages", headers={"x-api-key": "sk-ent-1"}, content=b"{")
    assert r.status_code == 400
    assert r.json()["type"] == "error"
    assert r.json()["error"]["type"] == "invalid_request_error"


def test_upstream_error_is_translated(stack: Stack, up: DemoUpstreamProcess) -> None:
    up.fail_next(1, status=400, message="bad temperature")
    with pytest.raises(openai.BadRequestError) as info:
        oa(stack).chat.completions.create(model="gpt-4o-mini", messages=HELLO)  # type: ignore[arg-type]
    assert "bad temperature" in str(info.value)


# -- OpenAI-shaped client errors ----------------------------------------------------------------


def test_missing_and_wrong_key(stack: Stack, up: DemoUpstreamProcess) -> None:
    r = httpx.post(stack.gateway.base_url + "/chat/completions", json={"model": "gpt-4o-mini", "messages": HELLO})
    assert r.status_code == 401
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert "API key" in r.json()["error"]["message"]
    with pytest.raises(openai.AuthenticationError) as info:
        oa(stack, "sk-nope").chat.completions.create(model="gpt-4o-mini", messages=HELLO)  # type: ignore[arg-type]
    assert info.value.code == "invalid_api_key"
    assert up.requests() == []


def test_unknown_and_forbidden_models_are_404(stack: Stack, up: DemoUpstreamProcess) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        oa(stack).chat.completions.create(model="no-such-model", messages=HELLO)  # type: ignore[arg-type]
    assert info.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        oa(stack, "sk-limited-1").chat.completions.create(model="gpt-4", messages=HELLO)  # type: ignore[arg-type]
    with pytest.raises(openai.NotFoundError):  # free tier: no commercial channel for an un-downgraded model
        oa(stack, "sk-free-1").chat.completions.create(model="claude-sonnet-4", messages=HELLO)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("body", "status", "code", "param"),
    [
        (b"{not json", 400, "invalid_json", None),
        (b"[1, 2]", 400, "invalid_json", None),
        (b"", 400, None, None),
        (b'{"messages": []}', 400, None, "model"),
        (b'{"model": 5, "messages": []}', 400, None, "model"),
        (b'{"model": "gpt-4o-mini"}', 400, None, "messages"),
        (b'{"model": "gpt-4o-mini", "messages": "hi"}', 400, None, "messages"),
        (json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x" * 20000}]}).encode(),
         413, "request_too_large", None),
    ],
)
def test_bad_requests_are_clear_4xx(stack: Stack, up: DemoUpstreamProcess, body: bytes, status: int,
                                     code: str | None, param: str | None) -> None:
    r = httpx.post(stack.gateway.base_url + "/chat/completions", content=body,
                   headers={"Authorization": "Bearer sk-ent-1", "Content-Type": "application/json"})
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["code"] == code
    assert err["param"] == param
    assert err["message"]
    assert up.requests() == []


def test_chunked_body_over_the_limit_is_413(stack: Stack, up: DemoUpstreamProcess) -> None:
    def gen() -> Iterator[bytes]:
        yield b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "'
        for _ in range(40):
            yield b"x" * 1000
        yield b'"}]}'

    r = httpx.post(stack.gateway.base_url + "/chat/completions", content=gen(),
                   headers={"Authorization": "Bearer sk-ent-1"})
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "request_too_large"


def test_unknown_url_is_openai_shaped_404(stack: Stack) -> None:
    r = httpx.get(stack.gateway.base_url + "/nothing-here")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "unknown_url"


# -- models, health, metrics ------------------------------------------------------------------


def test_models_lists_only_what_the_key_may_use(stack: Stack) -> None:
    ids = lambda key: sorted(m.id for m in oa(stack, key).models.list())  # noqa: E731
    assert ids("sk-limited-1") == ["gpt-4o-mini"]
    assert ids("sk-free-1") == ["claude-3-opus", "claude-3-sonnet", "gpt-4", "qwen3-32b"]
    everything = ids("sk-ent-1")
    assert {"gpt-4o-mini", "claude-sonnet-4", "qwen3-32b", "text-embedding-3-small"} <= set(everything)
    pro = ids("sk-pro-1")
    assert "claude-3-opus" in pro  # downgraded to claude-3-haiku for pro
    page = an(stack, "sk-limited-1").models.list()
    assert [m.id for m in page.data] == ["gpt-4o-mini"]
    with pytest.raises(openai.AuthenticationError):
        oa(stack, "sk-nope").models.list()


def test_health_ready_and_metrics(stack: Stack, up: DemoUpstreamProcess) -> None:
    assert httpx.get(stack.gateway.url + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(stack.gateway.url + "/readyz").json()
    assert ready["status"] == "ready"
    assert len(ready["routingTableVersion"]) == 16
    oa(stack).chat.completions.create(model="gpt-4o-mini", messages=HELLO)  # type: ignore[arg-type]
    with pytest.raises(openai.NotFoundError):
        oa(stack).chat.completions.create(model="made-up-model-xyz", messages=HELLO)  # type: ignore[arg-type]
    m = stack.gateway.metrics()
    assert 'gateway_requests_total{tier="enterprise",model="gpt-4o-mini",channel="oa",code="200"}' in m
    assert 'gateway_requests_total{tier="enterprise",model="",channel="",code="404"}' in m
    assert "made-up-model-xyz" not in m  # client-chosen names never become label values
    assert 'gateway_request_duration_seconds_bucket{endpoint="chat",le="+Inf"}' in m
    assert 'gateway_upstream_duration_seconds_count{channel="oa",outcome="ok"}' in m
    assert 'gateway_routing_table_reloads_total{source="file",result="ok"} 1' in m
    assert "# TYPE gateway_circuit_state gauge" in m
