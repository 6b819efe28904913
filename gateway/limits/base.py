"""The limiter interface and its result, shared by the Redis and the in-process implementation.

A key has up to three admission limits, checked and consumed together (all pass or nothing is
counted):

- ``rpm``: requests per minute, GCRA (a token bucket of ``rpm`` requests refilled evenly over
  60 s: a full minute's burst is allowed, then one request every 60/rpm s);
- ``tpm``: tokens per minute, the same GCRA counting the request's token estimate (prompt
  estimate + max output tokens, as OpenAI counts it at admission);
- ``daily_quota``: requests per key per UTC day (the tier's quota; seed: Free 10, Pro 1,000,
  Enterprise unlimited).

A :class:`LimitDecision` carries what the HTTP layer needs for a 429: ``Retry-After`` and OpenAI's
``x-ratelimit-*`` headers (:meth:`LimitDecision.headers`).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Literal

from multidict import istr

PERIOD_MS = 60_000
DAY_MS = 86_400_000

Reason = Literal["ok", "rpm", "tpm", "quota", "too_large"]

#: The seed's sample tiers (requests per key per UTC day; None = unlimited).
SAMPLE_DAILY_QUOTAS: dict[str, int | None] = {"free": 10, "pro": 1_000, "enterprise": None}


@dataclass(frozen=True, slots=True)
class LimitSpec:
    """A key's limits; ``None`` = unlimited."""

    rpm: int | None = None
    tpm: int | None = None
    daily_quota: int | None = None

    def __post_init__(self) -> None:
        for name in ("rpm", "tpm"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name}: must be >= 1 or None (unlimited), got {value}")
        if self.daily_quota is not None and self.daily_quota < 0:
            raise ValueError(f"daily_quota: must be >= 0 or None (unlimited), got {self.daily_quota}")

    @property
    def unlimited(self) -> bool:
        return self.rpm is None and self.tpm is None and self.daily_quota is None


#: Response header names of a decision (OpenAI's, then the daily quota's), as ``istr``.
H_LIMIT_REQUESTS = istr("x-ratelimit-limit-requests")
H_REMAINING_REQUESTS = istr("x-ratelimit-remaining-requests")
H_RESET_REQUESTS = istr("x-ratelimit-reset-requests")
H_LIMIT_TOKENS = istr("x-ratelimit-limit-tokens")
H_REMAINING_TOKENS = istr("x-ratelimit-remaining-tokens")
H_RESET_TOKENS = istr("x-ratelimit-reset-tokens")
H_LIMIT_REQUESTS_DAY = istr("x-ratelimit-limit-requests-day")
H_REMAINING_REQUESTS_DAY = istr("x-ratelimit-remaining-requests-day")
H_RESET_REQUESTS_DAY = istr("x-ratelimit-reset-requests-day")
H_RETRY_AFTER = istr("Retry-After")


