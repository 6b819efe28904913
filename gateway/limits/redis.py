"""Redis/Valkey limiter: one atomic Lua script per request, shared by every gateway replica.

One round trip per admission (``EVALSHA``; on ``NOSCRIPT`` — a restarted or flushed server — the
script is loaded again and the call repeated). The script evaluates RPM, TPM and the daily quota
and consumes all three only when all pass, so replicas never admit more than the limit between
them; there is no local pre-check. Time comes from the Redis server (``TIME``), one clock for all
replicas, unless a clock is injected (tests).

Keys (one hash slot per API key, so it also works on Redis Cluster):
``<prefix>:{<key id>}:r`` (RPM TAT), ``:t`` (TPM TAT), ``:q`` (hash: UTC day number, count).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from newapi_gateway.limits.base import DAY_MS, PERIOD_MS, Gcra, LimitDecision, Limiter, LimitSpec, decide
from newapi_gateway.limits.resp import PipelinedRedis, RespError
from newapi_gateway.store.errors import StoreUnavailable

# ARGV: now_ms ("" = server TIME), rpm (0 = none), tpm (0 = none), tokens, consume (1/0), period_ms, day_ms
# Returns: {allowed, now_ms, then per limit (r = requests, t = tokens): ok, remaining, reset_ms, retry_ms,
#           before_remaining, before_reset_ms; then quota_used}; retry -1 = can never fit.
# Mirrors limits.base.gcra() line by line.
LUA = """
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
else
  now = tonumber(ARGV[1])
end
local rpm = tonumber(ARGV[2])
local tpm = tonumber(ARGV[3])
local tokens = tonumber(ARGV[4])
local consume = ARGV[5] == '1'
local period = tonumber(ARGV[6])
local day_ms = tonumber(ARGV[7])

local function gcra(key, limit, cost)
  local interval = period / limit
  local tat = tonumber(redis.call('GET', key) or '0')
  local base = tat
  if base < now then base = now end
  local before_remaining = math.floor((period - (base - now)) / interval + 1e-9)
  if before_remaining < 0 then before_remaining = 0 end
  local before_reset = math.ceil(base - now)
  local new_tat = base + cost * interval
  local fill = new_tat - now
  if fill <= period then
    return {1, new_tat, math.floor((period - fill) / interval + 1e-9), math.ceil(fill), 0,
            before_remaining, before_reset}
  end
  local retry = math.ceil(fill - period)
  if cost > limit then retry = -1 end
  return {0, base, before_remaining, before_reset, retry, before_remaining, before_reset}
end

local r = {1, 0, 0, 0, 0, 0, 0}
local t = {1, 0, 0, 0, 0, 0, 0}
if rpm > 0 then
  local cost = 0
  if consume then cost = 1 end
  r = gcra(KEYS[1], rpm, cost)
end
if tpm > 0 then
  local cost = 0
  if consume then cost = tokens end
  t = gcra(KEYS[2], tpm, cost)
end
local day = math.floor(now / day_ms)
local q = redis.call('HMGET', KEYS[3], 'd', 'n')
local used = 0
if q[1] and tonumber(q[1]) == day then used = tonumber(q[2]) end

local allowed = 0
if consume and r[1] == 1 and t[1] == 1 and (ARGV[8] == '' or used + 1 <= tonumber(ARGV[8])) then
  allowed = 1
  if rpm > 0 then redis.call('SET', KEYS[1], string.format('%.3f', r[2]), 'PX', math.max(1, r[4])) end
  if tpm > 0 then redis.call('SET', KEYS[2], string.format('%.3f', t[2]), 'PX', math.max(1, t[4])) end
  redis.call('HSET', KEYS[3], 'd', day, 'n', used + 1)
  redis.call('PEXPIRE', KEYS[3], 2 * day_ms)
