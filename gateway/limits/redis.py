"""Redis/Valkey limiter: atomic Lua scripts shared by every gateway replica, batched per loop turn.

Every :meth:`RedisLimiter.check` / :meth:`~RedisLimiter.peek` issued in one event-loop turn goes to
Redis as ONE ``EVALSHA`` of a script that evaluates the checks in order, each exactly as a call of
its own would (RPM and TPM GCRA and the daily quota, consumed only when all three pass), and returns
every result in one bulk string. Decisions are still made by Redis, atomically, on every request:
there is no local pre-check and no local allowance, so replicas never admit more than the limit
between them. While a script call is in flight (``max_in_flight``, default 1), the checks made
meanwhile queue and go out together as soon as it is answered: under load a batch holds what
arrived during one round trip, so the gateway writes to and is woken by Redis far less often per
request, and an idle gateway still sends a check on the next loop turn. A batch holds at most
``max_batch`` checks (larger bursts go in several calls). On
``NOSCRIPT`` (a restarted or flushed server) the script is loaded again and the whole batch repeated
once. Time comes from the Redis server (``TIME``, read once per script call: a batch's checks are
evaluated at the same instant), one clock for all replicas, unless a clock is injected (tests; it is
read per check, and checks that read different times go in separate calls). ``round_trips`` counts
script calls and ``checks`` the checks they carried. Key layout and stored values are those of the
unbatched script, so replicas running either version can share one Redis during a rollout.

Failure: one timeout per connection (see :mod:`.resp`); on a timeout or a lost connection every
caller of the batch gets :class:`StoreUnavailable` and the checks queued behind it go out on a new
connection (so a check waits two timeouts at most before its 503). A caller cancelled
before its batch is written is left out of it (nothing consumed); one cancelled later is simply not
answered — the other callers and the connection's reply order are unaffected.

Keys (one hash slot per API key): ``<prefix>:{<key id>}:r`` (RPM TAT), ``:t`` (TPM TAT), ``:q``
(hash: UTC day number, count). Every key a script touches is passed in ``KEYS``. A batch spans the
keys of all checks in it, hence several hash slots: that is fine because the client
(:mod:`.resp`) talks to ONE server and does not support Redis Cluster; on a cluster, batches would
have to be split per key id.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from typing import Any

from newapi_gateway.limits.base import (
    DAY_MS,
    PERIOD_MS,
    Gcra,
    LimitDecision,
    Limiter,
    LimitSpec,
    admitted,
    decide,
)
from newapi_gateway.limits.resp import PipelinedRedis, RespError, bulk, encode
from newapi_gateway.store.errors import StoreUnavailable

# KEYS: three per API key of the batch (r, t, q). ARGV[1] = period_ms, ARGV[2] = day_ms, ARGV[3] = now_ms
# (empty = server TIME), then one argument per check: "<key index k: KEYS[3k+1..3k+3]>,<rpm, 0 = none>,
# <tpm, 0 = none>,<tokens>,<consume 1/0>,<daily quota, empty = none>".
# Returns one bulk string of comma-separated integers: now_ms, then per check, in order, either
#   1, r remaining, r reset_ms, t remaining, t reset_ms, quota_used            (admitted: every limit passed)
#   0, then per limit (r = requests, t = tokens): ok, remaining, reset_ms, retry_ms, before_remaining,
#      before_reset_ms; then quota_used                                        (refused, or a peek)
# with retry -1 = can never fit, and zeros for a limit that is not set.
# Each check mirrors limits.base.gcra() line by line, as the checks' own calls would in this order. State
# read from Redis is cached for the rest of the call and written back once at the end: the last write of
# each key wins, exactly as if every admitted check had written it (same values; same TTLs, as all share
# one instant); TATs are cached as they would be read back (rounded by '%.3f').
# round3(x) == tonumber(string.format('%.3f', x)) — what a TAT stored as text reads back as — without the
# (slow) formatting and parsing, for 2^12 <= x < 2^53 (epoch ms; other values take the slow path). With
# ulp(x) = 2^-k (k <= 40): x = w + f (w = floor(x)) and v = f * 1000 are exact, so r = v rounded half to
# even is exactly printf's rounding. w + r / 1000 then rounds as strtod does: the decimal w + r/1000 is
# either exactly a midpoint between two doubles (only when k <= 2; r / 1000 is then exact and both round
# half to even) or at least 1 / (1000 * 2^(k+1)) >= 2^-51 away from one, far more than the error of
# r / 1000 (< 2^-53). test_round3_matches_printf_and_strtod checks it against Redis's own Lua.
ROUND3_LUA = """
local floor, ceil, format, tonumber = math.floor, math.ceil, string.format, tonumber
local function round3(x)
  if x < 4096 or x >= 9007199254740992 then return tonumber(format('%.3f', x)) end
  local whole = floor(x)
  local v = (x - whole) * 1000
  local r = floor(v + 0.5)
  if r - v == 0.5 and r % 2 == 1 then r = r - 1 end
  return whole + r / 1000
