"""RedisLimiter batching: the checks of one event-loop turn go to Redis as ONE script call.

Decisions stay exact (the same as one call per check), every caller of a batch fails together on a
lost or late connection, cancelled callers do not disturb the others, NOSCRIPT is recovered.
Outage tests pause a throwaway server's writes (``CLIENT PAUSE ... WRITE`` blocks ``EVALSHA``) to
hold a batch in flight deterministically.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable

import pytest
import redis.asyncio as aioredis

from newapi_gateway.limits.base import LimitDecision, LimitSpec
from newapi_gateway.limits.redis import ROUND3_LUA, SHA, RedisLimiter
from newapi_gateway.store.errors import StoreUnavailable
from tests.gateway.limits.conftest import MsClock
from tests.services import RedisFactory, RedisServer


@pytest.fixture
async def paused_server(redis_factory: RedisFactory) -> AsyncIterator[tuple[RedisServer, aioredis.Redis]]:
    """A throwaway server and an admin connection (for CLIENT PAUSE / KILL, SCRIPT FLUSH)."""
    server = redis_factory.new()
    admin = aioredis.Redis.from_url(server.url())
    try:
        yield server, admin
    finally:
        await admin.client_unpause()
        await admin.aclose()
        server.stop()


async def written(limiter: RedisLimiter, round_trips: int) -> None:
    """Wait until ``round_trips`` script calls were written to the socket (batches go out a turn later)."""
    for _ in range(100):
        if limiter.round_trips >= round_trips:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"only {limiter.round_trips} script calls written, expected {round_trips}")


async def batch_in_flight(
    limiter: RedisLimiter, admin: aioredis.Redis, spec: LimitSpec, count: int
) -> tuple[int, list[asyncio.Future[LimitDecision]]]:
    """Connect (one check, script loaded), pause the server's writes and start ``count`` checks of key 1:
    their script call is written and waits. Returns the round trips before it and the checks."""
    assert (await limiter.check(1, spec, 0)).allowed  # connected, script loaded
    before = limiter.round_trips
    await admin.client_pause(10_000, all=False)  # WRITE: EVALSHA waits, admin commands run
    tasks = [asyncio.ensure_future(limiter.check(1, spec, 0)) for _ in range(count)]
    await written(limiter, before + 1)
    return before, tasks


async def kill_connection(admin: aioredis.Redis, batch: list[asyncio.Future[LimitDecision]]) -> list[StoreUnavailable]:
    """Kill the limiter's connection while ``batch`` waits on it: every caller gets StoreUnavailable."""
    assert await admin.client_kill_filter(_type="normal", skipme=True) == 1
    results = await asyncio.gather(*batch, return_exceptions=True)
    assert all(isinstance(r, StoreUnavailable) for r in results), results
    return [r for r in results if isinstance(r, StoreUnavailable)]


async def test_a_burst_over_two_replicas_is_batched_and_admits_exactly_the_limit(redis_url: str) -> None:
    a, b = RedisLimiter(redis_url), RedisLimiter(redis_url)
    spec = LimitSpec(rpm=50, daily_quota=1_000)
    try:
        results = await asyncio.gather(*[(a if i % 2 else b).check(11, spec, 0) for i in range(200)])
        admitted = [r for r in results if r.allowed]
        assert len(admitted) == 50
        assert sorted(r.remaining_requests or 0 for r in admitted) == list(range(50))  # each slot once
        assert {r.reason for r in results if not r.allowed} == {"rpm"}
        assert (a.checks, b.checks) == (100, 100)
        # One EVALSHA per replica (+2 for loading the script the first time): far fewer than checks.
        assert 1 <= a.round_trips <= 3
        assert 1 <= b.round_trips <= 3
        state = await a.peek(11, spec)
        assert (state.remaining_requests, state.remaining_quota) == (0, 950)
    finally:
        await a.close()
        await b.close()


