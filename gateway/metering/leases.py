"""Credit leases: one hold in the store covers many requests of a busy key on this replica.

A per-request hold costs a store round trip on every request's latency path. For a key sending a
steady stream of requests, the meter instead holds a LEASE — ``LEASE_FACTOR`` times the request's
maximum cost — in the store (one ``authorize``, same row locks, same balance/cap checks), and hands
out each request's hold from it in memory. The debits are unchanged: one ledger debit per request
(the request id as idempotency key). The lease's store hold is released once it is retired and its
last debit committed, so the store's ``held`` always covers every request in flight.

Why this cannot overspend: a lease is granted only when balance minus open holds (the store's
check, under the customer's row lock) covers it; a request is admitted from a lease only when the
lease's remaining credit covers its maximum cost, and the credit each request really costs is
taken off the remaining credit for good. Across replicas each lease is a separate store hold.

When a lease cannot be granted (the customer's credit is too close), requests fall back to exact
per-request holds, so the edge of the balance behaves as without leases. Keys sending fewer than
``min_rate`` requests a second (in the current second or the one before) never lease, nor do keys
with a spending cap (a lease would count against the cap before it is spent). When a debit finds
the store unreachable, every lease is retired and none is used for ``STORE_DOWN_PAUSE`` seconds:
requests then need the store for their hold again, so an outage fails closed (503) instead of
serving on reserved credit.

Retirement: a lease stops handing out credit when it cannot cover the next request, after a
quarter of the hold TTL (so the store never expires a lease in use), or when idle for
``idle_release`` seconds; it is released when its last request settled. A crashed gateway's
leases expire in the store like any hold (zero charge).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from newapi_gateway.store import (
    Hold,
    InsufficientCredit,
    KeyRecord,
    SpendingCapExceeded,
    Store,
    StoreUnavailable,
)

log = logging.getLogger("newapi_gateway.metering")

#: A lease first covers this many requests' maximum cost; a lease used up within a second makes
#: the key's next one twice as large (up to ``MAX_FACTOR``), so busy keys re-lease rarely.
LEASE_FACTOR = 32
MAX_FACTOR = 4096
#: Keys below this many requests per second hold per request.
MIN_RATE = 20
#: After a refused lease, hold per request for this long (seconds) before trying again.
BACKOFF = 1.0
#: After the store was found unreachable, no lease is used for this long (seconds).
STORE_DOWN_PAUSE = 5.0


@dataclass(eq=False)
class Lease:
    """One store hold shared by the requests of one key on this replica."""

    hold: Hold
    remaining: int
    retire_at: float
    created: float = 0.0
    inflight: int = 0
    retired: bool = False
    last_used: float = field(default=0.0)


@dataclass(slots=True)
class _Rate:
    window: float
    count: int
    #: requests in the second before ``window`` (0 when that second is not the one just before)
    previous: int = 0


class LeaseBook:
    """The leases of this replica, per key."""

    def __init__(
        self,
        store: Store,
        hold_ttl: float,
        *,
        factor: int = LEASE_FACTOR,
        min_rate: int = MIN_RATE,
        idle_release: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.hold_ttl = hold_ttl
        self.factor = factor
        self.min_rate = min_rate
        self.idle_release = idle_release
        self.clock = clock
        self._leases: dict[int, Lease] = {}
        self._draining: set[Lease] = set()
        self._acquiring: dict[int, asyncio.Future[Lease | None]] = {}
        self._backoff: dict[int, float] = {}
        self._rates: dict[int, _Rate] = {}
        self._factors: dict[int, int] = {}
        self._ids = itertools.count(1)
        self._prefix = f"lease_{os.urandom(6).hex()}_"
        self._tasks: set[asyncio.Task[None]] = set()
        self._paused_until = 0.0
        self.granted = 0
        self.refused = 0

    # -- admission -----------------------------------------------------------------------------

    def eligible(self, record: KeyRecord) -> bool:
        """Count a request of the key; True when its holds should come from a lease: the key sends
        ``min_rate`` requests a second, has no spending cap, and the store was not found down lately."""
        s = record.settings
        return (self.busy(record.id) and s.cap_daily is None and s.cap_monthly is None
                and self.clock() >= self._paused_until)

    def store_down(self) -> None:
        """The store did not answer: retire every lease, use none for ``STORE_DOWN_PAUSE`` seconds."""
        self._paused_until = self.clock() + STORE_DOWN_PAUSE
        for key_id, lease in list(self._leases.items()):
            self._retire(key_id, lease)

    def busy(self, key_id: int) -> bool:
        """Count a request of ``key_id``; True once the key sends ``min_rate`` requests a second: in
        the current one-second window so far, or in the window just before it (so a steadily busy
        key does not fall back to per-request holds at the start of every window)."""
        now = self.clock()
        rate = self._rates.get(key_id)
        if rate is None:
            if len(self._rates) > 100_000:
                self._rates.clear()
            self._rates[key_id] = rate = _Rate(now, 0)
        elif now - rate.window >= 1.0:
            rate.previous = rate.count if now - rate.window < 2.0 else 0
            rate.window = now
            rate.count = 0
        rate.count += 1
        return rate.count >= self.min_rate or rate.previous >= self.min_rate

    def leased(self, key_id: int) -> bool:
        """True when the key has a lease on this replica (its requests' holds need no round trip)."""
        return key_id in self._leases

    def take(self, key_id: int, amount: int) -> Lease | None:
        """Hand ``amount`` out of the key's current lease (no I/O), or None."""
        lease = self._leases.get(key_id)
        if lease is None:
            return None
        now = self.clock()
        if lease.remaining < amount or now >= lease.retire_at:
            if lease.remaining < amount and now - lease.created < 1.0:
                factor = self._factors.get(key_id, self.factor)
                self._factors[key_id] = min(factor * 2, MAX_FACTOR)
            self._retire(key_id, lease)
            return None
        lease.remaining -= amount
        lease.inflight += 1
        lease.last_used = now
        return lease

    async def acquire(self, record: KeyRecord, amount: int, unlimited: bool) -> Lease | None:
        """A new lease for ``record`` with ``amount`` taken out of it, or None (hold per request)."""
        key_id = record.id
        until = self._backoff.get(key_id)
        if until is not None:
            if self.clock() < until:
                return None
            del self._backoff[key_id]
        pending = self._acquiring.get(key_id)
        if pending is None:
            future: asyncio.Future[Lease | None] = asyncio.get_running_loop().create_future()
            self._acquiring[key_id] = future
            try:
                lease = await self._grant(record, amount, unlimited)
            except BaseException as exc:
                future.set_exception(exc)
                future.exception()  # retrieved: the waiters get it, or nobody needs it
                raise
            finally:
                del self._acquiring[key_id]
            future.set_result(lease)
        else:
            lease = await asyncio.shield(pending)
        return self.take(key_id, amount) if lease is not None else None

    async def _grant(self, record: KeyRecord, amount: int, unlimited: bool) -> Lease | None:
        size = max(amount, 1) * self._factors.get(record.id, self.factor)
        request_id = f"{self._prefix}{next(self._ids)}"
        try:
            hold = await self.store.authorize(record, size, request_id, self.hold_ttl, unlimited_credit=unlimited)
        except (InsufficientCredit, SpendingCapExceeded):
            self.refused += 1
            self._backoff[record.id] = self.clock() + BACKOFF
            self._factors.pop(record.id, None)  # next time, start small again
            return None
        self.granted += 1
        now = self.clock()
        lease = Lease(hold, size, now + self.hold_ttl / 4, created=now, last_used=now)
        old = self._leases.get(record.id)
        if old is not None:
            self._retire(record.id, old)
        self._leases[record.id] = lease
        return lease

    # -- settling ------------------------------------------------------------------------------

    def done(self, lease: Lease, amount: int, charged: int) -> None:
        """A request of ``lease`` settled (its debit committed, or it was released): return its
        unused credit; release the lease when it is retired and this was its last request."""
        lease.remaining += amount - charged
        lease.inflight -= 1
        if lease.retired and lease.inflight == 0:
            self._release(lease)

    # -- retirement ------------------------------------------------------------------------------

    def _retire(self, key_id: int, lease: Lease) -> None:
        if self._leases.get(key_id) is lease:
            del self._leases[key_id]
        if lease.retired:
            return
        lease.retired = True
        if lease.inflight == 0:
            self._release(lease)
        else:
            self._draining.add(lease)

    def _release(self, lease: Lease) -> None:
        self._draining.discard(lease)
        task = asyncio.get_running_loop().create_task(self._release_hold(lease.hold))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _release_hold(self, hold: Hold) -> None:
        delay = 0.2
        while True:
            try:
                await self.store.release(hold)
                return
            except StoreUnavailable as exc:
                log.warning("lease %s not released yet (%s); retrying (it expires anyway)", hold.request_id, exc)
            except Exception:
                log.exception("lease %s could not be released; it expires after the hold TTL", hold.request_id)
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    def sweep(self) -> None:
        """Retire idle and old leases (call about once a second)."""
        now = self.clock()
        for key_id, lease in list(self._leases.items()):
            if now >= lease.retire_at or (lease.inflight == 0 and now - lease.last_used >= self.idle_release):
                self._retire(key_id, lease)

    async def run_sweeper(self, interval: float = 0.5) -> None:
        while True:
            await asyncio.sleep(interval)
            self.sweep()

    @property
    def active(self) -> int:
        return len(self._leases) + len(self._draining)

    async def close(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109 - a budget
        """Retire every lease; release those without requests in flight; wait for the releases."""
        for key_id, lease in list(self._leases.items()):
            self._retire(key_id, lease)
        for lease in list(self._draining):
            if lease.inflight <= 0:
                self._release(lease)
        if self._tasks:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*self._tasks, return_exceptions=True), timeout)
