"""PostgreSQL outages: StoreUnavailable while down, recovery by the same store object when back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from newapi_gateway.store.errors import StoreUnavailable
from newapi_gateway.store.keys import generate_key
from newapi_gateway.store.models import KeySettings, Usage
from newapi_gateway.store.postgres import PostgresStore
from tests.services import PostgresFactory

USAGE = Usage("m", "c", 1, 1)


async def _eventually(seconds: float, op: Callable[[], Awaitable[Any]]) -> Any:
    """Retry ``op`` until it stops raising StoreUnavailable."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return await op()
        except StoreUnavailable:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


@pytest.mark.parametrize("mode", ["fast", "immediate"])
async def test_postgres_down_then_back_without_restarting_the_store(
    postgres_factory: PostgresFactory, mode: str
) -> None:
    server = postgres_factory.new()
    store = PostgresStore(server.create_database(), command_timeout=3, connect_timeout=2)
    await store.open()
    try:
        customer = await store.upsert_customer("outage")
        await store.top_up(customer.id, 10_000, "grant", "grant")
        new = generate_key()
        key = await store.issue_key(customer.id, new.hash, new.prefix, KeySettings(tier="pro"))
        hold = await store.authorize(key, 1_000, "before", ttl=600)

        server.stop(mode)
        unknown = generate_key().hash
        with pytest.raises(StoreUnavailable) as err:
            await store.resolve_key(unknown)
        assert err.value.backend == "postgresql"
        with pytest.raises(StoreUnavailable):
            await store.authorize(key, 10, "during", ttl=60)
        with pytest.raises(StoreUnavailable):
            await store.settle(hold, 500, USAGE)
        with pytest.raises(StoreUnavailable):
            await store.top_up(customer.id, 1, "during", "x")
        health = await store.health()
        assert health.status == "degraded"
        assert health.components["postgresql"].startswith("unavailable")

        server.start()  # same port, same data
        settled = await _eventually(20, lambda: store.settle(hold, 500, USAGE))  # the retry is idempotent
        assert settled.charged == 500
        assert (await store.settle(hold, 500, USAGE)).duplicate
        assert (await store.authorize(key, 10, "after", ttl=60)).amount == 10
        assert await store.resolve_key(unknown) is None
        assert (await store.health()).status == "ok"
        snap = await store.balance(customer.id)
        assert (snap.balance, snap.held) == (9_500, 10)
    finally:
        await store.close()


async def test_store_opened_while_postgres_is_down_migrates_when_it_comes_up(
    postgres_factory: PostgresFactory,
) -> None:
    server = postgres_factory.new()
    dsn = server.create_database()
    server.stop()
    store = PostgresStore(dsn, connect_timeout=2)
    try:
        with pytest.raises(StoreUnavailable):
            await store.open()
        with pytest.raises(StoreUnavailable):
            await store.upsert_customer("early")
        server.start()
        customer = await _eventually(20, lambda: store.upsert_customer("early"))
        assert customer.external_id == "early"
        assert await store.schema_version() > 0
    finally:
        await store.close()
