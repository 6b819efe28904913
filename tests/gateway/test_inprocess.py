"""The gateway application in-process (real HTTP on 127.0.0.1, real demo upstream process): tracing
spans and the request pipeline's hooks (the seams for metering and compliance)."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from dataclasses import dataclass

import openai
import pytest
from aiohttp.test_utils import TestServer
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from newapi_gateway.app import build_app
from newapi_gateway.credentials import Credentials
from newapi_gateway.demo_upstream import DemoUpstreamProcess
from newapi_gateway.errors import GatewayError
from newapi_gateway.hooks import Hooks, RequestContext
from newapi_gateway.keys import KeyInfo, StaticKeyResolver, key_digest
from newapi_gateway.proxy import Proxy
from newapi_gateway.snapshot import CompiledChannel, Snapshot
from newapi_gateway.state import GatewayState
from newapi_gateway.tracing import tracer_with
from newapi_gateway.translate.base import Usage
from newapi_gateway.upstream import UpstreamClient

from .gateway_fixtures import channel, table

HELLO = [{"role": "user", "content": "hello inprocess"}]


@dataclass
class Running:
    url: str
    state: GatewayState
    spans: InMemorySpanExporter


async def start(upstream: DemoUpstreamProcess, hooks: Hooks | None = None,
                tracing: bool = False) -> AsyncIterator[Running]:
    state = GatewayState()
    state.set_credentials(Credentials({"c": "sk-x"}), "test")
    state.set_table(table([
        channel("main", ["m"], type="openai-compatible", endpoint=upstream.openai_base_url, credential="c",
                priority=1),
        channel("local", ["m"], endpoint=upstream.base_url("local")),
    ]), "test")
    keys = StaticKeyResolver({key_digest("sk-1"): KeyInfo("k1", "cust-1", "")})
    exporter = InMemorySpanExporter()
    tracer = tracer_with(exporter, batch=False)[0] if tracing else None
    upstream_client = UpstreamClient()
    await upstream_client.start()
    proxy = Proxy(state, keys, upstream_client, hooks=hooks, rng=random.Random(1), tracer=tracer)
    server = TestServer(build_app(proxy), host="127.0.0.1")
    await server.start_server()
    try:
        yield Running(str(server.make_url("/v1")), state, exporter)
    finally:
        await server.close()
        await upstream_client.close()


@pytest.fixture
async def traced(demo_upstream: DemoUpstreamProcess) -> AsyncIterator[Running]:
    async for r in start(demo_upstream, tracing=True):
        yield r


async def test_spans_per_request_and_upstream_attempt(traced: Running, demo_upstream: DemoUpstreamProcess) -> None:
    demo_upstream.fail_next(1, status=503)
    client = openai.AsyncOpenAI(base_url=traced.url, api_key="sk-1", max_retries=0)
    await client.chat.completions.create(model="m", messages=HELLO)  # type: ignore[arg-type]
    await client.close()
    spans = traced.spans.get_finished_spans()
    request = [s for s in spans if s.name == "gateway.request"]
    attempts = [s for s in spans if s.name == "gateway.upstream"]
    assert len(request) == 1
    assert len(attempts) == 2
    assert all(a.parent is not None and a.parent.span_id == request[0].context.span_id for a in attempts)
    assert [a.attributes["gateway.channel"] for a in attempts] == ["main", "local"]  # type: ignore[index]
    assert [a.attributes["gateway.outcome"] for a in attempts] == ["503", "ok"]  # type: ignore[index]
    assert request[0].attributes["http.status_code"] == 200  # type: ignore[index]
    assert request[0].attributes["gateway.channel"] == "local"  # type: ignore[index]
    for s in spans:  # routing facts only: no credentials, no bodies
        assert "sk-" not in str(dict(s.attributes or {}))


class RecordingMeter:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, object]] = []

    async def authorize(self, ctx: RequestContext, channel: CompiledChannel) -> object:
        self.events.append(("authorize", channel.name, ctx.key.customer_id))
        return f"hold-{len(self.events)}"

    async def settle(self, ctx: RequestContext, hold: object, usage: Usage | None, outcome: str) -> None:
        self.events.append(("settle", str(hold), (usage.total_tokens if usage else None, outcome)))


async def test_hooks_see_each_step(demo_upstream: DemoUpstreamProcess) -> None:
    meter = RecordingMeter()
    admitted: list[str] = []
    finished: list[tuple[int, str]] = []

    async def admission(ctx: RequestContext) -> None:
        admitted.append(ctx.model)
        assert ctx.headers is not None
        assert ctx.headers.get("Authorization") is None
        if ctx.headers.get("X-Test-Block"):
            raise GatewayError(400, "blocked by policy", code="content_policy_violation")

    def geo(ctx: RequestContext, ch: CompiledChannel) -> GatewayError | None:
        if ctx.headers is not None and ctx.headers.get("X-Country-Code") == "KP" and ch.commercial:
            return GatewayError(451, "not available in your region", code="unavailable_for_legal_reasons")
        return None

    async def finish(ctx: RequestContext) -> None:
        finished.append((ctx.status, ctx.channel.name if ctx.channel else ""))

    hooks = Hooks(admission=[admission], channel_filters=[geo], meter=meter, finish=[finish])
    async for r in start(demo_upstream, hooks=hooks):
        client = openai.AsyncOpenAI(base_url=r.url, api_key="sk-1", max_retries=0)
        await client.chat.completions.create(model="m", messages=HELLO)  # type: ignore[arg-type]
        assert meter.events[0] == ("authorize", "main", "cust-1")
        assert meter.events[1][0] == "settle"
        assert meter.events[1][2][1] == "ok"
        # the filter skips the commercial channel: the in-cluster one serves
        await client.chat.completions.create(model="m", messages=HELLO, extra_headers={"X-Country-Code": "KP"})  # type: ignore[arg-type]
        assert finished[-1] == (200, "local")
        with pytest.raises(openai.BadRequestError) as info:
            await client.chat.completions.create(model="m", messages=HELLO, extra_headers={"X-Test-Block": "1"})  # type: ignore[arg-type]
        assert info.value.code == "content_policy_violation"
        assert finished[-1] == (400, "")
        assert admitted == ["m", "m", "m"]
        await client.close()


async def test_conditional_hooks_run_only_on_the_snapshots_they_apply_to(demo_upstream: DemoUpstreamProcess) -> None:
    calls: list[str] = []
    asked: list[bool] = []

    async def admission(ctx: RequestContext) -> None:
        calls.append("admission")

    async def finish(ctx: RequestContext) -> None:
        calls.append("finish")

    def audits(snapshot: Snapshot) -> bool:
        asked.append(snapshot.table.policy.audit.enabled)
        return snapshot.table.policy.audit.enabled

    hooks = Hooks(admission=[admission], finish=[finish])
    hooks.when(admission, audits)
    hooks.when(finish, audits)
    async for r in start(demo_upstream, hooks=hooks):
        client = openai.AsyncOpenAI(base_url=r.url, api_key="sk-1", max_retries=0)
        r.state.set_table(table([channel("local", ["m"], endpoint=demo_upstream.base_url("local"))],
                                {"audit": {"enabled": False}}), "quiet")
        for _ in range(3):
            await client.chat.completions.create(model="m", messages=HELLO)  # type: ignore[arg-type]
        assert calls == []
        assert asked == [False, False]  # once per hook and snapshot, not per request
        r.state.set_table(table([channel("local", ["m"], endpoint=demo_upstream.base_url("local"))],
                                {"audit": {"enabled": True}}), "audited")
        await client.chat.completions.create(model="m", messages=HELLO)  # type: ignore[arg-type]
        assert calls == ["admission", "finish"]
        assert asked == [False, False, True, True]
        await client.close()
