"""Credit leases: a busy key's requests hold from one store hold on this replica.

In-process against a real SQLite store (the lease book's rules), and through the HTTP API on both
back ends: a busy key with plenty of credit is served from leases and everything settles exactly
(one debit per request, the lease released when idle); a busy key whose credit covers only a few
dozen requests still never overspends by more than one hold."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import openai

from newapi_gateway.metering.leases import LeaseBook
from newapi_gateway.store import KeySettings
from newapi_gateway.store.keys import generate_key
from newapi_gateway.store.sqlite import SqliteStore

from .metered import PAID_MODEL, Admin, MeteredGateway, poll


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_lease_book_rules(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "leases.db", synchronous="NORMAL")
    await store.open()
    try:
        customer = await store.upsert_customer("lessee")
        await store.top_up(customer.id, 10_000, "t", "test")
        new = generate_key()
        record = await store.issue_key(customer.id, new.hash, new.prefix, KeySettings(tier="pro"))
        clock = Clock()
        book = LeaseBook(store, hold_ttl=600, factor=4, min_rate=3, idle_release=2.0, clock=clock)
        assert [book.busy(record.id) for _ in range(3)] == [False, False, True]
        clock.now += 1.5  # the next window: still busy from its first request (the last second was)
        assert book.busy(record.id)
        clock.now += 1.0  # a window after one with a single request: counted anew
        assert [book.busy(record.id) for _ in range(3)] == [False, False, True]
        clock.now += 2.5  # two seconds later: the busy second is not the one just before
        assert not book.busy(record.id)
        assert book.take(record.id, 100) is None
        lease = await book.acquire(record, 100, unlimited=False)
        assert lease is not None
        assert (lease.remaining, lease.inflight) == (300, 1)  # 4 x 100 held in the store, 100 taken
        assert (await store.balance(customer.id)).held == 400
        assert book.take(record.id, 300) is lease
        assert book.take(record.id, 1) is None  # used up: retired, released after its requests
        book.done(lease, 100, 40)
        book.done(lease, 300, 300)
        await poll_async(lambda: store.balance(customer.id), lambda b: b.held == 0)
        # too little credit for a lease: None (hold per request), and no retry for a second
        await store.adjust(customer.id, -9_500, "a", "test")
        assert await book.acquire(record, 100, unlimited=False) is None
        assert await book.acquire(record, 1, unlimited=False) is None
        clock.now += 2
        small = await book.acquire(record, 1, unlimited=False)  # 1 x factor fits again (4 x ... grows)
        assert small is not None
        book.done(small, 1, 1)
        clock.now += 3
        book.sweep()  # idle: retired and released
        await poll_async(lambda: store.balance(customer.id), lambda b: b.held == 0)
        assert book.active == 0
        # the store found down: leases retired, none used for a while (holds need the store: 503)
        again = await book.acquire(record, 1, unlimited=False)
        assert again is not None
        assert [book.eligible(record) for _ in range(3)] == [False, False, True]  # a new second: counted anew
        book.store_down()
        assert not book.leased(record.id)
        assert not book.eligible(record)
        book.done(again, 1, 0)
        clock.now += 6
        assert [book.eligible(record) for _ in range(3)][-1]
        # keys with a spending cap never lease
        capped = await store.update_key(record.id, KeySettings(tier="pro", cap_daily=10**9))
        assert not book.eligible(capped)
        await poll_async(lambda: store.balance(customer.id), lambda b: b.held == 0)
        await book.close()
    finally:
        await store.close()


async def poll_async(read, ok, within: float = 10.0):  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + within
    while True:
        value = await read()
        if ok(value):
            return value
        assert asyncio.get_running_loop().time() < deadline, value
        await asyncio.sleep(0.02)


def _burst(gw: MeteredGateway, key: str, total: int, concurrency: int, content: str, max_tokens: int) -> list[str]:
    async def run() -> list[str]:
        sem = asyncio.Semaphore(concurrency)
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with openai.AsyncOpenAI(base_url=gw.base_url, api_key=key, max_retries=0, timeout=60,
                                      http_client=openai.DefaultAsyncHttpxClient(limits=limits)) as api:
            async def one() -> str:
                async with sem:
                    try:
                        await api.chat.completions.create(model=PAID_MODEL, max_tokens=max_tokens,
                                                          messages=[{"role": "user", "content": content}])
                    except openai.RateLimitError as err:
                        return str(err.code)
                return "ok"

            return await asyncio.gather(*(one() for _ in range(total)))

    return asyncio.run(run())


def test_busy_key_settles_exactly_through_leases(gateway: MeteredGateway, admin: Admin, customer: str) -> None:
    key, record = admin.signup(customer, credit=10_000_000)
    outcomes = _burst(gateway, key, total=150, concurrency=8, content="lease me", max_tokens=20)
    assert outcomes.count("ok") == 150
    assert gateway.readyz()["state"]["creditLeases"] >= 1, "a busy key holds from a lease"
    debits = poll(lambda: (d := admin.debits(customer)) and len(d) == 150 and d, what="150 debits")
    assert len({d["idempotencyKey"] for d in debits}) == 150
    balance = poll(lambda: (b := admin.balance(customer)) and b["held"] == 0 and b, timeout=30,
                   what="the lease released once idle")
    # a graceful stop releases live leases at once (no waiting for the hold TTL)
    _burst(gateway, key, total=60, concurrency=8, content="lease me", max_tokens=20)
    assert gateway.readyz()["state"]["creditLeases"] >= 1
    gateway.stop()
    gateway.start()
    balance = admin.balance(customer)
    assert balance["held"] == 0
    debits = admin.debits(customer)
    assert len(debits) == 210
    assert balance["balance"] == 10_000_000 + sum(d["amount"] for d in debits)
    rows = admin.ok("GET", f"/keys/{record['keyId']}/usage")["data"]
    assert rows[0]["requests"] == 210


def test_busy_key_near_the_end_of_its_credit_never_overspends(
    gateway: MeteredGateway, admin: Admin, customer: str
) -> None:
    max_tokens = 50
    content = f"[[demo:tokens={max_tokens}]] spend"
    hold = 3 + 4 + 2 + 6 + 2 * max_tokens  # the gateway's estimate: priming, message, role, content, output
    credit = 40 * hold  # a first lease (32 holds) fits; the rest must come from per-request holds
    key, _ = admin.signup(customer, credit=credit)
    outcomes = _burst(gateway, key, total=300, concurrency=40, content=content, max_tokens=max_tokens)
    served = outcomes.count("ok")
    assert served + outcomes.count("insufficient_quota") == 300, outcomes
    assert served >= 1
    debits = poll(lambda: (d := admin.debits(customer)) and len(d) == served and d, what="every debit")
    balance = poll(lambda: (b := admin.balance(customer)) and b["held"] == 0 and b, timeout=30, what="no holds")
    assert balance["balance"] == credit + sum(d["amount"] for d in debits)
    assert balance["balance"] >= -hold, f"overspent: {balance['balance']} after {served} requests"