@dataclass(slots=True, init=False)  # one per request: see __init__
class LimitDecision:
    """Outcome of one admission check. Times are seconds (floats); ``None`` = limit not set.

    ``remaining_*`` are after this request when allowed, before it when refused. ``reset_*`` is
    the time until that limit is back to its initial (full) state, as OpenAI defines it.
    ``retry_after`` is set on refusals that waiting can fix; a request larger than the key's
    whole TPM (``too_large``) can never pass and has none.
    """

    allowed: bool
    reason: Reason
    limit_requests: int | None = None
    remaining_requests: int | None = None
    reset_requests: float | None = None
    limit_tokens: int | None = None
    remaining_tokens: int | None = None
    reset_tokens: float | None = None
    daily_quota: int | None = None
    remaining_quota: int | None = None
    reset_quota: float | None = None
    retry_after: float | None = None

    # Written out instead of generated: the dataclass decorator's __init__ is interpreted code even
    # in the compiled build (setup.py), and this one runs on every metered request.
    def __init__(
        self,
        allowed: bool,
        reason: Reason,
        limit_requests: int | None = None,
        remaining_requests: int | None = None,
        reset_requests: float | None = None,
        limit_tokens: int | None = None,
        remaining_tokens: int | None = None,
        reset_tokens: float | None = None,
        daily_quota: int | None = None,
        remaining_quota: int | None = None,
        reset_quota: float | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.allowed = allowed
        self.reason = reason
        self.limit_requests = limit_requests
        self.remaining_requests = remaining_requests
        self.reset_requests = reset_requests
        self.limit_tokens = limit_tokens
        self.remaining_tokens = remaining_tokens
        self.reset_tokens = reset_tokens
        self.daily_quota = daily_quota
        self.remaining_quota = remaining_quota
        self.reset_quota = reset_quota
        self.retry_after = retry_after

    def headers(self, *, daily: bool = False) -> dict[str, str]:
        """OpenAI's rate-limit headers (for every response) plus ``Retry-After`` on a retryable 429;
        with ``daily``, also the daily quota's (``x-ratelimit-*-requests-day``, when it is set).

        The names are :class:`multidict.istr`: aiohttp takes them into the answer's headers
        without case-folding each one again (this runs on every metered answer)."""
        out: dict[str, str] = {}
        if self.limit_requests is not None:
            out[H_LIMIT_REQUESTS] = str(self.limit_requests)
            out[H_REMAINING_REQUESTS] = str(self.remaining_requests or 0)
            out[H_RESET_REQUESTS] = format_duration(self.reset_requests or 0.0)
        if self.limit_tokens is not None:
            out[H_LIMIT_TOKENS] = str(self.limit_tokens)
            out[H_REMAINING_TOKENS] = str(self.remaining_tokens or 0)
            out[H_RESET_TOKENS] = format_duration(self.reset_tokens or 0.0)
        if daily and self.daily_quota is not None:
            out[H_LIMIT_REQUESTS_DAY] = str(self.daily_quota)
            out[H_REMAINING_REQUESTS_DAY] = str(self.remaining_quota or 0)
            out[H_RESET_REQUESTS_DAY] = format_duration(self.reset_quota or 0.0)
        if not self.allowed and self.retry_after is not None:
            out[H_RETRY_AFTER] = str(max(1, math.ceil(self.retry_after)))
        return out

    def message(self) -> str:
        """A client-presentable explanation of a refusal (for the OpenAI error body)."""
        if self.reason == "rpm":
            return f"Rate limit reached for requests per minute (limit {self.limit_requests}). " + self._retry()
        if self.reason == "tpm":
            return (
                f"Rate limit reached for tokens per minute (limit {self.limit_tokens}, remaining "
                f"{self.remaining_tokens}). " + self._retry()
            )
        if self.reason == "quota":
            return f"Daily request quota of {self.daily_quota} reached; it resets at 00:00 UTC. " + self._retry()
        if self.reason == "too_large":
            return (
                f"Request too large: its token estimate exceeds the key's limit of {self.limit_tokens} tokens "
                "per minute. Reduce the prompt or max_tokens."
            )
        return "ok"

    def _retry(self) -> str:
        return f"Please try again in {format_duration(self.retry_after or 0.0)}."


def format_duration(seconds: float) -> str:
    """OpenAI's reset format (Go duration style): ``12ms``, ``1s``, ``8.64s``, ``6m0s``, ``1h0m0s``."""
    total_ms = math.ceil(seconds * 1000 - 1e-6)
    if total_ms < 1000:
        return _SHORT[total_ms] if total_ms > 0 else "0s"
    global _last_long
    last = _last_long  # one tuple, replaced whole: safe to share between threads
    if total_ms == last[0]:  # the daily reset: the same for every check of a Redis batch
        return last[1]
    text = _long_duration(total_ms)
    _last_long = (total_ms, text)
    return text


_last_long: tuple[int, str] = (-1, "")
_SHORT = tuple(f"{ms}ms" for ms in range(1000))


def _long_duration(total_ms: int) -> str:
    hours, rest = divmod(total_ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    whole, ms = divmod(rest, 1000)  # integer maths: the same text as f"{rest / 1000:.3f}" stripped
    secs = f"{whole}.{ms:03d}".rstrip("0") if ms else str(whole)
    out = ""
    if hours:
        out += f"{hours}h"
    if hours or minutes:
        out += f"{minutes}m"
    return f"{out}{secs}s"


class Limiter(ABC):
    """Per-key admission limits. Implementations: RedisLimiter (shared by every replica) and
    LocalLimiter (embedded mode, one process). Same semantics, same results."""

    @abstractmethod
    def check(self, key_id: int, spec: LimitSpec, tokens: int) -> Awaitable[LimitDecision]:
        """Admit one request of ``tokens`` estimated tokens, or refuse it; atomic across replicas.

        Await the result (a coroutine, or the Redis limiter's future: no coroutine frame on the
        hot path). Its decision raises StoreUnavailable when the shared store is down (fail
        closed: 503).
        """

    @abstractmethod
    def peek(self, key_id: int, spec: LimitSpec) -> Awaitable[LimitDecision]:
        """The current state without counting a request (for ``GET /quota``)."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


# --------------------------------------------------------------------------------------------
# The algorithm, shared by LocalLimiter and (line by line) the Redis Lua script
# --------------------------------------------------------------------------------------------


@dataclass(slots=True)  # not frozen: built per request
class Gcra:
    """One GCRA evaluation. ``remaining``/``reset_ms`` describe the state after the request when it
    fits (``allowed``), else the state before it; ``before_*`` always describe the state before."""

    allowed: bool
    new_tat: float
    remaining: int
    reset_ms: float
    retry_ms: float | None  # None: can never fit (cost > limit)
    before_remaining: int
    before_reset_ms: float


def gcra(tat: float | None, now: float, limit: int, cost: int, period_ms: float = PERIOD_MS) -> Gcra:
    """Generic cell rate algorithm for ``limit`` units per ``period_ms`` with a full-period burst.

    ``tat`` is the stored theoretical arrival time (epoch ms; None = never used).
    """
    interval = period_ms / limit
    base = now if tat is None or tat < now else tat
    before_remaining = max(0, math.floor((period_ms - (base - now)) / interval + 1e-9))
    before_reset = math.ceil(base - now)
    new_tat = base + cost * interval
    fill = new_tat - now
    if fill <= period_ms:
        remaining = math.floor((period_ms - fill) / interval + 1e-9)
        return Gcra(True, new_tat, remaining, math.ceil(fill), 0, before_remaining, before_reset)
    retry = None if cost > limit else math.ceil(fill - period_ms)
    return Gcra(False, base, before_remaining, before_reset, retry, before_remaining, before_reset)


def decide(
    spec: LimitSpec,
    now_ms: float,
    req: Gcra | None,
    tok: Gcra | None,
    quota_used: int,
    *,
    consume: bool = True,
) -> LimitDecision:
    """Combine the three limits' evaluations into one decision (shared by both limiters).

    With ``consume=False`` (peek; ``req``/``tok`` evaluated at cost 0) it reports the state now:
    allowed when one more request would pass the request and quota limits.
    """
    quota_ok = spec.daily_quota is None or quota_used + 1 <= spec.daily_quota
    if consume and quota_ok and (req is None or req.allowed) and (tok is None or tok.allowed):
        return admitted(
            spec,
            now_ms,
            None if req is None else req.remaining,
            None if req is None else req.reset_ms,
            None if tok is None else tok.remaining,
            None if tok is None else tok.reset_ms,
            quota_used,
        )
    quota_reset_ms = (math.floor(now_ms / DAY_MS) + 1) * DAY_MS - now_ms
    failures: list[tuple[Reason, float | None]] = []
    if not consume:
        # Peek: req/tok were evaluated at cost 0; report exhaustion without a retry time.
        if req is not None and req.remaining < 1:
            failures.append(("rpm", 0.0))
        if tok is not None and tok.remaining < 1:
            failures.append(("tpm", 0.0))
    elif req is not None and not req.allowed:
        failures.append(("rpm", req.retry_ms))
    if consume and tok is not None and not tok.allowed:
        failures.append(("too_large" if tok.retry_ms is None else "tpm", tok.retry_ms))
    if not quota_ok:
        failures.append(("quota", quota_reset_ms))
    allowed = not failures
    reason: Reason = "ok"
    retry: float | None = None
    if failures:
        if any(r is None for _, r in failures):
            reason, retry = "too_large", None
        else:
            reason, retry = max(failures, key=lambda f: f[1] or 0.0)
        if not consume:
            retry = None
    used_after = quota_used + (1 if allowed and consume else 0)
    return LimitDecision(
        allowed=allowed,
        reason=reason,
        limit_requests=spec.rpm,
        remaining_requests=_remaining(req, allowed),
        reset_requests=_reset(req, allowed),
        limit_tokens=spec.tpm,
        remaining_tokens=_remaining(tok, allowed),
        reset_tokens=_reset(tok, allowed),
        daily_quota=spec.daily_quota,
        remaining_quota=max(0, spec.daily_quota - used_after) if spec.daily_quota is not None else None,
        reset_quota=quota_reset_ms / 1000 if spec.daily_quota is not None else None,
        retry_after=retry / 1000 if retry is not None else None,
    )


def admitted(
    spec: LimitSpec,
    now_ms: float,
    req_remaining: int | None,
    req_reset_ms: float | None,
    tok_remaining: int | None,
    tok_reset_ms: float | None,
    quota_used: int,
) -> LimitDecision:
    """The decision for a request every limit admitted (``decide(consume=True)``'s common case).

    Takes the admitted evaluations' ``remaining``/``reset_ms`` (None for a limit that is not set)
    so the Redis limiter's hot path needs no :class:`Gcra` objects; :func:`decide` calls it too.
    """
    quota = spec.daily_quota
    if quota is None:
        remaining_quota = reset_quota = None
    else:
        remaining_quota = quota - (quota_used + 1)
        if remaining_quota < 0:
            remaining_quota = 0
        reset_quota = ((math.floor(now_ms / DAY_MS) + 1) * DAY_MS - now_ms) / 1000
    return LimitDecision(
        True,
        "ok",
        spec.rpm,
        req_remaining,
        None if req_reset_ms is None else req_reset_ms / 1000,
        spec.tpm,
        tok_remaining,
        None if tok_reset_ms is None else tok_reset_ms / 1000,
        quota,
        remaining_quota,
        reset_quota,
        None,
    )


def _remaining(g: Gcra | None, admitted: bool) -> int | None:
    if g is None:
        return None
    return g.remaining if admitted else g.before_remaining


def _reset(g: Gcra | None, admitted: bool) -> float | None:
    if g is None:
        return None
    return (g.reset_ms if admitted else g.before_reset_ms) / 1000