end
return {allowed, now, r[1], r[3], r[4], r[5], r[6], r[7], t[1], t[3], t[4], t[5], t[6], t[7], used}
"""

SHA = hashlib.sha1(LUA.encode()).hexdigest()  # noqa: S324 - the script's name in Redis, not security


def _gcra(values: list[int]) -> Gcra:
    ok, remaining, reset, retry, before_remaining, before_reset = values
    return Gcra(bool(ok), 0.0, remaining, float(reset), None if retry < 0 else float(retry), before_remaining,
                float(before_reset))


class RedisLimiter(Limiter):
    """Limits in Redis/Valkey. ``clock`` (epoch ms) replaces the server clock in tests only."""

    def __init__(
        self,
        redis_url: str,
        *,
        prefix: str = "newapi:rl",
        clock: Callable[[], float] | None = None,
        timeout: float = 2.0,
    ) -> None:
        self.prefix = prefix
        self._clock = clock
        self._redis = PipelinedRedis(redis_url, timeout=timeout)
        #: Round trips made (for the benchmark's "Redis round trips per request").
        self.round_trips = 0

    async def check(self, key_id: int, spec: LimitSpec, tokens: int) -> LimitDecision:
        if tokens < 0:
            raise ValueError(f"tokens: must be >= 0, got {tokens}")
        return await self._evaluate(key_id, spec, tokens, consume=True)

    async def peek(self, key_id: int, spec: LimitSpec) -> LimitDecision:
        return await self._evaluate(key_id, spec, 0, consume=False)

    async def _evaluate(self, key_id: int, spec: LimitSpec, tokens: int, *, consume: bool) -> LimitDecision:
        if spec.unlimited:
            # Nothing to enforce: no round trip (the request count lives in the usage rollups).
            now = self._clock() if self._clock else 0.0
            return decide(spec, now, None, None, 0, consume=consume)
        base = f"{self.prefix}:{{{key_id}}}"
        keys = (f"{base}:r", f"{base}:t", f"{base}:q")
        args = (
            "" if self._clock is None else repr(float(self._clock())),
            spec.rpm or 0,
            spec.tpm or 0,
            tokens,
            1 if consume else 0,
            PERIOD_MS,
            DAY_MS,
            "" if spec.daily_quota is None else spec.daily_quota,
        )
        raw = await self._eval(keys, args)
        values = [int(x) for x in raw]
        allowed, now, used = values[0], values[1], values[14]
        req = _gcra(values[2:8]) if spec.rpm else None
        tok = _gcra(values[8:14]) if spec.tpm else None
        decision = decide(spec, float(now), req, tok, used, consume=consume)
        if consume and decision.allowed != bool(allowed):  # the script and decide() must agree
            raise RuntimeError(f"rate-limit script and decide() disagree for key {key_id}: {raw!r}")
        return decision

    async def _eval(self, keys: tuple[str, ...], args: tuple[object, ...]) -> list[int]:
        command = ("EVALSHA", SHA, len(keys), *keys, *args)
        try:
            self.round_trips += 1
            reply = await self._redis.call(*command)  # type: ignore[arg-type]
            if isinstance(reply, RespError) and str(reply).startswith("NOSCRIPT"):
                # Script cache empty (restart, SCRIPT FLUSH, failover): load it and call again.
                self.round_trips += 2
                loaded = await self._redis.call("SCRIPT", "LOAD", LUA)
                if isinstance(loaded, RespError):
                    raise loaded
                reply = await self._redis.call(*command)  # type: ignore[arg-type]
        except (ConnectionError, TimeoutError, OSError) as exc:
            raise StoreUnavailable("redis", str(exc) or type(exc).__name__) from exc
        if isinstance(reply, RespError):
            if str(reply).startswith(("LOADING", "READONLY", "MASTERDOWN", "BUSY", "NOAUTH", "WRONGPASS")):
                raise StoreUnavailable("redis", str(reply))
            raise RuntimeError(f"rate-limit script failed in redis: {reply}")
        return list(reply)

    async def ping(self) -> bool:
        """True when Redis answers (for health reporting)."""
        try:
            return bool(await self._redis.call("PING") == "PONG")
        except (ConnectionError, TimeoutError, OSError):
            return False

    async def close(self) -> None:
        await self._redis.close()