async def test_batches_are_capped(redis_url: str) -> None:
    limiter = RedisLimiter(redis_url, max_batch=8)
    try:
        await limiter.check(1, LimitSpec(rpm=100), 0)  # connect and load the script
        before = limiter.round_trips
        results = await asyncio.gather(*[limiter.check(1, LimitSpec(rpm=100), 0) for _ in range(20)])
        assert [r.remaining_requests for r in results] == list(range(98, 78, -1))  # in call order
        assert limiter.round_trips - before == 3  # 8 + 8 + 4
        assert limiter.checks == 21
    finally:
        await limiter.close()
    with pytest.raises(ValueError, match="max_batch"):
        RedisLimiter(redis_url, max_batch=0)


async def test_batched_decisions_and_state_equal_one_call_per_check(redis_url: str, clock: MsClock) -> None:
    """Random concurrent turns of checks and peeks: a batch decides exactly as one script call per check.

    The TTLs Redis puts on the state run on real time, the injected clock does not; so that no key
    expires early in injected time, every admitted cost fills at least 60 ms (tokens >= 1, rpm <= 50,
    tpm <= 999) and the clock moves at least 250 ms per turn (a turn takes a few ms).
    """
    batched = RedisLimiter(redis_url, clock=clock, prefix="batched")
    single = RedisLimiter(redis_url, clock=clock, prefix="single", max_batch=1)
    admin = aioredis.Redis.from_url(redis_url)
    rng = random.Random(20310304)
    specs = {
        key: LimitSpec(
            rpm=rng.choice([None, 1, 3, 7, 50]),
            tpm=rng.choice([None, 100, 777, 999]),
            daily_quota=rng.choice([None, 0, 5, 40]),
        )
        for key in range(1, 9)
    }
    specs[9] = LimitSpec(rpm=7, tpm=999, daily_quota=30)  # always limited
    try:
        for turn in range(60):
            ops = [
                (rng.randrange(1, 10), rng.random() < 0.15, rng.choice([1, 17, 120, 333, 1_200]))
                for _ in range(rng.randrange(1, 40))
            ]

            def run(lim: RedisLimiter, ops: list[tuple[int, bool, int]] = ops) -> Awaitable[list[LimitDecision]]:
                return asyncio.gather(*[
                    lim.peek(k, specs[k]) if peek else lim.check(k, specs[k], tokens) for k, peek, tokens in ops
                ])

            got = await run(batched)
            want = await run(single)
            assert got == want, f"turn {turn}: {ops}"
            clock.advance(rng.choice([0.25, 0.2537, 0.5, 2.9, 17.3, 61.0, 43_200]))
        assert batched.checks == single.checks
        assert batched.round_trips < single.round_trips / 5
        for key in range(1, 10):
            for suffix in ("r", "t"):
                assert await admin.get(f"batched:{{{key}}}:{suffix}") == await admin.get(f"single:{{{key}}}:{suffix}")
            assert await admin.hgetall(f"batched:{{{key}}}:q") == await admin.hgetall(f"single:{{{key}}}:q")
        assert await admin.exists(*[f"batched:{{{k}}}:{s}" for k in range(1, 10) for s in "rtq"]) >= 3  # not vacuous
    finally:
        await admin.aclose()
        await batched.close()
        await single.close()


async def test_an_injected_clock_changing_within_a_turn_splits_the_batch(redis_url: str) -> None:
    now = [1_930_996_800_000.0]

    def ticking() -> float:  # 30 s later at every reading
        now[0] += 30_000
        return now[0]

    limiter = RedisLimiter(redis_url, clock=ticking)
    try:
        results = await asyncio.gather(*[limiter.check(1, LimitSpec(rpm=1), 0) for _ in range(4)])
        # 30 s apart with one request per minute: every other one fits.
        assert [r.allowed for r in results] == [True, False, True, False]
        assert [r.retry_after for r in results if not r.allowed] == [30.0, 30.0]
    finally:
        await limiter.close()


