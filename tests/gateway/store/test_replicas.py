"""Key changes reach every replica within 2 s: two PostgresStores sharing PostgreSQL + Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from newapi_gateway.store.keys import generate_key
from newapi_gateway.store.models import KeyRecord, KeySettings
from newapi_gateway.store.postgres import PostgresStore
from tests.services import RedisFactory


async def _within(seconds: float, predicate: Callable[[], Awaitable[bool]]) -> float:
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        if await predicate():
            return time.monotonic() - start
        await asyncio.sleep(0.02)
    raise AssertionError(f"condition not reached within {seconds}s")


async def _setup(a: PostgresStore) -> tuple[KeyRecord, bytes]:
    customer = await a.upsert_customer("replicated")
    new = generate_key()
    key = await a.issue_key(customer.id, new.hash, new.prefix, KeySettings(tier="pro"))
    return key, new.hash


async def test_revocation_reaches_the_other_replica_through_pubsub(pg_dsn: str, redis_url: str) -> None:
    # A long TTL on purpose: only the invalidation channel can make B notice in time.
    a = PostgresStore(pg_dsn, redis_url=redis_url, key_cache_ttl=60)
    b = PostgresStore(pg_dsn, redis_url=redis_url, key_cache_ttl=60)
    await a.open()
    await b.open()
    try:
        key, key_hash = await _setup(a)
        assert (await b.resolve_key(key_hash)).refusal() is None  # cached on B for 60 s

        async def b_sees(reason: str | None) -> bool:
            record = await b.resolve_key(key_hash)
            return record is not None and record.refusal() == reason

        await a.suspend_key(key.id)
        assert await _within(2, lambda: b_sees("suspended")) < 2
        await a.resume_key(key.id)
        await _within(2, lambda: b_sees(None))
        await a.revoke_key(key.id)
        await _within(2, lambda: b_sees("revoked"))

        other, other_hash = await _setup_second(a)
        assert await b.resolve_key(other_hash) is not None
        new = generate_key()
        await a.rotate_key(other.id, new.hash, new.prefix)

        async def old_gone() -> bool:
            return await b.resolve_key(other_hash) is None

        await _within(2, old_gone)
        assert (await b.health()).status == "ok"
    finally:
        await a.close()
        await b.close()


async def _setup_second(a: PostgresStore) -> tuple[KeyRecord, bytes]:
    customer = await a.upsert_customer("second")
    new = generate_key()
    return await a.issue_key(customer.id, new.hash, new.prefix, KeySettings(tier="pro")), new.hash


async def test_without_redis_the_cache_ttl_still_bounds_staleness(pg_dsn: str, redis_factory: RedisFactory) -> None:
    redis = redis_factory.new()
    a = PostgresStore(pg_dsn, redis_url=redis.url())
    b = PostgresStore(pg_dsn, redis_url=redis.url())
    await a.open()
    await b.open()
    try:
        key, key_hash = await _setup(a)
        assert (await b.resolve_key(key_hash)).refusal() is None
        redis.stop()

        async def degraded() -> bool:
            return (await b.health()).status == "degraded"

        await _within(10, degraded)
        health = await b.health()
        assert health.components["postgresql"] == "ok"
        assert health.components["redis"].startswith("unavailable")
        await a.revoke_key(key.id)  # the publish fails; the database change stands

        async def b_refuses() -> bool:
            record = await b.resolve_key(key_hash)
            return record is not None and record.refusal() == "revoked"

        assert await _within(2, b_refuses) <= 2
        redis.start()  # same port: the subscriber reconnects by itself

        async def healthy() -> bool:
            return (await b.health()).status == "ok"

        await _within(15, healthy)
    finally:
        await a.close()
        await b.close()
