"""Authorize -> settle/release, expiry, credit, caps, snapshots, ledger and usage, on both stores."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from newapi_gateway.store.base import Store
from newapi_gateway.store.errors import (
    Conflict,
    IdempotencyConflict,
    InsufficientCredit,
    KeyRefused,
    NotFound,
    SpendingCapExceeded,
)
from newapi_gateway.store.keys import generate_key
from newapi_gateway.store.models import KeyRecord, KeySettings, LedgerKind, Usage
from tests.gateway.store.conftest import AccountFactory, Backend, FakeClock

USAGE = Usage(model="qwen3-coder", channel="vllm-a", input_tokens=100, output_tokens=50)


async def test_authorize_holds_and_settle_charges_once(store: Store, make_account: AccountFactory) -> None:
    acct = await make_account(credit=10_000)
    hold = await store.authorize(acct.key, 3_000, "req-1", ttl=60)
    assert (hold.amount, hold.customer_id, hold.key_id) == (3_000, acct.customer.id, acct.key.id)
    snap = await store.balance(acct.customer.id)
    assert (snap.balance, snap.held, snap.available) == (10_000, 3_000, 7_000)

    first = await store.settle(hold, 1_234, USAGE)
    assert (first.charged, first.released, first.balance_after, first.duplicate) == (1_234, 1_766, 8_766, False)
    again = await store.settle(hold, 1_234, USAGE)
    assert again.duplicate
    assert again.charged == 1_234
    assert again.ledger_id == first.ledger_id
    other_amount = await store.settle(hold, 9_999, USAGE)  # a retry can never charge a different amount
    assert other_amount.duplicate
    assert other_amount.charged == 1_234

    snap = await store.balance(acct.customer.id)
    assert (snap.balance, snap.held) == (8_766, 0)
    assert (snap.spent_today, snap.spent_this_month, snap.requests_today) == (1_234, 1_234, 1)
    page = await store.list_ledger(acct.customer.id)
    debits = [e for e in page.entries if e.kind == LedgerKind.DEBIT]
    assert len(debits) == 1
    assert (debits[0].amount, debits[0].idempotency_key, debits[0].key_id) == (-1_234, "req-1", acct.key.id)
    assert debits[0].balance_after == 8_766


async def test_insufficient_credit_counts_open_holds(store: Store, make_account: AccountFactory) -> None:
    acct = await make_account(credit=1_000)
    await store.authorize(acct.key, 600, "a", ttl=60)
    with pytest.raises(InsufficientCredit) as err:
        await store.authorize(acct.key, 500, "b", ttl=60)
    assert (err.value.available, err.value.required) == (400, 500)
    await store.authorize(acct.key, 400, "c", ttl=60)  # exactly the rest
    with pytest.raises(InsufficientCredit):
        await store.authorize(acct.key, 1, "d", ttl=60)
    zero = await store.authorize(acct.key, 0, "e", ttl=60)  # a free request needs no credit
    assert zero.amount == 0


async def test_release_returns_the_hold_without_a_ledger_entry(store: Store, make_account: AccountFactory) -> None:
    acct = await make_account(credit=1_000)
    hold = await store.authorize(acct.key, 700, "req", ttl=60)
    await store.release(hold)
    snap = await store.balance(acct.customer.id)
    assert (snap.balance, snap.held) == (1_000, 0)
    assert [e.kind for e in (await store.list_ledger(acct.customer.id)).entries] == [LedgerKind.TOP_UP]
    await store.release(hold)  # twice is harmless
    assert (await store.balance(acct.customer.id)).held == 0


async def test_settle_beyond_the_hold_charges_actual_usage(store: Store, make_account: AccountFactory) -> None:
    acct = await make_account(credit=1_000)
    hold = await store.authorize(acct.key, 900, "req", ttl=60)
    result = await store.settle(hold, 1_100, USAGE)  # the estimate was too low: bill what was used
    assert result.charged == 1_100
    assert result.balance_after == -100
    assert result.released == 0
    with pytest.raises(InsufficientCredit):
        await store.authorize(acct.key, 1, "next", ttl=60)


async def test_duplicate_request_id_is_a_conflict(store: Store, make_account: AccountFactory) -> None:
    acct = await make_account(credit=1_000)
    await store.authorize(acct.key, 10, "same", ttl=60)
    with pytest.raises(Conflict):
        await store.authorize(acct.key, 10, "same", ttl=60)
    assert (await store.balance(acct.customer.id)).held == 10


async def test_authorize_refuses_a_key_revoked_behind_a_stale_cache(store: Store, make_account: AccountFactory) -> None:
    acct = await make_account(credit=1_000)
    stale = acct.key
    await store.revoke_key(stale.id)
    with pytest.raises(KeyRefused) as err:
        await store.authorize(stale, 10, "r1", ttl=60)
    assert err.value.reason == "revoked"
    other = await make_account(credit=1_000)
    await store.suspend_key(other.key.id)
    with pytest.raises(KeyRefused, match="suspended"):
        await store.authorize(other.key, 10, "r2", ttl=60)


async def test_expired_holds_are_released_with_zero_charge(store: Store, make_account: AccountFactory) -> None:
    acct = await make_account(credit=5_000)
    crashed = await store.authorize(acct.key, 2_000, "crashed", ttl=1)
    live = await store.authorize(acct.key, 1_000, "live", ttl=3600)
    later = datetime.now(UTC) + timedelta(seconds=30)
    assert await store.expire_holds(later) == 1
    assert await store.expire_holds(later) == 0
    snap = await store.balance(acct.customer.id)
    assert (snap.balance, snap.held) == (5_000, 1_000)  # nothing charged for the crashed request
    assert all(e.kind != LedgerKind.DEBIT for e in (await store.list_ledger(acct.customer.id)).entries)
    # A gateway that was only slow (not dead) still bills what it served after its hold expired.
    late = await store.settle(crashed, 300, USAGE)
    assert late.charged == 300
    assert late.released == 0
    assert not late.duplicate
    await store.settle(live, 100, USAGE)
    snap = await store.balance(acct.customer.id)
    assert (snap.balance, snap.held) == (4_600, 0)


async def test_expire_holds_works_in_bounded_batches(store: Store, make_account: AccountFactory) -> None:
    acct = await make_account(credit=5_000)
    for i in range(7):
        await store.authorize(acct.key, 10, f"h{i}", ttl=1)
    later = datetime.now(UTC) + timedelta(seconds=5)
    assert await store.expire_holds(later, limit=3) == 3
    assert await store.expire_holds(later, limit=3) == 3
    assert await store.expire_holds(later, limit=3) == 1
    assert (await store.balance(acct.customer.id)).held == 0


async def test_top_up_and_adjust_are_idempotent(store: Store, make_account: AccountFactory) -> None:
    acct = await make_account()
    cid = acct.customer.id
    first = await store.top_up(cid, 5_000_000, "invoice-42", "top-up")
    for _ in range(3):  # retries of the same request
        again = await store.top_up(cid, 5_000_000, "invoice-42", "top-up")
        assert again.id == first.id
        assert again.balance_after == 5_000_000
    with pytest.raises(IdempotencyConflict) as err:
        await store.top_up(cid, 6_000_000, "invoice-42", "top-up")
    assert (err.value.stored_amount, err.value.requested_amount) == (5_000_000, 6_000_000)
    with pytest.raises(IdempotencyConflict):
        await store.adjust(cid, 5_000_000, "invoice-42", "same key, other kind")
    corr = await store.adjust(cid, -1_500_000, "refund-7", "correction")
    assert corr.kind == LedgerKind.ADJUST
    assert corr.balance_after == 3_500_000
    assert (await store.adjust(cid, -1_500_000, "refund-7", "correction")).id == corr.id
    assert (await store.balance(cid)).balance == 3_500_000
    with pytest.raises(ValueError, match="amount"):
        await store.top_up(cid, 0, "zero", "nothing")
    with pytest.raises(ValueError, match="amount"):
        await store.adjust(cid, 0, "zero", "nothing")
    with pytest.raises(TypeError, match="integer"):
        await store.top_up(cid, 1.5, "float", "no floats")  # type: ignore[arg-type]
    with pytest.raises(NotFound):
        await store.top_up(cid + 1000, 1, "k", "unknown customer")
    with pytest.raises(ValueError, match="idempotency_key"):
        await store.top_up(cid, 1, "", "empty key")


async def test_concurrent_top_up_retries_credit_once(store: Store, make_account: AccountFactory) -> None:
    import asyncio

    acct = await make_account()
    results = await asyncio.gather(
        *[store.top_up(acct.customer.id, 777, "same-request", "retry storm") for _ in range(20)]
    )
    assert len({r.id for r in results}) == 1
    assert (await store.balance(acct.customer.id)).balance == 777


async def test_daily_and_monthly_caps_count_spend_and_holds(backend: Backend) -> None:
    clock = FakeClock(datetime(2031, 5, 30, 23, 0, tzinfo=UTC))
    store = await backend.open(clock=clock)
    customer = await store.upsert_customer("capped")
    await store.top_up(customer.id, 10**9, "grant", "grant")
    daily = await _issue(store, customer.id, cap_daily=1_000)
    monthly = await _issue(store, customer.id, cap_monthly=2_500)

    h1 = await store.authorize(daily, 600, "d1-a", ttl=3600)
    with pytest.raises(SpendingCapExceeded) as err:
        await store.authorize(daily, 500, "d1-b", ttl=3600)  # 600 held + 500 > 1000
    assert (err.value.period, err.value.cap, err.value.committed, err.value.required) == ("daily", 1_000, 600, 500)
    await store.settle(h1, 550, USAGE)
    h2 = await store.authorize(daily, 450, "d1-c", ttl=3600)  # 550 spent + 450 = 1000: allowed
    with pytest.raises(SpendingCapExceeded, match="daily"):
        await store.authorize(daily, 1, "d1-d", ttl=3600)
    spend = await store.key_spend(daily.id)
    assert (spend.spent_today, spend.held, spend.requests_today) == (550, 450, 1)
    await store.release(h2)
    m1 = await store.authorize(monthly, 1_000, "m-1", ttl=3600)
    await store.settle(m1, 1_000, USAGE)

    clock.advance(hours=2)  # next UTC day (May 31st), same month
    await store.authorize(daily, 1_000, "d2-a", ttl=3600)  # the daily cap starts over
    m2 = await store.authorize(monthly, 1_000, "m-2", ttl=3600)
    await store.settle(m2, 1_000, USAGE)
    with pytest.raises(SpendingCapExceeded) as err:
        await store.authorize(monthly, 600, "m-3", ttl=3600)  # 2000 spent this month + 600 > 2500
    assert (err.value.period, err.value.committed) == ("monthly", 2_000)
    assert (await store.key_spend(monthly.id)).spent_this_month == 2_000

    clock.advance(days=1)  # June 1st: a new month
    await store.authorize(monthly, 600, "m-4", ttl=3600)
    usage = await store.usage(key_id=daily.id, start=clock.now.date() - timedelta(days=3), end=clock.now.date())
    assert [(u.day.isoformat(), u.requests, u.cost) for u in usage] == [("2031-05-30", 1, 550)]


async def _issue(store: Store, customer_id: int, **settings: int) -> KeyRecord:
    new = generate_key()
    return await store.issue_key(customer_id, new.hash, new.prefix, KeySettings(tier="pro", **settings))


async def test_unlimited_credit_skips_the_balance_not_the_caps(store: Store, make_account: AccountFactory) -> None:
    acct = await make_account(credit=0, cap_daily=5_000)
    hold = await store.authorize(acct.key, 4_000, "open-budget", ttl=60, unlimited_credit=True)
    with pytest.raises(InsufficientCredit):
        await store.authorize(acct.key, 1, "metered", ttl=60)
    with pytest.raises(SpendingCapExceeded):
        await store.authorize(acct.key, 2_000, "over-cap", ttl=60, unlimited_credit=True)
    await store.settle(hold, 3_000, USAGE)
    assert (await store.balance(acct.customer.id)).balance == -3_000  # billed afterwards (postpaid)


async def test_usage_rollups_per_key_day_model(backend: Backend) -> None:
    clock = FakeClock(datetime(2031, 1, 10, 12, tzinfo=UTC))
    store = await backend.open(clock=clock)
    customer = await store.upsert_customer("u")
    await store.top_up(customer.id, 10**9, "g", "g")
    keys = []
    for _ in range(2):
        new = generate_key()
        keys.append(await store.issue_key(customer.id, new.hash, new.prefix, KeySettings(tier="pro")))
    n = 0
    for _day in range(2):
        for key in keys:
            for model, (inp, out, cost, est) in {"a": (10, 5, 7, False), "b": (100, 50, 70, True)}.items():
                n += 1
                hold = await store.authorize(key, 100, f"r{n}", ttl=60)
                await store.settle(hold, cost, Usage(model, "ch", inp, out, estimated=est))
        clock.advance(days=1)
    rows = await store.usage(customer_id=customer.id, start=date(2031, 1, 10), end=date(2031, 1, 11))
    assert len(rows) == 8
    first = next(r for r in rows if r.key_id == keys[0].id and r.model == "b" and r.day.day == 10)
    assert (first.requests, first.input_tokens, first.output_tokens, first.cost, first.estimated_requests) == (
        1, 100, 50, 70, 1,
    )
    one_day = await store.usage(key_id=keys[1].id, start=date(2031, 1, 11), end=date(2031, 1, 11))
    assert sorted((r.model, r.cost) for r in one_day) == [("a", 7), ("b", 70)]
    with pytest.raises(ValueError, match="exactly one"):
        await store.usage(start=clock.now.date(), end=clock.now.date())
    snap = await store.balance(customer.id)  # "today" is now the 12th: nothing yet
    assert (snap.spent_today, snap.requests_today, snap.spent_this_month) == (0, 0, 2 * 2 * 77)


async def test_ledger_cursor_pagination(store: Store, make_account: AccountFactory) -> None:
    acct = await make_account()
    for i in range(25):
        await store.top_up(acct.customer.id, i + 1, f"t{i}", "page")
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        page = await store.list_ledger(acct.customer.id, cursor=cursor, limit=10)
        pages += 1
        seen.extend(e.amount for e in page.entries)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert pages == 3
    assert seen == list(range(25, 0, -1))  # newest first, no gaps, no repeats
    with pytest.raises(ValueError, match="cursor"):
        await store.list_ledger(acct.customer.id, cursor="not-a-cursor")
    other = await make_account()
    assert (await store.list_ledger(other.customer.id)).entries == []


async def test_ledger_is_append_only(backend: Backend, store: Store, make_account: AccountFactory) -> None:
    acct = await make_account(credit=10)
    if backend.name == "sqlite":
        import sqlite3

        conn = sqlite3.connect(str(backend.sqlite_path))
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("UPDATE ledger SET amount = 1000000")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("DELETE FROM ledger")
        conn.close()
    else:
        import asyncpg

        conn = await asyncpg.connect(backend.dsn)
        try:
            for sql in ("UPDATE ledger SET amount = 1000000", "DELETE FROM ledger", "TRUNCATE ledger"):
                with pytest.raises(asyncpg.RaiseError, match="append-only"):
                    await conn.execute(sql)
        finally:
            await conn.close()
    assert (await store.balance(acct.customer.id)).balance == 10