async def test_a_killed_connection_fails_every_caller_of_the_batch_then_reconnects(
    paused_server: tuple[RedisServer, aioredis.Redis],
) -> None:
    server, admin = paused_server
    limiter = RedisLimiter(server.url(), timeout=10.0)
    spec = LimitSpec(rpm=100)
    try:
        before, tasks = await batch_in_flight(limiter, admin, spec, 20)
        await asyncio.sleep(0.05)
        assert limiter.round_trips == before + 1  # the 20 checks are ONE script call
        results = await kill_connection(admin, tasks)
        assert all("connection to redis" in r.detail for r in results)
        await admin.client_unpause()
        decision = await limiter.check(1, spec, 0)  # a new connection
        assert decision.remaining_requests == 98  # the killed batch consumed nothing
    finally:
        await limiter.close()


async def test_a_late_batch_times_out_every_caller_with_one_timer_then_reconnects(
    paused_server: tuple[RedisServer, aioredis.Redis],
) -> None:
    server, admin = paused_server
    limiter = RedisLimiter(server.url(), timeout=0.3)
    spec = LimitSpec(rpm=100)
    try:
        assert (await limiter.check(1, spec, 0)).allowed
        await admin.client_pause(10_000, all=False)
        started = time.monotonic()
        results = await asyncio.gather(*[limiter.check(1, spec, 0) for _ in range(10)], return_exceptions=True)
        assert time.monotonic() - started < 3
        assert all(isinstance(r, StoreUnavailable) and "did not answer within 0.3 s" in r.detail for r in results)
    finally:
        await admin.client_unpause()
    try:
        assert (await limiter.check(2, spec, 0)).allowed  # reconnected
        assert await limiter.ping()
    finally:
        await limiter.close()


async def test_cancelled_callers_do_not_disturb_the_others(paused_server: tuple[RedisServer, aioredis.Redis]) -> None:
    server, admin = paused_server
    limiter = RedisLimiter(server.url(), max_in_flight=2)  # two batches in flight at once
    specs = {k: LimitSpec(rpm=10 * k) for k in range(1, 7)}
    try:
        for k, spec in specs.items():
            await limiter.check(k, spec, 0)  # one request used on each key
        # Cancelled before its batch is written: left out, nothing consumed.
        early = asyncio.ensure_future(limiter.check(1, specs[1], 0))  # queued; written on the next turn
        early.cancel()
        checks, before = limiter.checks, limiter.round_trips
        await admin.client_pause(10_000, all=False)
        first = {k: asyncio.ensure_future(limiter.check(k, spec, 0)) for k, spec in specs.items()}
        await written(limiter, before + 1)
        assert limiter.checks == checks + 6  # the early one was not sent
        first[2].cancel()
        first[5].cancel()
        second = {k: asyncio.ensure_future(limiter.check(k, specs[k], 0)) for k in (1, 2, 3)}
        await written(limiter, before + 2)
        await admin.client_unpause()
        for k in (1, 3, 4, 6):
            assert (await first[k]).remaining_requests == 10 * k - 2, k
        for k in (1, 2, 3):
            # Written before the cancel, so the cancelled checks of keys 2 and 5 still counted.
            assert (await second[k]).remaining_requests == 10 * k - 3, k
        for task in (early, first[2], first[5]):
            with pytest.raises(asyncio.CancelledError):
                await task
        assert (await limiter.peek(5, specs[5])).remaining_requests == 48
    finally:
        await limiter.close()


async def test_checks_wait_for_the_batch_in_flight_then_go_out_together(
    paused_server: tuple[RedisServer, aioredis.Redis],
) -> None:
    """One script call in flight (the default): checks made meanwhile queue and go out as ONE call
    when it is answered; one cancelled while queued is left out (nothing consumed)."""
    server, admin = paused_server
    limiter = RedisLimiter(server.url())
    spec = LimitSpec(rpm=100)
    try:
        before, first = await batch_in_flight(limiter, admin, spec, 5)
        queued = [asyncio.ensure_future(limiter.check(1, spec, 0)) for _ in range(7)]
        for _ in range(20):
            await asyncio.sleep(0)
        assert (limiter.round_trips, limiter.in_flight) == (before + 1, 1)  # queued, not written
        queued[3].cancel()
        await admin.client_unpause()
        assert sorted(d.remaining_requests or 0 for d in await asyncio.gather(*first)) == list(range(94, 99))
        rest = [d.remaining_requests for d in await asyncio.gather(*queued[:3], *queued[4:])]
        assert rest == list(range(93, 87, -1))  # in call order, the cancelled one left out
        assert limiter.round_trips == before + 2  # the six queued checks: ONE script call
        assert limiter.in_flight == 0
        assert (await limiter.peek(1, spec)).remaining_requests == 88
    finally:
        await limiter.close()
    with pytest.raises(ValueError, match="max_in_flight"):
        RedisLimiter(server.url(), max_in_flight=0)


