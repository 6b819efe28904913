"""Concurrent authorizations never overspend; concurrent settles never double-debit."""

from __future__ import annotations

import asyncio
import random

from newapi_gateway.store.base import Store
from newapi_gateway.store.errors import InsufficientCredit
from newapi_gateway.store.models import Hold, LedgerKind, Usage
from tests.gateway.store.conftest import AccountFactory, Backend

USAGE = Usage(model="m", channel="c", input_tokens=1, output_tokens=1)


async def test_200_concurrent_authorizations_on_one_balance(store: Store, make_account: AccountFactory) -> None:
    acct = await make_account(credit=1_000)
    results = await asyncio.gather(
        *[store.authorize(acct.key, 7, f"req-{i}", ttl=60) for i in range(200)], return_exceptions=True
    )
    holds = [r for r in results if isinstance(r, Hold)]
    refused = [r for r in results if isinstance(r, InsufficientCredit)]
    assert len(holds) + len(refused) == 200, [r for r in results if not isinstance(r, Hold | InsufficientCredit)]
    assert len(holds) == 1_000 // 7  # exactly as many as the balance covers, not one more
    snap = await store.balance(acct.customer.id)
    assert snap.held == 7 * len(holds) <= snap.balance

    # Settle everything concurrently, each at most its hold: the balance never goes below zero.
    settled = await asyncio.gather(*[store.settle(h, random.randint(0, 7), USAGE) for h in holds])
    snap = await store.balance(acct.customer.id)
    assert snap.held == 0
    assert snap.balance == 1_000 - sum(s.charged for s in settled) >= 0


async def test_replicas_share_one_balance(backend: Backend, make_account: AccountFactory) -> None:
    """Four store instances on one database (four replicas), one transaction per request (no
    batching), 200 requests spread over them: the database alone serializes them."""
    acct = await make_account(credit=1_000)
    replicas = [await backend.open(max_batch=1) for _ in range(4)]
    replica_a, replica_b = replicas[:2]
    results = await asyncio.gather(
        *[replicas[i % 4].authorize(acct.key, 9, f"r-{i}", ttl=60) for i in range(200)],
        return_exceptions=True,
    )
    holds = [r for r in results if isinstance(r, Hold)]
    assert all(isinstance(r, Hold | InsufficientCredit) for r in results)
    assert len(holds) == 1_000 // 9
    # Each request settled twice, by both replicas, at the same time: one debit each.
    settles = await asyncio.gather(
        *[replica.settle(h, 9, USAGE) for h in holds for replica in (replica_a, replica_b)]
    )
    assert sum(not s.duplicate for s in settles) == len(holds)
    snap = await replica_a.balance(acct.customer.id)
    assert (snap.balance, snap.held) == (1_000 - 9 * len(holds), 0)
    entries: list = []
    cursor = None
    while True:
        page = await replica_b.list_ledger(acct.customer.id, cursor=cursor, limit=1000)
        entries += page.entries
        if not page.next_cursor:
            break
        cursor = page.next_cursor
    assert sum(1 for e in entries if e.kind == LedgerKind.DEBIT) == len(holds)


async def test_batches_mix_customers_without_deadlock(store: Store, make_account: AccountFactory) -> None:
    accounts = [await make_account(credit=500) for _ in range(5)]
    tasks = [store.authorize(a.key, 50, f"{a.customer.id}-{i}", ttl=60) for i in range(12) for a in accounts]
    random.shuffle(tasks)
    results = await asyncio.gather(*tasks, return_exceptions=True)
    holds = [r for r in results if isinstance(r, Hold)]
    assert len(holds) == 5 * 10
    random.shuffle(holds)
    await asyncio.gather(*[store.settle(h, 25, USAGE) if i % 2 else store.release(h) for i, h in enumerate(holds)])
    for a in accounts:
        snap = await store.balance(a.customer.id)
        assert snap.held == 0
        assert 250 <= snap.balance <= 500


async def test_replicas_racing_for_the_last_credit(backend: Backend, make_account: AccountFactory) -> None:
    """Eight replicas, one transaction per request, every request arriving at once and each worth
    a third of the balance: all of them read the same balance, only three may win."""
    acct = await make_account(credit=1_000)
    replicas = [await backend.open(max_batch=1) for _ in range(8)]
    for round_ in range(3):
        results = await asyncio.gather(
            *[replicas[i % 8].authorize(acct.key, 300, f"{round_}-{i}", ttl=60) for i in range(200)],
            return_exceptions=True,
        )
        holds = [r for r in results if isinstance(r, Hold)]
        assert all(isinstance(r, Hold | InsufficientCredit) for r in results)
        assert len(holds) == 3, f"round {round_}: {len(holds)} holds of 300 on a balance of 1000"
        await asyncio.gather(*[replicas[0].release(h) for h in holds])
