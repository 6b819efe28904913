"""The Meter hook: hold before each upstream attempt, settle (or release) after it.

* ``authorize``: the request's maximum cost at the chosen channel's price times the tier's
  multiplier is held in the store (one group-committed transaction); balance minus open holds
  must cover it, and the key's daily/monthly spending caps must allow it, else 429
  ``insufficient_quota``. The tier's ``unlimitedCredit`` skips the balance check (caps still apply).
* ``settle``: the attempt's bill (:func:`~newapi_gateway.metering.billing.bill_tokens`) is
  charged as ONE ledger debit (idempotency key = the hold's request id) that also releases the
  hold and adds to the usage rollup. The debit runs in the background after the answer went out
  (its commit is off the client's latency) and is retried while the store is unreachable — a
  retry never charges twice. A failed attempt's hold is released at once (the next attempt may
  need that credit).
* ``drain``: at shutdown, wait for the debits still in flight.

A gateway killed between its answer and the debit's commit leaves a hold that expires and is
released with zero charge (docs/metering.md, "the expiry rule"); nothing acknowledged is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from newapi_gateway.hooks import RequestContext
from newapi_gateway.pricing import HoldPolicy, Price, cost, model_price
from newapi_gateway.snapshot import CompiledChannel
from newapi_gateway.store import (
    AuditEvent,
    Debit,
    Hold,
    InsufficientCredit,
    KeyRefused,
    Settlement,
    SpendingCapExceeded,
    Store,
    StoreUnavailable,
    Usage,
)
from newapi_gateway.translate.base import Usage as WireUsage

from .billing import RequestEstimate, bill_tokens, estimate_request
from .errors import insufficient_credit, key_refused_from, spending_cap, store_unavailable
from .leases import Lease, LeaseBook
from .resolver import record_of

log = logging.getLogger("newapi_gateway.metering")

#: ``RequestContext.notes`` entry caching the request's token estimate.
ESTIMATE_NOTE = "metering.estimate"
#: ``RequestContext.notes`` entry holding the admission's limiter check in flight (overlap mode);
#: on the credit-lease path the meter awaits ``after_hold`` only when it is there.
PENDING_NOTE = "metering.limits"
ZERO_PRICE = Price(0, 0)

#: Builds the audit row settled together with the debit (issue 7's seam); None = no row.
AuditBuilder = Callable[[RequestContext, "HeldRequest", int, Usage], AuditEvent | None]
#: Awaited right after the hold: the admission's limiter check in flight (see ``admission.py``).
AfterHold = Callable[[RequestContext], Coroutine[Any, Any, None]]


def request_estimate(ctx: RequestContext, policy: HoldPolicy) -> RequestEstimate:
    """The request's token estimate, computed once and kept in ``ctx.notes``."""
    est = ctx.notes.get(ESTIMATE_NOTE)
    if est is None:
        est = ctx.notes[ESTIMATE_NOTE] = estimate_request(ctx.body, ctx.operation, policy)
    return est


@dataclass(slots=True, eq=False, init=False)  # one per request: not frozen, and __init__ written out
class HeldRequest:
    """What ``authorize`` hands the proxy (and gets back in ``settle``)."""

    hold: Hold
    price: Price
    multiplier_percent: int
    model: str
    channel: str
    estimate: RequestEstimate
    #: the credit lease the request's maximum cost was taken from (None: its own hold in the store)
    lease: Lease | None = None
    reserved: int = 0

    def __init__(
        self,
        hold: Hold,
        price: Price,
        multiplier_percent: int,
        model: str,
        channel: str,
        estimate: RequestEstimate,
        lease: Lease | None = None,
        reserved: int = 0,
    ) -> None:
        # not generated: the dataclass decorator's __init__ stays interpreted in the compiled build
        self.hold = hold
        self.price = price
        self.multiplier_percent = multiplier_percent
        self.model = model
        self.channel = channel
        self.estimate = estimate
        self.lease = lease
        self.reserved = reserved


#: A debit waiting for its batch, with the held request it settles (for its credit lease).
QueuedDebit = tuple[HeldRequest, Debit]


