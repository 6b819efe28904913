"""Per-key admission limits: RPM and TPM (GCRA) and the tier's daily request quota.

:class:`~newapi_gateway.limits.redis.RedisLimiter` (shared across replicas; atomic Lua, the
checks of one event-loop turn in one call) and
:class:`~newapi_gateway.limits.local.LocalLimiter` (embedded mode) implement the same
:class:`~newapi_gateway.limits.base.Limiter` interface with identical results.
"""

from __future__ import annotations

from newapi_gateway.limits.base import (
    SAMPLE_DAILY_QUOTAS,
    LimitDecision,
    Limiter,
    LimitSpec,
    format_duration,
)

__all__ = ["SAMPLE_DAILY_QUOTAS", "LimitDecision", "LimitSpec", "Limiter", "create_limiter", "format_duration"]


def create_limiter(redis_url: str | None = None) -> Limiter:
    """RedisLimiter when ``redis_url`` is set (required with more than one replica), else LocalLimiter."""
    if redis_url:
        from newapi_gateway.limits.redis import RedisLimiter

        return RedisLimiter(redis_url)
    from newapi_gateway.limits.local import LocalLimiter

    return LocalLimiter()
