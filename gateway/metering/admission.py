"""Admission: the key's RPM/TPM and the tier's daily request quota, before routing.

One limiter call per request (Redis ``EVALSHA`` shared by every replica, or in-process in
embedded mode; none when the key has no limits). The request's size for TPM is the prompt
estimate plus its maximum output, as OpenAI counts it at admission. A refusal is a 429 with
``Retry-After`` and OpenAI's ``x-ratelimit-*`` headers; an admitted request carries the same
headers on its answer. The daily quota, which OpenAI's headers do not cover, is reported in
``x-ratelimit-limit-requests-day`` / ``-remaining-requests-day`` / ``-reset-requests-day``.

Overlap: the limiter round trip (Redis) and the credit hold (PostgreSQL) are independent, so
when the hold needs a round trip the check is started here and finished by the meter right after
its hold (:meth:`LimitsAdmission.finish`): the two round trips overlap. A refusal then releases
the hold. The check runs sequentially instead when there is nothing to overlap (the key holds
from a credit lease: ``overlap(key_id)`` is false) and for a key refused recently (no hold is
placed for traffic that is being refused anyway). The decision is the shared limiter's, every time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Generator

from newapi_gateway.hooks import RequestContext
from newapi_gateway.keys import KeyInfo
from newapi_gateway.limits import Limiter, LimitSpec
from newapi_gateway.pricing import HoldPolicy
from newapi_gateway.snapshot import Snapshot
from newapi_gateway.store import StoreUnavailable

from .errors import rate_limited, store_unavailable
from .meter import PENDING_NOTE, request_estimate
from .resolver import record_of

#: How long a refused key is checked sequentially (seconds, at most).
REFUSED_MEMORY = 60.0


class _Nothing:
    """An awaitable that is already done (what the admission check returns when there is nothing to wait for)."""

    __slots__ = ()

    def __await__(self) -> Generator[None, None, None]:
        return iter(())  # type: ignore[return-value]


_NOTHING = _Nothing()


def _retrieve(task: asyncio.Task[None]) -> None:
    """A check nobody awaited (the request failed before its hold): consume its outcome."""
    if not task.cancelled():
        task.exception()


class LimitsAdmission:
    """:class:`~newapi_gateway.hooks.AdmissionCheck` enforcing a key's limits."""

    def __init__(
        self, limiter: Limiter, policy: HoldPolicy | None = None, *, overlap: Callable[[int], bool] | bool = True
    ) -> None:
        self.limiter = limiter
        self.policy = policy or HoldPolicy()
        self.overlap = overlap
        self._specs: dict[tuple[int | None, int | None, int | None], LimitSpec] = {}
        # id(KeyInfo) -> (that KeyInfo, its limits, its store key id), for the routing table _keys_for
        self._keys: dict[int, tuple[KeyInfo, LimitSpec, int]] = {}
        self._keys_for: Snapshot | None = None
        self._refused: dict[int, float] = {}

    def spec(self, rpm: int | None, tpm: int | None, daily_quota: int | None) -> LimitSpec:
        key = (rpm, tpm, daily_quota)
        spec = self._specs.get(key)
        if spec is None:
            if len(self._specs) > 10_000:
                self._specs.clear()
            spec = self._specs[key] = LimitSpec(rpm=rpm, tpm=tpm, daily_quota=daily_quota)
        return spec

    def limits_of(self, ctx: RequestContext) -> tuple[LimitSpec, int]:
        """The request's key's limits and store key id, worked out once per key and routing table
        (a key's :class:`KeyInfo` is a new object whenever its record changes)."""
        key, snapshot = ctx.key, ctx.snapshot
        if snapshot is not self._keys_for:  # a new routing table: tier quotas may have changed
            self._keys = {}
            self._keys_for = snapshot
        known = self._keys.get(id(key))
        if known is not None and known[0] is key:
            return known[1], known[2]
        tier = snapshot.table.policy.tiers.get(key.tier)
        spec = self.spec(key.rpm, key.tpm, tier.daily_request_quota if tier is not None else None)
        key_id = record_of(key).id
        if len(self._keys) > 100_000:
            self._keys.clear()
        self._keys[id(key)] = (key, spec, key_id)
        return spec, key_id

    def __call__(self, ctx: RequestContext) -> Awaitable[None]:
        """Start the check; the proxy awaits what this returns (the check itself, or nothing left to
        wait for: no limits, or the check runs alongside the hold). Not a coroutine: the request's
        task then resumes one frame fewer when the limiter answers."""
        spec, key_id = self.limits_of(ctx)
        if spec.unlimited:
            return _NOTHING
        tokens = request_estimate(ctx, self.policy).tokens if spec.tpm is not None else 0
        check = self._check(ctx, key_id, spec, tokens)
        overlap = self.overlap(key_id) if callable(self.overlap) else self.overlap
        if overlap and not self._recently_refused(key_id):
            task = asyncio.get_running_loop().create_task(check)
            task.add_done_callback(_retrieve)
            ctx.notes[PENDING_NOTE] = task
            return _NOTHING
        return check

    @staticmethod
    async def finish(ctx: RequestContext) -> None:
        """Wait for the check started by admission, if any (raises its 429/503)."""
        task = ctx.notes.pop(PENDING_NOTE, None)
        if task is not None:
            await task

    def _recently_refused(self, key_id: int) -> bool:
        until = self._refused.get(key_id)
        if until is None:
            return False
        if until > time.monotonic():
            return True
        del self._refused[key_id]
        return False

    async def _check(self, ctx: RequestContext, key_id: int, spec: LimitSpec, tokens: int) -> None:
        try:
            decision = await self.limiter.check(key_id, spec, tokens)
        except StoreUnavailable as exc:
            raise store_unavailable(exc) from None
        if not decision.allowed:
            if len(self._refused) > 100_000:
                self._refused.clear()
            self._refused[key_id] = time.monotonic() + min(decision.retry_after or 1.0, REFUSED_MEMORY)
            raise rate_limited(decision)
        headers = decision.headers(daily=True)
        if ctx.response_headers:
            ctx.response_headers.update(headers)
        else:
            ctx.response_headers = headers

