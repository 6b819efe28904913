"""Audit retention: delete rows older than ``audit.retentionDays`` in bounded batches.

:func:`purge_expired` deletes rows with ``ts < now - retentionDays`` through
``Store.delete_audit_batch``: each batch is one short transaction of at most ``batch_size`` rows
(no long lock on the table, no huge WAL), with a short pause between batches so request traffic
keeps its share of the database; one run deletes at most ``max_batches`` batches and the next run
continues. :func:`retention_forever` runs it every ``interval`` seconds with the retention of the
routing table in force (every replica may run it: deleting is idempotent).

The job runs whether or not ``audit.enabled`` is true: turning the log off does not keep old rows
beyond their retention.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from ..store import Store, StoreUnavailable
from ..store.models import utcnow

log = logging.getLogger("newapi_gateway.audit")

#: Default time between two retention runs (seconds).
DEFAULT_INTERVAL = 3600.0


@dataclass(frozen=True, slots=True)
class PurgeResult:
    cutoff: datetime
    deleted: int
    #: True when the run stopped at ``max_batches`` with rows possibly left (the next run continues).
    more: bool


def cutoff_for(retention_days: int, now: datetime) -> datetime:
    """Rows with ``ts`` before this are past their retention."""
    if retention_days < 1:
        raise ValueError(f"audit.retentionDays must be at least 1, got {retention_days}")
    return now - timedelta(days=retention_days)


async def purge_expired(
    store: Store,
    retention_days: int,
    *,
    now: datetime | None = None,
    batch_size: int = 1000,
    max_batches: int = 1000,
    pause: float = 0.05,
) -> PurgeResult:
    """Delete rows older than ``retention_days`` (see the module docstring)."""
    cutoff = cutoff_for(retention_days, now or utcnow())
    deleted = 0
    for batch in range(max_batches):
        count = await store.delete_audit_batch(cutoff, batch_size)
        deleted += count
        if count < batch_size:
            return PurgeResult(cutoff, deleted, False)
        if pause > 0 and batch + 1 < max_batches:
            await asyncio.sleep(pause)
    return PurgeResult(cutoff, deleted, True)


async def retention_forever(
    store: Store,
    retention_days: Callable[[], int | None],
    *,
    interval: float = DEFAULT_INTERVAL,
    first_delay: float = 5.0,
    batch_size: int = 1000,
    max_batches: int = 1000,
) -> None:
    """Run :func:`purge_expired` every ``interval`` s with ``retention_days()`` (None: no table yet, skip).
    A run that stopped at ``max_batches`` is followed by the next one soon, not after ``interval``."""
    await asyncio.sleep(first_delay)
    while True:
        wait = interval
        days = retention_days()
        if days is not None:
            try:
                result = await purge_expired(store, days, batch_size=batch_size, max_batches=max_batches)
            except StoreUnavailable as exc:
                log.warning("audit retention postponed: %s", exc)
                wait = min(interval, 60.0)
            except Exception:
                log.exception("audit retention run failed")
            else:
                if result.deleted:
                    log.info("audit retention deleted %d rows older than %s", result.deleted,
                             result.cutoff.isoformat(), extra={"deleted": result.deleted, "retention_days": days})
                if result.more:
                    wait = min(interval, 1.0)
        await asyncio.sleep(wait)
