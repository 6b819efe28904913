"""Audit events (issue 7's rows): batched insert, query, export, retention, and settle's own row."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from newapi_gateway.store.base import Store
from newapi_gateway.store.models import AuditEvent, Usage
from tests.gateway.store.conftest import AccountFactory

T0 = datetime(2030, 3, 1, 12, 0, tzinfo=UTC)


def event(i: int, customer_id: int | None, ts: datetime, **kw: Any) -> AuditEvent:
    fields: dict[str, Any] = {
        "channel": "vllm-a", "model": "qwen3-coder", "upstream_model": "Qwen/Qwen3-Coder", "input_tokens": i,
        "output_tokens": 2 * i, "cost": 10 * i, "latency_ms": 5, "country": "DE",
        "decisions": {"geo": "allow", "aup": "pass"},
    }
    fields.update(kw)
    return AuditEvent(ts=ts, request_id=f"req-{i}", status=200, customer_id=customer_id, **fields)


async def test_insert_query_paginate_export(store: Store, make_account: AccountFactory) -> None:
    a = await make_account()
    b = await make_account()
    events = [event(i, a.customer.id if i % 3 else b.customer.id, T0 + timedelta(seconds=i)) for i in range(30)]
    events.append(event(99, a.customer.id, T0, prompt="hello", completion="world"))  # same ts as req-0
    await store.add_audit_events(events)

    page = await store.query_audit(since=T0, until=T0 + timedelta(hours=1), customer_id=a.customer.id, limit=7)
    got = list(page.events)
    while page.next_cursor:
        page = await store.query_audit(
            since=T0, until=T0 + timedelta(hours=1), customer_id=a.customer.id, cursor=page.next_cursor, limit=7
        )
        got += page.events
    expected = sorted((e for e in events if e.customer_id == a.customer.id), key=lambda e: e.ts)
    assert [e.request_id for e in got] == [e.request_id for e in expected]
    assert len({e.id for e in got}) == len(got)
    first = next(e for e in got if e.request_id == "req-99")
    assert (first.prompt, first.completion, first.decisions, first.country) == (
        "hello", "world", {"geo": "allow", "aup": "pass"}, "DE",
    )
    assert first.ts == T0

    window = await store.query_audit(since=T0 + timedelta(seconds=10), until=T0 + timedelta(seconds=20), limit=100)
    assert [e.request_id for e in window.events] == [f"req-{i}" for i in range(10, 20)]
    exported = [e.request_id async for e in store.export_audit(since=T0, until=T0 + timedelta(days=1), page_size=4)]
    assert sorted(exported) == sorted(e.request_id for e in events)


async def test_retention_deletes_in_bounded_batches(store: Store) -> None:
    await store.add_audit_events([event(i, None, T0 + timedelta(minutes=i)) for i in range(25)])
    cutoff = T0 + timedelta(minutes=20)
    assert await store.delete_audit_batch(cutoff, batch_size=8) == 8
    assert await store.delete_audit_before(cutoff, batch_size=5) == 12
    left = await store.query_audit(since=T0 - timedelta(days=1), until=T0 + timedelta(days=1), limit=100)
    assert [e.request_id for e in left.events] == [f"req-{i}" for i in range(20, 25)]
    assert await store.delete_audit_before(T0 + timedelta(days=1), batch_size=2, max_batches=1) == 2


async def test_settle_writes_its_audit_row_in_the_same_transaction(
    store: Store, make_account: AccountFactory
) -> None:
    acct = await make_account(credit=1_000)
    holds = [await store.authorize(acct.key, 100, f"r{i}", ttl=60) for i in range(3)]
    now = datetime.now(UTC)
    for i, h in enumerate(holds):
        audit = event(i, acct.customer.id, now) if i != 1 else None
        await store.settle(h, 10, Usage("m", "c", 1, 1), audit=audit)
    rows = await store.query_audit(since=now - timedelta(seconds=1), until=now + timedelta(seconds=1))
    assert sorted(e.request_id for e in rows.events) == ["req-0", "req-2"]


async def test_query_validates_arguments(store: Store) -> None:
    with pytest.raises(ValueError, match="limit"):
        await store.query_audit(since=T0, until=T0, limit=0)
    with pytest.raises(ValueError, match="cursor"):
        await store.query_audit(since=T0, until=T0, cursor="garbage!")


async def test_hostile_strings_never_fail_a_settle_batch(store: Store, make_account: AccountFactory) -> None:
    """Model names and prompts come from clients: NUL bytes and lone surrogates must not make
    the database refuse the batch (which would lose the debits of everyone in it)."""
    acct = await make_account(credit=1_000)
    bad = "gpt\x00-4\ud800"
    now = datetime.now(UTC)
    holds = [await store.authorize(acct.key, 10, f"h{i}", ttl=60) for i in range(3)]
    results = await asyncio.gather(*[
        store.settle(h, 5, Usage(bad, "c", 1, 1), audit=event(i, acct.customer.id, now, prompt=bad, completion=bad))
        for i, h in enumerate(holds)
    ])
    assert [r.charged for r in results] == [5, 5, 5]
    events = (await store.query_audit(since=now, until=now + timedelta(seconds=1))).events
    assert len(events) == 3
    assert all("\x00" not in (e.prompt or "") for e in events)
    await store.add_audit_events([event(9, None, now, decisions={"aup": bad, bad: [bad]})])