end
"""

LUA = ROUND3_LUA + """
local period = tonumber(ARGV[1])
local day_ms = tonumber(ARGV[2])
local now
if ARGV[3] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + floor(tonumber(t[2]) / 1000)
else
  now = tonumber(ARGV[3])
end
local day = floor(now / day_ms)
local tats, tat_px, tat_order = {}, {}, {}
local quotas, quota_order = {}, {}

local function gcra(key, limit, cost)
  local interval = period / limit
  local tat = tats[key]
  if tat == nil then
    tat = tonumber(redis.call('GET', key) or '0')
    tats[key] = tat
  end
  local base = tat
  if base < now then base = now end
  local before_remaining = floor((period - (base - now)) / interval + 1e-9)
  if before_remaining < 0 then before_remaining = 0 end
  local before_reset = ceil(base - now)
  local new_tat = base + cost * interval
  local fill = new_tat - now
  if fill <= period then
    return 1, new_tat, floor((period - fill) / interval + 1e-9), ceil(fill), 0, before_remaining, before_reset
  end
  local retry = ceil(fill - period)
  if cost > limit then retry = -1 end
  return 0, base, before_remaining, before_reset, retry, before_remaining, before_reset
end

local function store_tat(key, tat, px)
  if tat_px[key] == nil then tat_order[#tat_order + 1] = key end
  if px < 1 then px = 1 end
  tat_px[key] = px
  tats[key] = round3(tat)
end

local out = {format('%d', now)}
for i = 4, #ARGV do
  local k, rpm, tpm, tokens, consume, quota = string.match(ARGV[i], '^(%d+),(%d+),(%d+),(%d+),([01]),(%d*)$')
  if k == nil then return redis.error_reply('ERR rate-limit script: bad check argument ' .. ARGV[i]) end
  local at = 3 * tonumber(k)
  rpm = tonumber(rpm)
  tpm = tonumber(tpm)
  consume = consume == '1'
  local r1, r2, r3, r4, r5, r6, r7 = 1, 0, 0, 0, 0, 0, 0
  local t1, t2, t3, t4, t5, t6, t7 = 1, 0, 0, 0, 0, 0, 0
  if rpm > 0 then
    r1, r2, r3, r4, r5, r6, r7 = gcra(KEYS[at + 1], rpm, consume and 1 or 0)
  end
  if tpm > 0 then
    t1, t2, t3, t4, t5, t6, t7 = gcra(KEYS[at + 2], tpm, consume and tonumber(tokens) or 0)
  end
  local qkey = KEYS[at + 3]
  local q = quotas[qkey]
  if q == nil then
    local stored = redis.call('HMGET', qkey, 'd', 'n')
    q = {tonumber(stored[1]), tonumber(stored[2]), false}
    quotas[qkey] = q
  end
  local used = 0
  if q[1] == day then used = q[2] end
  if consume and r1 == 1 and t1 == 1 and (quota == '' or used + 1 <= tonumber(quota)) then
    if rpm > 0 then store_tat(KEYS[at + 1], r2, r4) end
    if tpm > 0 then store_tat(KEYS[at + 2], t2, t4) end
    if not q[3] then
      q[3] = true
      quota_order[#quota_order + 1] = qkey
    end
    q[1] = day
    q[2] = used + 1
    out[#out + 1] = format('1,%d,%d,%d,%d,%d', r3, r4, t3, t4, used)
  else
    out[#out + 1] = format('0,%d,%d,%d,%d,%d,%d,%d,%d,%d,%d,%d,%d,%d',
      r1, r3, r4, r5, r6, r7, t1, t3, t4, t5, t6, t7, used)
  end
end

for _, key in ipairs(tat_order) do
  redis.call('SET', key, format('%.3f', tats[key]), 'PX', tat_px[key])
end
for _, key in ipairs(quota_order) do
  local q = quotas[key]
  redis.call('HSET', key, 'd', q[1], 'n', q[2])
  redis.call('PEXPIRE', key, 2 * day_ms)
end
return table.concat(out, ',')
"""

SHA = hashlib.sha1(LUA.encode()).hexdigest()  # noqa: S324 - the script's name in Redis, not security

_LOAD = encode("SCRIPT", "LOAD", LUA)
_HEAD = b"$7\r\nEVALSHA\r\n" + bulk(SHA.encode())
_PERIODS = bulk(b"%d" % PERIOD_MS) + bulk(b"%d" % DAY_MS)
#: Error replies that mean "Redis cannot serve now" (503) rather than a bug in the script.
_UNAVAILABLE = ("LOADING", "READONLY", "MASTERDOWN", "BUSY", "NOAUTH", "WRONGPASS")

# One queued check: (caller's future, key id, spec, consume 1/0, its script argument after the key
# index, now_ms as sent: empty = server TIME)
_Check = tuple[asyncio.Future[LimitDecision], int, LimitSpec, int, bytes, bytes]


class RedisLimiter(Limiter):
    """Limits in Redis/Valkey. ``clock`` (epoch ms) replaces the server clock in tests only.

    ``max_batch`` caps the checks evaluated by one script call; ``max_in_flight`` the script calls
    awaiting their reply (checks made meanwhile queue for the next one).
    """

    def __init__(
        self,
        redis_url: str,
        *,
        prefix: str = "newapi:rl",
        clock: Callable[[], float] | None = None,
        timeout: float = 2.0,
        max_batch: int = 256,
        max_in_flight: int = 1,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch: must be >= 1, got {max_batch}")
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight: must be >= 1, got {max_in_flight}")
        self.prefix = prefix
        self.max_batch = max_batch
        self.max_in_flight = max_in_flight
        #: script calls sent and not yet answered (or failed)
        self.in_flight = 0
        self._flush_scheduled = False
        self._clock = clock
        self._redis = PipelinedRedis(redis_url, timeout=timeout)
        self._pending: list[_Check] = []
        self._key_args: dict[int, bytes] = {}  # key id -> its three keys, RESP-encoded
        self._tasks: set[asyncio.Task[None]] = set()
        #: Script calls sent (``EVALSHA``, and ``SCRIPT LOAD`` + repeat on ``NOSCRIPT``): the
        #: benchmark's "Redis round trips"; ``round_trips / checks`` = round trips per request.
        self.round_trips = 0
        #: Checks and peeks sent to Redis (unlimited keys and callers cancelled in time are not).
        self.checks = 0

    def check(self, key_id: int, spec: LimitSpec, tokens: int) -> asyncio.Future[LimitDecision]:
        if tokens < 0:
            raise ValueError(f"tokens: must be >= 0, got {tokens}")
        if spec.unlimited:
            return self._unlimited(spec, consume=True)
        return self._submit(key_id, spec, tokens, 1)

    def peek(self, key_id: int, spec: LimitSpec) -> asyncio.Future[LimitDecision]:
        if spec.unlimited:
            return self._unlimited(spec, consume=False)
        return self._submit(key_id, spec, 0, 0)

    def _unlimited(self, spec: LimitSpec, *, consume: bool) -> asyncio.Future[LimitDecision]:
        # Nothing to enforce: no round trip (the request count lives in the usage rollups).
        fut: asyncio.Future[LimitDecision] = asyncio.get_running_loop().create_future()
        fut.set_result(decide(spec, self._clock() if self._clock else 0.0, None, None, 0, consume=consume))
        return fut

    def _submit(self, key_id: int, spec: LimitSpec, tokens: int, consume: int) -> asyncio.Future[LimitDecision]:
        """Queue one check for this loop turn's batch (sent by ``_flush``); the future gets its decision."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[LimitDecision] = loop.create_future()
        quota = spec.daily_quota
        arg = b"%d,%d,%d,%d,%b" % (
            spec.rpm or 0, spec.tpm or 0, tokens, consume, b"" if quota is None else b"%d" % quota
        )
        # now_ms: empty = the server's clock; an injected clock is read at call time, as before batching
        now = b"" if self._clock is None else repr(float(self._clock())).encode()
        self._pending.append((fut, key_id, spec, consume, arg, now))
        self._schedule_flush(loop)
        return fut

    def _schedule_flush(self, loop: asyncio.AbstractEventLoop) -> None:
        """Send the queued checks on the next loop turn, unless a send is due or a call is in flight."""
        if not self._flush_scheduled and self.in_flight < self.max_in_flight:
            self._flush_scheduled = True
            loop.call_soon(self._flush)

    def _answered(self) -> None:
        """A script call was answered or failed: send what queued up behind it."""
        self.in_flight -= 1
        if self._pending:
            self._schedule_flush(asyncio.get_running_loop())

    def _flush(self) -> None:
        """Send the queued checks: one script call per ``max_batch`` checks, all in one write."""
        self._flush_scheduled = False
        pending, self._pending = self._pending, []
        try:
            self._send(pending)
        except Exception as exc:  # a bug here must not leave callers waiting forever
            for fut, *_ in pending:
                if not fut.done():
                    fut.set_exception(RuntimeError(f"rate-limit batch could not be sent: {exc!r}"))

    def _send(self, pending: list[_Check]) -> None:
        live = [c for c in pending if not c[0].done()]  # cancelled before sending: nothing consumed
        if not live:
            return
        cap = self.max_batch
        if self._clock is None:
            batches = [_Batch(self, live[i : i + cap]) for i in range(0, len(live), cap)]
        else:  # an injected clock: one batch per clock reading (a script call has one "now")
            batches, start = [], 0
            for i in range(1, len(live) + 1):
                if i == len(live) or i - start == cap or live[i][5] != live[start][5]:
                    batches.append(_Batch(self, live[start:i]))
                    start = i
        self.round_trips += len(batches)
        self.in_flight += len(batches)
        self.checks += len(live)
        commands: list[tuple[bytes, Any]] = [(b.command, b) for b in batches]
        try:
            sent = self._redis.send_now(commands)
        except Exception as exc:
            for batch in batches:
                batch.set_exception(exc)
            return
        if not sent:
            task = asyncio.get_running_loop().create_task(self._send_after_connect(commands))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send_after_connect(self, commands: list[tuple[bytes, Any]]) -> None:
        try:
            await self._redis.connect()
            if not self._redis.send_now(commands):
                raise ConnectionError("connection to redis closed")
        except (ConnectionError, TimeoutError, OSError) as exc:
            for _, batch in commands:
                batch.set_exception(exc)

    def _command(self, checks: list[_Check]) -> bytes:
        """``EVALSHA`` of ``checks``: each key id's keys once in KEYS, one argument per check."""
        index: dict[int, int] = {}
        keys: list[bytes] = []
        args: list[bytes] = []
        for _, key_id, _, _, arg, _ in checks:
            k = index.get(key_id)
            if k is None:
                k = index[key_id] = len(keys)
                keys.append(self._keys_of(key_id))
            a = b"%d,%b" % (k, arg)
            args.append(b"$%d\r\n%b\r\n" % (len(a), a))
        nkeys = b"%d" % (3 * len(keys))
        head = b"*%d\r\n%b$%d\r\n%b\r\n" % (6 + 3 * len(keys) + len(args), _HEAD, len(nkeys), nkeys)
        return b"".join((head, *keys, _PERIODS, bulk(checks[0][5]), *args))

    def _keys_of(self, key_id: int) -> bytes:
        encoded = self._key_args.get(key_id)
        if encoded is None:
            if len(self._key_args) >= 100_000:
                self._key_args.clear()
            base = f"{self.prefix}:{{{key_id}}}"
            encoded = self._key_args[key_id] = b"".join(bulk(f"{base}:{s}".encode()) for s in "rtq")
        return encoded

    @staticmethod
    def _resolve(checks: list[_Check], reply: bytes) -> None:
        """Hand every caller of a batch its decision (callers cancelled meanwhile are skipped)."""
        v = [int(x) for x in reply.decode().split(",")]  # int(str) is a compiled primitive; int(bytes) is not
        now = float(v[0])
        at = 1
        for fut, key_id, spec, consume, _, _ in checks:
            if v[at] == 1:  # admitted: 1, r remaining, r reset, t remaining, t reset, quota used
                if not fut.done():
                    if spec.rpm is None:
                        req_remaining = req_reset = None
                    else:
                        req_remaining, req_reset = v[at + 1], v[at + 2]
                    if spec.tpm is None:
                        tok_remaining = tok_reset = None
                    else:
                        tok_remaining, tok_reset = v[at + 3], v[at + 4]
                    fut.set_result(admitted(spec, now, req_remaining, req_reset, tok_remaining, tok_reset, v[at + 5]))
                at += 6
                continue
            # refused (or a peek): 0, then ok, remaining, reset, retry, before_remaining, before_reset
            # for requests and for tokens, then quota used
            if not fut.done():
                req = _gcra(v, at + 1) if spec.rpm else None
                tok = _gcra(v, at + 7) if spec.tpm else None
                decision = decide(spec, now, req, tok, v[at + 13], consume=consume == 1)
                if decision.allowed and consume:  # the script and decide() must agree
                    fut.set_exception(RuntimeError(
                        f"rate-limit script refused and decide() admitted for key {key_id}: {v[at : at + 14]!r}"
                    ))
                else:
                    fut.set_result(decision)
            at += 14
        if at != len(v):
            raise RuntimeError(f"rate-limit script returned {len(v)} values for {len(checks)} checks")

    async def ping(self) -> bool:
        """True when Redis answers (for health reporting)."""
        try:
            return bool(await self._redis.call("PING") == "PONG")
        except (ConnectionError, TimeoutError, OSError):
            return False

    async def close(self) -> None:
        await self._redis.close()


def _gcra(v: list[int], at: int) -> Gcra:
    retry = v[at + 3]
    return Gcra(v[at] == 1, 0.0, v[at + 1], float(v[at + 2]), None if retry < 0 else float(retry), v[at + 4],
                float(v[at + 5]))


class _Batch:
    """The reply waiter of one script call: distributes its result (or failure) to the callers."""

    __slots__ = ("checks", "command", "limiter", "load_error", "resolved", "retried")

    def __init__(self, limiter: RedisLimiter, checks: list[_Check]) -> None:
        self.limiter = limiter
        self.checks = checks
        self.command = limiter._command(checks)
        self.retried = False
        self.resolved = False
        self.load_error: RespError | None = None

    def done(self) -> bool:
        return self.resolved

    def set_result(self, reply: Any) -> None:
        if isinstance(reply, RespError):
            if not self.retried and str(reply).startswith("NOSCRIPT"):
                # Script cache empty (restart, SCRIPT FLUSH, failover): load it and repeat the batch,
                # pipelined in one write (the connection is up: we are in its reply callback).
                self.retried = True
                self.limiter.round_trips += 2
                if self.limiter._redis.send_now([(_LOAD, _ScriptLoad(self)), (self.command, self)]):
                    return
                self.set_exception(ConnectionError("connection to redis closed"))
                return
            self._fail(self.load_error or reply)
            return
        if not self._answer():
            return
        try:
            if not isinstance(reply, bytes):
                raise RuntimeError(f"rate-limit script returned {reply!r}, expected a bulk string")
            self.limiter._resolve(self.checks, reply)
        except Exception as exc:  # never raise into the protocol: fail the callers instead
            for fut, *_ in self.checks:
                if not fut.done():
                    fut.set_exception(RuntimeError(f"rate-limit reply could not be used: {exc}"))

    def _answer(self) -> bool:
        """Mark the call answered (once: False when it already was) and free its place in flight."""
        if self.resolved:
            return False
        self.resolved = True
        self.limiter._answered()
        return True

    def _fail(self, reply: RespError) -> None:
        if not self._answer():
            return
        text = str(reply)
        for fut, *_ in self.checks:
            if not fut.done():
                if text.startswith(_UNAVAILABLE):
                    fut.set_exception(StoreUnavailable("redis", text))
                else:
                    fut.set_exception(RuntimeError(f"rate-limit script failed in redis: {text}"))

    def set_exception(self, exc: BaseException) -> None:
        if not self._answer():
            return
        detail = str(exc) or type(exc).__name__
        for fut, *_ in self.checks:
            if not fut.done():
                err = StoreUnavailable("redis", detail)
                err.__cause__ = exc
                fut.set_exception(err)


class _ScriptLoad:
    """Waiter of the ``SCRIPT LOAD`` sent on ``NOSCRIPT``: keeps an error for the batch's report."""

    __slots__ = ("batch",)

    def __init__(self, batch: _Batch) -> None:
        self.batch = batch

    def done(self) -> bool:
        return False

    def set_result(self, reply: Any) -> None:
        if isinstance(reply, RespError):
            self.batch.load_error = reply

    def set_exception(self, exc: BaseException) -> None:
        pass  # the batch, queued right behind, gets the same failure
