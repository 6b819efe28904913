"""Migrations applied by the gateway process at start: an empty database (SQLite, and PostgreSQL
with three replicas starting at once) and a database left at the first schema version with
data, which the gateway migrates to head and then bills against."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from contextlib import ExitStack
from pathlib import Path

import asyncpg
import httpx
import pytest

from newapi_gateway.demo_upstream import DemoUpstreamProcess
from newapi_gateway.store import schema_pg, schema_sqlite
from newapi_gateway.store.keys import generate_key
from newapi_gateway.store.migrations import migrate_postgres, migrate_sqlite

from .metered import (
    BACKENDS,
    PAID_MODEL,
    Admin,
    FreshBackend,
    MeteredGateway,
    StateBackend,
    metered_gateway,
    poll,
    write_routes,
)

HEAD = len(schema_pg.MIGRATIONS)


def schema_version(backend: StateBackend) -> int:
    if backend.name == "sqlite":
        assert backend.sqlite_path is not None
        with sqlite3.connect(backend.sqlite_path) as conn:
            return int(conn.execute("SELECT max(version) FROM schema_migrations").fetchone()[0])

    async def go() -> int:
        conn = await asyncpg.connect(backend.dsn)
        try:
            return int(await conn.fetchval("SELECT max(version) FROM schema_migrations"))
        finally:
            await conn.close()

    return asyncio.run(go())


def test_empty_sqlite_file_is_created_and_migrated(
    tmp_path: Path, demo_upstream: DemoUpstreamProcess, fresh_backend: FreshBackend
) -> None:
    backend = fresh_backend("sqlite")
    assert backend.sqlite_path is not None
    assert not backend.sqlite_path.exists()
    with metered_gateway(tmp_path, demo_upstream.url, backend):
        assert schema_version(backend) == HEAD


def test_empty_postgres_with_replicas_starting_together(
    tmp_path: Path, demo_upstream: DemoUpstreamProcess, fresh_backend: FreshBackend
) -> None:
    backend = fresh_backend("postgres")
    gateways = []
    for i in range(3):
        (tmp_path / f"r{i}").mkdir()
        gateways.append(MeteredGateway(tmp_path / f"r{i}", write_routes(tmp_path / f"r{i}" / "routes.json",
                                                                         demo_upstream.url), backend))
    errors: list[BaseException] = []

    def start(gw: MeteredGateway) -> None:
        try:
            gw.start()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(gw,)) for gw in gateways]
    try:
        for t in threads:  # all three launch before any is ready: they race for the migration lock
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        assert schema_version(backend) == HEAD
        assert all(gw.readyz()["status"] == "ready" for gw in gateways)
    finally:
        for gw in gateways:
            gw.stop()


async def _seed_v1_postgres(dsn: str, key_hash: bytes, prefix: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        assert await migrate_postgres(conn, schema_pg.MIGRATIONS, target=1) == 1
        await conn.execute(
            """
            INSERT INTO customers (external_id, display_name) VALUES ('legacy', 'Legacy Ltd');
            INSERT INTO balances (customer_id, balance, held) VALUES (1, 4000, 0);
            INSERT INTO ledger (customer_id, kind, amount, balance_after, idempotency_key, reason)
                VALUES (1, 1, 4000, 4000, 'grant', 'signup');
            """
        )
        await conn.execute("INSERT INTO keys (customer_id, key_hash, prefix, tier) VALUES (1, $1, $2, 'pro')",
                           key_hash, prefix)
    finally:
        await conn.close()


def _seed_v1_sqlite(path: Path, key_hash: bytes, prefix: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        assert migrate_sqlite(conn, schema_sqlite.MIGRATIONS, target=1) == 1
        conn.executescript(
            """
            INSERT INTO customers (id, external_id, display_name, created_at, updated_at)
                VALUES (1, 'legacy', 'Legacy Ltd', 1700000000000000, 1700000000000000);
            INSERT INTO balances (customer_id, balance, held, updated_at) VALUES (1, 4000, 0, 1700000000000000);
            INSERT INTO ledger (customer_id, kind, amount, balance_after, idempotency_key, reason, created_at)
                VALUES (1, 1, 4000, 4000, 'grant', 'signup', 1700000000000000);
            """
        )
        conn.execute("INSERT INTO keys (id, customer_id, key_hash, prefix, tier, created_at, updated_at) "
                     "VALUES (1, 1, ?, ?, 'pro', 1700000000000000, 1700000000000000)", (key_hash, prefix))
    finally:
        conn.close()


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_previous_version_database_is_migrated_and_used(
    backend_name: str, tmp_path: Path, demo_upstream: DemoUpstreamProcess, fresh_backend: FreshBackend
) -> None:
    backend = fresh_backend(backend_name)
    key = generate_key()
    if backend.name == "sqlite":
        assert backend.sqlite_path is not None
        _seed_v1_sqlite(backend.sqlite_path, key.hash, key.prefix)
    else:
        assert backend.dsn is not None
        asyncio.run(_seed_v1_postgres(backend.dsn, key.hash, key.prefix))
    assert schema_version(backend) == 1
    with ExitStack() as stack:
        gw = stack.enter_context(metered_gateway(tmp_path, demo_upstream.url, backend))
        assert schema_version(backend) == HEAD
        admin = Admin(gw.admin_url)
        assert admin.balance("legacy")["balance"] == 4000
        rsp = httpx.post(gw.base_url + "/chat/completions", headers={"Authorization": f"Bearer {key.secret}"},
                         json={"model": PAID_MODEL, "messages": [{"role": "user", "content": "old key"}],
                               "max_tokens": 5}, timeout=30)
        assert rsp.status_code == 200, rsp.text
        debits = poll(lambda: (d := admin.debits("legacy")) and d, what="the legacy customer's debit")
        assert admin.balance("legacy")["balance"] == 4000 + debits[0]["amount"]
        assert [e["idempotencyKey"] for e in admin.ledger("legacy")][-1] == "grant"
        admin.close()
