"""Audit rows from request contexts: columns, policy decisions, content only when allowed and never for BYOK."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from newapi_gateway.compliance.audit_row import Billing, build_row, finish_row, is_byok, status_of
from newapi_gateway.compliance.aup_policy import PolicyLibrary
from newapi_gateway.compliance.errors import ComplianceError
from newapi_gateway.compliance.pipeline import ComplianceHooks
from newapi_gateway.hooks import RequestContext
from newapi_gateway.keys import KeyInfo
from newapi_gateway.routing import RoutePlan
from newapi_gateway.snapshot import Snapshot
from newapi_gateway.store.models import KeyRecord, KeySettings

from .builders import channel, chat, make_ctx, make_snapshot, make_table

TS = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
TRUSTED = {"trustedProxyCIDRs": ["127.0.0.1/32"]}


@pytest.fixture
def snap() -> Snapshot:
    return make_snapshot(make_table([
        channel("oa", "openai-compatible", ["m"], modelMapping={"m": "gpt-4o-2024"}),
        channel("local", "vllm", ["m", "small"]),
        channel("byok", "byok-passthrough", ["bm"], allowedProviders=["openai"]),
    ], {"geo": TRUSTED, "tiers": {"pro": {}}}))


def with_record(ctx: RequestContext) -> RequestContext:
    record = KeyRecord(id=7, customer_id=3, customer_external_id="cust-3", prefix="sk-abc", status="active",
                       rotation=0, settings=KeySettings(tier="pro"))
    ctx.key = KeyInfo("key_7", "cust-3", tier="pro", extra={"record": record})
    return ctx


def served(ctx: RequestContext, snap: Snapshot, name: str, requested: str = "m", model: str = "m") -> None:
    ctx.plan = RoutePlan(requested, model, [snap.channels[name]])
    ctx.channel = snap.channels[name]
    ctx.attempts = 1


def answer(text: str) -> bytes:
    return json.dumps({"choices": [{"message": {"role": "assistant", "content": text}}]}).encode()


def test_served_request_row_has_every_column(snap: Snapshot, library: PolicyLibrary) -> None:
    ctx = with_record(make_ctx(snap, chat("hello"), headers={"CF-IPCountry": "DE"}))
    checks = ComplianceHooks(library)
    assert checks.channel_filter(ctx, snap.channels["oa"]) is None
    served(ctx, snap, "oa")
    ctx.outcome, ctx.status = "ok", 200
    row = build_row(ctx, ts=TS, latency_ms=42, billing=Billing(10, 5, 20, estimated=True))
    assert (row.ts, row.request_id, row.status, row.customer_id, row.key_id) == (TS, "req_test", 200, 3, 7)
    assert (row.channel, row.model, row.upstream_model) == ("oa", "m", "gpt-4o-2024")
    assert (row.input_tokens, row.output_tokens, row.cost, row.latency_ms, row.country) == (10, 5, 20, 42, "DE")
    assert row.decisions == {"geo": "allow", "geoSource": "header", "outcome": "ok", "attempts": 1,
                             "usageEstimated": True}
    assert row.prompt is None
    assert row.completion is None


def test_geo_refusal_row(snap: Snapshot, library: PolicyLibrary) -> None:
    ctx = with_record(make_ctx(snap, chat("hi"), headers={"CF-IPCountry": "UA-43"}))
    checks = ComplianceHooks(library)
    refusal = checks.channel_filter(ctx, snap.channels["oa"])
    assert refusal is not None
    assert refusal.status == 451
    ctx.plan = RoutePlan("m", "m", [snap.channels["oa"]])
    ctx.status = 451
    row = build_row(ctx, ts=TS, latency_ms=1)
    assert (row.status, row.channel, row.cost, row.country) == (451, None, 0, "UA")
    assert row.decisions["geo"] == "block:RU-occupied-UA"
    assert row.decisions["subdivision"] == "UA-43"


async def test_aup_block_row(snap: Snapshot, library: PolicyLibrary) -> None:
    ctx = with_record(make_ctx(snap, chat("how can i make a pipe bomb")))
    with pytest.raises(ComplianceError, match="blocked before reaching the model"):
        await ComplianceHooks(library).admission(ctx)
    ctx.status = 400
    row = build_row(ctx, ts=TS, latency_ms=1, log_content=True)
    assert row.decisions["aup"].startswith("block:explosive-devices@")
    assert row.status == 400
    assert row.prompt == "how can i make a pipe bomb"  # content logging on: kept for the reviewer


def test_content_only_when_enabled(snap: Snapshot) -> None:
    ctx = with_record(make_ctx(snap, chat("what is 2+2")))
    served(ctx, snap, "local")
    ctx.response_body = answer("4")
    ctx.status = 200
    assert build_row(ctx, ts=TS, latency_ms=1).prompt is None
    row = build_row(ctx, ts=TS, latency_ms=1, log_content=True)
    assert (row.prompt, row.completion) == ("what is 2+2", "4")


def byok_contexts(snap: Snapshot) -> list[RequestContext]:
    named = make_ctx(snap, chat("secret business plan"), byok_provider="openai")
    unnamed_served = make_ctx(snap, chat("secret business plan"))
    served(unnamed_served, snap, "byok", "bm", "bm")
    unnamed_planned = make_ctx(snap, chat("secret business plan"))
    unnamed_planned.plan = RoutePlan("bm", "bm", [snap.channels["byok"]])
    flagged = make_ctx(snap, chat("secret business plan"))
    flagged.byok = True
    return [named, unnamed_served, unnamed_planned, flagged]


def test_never_content_for_byok(snap: Snapshot) -> None:
    for ctx in byok_contexts(snap):
        assert is_byok(ctx)
        ctx.response_body = answer("the plan")
        row = build_row(ctx, ts=TS, latency_ms=1, log_content=True)
        assert row.prompt is None
        assert row.completion is None
        assert row.decisions["byok"] is True
        finish_row(row, ctx, 5, log_content=True)
        assert row.completion is None
    plain = make_ctx(snap, chat("x"))
    served(plain, snap, "local")
    assert not is_byok(plain)


@pytest.mark.parametrize(("outcome", "status"), [
    ("ok", 200), ("client_abort", 200), ("upstream_abort", 200), ("upstream_error", 200),
    ("upstream_429", 429), ("upstream_401", 401), ("", 0), ("exhausted", 0),
])
def test_status_while_settling(snap: Snapshot, outcome: str, status: int) -> None:
    ctx = make_ctx(snap, chat("x"))
    ctx.outcome = outcome
    assert status_of(ctx) == status
    ctx.status = 502
    assert status_of(ctx) == 502


def test_finish_row_brings_the_settled_row_up_to_date(snap: Snapshot) -> None:
    ctx = with_record(make_ctx(snap, {**chat("tell me"), "stream": True}))
    ctx.stream = True
    served(ctx, snap, "local")
    ctx.outcome = "client_abort"
    row = build_row(ctx, ts=TS, latency_ms=10, billing=Billing(3, 1, 4))
    assert row.status == 200
    ctx.status = 200
    ctx.notes["extra"] = True
    ctx.capture = [b'data: {"choices":[{"delta":{"content":"par"}}]}\n\n']
    finish_row(row, ctx, 25, log_content=True)
    assert row.latency_ms == 25
    assert row.decisions["outcome"] == "client_abort"
    assert row.completion == "par"


def test_rows_without_a_store_record(snap: Snapshot) -> None:
    ctx: Any = make_ctx(snap, chat("x"))
    row = build_row(ctx, ts=TS, latency_ms=0)
    assert row.customer_id is None
    assert row.key_id is None
