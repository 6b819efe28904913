"""Background jobs every gateway replica runs next to the request path.

- :func:`expire_holds_forever`: releases holds whose gateway died (docs/metering.md, "expiry rule").
  Safe on every replica at once: each pass is one short transaction that locks balance rows in
  the global order, so replicas take turns instead of double-releasing.
- :func:`audit_retention_forever`: deletes audit rows older than ``retention_days`` in bounded
  batches (``audit.retentionDays``), so no single statement holds locks for long.

Both survive store outages: a pass that raises StoreUnavailable is logged and retried on the
next tick.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from newapi_gateway.store.base import Store
from newapi_gateway.store.errors import StoreUnavailable

log = logging.getLogger(__name__)


async def expire_holds_once(store: Store, batch: int = 1000) -> int:
    """Release every expired hold now (in batches of ``batch``); returns how many."""
    total = 0
    while True:
        released = await store.expire_holds(limit=batch)
        total += released
        if released < batch:
            return total


async def expire_holds_forever(store: Store, interval: float = 10.0, batch: int = 1000) -> None:
    """Run :func:`expire_holds_once` every ``interval`` seconds until cancelled."""
    while True:
        try:
            released = await expire_holds_once(store, batch)
            if released:
                log.info("released %d expired holds (zero charge: their requests never settled)", released)
        except StoreUnavailable as exc:
            log.warning("hold expiry skipped: %s", exc)
        await asyncio.sleep(interval)


async def audit_retention_forever(
    store: Store, retention_days: int, interval: float = 3600.0, batch_size: int = 1000
) -> None:
    """Delete audit rows older than ``retention_days`` every ``interval`` seconds until cancelled."""
    while True:
        try:
            cutoff = store.clock() - timedelta(days=retention_days)
            deleted = 0
            while True:
                n = await store.delete_audit_batch(cutoff, batch_size)
                deleted += n
                if n < batch_size:
                    break
                await asyncio.sleep(0)  # let requests run between batches
            if deleted:
                log.info("audit retention: deleted %d rows older than %s", deleted, cutoff.isoformat())
        except StoreUnavailable as exc:
            log.warning("audit retention skipped: %s", exc)
        await asyncio.sleep(interval)
