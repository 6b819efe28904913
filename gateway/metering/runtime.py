"""Metering at run time: the store, the limiter and the hooks they feed, opened and closed together.

``newapi gateway`` without ``--keys`` builds one :class:`Metering` from its
:class:`~newapi_gateway.metering.config.StateConfig`: the store (migrated at start), the limiter
(Redis when configured, else in-process), the store-backed key resolver, the limits admission
check, the meter, ``GET /quota``, the readiness detail and the background hold expiry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from newapi_gateway.hooks import Hooks
from newapi_gateway.limits import Limiter, create_limiter
from newapi_gateway.pricing import HoldPolicy
from newapi_gateway.state import GatewayState
from newapi_gateway.store import Store, StoreUnavailable, create_store
from newapi_gateway.store.maintenance import expire_holds_forever

from .admission import LimitsAdmission
from .config import StateConfig
from .leases import LeaseBook
from .meter import AuditBuilder, StoreMeter
from .quota import QuotaEndpoint
from .resolver import StoreKeyResolver

log = logging.getLogger("newapi_gateway.metering")

#: Longest a readiness probe waits for each back end (seconds).
PROBE_TIMEOUT = 0.8


def expiry_interval(hold_ttl: float) -> float:
    """How often to look for expired holds: a quarter of their lifetime, between 0.5 and 10 s."""
    return max(0.5, min(10.0, hold_ttl / 4))


class Metering:
    """The metering layer of one gateway process."""

    def __init__(
        self,
        config: StateConfig,
        *,
        hold_ttl: float = 600.0,
        policy: HoldPolicy | None = None,
        store: Store | None = None,
        limiter: Limiter | None = None,
        audit: AuditBuilder | None = None,
        settle_delay: float = 0.02,
        leases: bool = True,
    ) -> None:
        self.config = config
        self.hold_ttl = hold_ttl
        self.policy = policy or HoldPolicy()
        self.store = store or create_store(
            dsn=config.dsn, redis_url=config.redis_url, sqlite_path=config.sqlite_path or "newapi.db"
        )
        self.limiter = limiter or create_limiter(config.redis_url)
        self.resolver = StoreKeyResolver(self.store)
        self.leases = LeaseBook(self.store, hold_ttl) if leases else None
        book = self.leases
        self.admission = LimitsAdmission(
            self.limiter, self.policy, overlap=(lambda key_id: not book.leased(key_id)) if book is not None else True
        )
        self.meter = StoreMeter(self.store, hold_ttl=hold_ttl, policy=self.policy, audit=audit,
                                after_hold=self.admission.finish, settle_delay=settle_delay, leases=self.leases)
        self._tasks: list[asyncio.Task[None]] = []
        self._health: tuple[float, dict[str, str]] | None = None

    async def open(self) -> None:
        """Connect and migrate. PostgreSQL being down is not fatal: the gateway starts degraded
        (503 on paid requests) and migrates when it is back. Anything else (bad credentials, a
        migration conflict) raises."""
        try:
            await self.store.open()
            log.info("metering store ready", extra={**self.config.describe(),
                                                   "schema_version": await self.store.schema_version()})
        except StoreUnavailable as exc:
            if self.config.backend == "sqlite":
                raise
            log.error("metering store unreachable at start; serving 503 until it is back: %s", exc,
                      extra=self.config.describe())
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(
            expire_holds_forever(self.store, interval=expiry_interval(self.hold_ttl)), name="hold-expiry"))
        if self.leases is not None:
            self._tasks.append(loop.create_task(self.leases.run_sweeper(), name="lease-sweeper"))

    def hooks(self, base: Hooks) -> Hooks:
        """``base`` plus the limits admission check (after the existing ones) and the meter."""
        if base.meter is not None:
            raise ValueError("a meter is already installed; the metering layer brings its own")
        hooks = base.copy()
        hooks.admission.append(self.admission)
        hooks.meter = self.meter
        return hooks

    def quota_endpoint(self, state: GatewayState) -> QuotaEndpoint:
        return QuotaEndpoint(state, self.resolver, self.store, self.limiter, self.admission)

    async def readiness(self) -> dict[str, Any]:
        """Store and limiter health for ``/readyz`` (the probes cached for one second; never raises)."""
        now = time.monotonic()
        if self._health is None or now - self._health[0] >= 1.0:
            # bounded: a probe (timeoutSeconds 2) must get an answer even when a server black-holes
            components: dict[str, str]
            try:
                async with asyncio.timeout(PROBE_TIMEOUT):
                    components = dict((await self.store.health()).components)
            except TimeoutError:
                components = {self.store.backend: f"unavailable: no answer within {PROBE_TIMEOUT} s"}
            ping = getattr(self.limiter, "ping", None)
            if ping is not None:
                try:
                    async with asyncio.timeout(PROBE_TIMEOUT):
                        ok = await ping()
                except TimeoutError:
                    ok = False
                components["redis-limits"] = "ok" if ok else "unavailable"
            self._health = (now, components)
        components = self._health[1]
        return {
            "status": "ok" if all(v == "ok" for v in components.values()) else "degraded",
            "backend": self.store.backend,
            "components": components,
            "pendingDebits": self.meter.pending,
            "creditLeases": self.leases.active if self.leases else 0,
        }

    async def close(self, drain_timeout: float = 10.0) -> None:
        """Write the debits in flight, stop the background jobs, disconnect."""
        await self.meter.drain(drain_timeout)
        if self.leases is not None:
            await self.leases.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await self.limiter.close()
        await self.store.close()
