"""Migrations: empty database, previous-version database with data, replicas starting together."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from dataclasses import replace
from datetime import UTC, datetime

import asyncpg
import pytest

from newapi_gateway.store import schema_pg, schema_sqlite
from newapi_gateway.store.errors import MigrationError
from newapi_gateway.store.keys import generate_key
from newapi_gateway.store.migrations import Migration, migrate_postgres, migrate_sqlite
from newapi_gateway.store.models import Hold, LedgerKind, Usage
from newapi_gateway.store.postgres import PostgresStore
from tests.gateway.store.conftest import Backend

HEAD = len(schema_pg.MIGRATIONS)


def test_both_back_ends_have_the_same_versions() -> None:
    assert [m.version for m in schema_pg.MIGRATIONS] == [m.version for m in schema_sqlite.MIGRATIONS]
    assert [m.version for m in schema_pg.MIGRATIONS] == list(range(1, HEAD + 1))


async def test_empty_database_to_head(backend: Backend) -> None:
    store = await backend.open()
    assert await store.schema_version() == HEAD
    again = await backend.open()  # a second start applies nothing and succeeds
    assert await again.schema_version() == HEAD


async def _seed_v1(backend: Backend) -> bytes:
    """Migrate an empty database to v1 and write rows the way a v1 gateway would have."""
    key = generate_key()
    if backend.name == "sqlite":
        conn = sqlite3.connect(str(backend.sqlite_path), isolation_level=None)
        assert migrate_sqlite(conn, schema_sqlite.MIGRATIONS, target=1) == 1
        conn.executescript(
            """
            INSERT INTO customers (id, external_id, display_name, created_at, updated_at)
                VALUES (1, 'legacy', 'Legacy Ltd', 1700000000000000, 1700000000000000);
            INSERT INTO balances (customer_id, balance, held, updated_at) VALUES (1, 4000, 0, 1700000000000000);
            INSERT INTO ledger (customer_id, kind, amount, balance_after, idempotency_key, reason, created_at)
                VALUES (1, 1, 5000, 5000, 'grant', 'signup', 1700000000000000),
                       (1, 3, -1000, 4000, 'req-old', NULL, 1700000001000000);
            INSERT INTO usage_daily (key_id, day, model, customer_id, requests, input_tokens, output_tokens, cost)
                VALUES (1, '2023-11-14', 'qwen', 1, 1, 10, 20, 1000);
            """
        )
        conn.execute(
            "INSERT INTO keys (id, customer_id, key_hash, prefix, tier, rpm, allowed_models, created_at, updated_at) "
            "VALUES (1, 1, ?, ?, 'pro', 60, '[\"qwen\"]', 1700000000000000, 1700000000000000)",
            (key.hash, key.prefix),
        )
        conn.close()
    else:
        conn = await asyncpg.connect(backend.dsn)
        try:
            assert await migrate_postgres(conn, schema_pg.MIGRATIONS, target=1) == 1
            await conn.execute(
                """
                INSERT INTO customers (external_id, display_name) VALUES ('legacy', 'Legacy Ltd');
                INSERT INTO balances (customer_id, balance, held) VALUES (1, 4000, 0);
                INSERT INTO ledger (customer_id, kind, amount, balance_after, idempotency_key, reason)
                    VALUES (1, 1, 5000, 5000, 'grant', 'signup'), (1, 3, -1000, 4000, 'req-old', NULL);
                INSERT INTO usage_daily (key_id, day, model, customer_id, requests, input_tokens, output_tokens, cost)
                    VALUES (1, '2023-11-14', 'qwen', 1, 1, 10, 20, 1000);
                """
            )
            await conn.execute(
                "INSERT INTO keys (customer_id, key_hash, prefix, tier, rpm, allowed_models) "
                "VALUES (1, $1, $2, 'pro', 60, ARRAY['qwen'])",
                key.hash, key.prefix,
            )
            assert await conn.fetchval("SELECT to_regclass('audit_events')") is None
        finally:
            await conn.close()
    return key.hash


async def test_previous_version_database_keeps_its_data(backend: Backend) -> None:
    key_hash = await _seed_v1(backend)
    store = await backend.open()
    assert await store.schema_version() == HEAD
    customer = await store.get_customer("legacy")
    assert customer is not None
    assert customer.display_name == "Legacy Ltd"
    key = await store.resolve_key(key_hash)
    assert key is not None
    assert key.settings.rpm == 60
    assert key.settings.allowed_models == ("qwen",)
    snap = await store.balance(customer.id)
    assert (snap.balance, snap.held) == (4000, 0)
    ledger = await store.list_ledger(customer.id)
    assert [(e.kind, e.amount) for e in ledger.entries] == [(LedgerKind.DEBIT, -1000), (LedgerKind.TOP_UP, 5000)]
    from datetime import date

    usage = await store.usage(key_id=key.id, start=date(2023, 11, 1), end=date(2023, 11, 30))
    assert [(u.model, u.cost) for u in usage] == [("qwen", 1000)]
    # The migrated database works for the new code paths (v2 audit, v3 functions).
    hold = await store.authorize(key, 500, "req-new", ttl=60)
    assert (await store.settle(hold, 100, Usage("qwen", "c", 1, 1))).balance_after == 3900
    assert (await store.settle(hold, 100, Usage("qwen", "c", 1, 1))).duplicate


async def test_replicas_starting_together_migrate_once(pg_dsn: str) -> None:
    async def migrate() -> int:
        conn = await asyncpg.connect(pg_dsn)
        try:
            return await migrate_postgres(conn, schema_pg.MIGRATIONS)
        finally:
            await conn.close()

    assert await asyncio.gather(*[migrate() for _ in range(8)]) == [HEAD] * 8
    conn = await asyncpg.connect(pg_dsn)
    try:
        rows = await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")
        assert [r[0] for r in rows] == list(range(1, HEAD + 1))
    finally:
        await conn.close()


async def test_stores_opening_together_on_an_empty_database(backend: Backend) -> None:
    stores = [backend.new() for _ in range(4)]
    await asyncio.gather(*[s.open() for s in stores])
    assert {await s.schema_version() for s in stores} == {HEAD}


async def test_an_edited_migration_is_refused(pg_dsn: str, tmp_path: object) -> None:
    edited = (*schema_pg.MIGRATIONS[:1], replace(schema_pg.MIGRATIONS[1], statements=("SELECT 2",)))
    conn = await asyncpg.connect(pg_dsn)
    try:
        await migrate_postgres(conn, schema_pg.MIGRATIONS, target=2)
        with pytest.raises(MigrationError, match="changed after it was applied"):
            await migrate_postgres(conn, edited)
    finally:
        await conn.close()
    lite = sqlite3.connect(":memory:", isolation_level=None)
    migrate_sqlite(lite, schema_sqlite.MIGRATIONS, target=2)
    with pytest.raises(MigrationError, match="changed after it was applied"):
        migrate_sqlite(lite, (*schema_sqlite.MIGRATIONS[:1], replace(schema_sqlite.MIGRATIONS[1], statements=("",))))


def test_numbering_gaps_and_bad_targets_are_refused() -> None:
    lite = sqlite3.connect(":memory:", isolation_level=None)
    with pytest.raises(MigrationError, match="without gaps"):
        migrate_sqlite(lite, (Migration(1, "a", ("SELECT 1",)), Migration(3, "c", ("SELECT 1",))))
    with pytest.raises(MigrationError, match="target"):
        migrate_sqlite(lite, schema_sqlite.MIGRATIONS, target=HEAD + 1)
    # A failed run leaves nothing half-applied.
    with pytest.raises(sqlite3.OperationalError):
        migrate_sqlite(lite, (Migration(1, "ok", ("CREATE TABLE t (x)",)), Migration(2, "bad", ("NOT SQL",))))
    assert lite.execute("SELECT count(*) FROM sqlite_master WHERE name = 't'").fetchone()[0] == 0


async def test_settle_v2_arrives_on_a_version_3_database(pg_dsn: str) -> None:
    """Migration 4 on a database at version 3 whose debits were settled by newapi_settle_v1: the
    store (now on v2) sees them as settled, and v1 stays callable for older replicas."""
    key = generate_key()
    now = datetime.now(UTC)
    items = [{"r": f"req-{i}", "c": 1, "k": 1, "x": 100, "m": "qwen", "i": 1, "o": 2, "s": False} for i in range(3)]
    conn = await asyncpg.connect(pg_dsn)
    try:
        assert await migrate_postgres(conn, schema_pg.MIGRATIONS, target=3) == 3
        await conn.execute(
            "INSERT INTO customers (external_id) VALUES ('legacy'); "
            "INSERT INTO balances (customer_id, balance) VALUES (1, 1000); INSERT INTO key_spend (key_id) VALUES (1)"
        )
        await conn.execute("INSERT INTO keys (customer_id, key_hash, prefix, tier) VALUES (1, $1, $2, 'pro')",
                           key.hash, key.prefix)
        assert await conn.fetchval("SELECT to_regprocedure('newapi_settle_v2(json, timestamptz)')") is None
        settled = await conn.fetch("SELECT * FROM newapi_settle_v1($1::json, $2)", json.dumps(items[:1]), now)
        assert [(r["o_outcome"], r["o_balance_after"]) for r in settled] == [(0, 900)]
    finally:
        await conn.close()

    store = PostgresStore(pg_dsn)
    await store.open()
    try:
        assert await store.schema_version() == HEAD
        holds = [Hold(f"req-{i}", 1, 1, 100, now) for i in range(2)]
        again, new = [await store.settle(h, 100, Usage("qwen", "c", 1, 2)) for h in holds]
        assert (again.duplicate, again.ledger_id, again.balance_after) == (True, settled[0]["o_ledger_id"], 900)
        assert (new.duplicate, new.charged, new.balance_after) == (False, 100, 800)
    finally:
        await store.close()

    conn = await asyncpg.connect(pg_dsn)
    try:  # an older replica during the rolling update
        rows = await conn.fetch("SELECT * FROM newapi_settle_v1($1::json, $2)", json.dumps(items), now)
        assert [(r["o_outcome"], r["o_balance_after"]) for r in rows] == [(1, 900), (1, 800), (0, 700)]
    finally:
        await conn.close()
