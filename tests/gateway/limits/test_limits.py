"""Shared suite: LocalLimiter and RedisLimiter give the same answers for the same history."""

from __future__ import annotations

import asyncio

import pytest

from newapi_gateway.limits.base import SAMPLE_DAILY_QUOTAS, Limiter, LimitSpec, format_duration
from tests.gateway.limits.conftest import MsClock


async def test_rpm_allows_a_burst_then_one_per_interval(limiter: Limiter, clock: MsClock) -> None:
    spec = LimitSpec(rpm=3)
    for remaining in (2, 1, 0):
        d = await limiter.check(1, spec, 0)
        assert d.allowed
        assert d.remaining_requests == remaining
    refused = await limiter.check(1, spec, 0)
    assert not refused.allowed
    assert refused.reason == "rpm"
    assert refused.retry_after == pytest.approx(20.0)
    assert refused.headers()["Retry-After"] == "20"
    assert refused.headers()["x-ratelimit-reset-requests"] == "1m0s"
    clock.advance(19.9)
    assert not (await limiter.check(1, spec, 0)).allowed
    clock.advance(0.1)
    assert (await limiter.check(1, spec, 0)).allowed  # one slot refilled after 60/3 s
    assert not (await limiter.check(1, spec, 0)).allowed
    clock.advance(60)
    assert (await limiter.check(1, spec, 0)).remaining_requests == 2  # full again


async def test_tpm_counts_tokens_and_refuses_oversized_requests(limiter: Limiter, clock: MsClock) -> None:
    spec = LimitSpec(tpm=1_000)
    d = await limiter.check(2, spec, 700)
    assert d.allowed
    assert d.remaining_tokens == 300
    assert d.reset_tokens == pytest.approx(42.0)
    refused = await limiter.check(2, spec, 400)
    assert (refused.allowed, refused.reason, refused.remaining_tokens) == (False, "tpm", 300)
    assert refused.retry_after == pytest.approx(6.0)  # 100 tokens at 1000/min
    too_big = await limiter.check(2, spec, 1_001)
    assert (too_big.allowed, too_big.reason, too_big.retry_after) == (False, "too_large", None)
    assert "Retry-After" not in too_big.headers()
    assert "1000 tokens per minute" in too_big.message()
    clock.advance(6)
    assert (await limiter.check(2, spec, 400)).allowed


async def test_all_limits_pass_or_nothing_is_counted(limiter: Limiter) -> None:
    spec = LimitSpec(rpm=10, tpm=100, daily_quota=5)
    assert (await limiter.check(3, spec, 90)).allowed
    refused = await limiter.check(3, spec, 50)  # TPM refuses: RPM and quota must not be consumed
    assert refused.reason == "tpm"
    assert refused.remaining_requests == 9
    assert refused.remaining_quota == 4
    state = await limiter.peek(3, spec)
    assert (state.remaining_requests, state.remaining_tokens, state.remaining_quota) == (9, 10, 4)


async def test_daily_quota_of_the_seed_tiers(limiter: Limiter, clock: MsClock) -> None:
    free = LimitSpec(daily_quota=SAMPLE_DAILY_QUOTAS["free"])
    for i in range(10):
        d = await limiter.check(4, free, 0)
        assert d.allowed, i
        assert d.remaining_quota == 9 - i
    refused = await limiter.check(4, free, 0)
    assert (refused.allowed, refused.reason) == (False, "quota")
    assert refused.retry_after == pytest.approx(12 * 3600)  # until 00:00 UTC
    assert refused.headers()["Retry-After"] == str(12 * 3600)
    assert "Daily request quota of 10" in refused.message()
    clock.advance(12 * 3600)  # next UTC day
    assert (await limiter.check(4, free, 0)).remaining_quota == 9
    # Keys are independent; Enterprise is unlimited.
    assert (await limiter.check(5, free, 0)).allowed
    enterprise = LimitSpec(daily_quota=SAMPLE_DAILY_QUOTAS["enterprise"])
    assert enterprise.unlimited
    unlimited = await limiter.check(4, enterprise, 10**9)
    assert unlimited.allowed
    assert unlimited.headers() == {}


async def test_peek_does_not_consume(limiter: Limiter) -> None:
    spec = LimitSpec(rpm=2, tpm=50, daily_quota=3)
    for _ in range(5):
        state = await limiter.peek(6, spec)
        assert state.allowed
        assert (state.remaining_requests, state.remaining_tokens, state.remaining_quota) == (2, 50, 3)
    await limiter.check(6, spec, 10)
    await limiter.check(6, spec, 10)
    state = await limiter.peek(6, spec)
    assert (state.allowed, state.reason, state.remaining_requests, state.remaining_tokens) == (False, "rpm", 0, 30)


async def test_concurrent_checks_admit_exactly_the_limit(limiter: Limiter) -> None:
    spec = LimitSpec(rpm=25)
    results = await asyncio.gather(*[limiter.check(7, spec, 0) for _ in range(200)])
    assert sum(r.allowed for r in results) == 25


async def test_headers_use_openai_names_and_formats(limiter: Limiter) -> None:
    d = await limiter.check(8, LimitSpec(rpm=60, tpm=150_000), 16)
    assert d.headers() == {
        "x-ratelimit-limit-requests": "60",
        "x-ratelimit-remaining-requests": "59",
        "x-ratelimit-reset-requests": "1s",
        "x-ratelimit-limit-tokens": "150000",
        "x-ratelimit-remaining-tokens": "149984",
        "x-ratelimit-reset-tokens": "7ms",
    }


async def test_daily_headers_follow_the_openai_ones(limiter: Limiter) -> None:
    """``headers(daily=True)``: the six OpenAI headers, then the daily quota's three, whichever limits
    are set."""
    specs = [LimitSpec(rpm=60, tpm=150_000, daily_quota=1_000), LimitSpec(rpm=60, daily_quota=1_000),
             LimitSpec(tpm=150_000, daily_quota=1_000), LimitSpec(rpm=60, tpm=150_000)]
    for key, spec in enumerate(specs, start=40):
        d = await limiter.check(key, spec, 16)
        assert d.allowed
        daily = d.headers(daily=True)
        expected = d.headers()
        if spec.daily_quota is not None:
            reset = format_duration(d.reset_quota or 0.0)
            assert d.reset_quota  # until 00:00 UTC
            expected |= {"x-ratelimit-limit-requests-day": "1000", "x-ratelimit-remaining-requests-day": "999",
                         "x-ratelimit-reset-requests-day": reset}
        assert list(daily.items()) == list(expected.items()), spec


async def test_invalid_input(limiter: Limiter) -> None:
    with pytest.raises(ValueError, match="tokens"):
        await limiter.check(9, LimitSpec(rpm=1), -1)
    with pytest.raises(ValueError, match="rpm"):
        LimitSpec(rpm=0)
