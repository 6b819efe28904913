"""The limiters' shared suite runs against the in-process limiter AND Redis (a throwaway server)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from newapi_gateway.limits.base import Limiter
from newapi_gateway.limits.local import LocalLimiter
from newapi_gateway.limits.redis import RedisLimiter

#: 2031-03-04 12:00:00 UTC in epoch milliseconds.
T0 = 1_930_996_800_000.0


class MsClock:
    """A settable epoch-milliseconds clock for limiters."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds * 1000


@pytest.fixture
def clock() -> MsClock:
    return MsClock()


@pytest.fixture(params=["local", "redis"])
async def limiter(request: pytest.FixtureRequest, clock: MsClock) -> AsyncIterator[Limiter]:
    lim: Limiter
    if request.param == "local":
        lim = LocalLimiter(clock=clock)
    else:
        lim = RedisLimiter(request.getfixturevalue("redis_url"), clock=clock)
    yield lim
    await lim.close()
