"""newapi_settle_v2 (migration 4) against newapi_settle_v1: same outcomes and the same rows.

Each comparison builds two identical fresh databases (so identity sequences, hence ledger ids,
match), runs the same batches through v1 on one and v2 on the other at the same ``p_now``, and
compares every function result row and every row of balances, holds, key_spend, usage_daily and
ledger after each batch. Also: the store settles through v2, and the gateway-side audit JSON
stores what the former stdlib encoding stored.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from newapi_gateway.store import schema_pg
from newapi_gateway.store.keys import generate_key
from newapi_gateway.store.migrations import migrate_postgres
from newapi_gateway.store.models import AuditEvent, KeySettings, Usage
from newapi_gateway.store.postgres import PostgresStore, _audit_json, _dumps, audit_row, cleaned_audit_row
from tests.services import PostgresServer

T0 = datetime(2030, 3, 31, 22, 0, tzinfo=UTC)  # two hours before a day AND a month boundary

Item = dict[str, Any]

_TABLES = {
    "balances": "SELECT customer_id, balance, held, updated_at FROM balances ORDER BY customer_id",
    "holds": "SELECT request_id, customer_id, key_id, amount FROM holds ORDER BY request_id",
    "key_spend": "SELECT key_id, held, day, day_spent, day_requests, month, month_spent FROM key_spend "
                 "ORDER BY key_id",
    "usage_daily": "SELECT key_id, day, model, customer_id, requests, input_tokens, output_tokens, cost, "
                   "estimated_requests FROM usage_daily ORDER BY key_id, day, model",
    "ledger": "SELECT customer_id, id, key_id, kind, amount, balance_after, idempotency_key, reason, created_at "
              "FROM ledger ORDER BY id",
}

# Customers 1-3 have balances; customer 4 has none (a release for it reports no balance). Keys 1, 2, 5
# belong to customer 1, key 3 to customer 2, key 4 to customer 3. Key 5 has no key_spend row; key 1's
# row is from yesterday (day rollover), key 3's from last month (month rollover), key 4 has open holds.
_SEED = """
INSERT INTO customers (external_id) VALUES ('c1'), ('c2'), ('c3'), ('c4');
INSERT INTO balances (customer_id, balance, held, updated_at) VALUES
    (1, 100000, 0, '2030-01-01Z'), (2, 5000, 0, '2030-01-01Z'), (3, 0, 0, '2030-01-01Z');
INSERT INTO key_spend (key_id, held, day, day_spent, day_requests, month, month_spent) VALUES
    (1, 0, '2030-03-30', 700, 7, '2030-03-01', 9000),
    (2, 0, '2030-03-31', 100, 1, '2030-03-01', 100),
    (3, 0, '2030-02-27', 50, 5, '2030-02-01', 500),
    (4, 0, '2030-03-31', 0, 0, '2030-03-01', 0);
INSERT INTO ledger (customer_id, kind, amount, balance_after, idempotency_key, reason, created_at) VALUES
    (1, 1, 100300, 100300, 'grant-1', 'signup', '2030-01-01Z'),
    (1, 3, -300, 100000, 'old-1', NULL, '2030-01-02Z'),
    (2, 1, 5000, 5000, 'grant-2', 'signup', '2030-01-01Z');
