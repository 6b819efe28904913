"""Background jobs: hold expiry and audit retention, run the way the gateway runs them."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

from newapi_gateway.store.base import Store
from newapi_gateway.store.keys import generate_key
from newapi_gateway.store.maintenance import audit_retention_forever, expire_holds_forever, expire_holds_once
from newapi_gateway.store.models import AuditEvent, KeySettings
from tests.gateway.store.conftest import AccountFactory, Backend, FakeClock


async def test_expire_holds_once_drains_every_batch(store: Store, make_account: AccountFactory) -> None:
    acct = await make_account(credit=10_000)
    for i in range(25):
        await store.authorize(acct.key, 10, f"h{i}", ttl=0.001)
    await asyncio.sleep(0.01)
    assert await expire_holds_once(store, batch=10) == 25
    assert (await store.balance(acct.customer.id)).held == 0


async def test_jobs_run_in_the_background(backend: Backend) -> None:
    clock = FakeClock()
    store = await backend.open(clock=clock)
    customer = await store.upsert_customer("bg")
    await store.top_up(customer.id, 1_000, "g", "g")
    new = generate_key()
    key = await store.issue_key(customer.id, new.hash, new.prefix, KeySettings(tier="pro"))
    await store.authorize(key, 400, "orphan", ttl=5)
    old = clock.now - timedelta(days=800)
    await store.add_audit_events([AuditEvent(ts=old + timedelta(seconds=i), request_id=f"a{i}", status=200)
                                  for i in range(30)])
    await store.add_audit_events([AuditEvent(ts=clock.now, request_id="fresh", status=200)])
    clock.advance(seconds=10)
    jobs = [
        asyncio.create_task(expire_holds_forever(store, interval=0.01)),
        asyncio.create_task(audit_retention_forever(store, retention_days=730, interval=0.01, batch_size=7)),
    ]
    try:
        async with asyncio.timeout(10):
            while True:  # poll the database: the jobs run in other tasks
                if (await store.balance(customer.id)).held == 0:
                    break
                await asyncio.sleep(0.02)
            while True:
                page = await store.query_audit(since=old - timedelta(days=1), until=clock.now + timedelta(days=1))
                if [e.request_id for e in page.events] == ["fresh"]:
                    break
                await asyncio.sleep(0.02)
    finally:
        for job in jobs:
            job.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await job