async def test_checks_queued_behind_a_failed_batch_go_out_on_a_new_connection(
    paused_server: tuple[RedisServer, aioredis.Redis],
) -> None:
    server, admin = paused_server
    limiter = RedisLimiter(server.url(), timeout=10.0)
    spec = LimitSpec(rpm=100)
    try:
        before, first = await batch_in_flight(limiter, admin, spec, 3)
        queued = [asyncio.ensure_future(limiter.check(1, spec, 0)) for _ in range(4)]
        await asyncio.sleep(0.05)
        assert limiter.round_trips == before + 1
        await kill_connection(admin, first)
        await written(limiter, before + 2)  # the queued batch, on a new connection (still paused)
        await admin.client_unpause()
        assert [d.remaining_requests for d in await asyncio.gather(*queued)] == [98, 97, 96, 95]
        assert limiter.in_flight == 0
    finally:
        await limiter.close()


async def test_noscript_with_a_batch_in_flight_reloads_and_repeats_the_batch_once(
    paused_server: tuple[RedisServer, aioredis.Redis],
) -> None:
    server, admin = paused_server
    limiter = RedisLimiter(server.url())
    spec = LimitSpec(rpm=20, daily_quota=100)
    try:
        assert (await limiter.check(1, spec, 0)).allowed  # NOSCRIPT, SCRIPT LOAD, EVALSHA
        assert limiter.round_trips == 3
        await admin.client_pause(10_000, all=False)
        tasks = [asyncio.ensure_future(limiter.check(1, spec, 0)) for _ in range(30)]
        await written(limiter, 4)
        await admin.script_flush()
        assert await admin.script_exists(SHA) == [False]
        await admin.client_unpause()
        results = await asyncio.gather(*tasks)
        assert sum(r.allowed for r in results) == 19
        assert limiter.round_trips == 3 + 3  # EVALSHA (NOSCRIPT), SCRIPT LOAD, EVALSHA
        assert await admin.script_exists(SHA) == [True]
        assert (await limiter.peek(1, spec)).remaining_quota == 80
    finally:
        await limiter.close()


async def test_round3_matches_printf_and_strtod(redis_url: str) -> None:
    """The script caches TATs as they read back from text ('%.3f'), computed without formatting."""
    admin = aioredis.Redis.from_url(redis_url)
    script = ROUND3_LUA + """
local bad = {}
for i = 1, #ARGV do
  local x = tonumber(ARGV[i])
  local fast, slow = round3(x), tonumber(format('%.3f', x))
  if fast ~= slow then bad[#bad + 1] = ARGV[i] end
end
return bad
"""
    rng = random.Random(3)
    values = [rng.uniform(0, top) for top in (10, 5e3, 1e6, 2.2e12, 9e12, 1e15) for _ in range(3_000)]
    for whole in (4096, 1_930_996_800_000, 2**41 - 1):
        values += [whole + f / 4096 for f in range(4096)]  # near 1.9e12: every fraction a double can have
        values += [whole + 0.0625, whole + 0.0005, whole + 0.4995, whole + 0.9995]  # exact and near ties
    try:
        bad: list[bytes] = []
        for i in range(0, len(values), 4_000):
            bad += await admin.eval(script, 0, *[repr(v) for v in values[i : i + 4_000]])
        assert bad == []
    finally:
        await admin.aclose()