"""


def _key_hash(n: int) -> bytes:
    return hashlib.sha256(f"key-{n}".encode()).digest()


async def _fresh(server: PostgresServer) -> asyncpg.Connection:
    conn = await asyncpg.connect(server.create_database())
    assert await migrate_postgres(conn, schema_pg.MIGRATIONS) == len(schema_pg.MIGRATIONS)
    await conn.execute(_SEED)
    for key_id, customer_id in ((1, 1), (2, 1), (3, 2), (4, 3), (5, 1)):
        got = await conn.fetchval(
            "INSERT INTO keys (customer_id, key_hash, prefix, tier) VALUES ($1, $2, 'sk', 'pro') RETURNING id",
            customer_id, _key_hash(key_id),
        )
        assert got == key_id
    return conn


class Pair:
    """The same database twice: ``v1`` settles through newapi_settle_v1, ``v2`` through v2."""

    def __init__(self, v1: asyncpg.Connection, v2: asyncpg.Connection) -> None:
        self.conns = {"v1": v1, "v2": v2}
        self.outcomes: list[int] = []

    async def execute(self, sql: str, *args: Any) -> None:
        for conn in self.conns.values():
            await conn.execute(sql, *args)

    async def hold(self, request_id: str, customer_id: int, key_id: int, amount: int, now: datetime) -> None:
        """An open hold, as authorize leaves it (balances.held and key_spend.held raised too)."""
        await self.execute(
            """
            WITH h AS (
                INSERT INTO holds (request_id, customer_id, key_id, amount, created_at, expires_at)
                VALUES ($1, $2, $3, $4, $5::timestamptz, $5::timestamptz + interval '1 hour')
                ON CONFLICT DO NOTHING RETURNING amount
            ), b AS (
                UPDATE balances SET held = held + coalesce((SELECT amount FROM h), 0) WHERE customer_id = $2
            )
            UPDATE key_spend SET held = held + coalesce((SELECT amount FROM h), 0) WHERE key_id = $3
            """,
            request_id, customer_id, key_id, amount, now,
        )

    async def settle(self, items: Sequence[Item], now: datetime) -> list[tuple[Any, ...]]:
        """Run the batch through both functions; assert identical results and identical tables.
        Returns v2's rows with each ledger id replaced by its entry's (customer id, idempotency key)."""
        payload = json.dumps(list(items))
        results: dict[str, list[tuple[Any, ...]]] = {}
        tables: dict[str, dict[str, list[tuple[Any, ...]]]] = {}
        for version, conn in self.conns.items():
            async with conn.transaction():
                rows = await conn.fetch(f"SELECT * FROM newapi_settle_{version}($1::json, $2)", payload, now)
            tables[version] = {name: [tuple(r) for r in await conn.fetch(sql)] for name, sql in _TABLES.items()}
            # v1 burns an identity value on every duplicate (ON CONFLICT draws it first), v2 does not:
            # compare ledger ids by the entry they point at, and ledger rows in id order.
            entry = {row[1]: (row[0], row[6]) for row in tables[version]["ledger"]}
            results[version] = [(*r[:2], entry.get(r[2], r[2]), *r[3:]) for r in rows]
            tables[version]["ledger"] = [row[:1] + row[2:] for row in tables[version]["ledger"]]
        assert results["v2"] == results["v1"], "function results differ"
        assert [r[0] for r in results["v2"]] == [it["r"] for it in items], "one row per item, in input order"
        for name in _TABLES:
            assert tables["v2"][name] == tables["v1"][name], f"{name} differs after the batch"
        self.outcomes += [r[1] for r in results["v2"]]
        return results["v2"]


@pytest.fixture
async def pair(postgres_server: PostgresServer) -> AsyncIterator[Pair]:
    v1 = await _fresh(postgres_server)
    v2 = await _fresh(postgres_server)
    try:
        yield Pair(v1, v2)
    finally:
        await v1.close()
        await v2.close()


def debit(r: str, c: int, k: int, x: int, m: str = "qwen", i: int = 10, o: int = 20, s: bool = False) -> Item:
    return {"r": r, "c": c, "k": k, "x": x, "m": m, "i": i, "o": o, "s": s}


def release(r: str, c: int, k: int) -> Item:
    """As the store encodes a release (cost null, no usage)."""
    return {"r": r, "c": c, "k": k, "x": None, "m": "", "i": 0, "o": 0, "s": False}


async def test_mixed_batches_match_v1(pair: Pair) -> None:
    now = T0
    for rid, c, k, amount in (("a1", 1, 1, 500), ("a2", 1, 2, 400), ("a3", 1, 1, 300), ("b1", 2, 3, 900),
                              ("c1", 3, 4, 250), ("c2", 3, 4, 150), ("r1", 1, 1, 200), ("r2", 2, 3, 100),
                              ("old-1", 1, 1, 80), ("w1", 1, 5, 60), ("rel-then-debit", 1, 2, 70)):
        await pair.hold(rid, c, k, amount, now)
    rows = await pair.settle(
        [
            debit("b1", 2, 3, 800, "llama", s=True),  # customers out of order: locks still ascending
            debit("a1", 1, 1, 450),
            release("r1", 1, 1),
            debit("a2", 1, 2, 500, "llama"),  # costs more than its hold
            debit("a1", 1, 1, 999),  # same request again in this batch: duplicate of the first
            debit("old-1", 1, 1, 80),  # already in the ledger, and a new hold for it: released, not charged
            debit("grant-2", 2, 3, 5),  # a top-up's idempotency key: duplicate of that entry
            debit("x-expired", 1, 1, 120),  # its hold expired already: charged, nothing released
            release("r-expired", 1, 2),
            release("r2", 2, 3),
            debit("c1", 3, 4, 250, s=True),  # customer 3 goes negative
            debit("c2", 3, 4, 0),  # free request
            release("r4", 4, 1),  # customer without a balances row
            debit("w1", 1, 5, 60),  # key without a key_spend row
            release("rel-then-debit", 1, 2),  # the release takes the hold ...
            debit("rel-then-debit", 1, 2, 70),  # ... the debit after it is charged without one
            debit("a3", 1, 1, 300, "llama"),
            debit("a1", 1, 1, 1),  # third time
        ],
        now,
    )
    assert [r[1] for r in rows] == [0, 0, 2, 0, 1, 1, 1, 0, 2, 2, 0, 0, 2, 0, 2, 0, 0, 1]
    assert rows[1][2:] == ((1, "a1"), 450, 50, 99550)
    assert rows[4][2:] == rows[17][2:] == ((1, "a1"), 450, 0, 99550)
    assert rows[5][2:] == ((1, "old-1"), 300, 80, 100000)  # the original debit; the new hold released

    # The next day (key_spend day rollover) and then the next month: retries of settled requests,
    # new debits on every key, releases of holds taken the day before.
    await pair.hold("d1", 1, 1, 100, now)
    await pair.hold("d2", 3, 4, 100, now)
    now = T0 + timedelta(hours=3)
    await pair.settle(
        [debit("d1", 1, 1, 90), debit("a2", 1, 2, 500), release("d2", 3, 4), debit("e1", 2, 3, 10),
         debit("e2", 1, 5, 10, "other"), debit("e1", 2, 3, 10)],
        now,
    )
    now += timedelta(days=31)
    await pair.settle([debit("f1", 1, 1, 5), debit("f2", 1, 2, 6), debit("f3", 2, 3, 7), release("f1", 1, 1)], now)
    assert {0, 1, 2} <= set(pair.outcomes)


async def test_single_items_and_empty_batch_match_v1(pair: Pair) -> None:
    await pair.hold("s1", 1, 1, 10, T0)
    assert await pair.settle([], T0) == []
    assert [r[1] for r in await pair.settle([debit("s1", 1, 1, 10)], T0)] == [0]
    assert [r[1] for r in await pair.settle([debit("s1", 1, 1, 10)], T0)] == [1]
    assert [r[1] for r in await pair.settle([release("s2", 1, 1)], T0)] == [2]


async def test_random_batches_match_v1(pair: Pair) -> None:
    rnd = random.Random(20300331)
    now = T0
    owners = {1: 1, 2: 1, 5: 1, 3: 2, 4: 3}
    key_of = {f"q{n}": rnd.choice(list(owners)) for n in range(80)}  # a request belongs to one key
    request_ids = list(key_of)
    for _ in range(25):
        for rid in rnd.sample(request_ids, 12):
            await pair.hold(rid, owners[key_of[rid]], key_of[rid], rnd.randrange(0, 400), now)
        items: list[Item] = []
        for _ in range(rnd.randrange(1, 45)):
            rid = rnd.choice(request_ids)
            key = key_of[rid]
            if rnd.random() < 0.2:
                items.append(release(rid, owners[key], key))
            else:
                items.append(debit(rid, owners[key], key, rnd.randrange(0, 500), rnd.choice(["m1", "m2", "m3"]),
                                   rnd.randrange(0, 100), rnd.randrange(0, 100), rnd.random() < 0.3))
        await pair.settle(items, now)
        now += timedelta(hours=rnd.choice([0, 1, 5, 13]))
    assert {0, 1, 2} <= set(pair.outcomes)


async def test_the_store_settles_through_v2(pg_dsn: str) -> None:
    """With v1 gone (a future cleanup migration could drop it), the store still settles."""
    store = PostgresStore(pg_dsn)
    await store.open()
    try:
        customer = await store.upsert_customer("acme")
        await store.top_up(customer.id, 1000, "grant", "test")
        new = generate_key()
        key = await store.issue_key(customer.id, new.hash, new.prefix, KeySettings(tier="pro", cap_daily=10_000))
        conn = await asyncpg.connect(pg_dsn)
        try:
            await conn.execute("DROP FUNCTION newapi_settle_v1(json, timestamptz)")
        finally:
            await conn.close()
        holds = [await store.authorize(key, 100, f"req-{i}", ttl=60) for i in range(3)]
        audit = AuditEvent(ts=T0, request_id="req-0", status=200, customer_id=customer.id, key_id=key.id,
                           decisions={"geo": "allow"}, prompt="hi\x00there")
        first = await store.settle(holds[0], 30, Usage("qwen", "c", 1, 2), audit=audit)
        assert (first.charged, first.released, first.balance_after, first.duplicate) == (30, 70, 970, False)
        assert (await store.settle(holds[0], 30, Usage("qwen", "c", 1, 2))).duplicate
        await store.release(holds[1])
        assert (await store.settle(holds[2], 500, Usage("qwen", "c", 1, 2))).balance_after == 470
        snap = await store.balance(customer.id)
        assert (snap.balance, snap.held) == (470, 0)
        spend = await store.key_spend(key.id)
        assert (spend.held, spend.requests_today) == (0, 2)
        events = (await store.query_audit(since=T0, until=T0 + timedelta(seconds=1))).events
        assert [(e.request_id, e.prompt, e.decisions) for e in events] == [("req-0", "hi\ufffdthere", {"geo": "allow"})]
    finally:
        await store.close()


def _former_audit_json(events: Sequence[AuditEvent]) -> str:
    """The encoding before the orjson fast path (stdlib json, every string cleaned first)."""
    return json.dumps([cleaned_audit_row(audit_row(e)) for e in events], separators=(",", ":"), ensure_ascii=False)


_CLEAN = AuditEvent(
    ts=T0, request_id="req-1", status=200, customer_id=1, key_id=2, channel="vllm-a", model="qwen",
    upstream_model="Qwen/Qwen3", input_tokens=3, output_tokens=4, cost=5, latency_ms=6, country="DE",
    decisions={"geo": "allow", "attempts": ["a", "b"], "n": 1.5, "byok": True, "none": None},
    prompt="héllo 世界 \\u0000 \"quoted\"\n", completion=None,
)


#: Client text in decisions, and a non-string key (the stdlib encoder writes it as a string).
_HOSTILE_DECISIONS: dict[Any, Any] = {"aup": "a\x00b", "k\x00": ["\x00", ("t", 1)], 7: "int key"}


@pytest.mark.parametrize(
    "events",
    [
        [_CLEAN],
        [_CLEAN, replace(_CLEAN, request_id="req-2", prompt=None, decisions={})],
        [_CLEAN, replace(_CLEAN, prompt="nul\x00inside", completion="\x00")],
        [replace(_CLEAN, model="gpt\ud800", upstream_model="x\udfff\x00")],
        [replace(_CLEAN, decisions=_HOSTILE_DECISIONS)],
        [replace(_CLEAN, decisions={"big": 2**70}, status=2**40, latency_ms=-(2**40))],
    ],
    ids=["clean", "two", "nul", "surrogates", "decisions", "big-ints"],
)
def test_audit_json_encodes_what_the_stdlib_encoding_did(events: list[AuditEvent]) -> None:
    got = _audit_json(events)
    assert isinstance(got, str)
    assert json.loads(got) == json.loads(_former_audit_json(events))
    assert "\\u0000" not in got.replace("\\\\", "")  # no NUL reaches a text column


def test_dumps_matches_the_stdlib() -> None:
    value = [{"r": "req-é", "c": 1, "x": None, "s": False, "big": 2**70}, {"bad": "\ud800"}]
    assert _dumps(value) == json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    clean = [{"r": "req-é", "c": 1, "x": None, "s": False, "m": "qwen", "i": 2**62}]
    assert json.loads(_dumps(clean)) == clean
