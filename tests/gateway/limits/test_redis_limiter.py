"""Redis-only behaviour: shared across replicas, server clock, NOSCRIPT recovery, outages."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis.asyncio as aioredis

from newapi_gateway.limits.base import LimitSpec
from newapi_gateway.limits.redis import RedisLimiter
from newapi_gateway.store.errors import StoreUnavailable
from tests.services import RedisFactory


async def test_replicas_share_one_limit(redis_url: str) -> None:
    replicas = [RedisLimiter(redis_url) for _ in range(3)]  # server clock: one time source for all
    try:
        spec = LimitSpec(rpm=30, daily_quota=1_000)
        results = await asyncio.gather(*[replicas[i % 3].check(42, spec, 0) for i in range(90)])
        assert sum(r.allowed for r in results) == 30
        state = await replicas[0].peek(42, spec)
        assert (state.remaining_requests, state.remaining_quota) == (0, 970)
        # Every check went to Redis, each replica's 30 concurrent checks as ONE script call (at most
        # +2 once for loading the script, +1 for the peek).
        assert [r.checks for r in replicas] == [31, 30, 30]
        assert [1 <= r.round_trips <= 4 for r in replicas] == [True] * 3
    finally:
        for r in replicas:
            await r.close()


async def test_unlimited_keys_cost_no_round_trip(redis_url: str) -> None:
    limiter = RedisLimiter(redis_url)
    try:
        assert (await limiter.check(1, LimitSpec(), 100)).allowed
        assert limiter.round_trips == 0
    finally:
        await limiter.close()


async def test_script_is_reloaded_after_script_flush(redis_url: str) -> None:
    limiter = RedisLimiter(redis_url)
    admin = aioredis.Redis.from_url(redis_url)
    try:
        spec = LimitSpec(rpm=5)
        assert (await limiter.check(1, spec, 0)).allowed
        await admin.script_flush()
        assert (await limiter.check(1, spec, 0)).remaining_requests == 3  # state kept, script reloaded
        assert limiter.round_trips == 4  # 1 + (NOSCRIPT, SCRIPT LOAD, EVALSHA)
        assert (await limiter.check(1, spec, 0)).allowed
        assert limiter.round_trips == 5
        keys = sorted(k.decode() for k in await admin.keys("newapi:rl:*"))
        assert keys == ["newapi:rl:{1}:q", "newapi:rl:{1}:r"]  # one hash slot per API key
        assert 0 < await admin.pttl("newapi:rl:{1}:r") <= 60_000
    finally:
        await admin.aclose()
        await limiter.close()


async def test_redis_down_fails_closed_and_recovers_by_itself(redis_factory: RedisFactory) -> None:
    server = redis_factory.new()
    limiter = RedisLimiter(server.url(3), timeout=1.0)
    spec = LimitSpec(rpm=100)
    try:
        assert (await limiter.check(1, spec, 0)).allowed
        assert await limiter.ping()
        server.stop()
        with pytest.raises(StoreUnavailable) as err:
            await limiter.check(1, spec, 0)
        assert err.value.backend == "redis"
        assert not await limiter.ping()
        server.start()  # same port, empty (no persistence): the script cache is gone too
        deadline = time.monotonic() + 20
        while True:
            try:
                decision = await limiter.check(1, spec, 0)
                break
            except StoreUnavailable:
                assert time.monotonic() < deadline, "limiter did not recover"
                await asyncio.sleep(0.1)
        assert decision.allowed
        assert decision.remaining_requests == 99  # fresh server: state was not persisted
    finally:
        await limiter.close()


async def test_password_and_database_from_the_url(redis_factory: RedisFactory) -> None:
    server = redis_factory.new()
    admin = aioredis.Redis.from_url(server.url())
    try:
        await admin.config_set("requirepass", "s3cret")
        limiter = RedisLimiter(f"redis://:s3cret@127.0.0.1:{server.port}/7")
        try:
            assert (await limiter.check(5, LimitSpec(rpm=2), 0)).allowed
        finally:
            await limiter.close()
        authed = aioredis.Redis.from_url(f"redis://:s3cret@127.0.0.1:{server.port}/7")
        assert await authed.exists("newapi:rl:{5}:r") == 1
        await authed.aclose()
        wrong = RedisLimiter(f"redis://:nope@127.0.0.1:{server.port}/7")
        with pytest.raises(StoreUnavailable):
            await wrong.check(5, LimitSpec(rpm=2), 0)
        await wrong.close()
    finally:
        await admin.aclose()
        server.stop()