class StoreMeter:
    """:class:`~newapi_gateway.hooks.Meter` backed by a :class:`~newapi_gateway.store.Store`."""

    def __init__(
        self,
        store: Store,
        *,
        hold_ttl: float = 600.0,
        policy: HoldPolicy | None = None,
        audit: AuditBuilder | None = None,
        after_hold: AfterHold | None = None,
        settle_delay: float = 0.02,
        leases: LeaseBook | None = None,
    ) -> None:
        self.store = store
        self.hold_ttl = hold_ttl
        self.policy = policy or HoldPolicy()
        self.audit = audit
        self.after_hold = after_hold
        self.settle_delay = settle_delay
        self.leases = leases
        self._pending: set[asyncio.Task[None]] = set()
        self._queue: list[QueuedDebit] = []
        self._flusher: asyncio.Task[None] | None = None
        self._prices: dict[tuple[int, str], Price] = {}
        self._prices_for: object = None
        self.unsettled_at_close = 0

    # -- authorize -------------------------------------------------------------------------------

    def _price(self, ctx: RequestContext, channel: CompiledChannel, model: str) -> Price:
        if channel.byok:
            return ZERO_PRICE
        if self._prices_for is not ctx.snapshot:  # a new routing table: prices may have changed
            self._prices = {}
            self._prices_for = ctx.snapshot
        key = (id(channel), model)
        price = self._prices.get(key)
        if price is None:
            price = self._prices[key] = model_price(channel.route.pricing, model)
        return price

    async def authorize(self, ctx: RequestContext, channel: CompiledChannel) -> object:
        record = record_of(ctx.key)
        est = request_estimate(ctx, self.policy)
        tier = ctx.snapshot.table.policy.tiers.get(ctx.key.tier)
        multiplier = tier.price_multiplier_percent if tier is not None else 100
        model = ctx.plan.served if ctx.plan is not None else ctx.model
        price = self._price(ctx, channel, model)
        amount = cost(price, est.prompt_tokens, est.max_output_tokens, multiplier)
        request_id = ctx.request_id if ctx.attempts <= 1 else f"{ctx.request_id}.{ctx.attempts}"
        unlimited = tier is not None and tier.unlimited_credit
        leases = self.leases
        if leases is not None and leases.eligible(record):
            lease = leases.take(record.id, amount)
            if lease is None:
                try:
                    lease = await leases.acquire(record, amount, unlimited)
                except KeyRefused as exc:
                    raise key_refused_from(exc) from None
                except StoreUnavailable as exc:
                    raise store_unavailable(exc) from None
            if lease is not None:
                held = HeldRequest(Hold(request_id, record.customer_id, record.id, 0, lease.hold.expires_at),
                                   price, multiplier, model, channel.name, est, lease, amount)
                if self.after_hold is not None and PENDING_NOTE in ctx.notes:
                    try:
                        await self.after_hold(ctx)
                    except BaseException:
                        leases.done(lease, amount, 0)
                        raise
                return held
        try:
            hold = await self.store.authorize(record, amount, request_id, self.hold_ttl, unlimited_credit=unlimited)
        except InsufficientCredit as exc:
            error = insufficient_credit(exc)
        except SpendingCapExceeded as exc:
            error = spending_cap(exc)
        except KeyRefused as exc:
            error = key_refused_from(exc)
        except StoreUnavailable as exc:
            error = store_unavailable(exc)
            if leases is not None:
                leases.store_down()
        else:
            if self.after_hold is not None:
                try:
                    await self.after_hold(ctx)
                except BaseException:
                    await self._release(hold)
                    raise
            return HeldRequest(hold, price, multiplier, model, channel.name, est)
        if self.after_hold is not None:
            await self.after_hold(ctx)  # a rate-limit refusal comes first, as with sequential admission
        raise error

    # -- settle ----------------------------------------------------------------------------------

    async def settle(self, ctx: RequestContext, hold: object, usage: WireUsage | None, outcome: str) -> None:
        if not isinstance(hold, HeldRequest):
            return
        if usage is not None and usage.reported and outcome == "ok":  # the common case, without a Bill
            input_tokens, output_tokens, estimated = usage.input_tokens, usage.output_tokens, False
        else:
            bill = bill_tokens(
                usage, outcome, hold.estimate, stream=ctx.stream, delivered_events=ctx.delivered_events,
                response_body=ctx.response_body,
            )
            if bill is None:
                if hold.lease is not None and self.leases is not None:
                    self.leases.done(hold.lease, hold.reserved, 0)
                else:
                    await self._release(hold.hold)
                return
            input_tokens, output_tokens, estimated = bill.input_tokens, bill.output_tokens, bill.estimated
        amount = cost(hold.price, input_tokens, output_tokens, hold.multiplier_percent)
        usage_row = Usage(hold.model, hold.channel, input_tokens, output_tokens, estimated)
        audit = self.audit(ctx, hold, amount, usage_row) if self.audit is not None else None
        item = (hold, Debit(hold.hold, amount, usage_row, audit))
        if self.settle_delay <= 0:
            self._background(self._debit([item]))
            return
        self._queue.append(item)
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush_later())

    async def _release(self, hold: Hold) -> None:
        """Release at once (the next attempt may need the credit); in the background if the store is down."""
        try:
            await self.store.release(hold)
        except StoreUnavailable:
            self._background(self._release_later(hold))

    async def _flush_later(self) -> None:
        """Debits wait ``settle_delay`` and go to the store together: one transaction for the lot, and
        the customer's balance row is locked once per batch instead of once per request."""
        try:
            await asyncio.sleep(self.settle_delay)
        finally:
            batch, self._queue = self._queue, []
            self._flusher = None
            if batch:
                self._background(self._debit(batch))

    def _background(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _debit(self, batch: list[QueuedDebit]) -> None:
        """Write a batch of debits (one ``settle_many``); retry those the store could not take while it
        is unreachable (a retry never charges twice: the request id is the idempotency key)."""
        delay = 0.1
        try:
            while batch:
                results: list[Settlement | BaseException] | None = None
                try:
                    results = await self.store.settle_many([debit for _, debit in batch])
                except StoreUnavailable as exc:
                    self._postponed(batch, exc)
                except Exception:
                    log.exception("a batch of %d debits failed; writing them one by one", len(batch))
                    results = [await self._debit_one(item) for item in batch]
                if results is not None:
                    batch = self._finish(batch, results)
                if batch:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
        finally:
            for item in batch:  # cancelled (shutdown): their holds expire unsettled
                self._done(item)

    async def _debit_one(self, item: QueuedDebit) -> Settlement | BaseException:
        debit = item[1]
        try:
            return await self.store.settle(debit.hold, debit.cost, debit.usage, debit.audit)
        except Exception as exc:
            return exc

    def _finish(self, batch: list[QueuedDebit], results: list[Settlement | BaseException]) -> list[QueuedDebit]:
        """Book the batch's results; returns the debits to try again."""
        retry: list[QueuedDebit] = []
        unavailable: StoreUnavailable | None = None
        for item, result in zip(batch, results, strict=True):
            if isinstance(result, StoreUnavailable):
                retry.append(item)
                unavailable = result
                continue
            if isinstance(result, BaseException):
                log.error("debit of request %s failed; its hold will expire unsettled: %s", item[1].hold.request_id,
                          result, exc_info=result)
            self._done(item)
        if unavailable is not None:
            self._postponed(retry, unavailable)
        return retry

    def _postponed(self, batch: list[QueuedDebit], exc: StoreUnavailable) -> None:
        log.warning("%d debits postponed (first: request %s): %s (retrying; they are idempotent)", len(batch),
                    batch[0][1].hold.request_id, exc)
        if self.leases is not None:
            self.leases.store_down()

    def _done(self, item: QueuedDebit) -> None:
        held = item[0]
        if held.lease is not None and self.leases is not None:
            # only now may the lease's store hold go: the debit is in the ledger
            self.leases.done(held.lease, held.reserved, item[1].cost)

    async def _release_later(self, hold: Hold) -> None:
        delay = 0.2
        while True:
            await asyncio.sleep(delay)
            try:
                await self.store.release(hold)
                return
            except StoreUnavailable:
                delay = min(delay * 2, 5.0)
            except Exception:
                log.exception("release of request %s failed; its hold will expire", hold.request_id)
                return

    @property
    def pending(self) -> int:
        """Debits and releases queued or in flight."""
        return len(self._pending) + len(self._queue)

    async def drain(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109 - a budget, not a cancel scope
        """Wait up to ``timeout`` s for the debits in flight; log what is left (their holds expire)."""
        if self._flusher is not None:
            self._flusher.cancel()  # its ``finally`` hands the queued debits over at once
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        deadline = time.monotonic() + timeout
        while self._pending and time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(asyncio.gather(*self._pending, return_exceptions=True)),
                                       max(0.01, deadline - time.monotonic()))
        self.unsettled_at_close = len(self._pending)
        if self._pending:
            log.error("%d debits could not be written before shutdown; their holds expire without charge",
                      len(self._pending))
            for task in list(self._pending):
                task.cancel()
