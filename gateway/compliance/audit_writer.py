"""Batched audit writes: rows are queued in memory and inserted together (``Store.add_audit_events``).

Rows whose request was billed travel with the debit instead (``Store.settle(..., audit=row)``: the
row and the charge commit in one transaction); this writer takes every other row (refusals,
failed attempts, unbilled answers).

* A batch goes out when :attr:`AuditWriter.batch_size` rows are queued or :attr:`flush_interval`
  seconds after the first row of the batch, whichever comes first: one statement per batch.
* While the store is unreachable the rows stay queued and the write is retried with backoff; the
  queue is bounded (:attr:`max_queued`): beyond it the oldest rows are dropped and counted
  (``dropped``) with an error in the log — the request path never waits for the audit log.
* :meth:`close` writes what is queued (within a time budget) before the process exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque

from ..store import AuditEvent, Store, StoreUnavailable

log = logging.getLogger("newapi_gateway.audit")


class AuditWriter:
    """Queues audit rows and inserts them in batches from one background task."""

    def __init__(
        self,
        store: Store,
        *,
        flush_interval: float = 0.2,
        batch_size: int = 500,
        max_queued: int = 100_000,
    ) -> None:
        self.store = store
        self.flush_interval = flush_interval
        self.batch_size = batch_size
        self.max_queued = max_queued
        self._queue: deque[AuditEvent] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.written = 0
        self.dropped = 0
        self.failed_batches = 0

    @property
    def queued(self) -> int:
        return len(self._queue)

    def add(self, row: AuditEvent) -> None:
        """Queue one row (never blocks; drops the oldest row when the queue is full)."""
        if len(self._queue) >= self.max_queued:
            self._queue.popleft()
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 10_000 == 0:
                log.error("audit queue full (%d rows; the store is not keeping up or is down): %d rows dropped "
                          "so far", self.max_queued, self.dropped)
        self._queue.append(row)
        if len(self._queue) == 1 or len(self._queue) >= self.batch_size or self._closing:
            self._wake.set()  # the first row starts the flush timer; a full batch goes at once

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="audit-writer")

    async def _run(self) -> None:
        delay = 0.1
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            if len(self._queue) < self.batch_size and not self._closing:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.flush_interval)
            if await self._write_batch():
                delay = 0.1
            else:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _write_batch(self) -> bool:
        """Insert up to one batch; False when the store was unreachable (the rows go back to the queue)."""
        batch = [self._queue.popleft() for _ in range(min(self.batch_size, len(self._queue)))]
        if not batch:
            return True
        try:
            await self.store.add_audit_events(batch)
        except asyncio.CancelledError:
            self._queue.extendleft(reversed(batch))  # shutdown budget spent mid-write: counted as not written
            raise
        except StoreUnavailable as exc:
            self.failed_batches += 1
            room = max(0, self.max_queued - len(self._queue))
            keep = batch[len(batch) - room:] if room < len(batch) else batch
            self.dropped += len(batch) - len(keep)
            self._queue.extendleft(reversed(keep))
            if self.failed_batches == 1 or self.failed_batches % 20 == 0:
                log.warning("audit rows not written yet (%d queued): %s; retrying", len(self._queue), exc)
            return False
        except Exception:
            log.exception("audit batch of %d rows could not be written; dropping it", len(batch))
            self.dropped += len(batch)
            return True
        self.written += len(batch)
        return True

    async def flush(self, timeout: float = 10.0) -> bool:  # noqa: ASYNC109 - a budget, not a cancel scope
        """Wait until every queued row is written (up to ``timeout`` s); True when the queue is empty."""
        deadline = time.monotonic() + timeout
        while self._queue and time.monotonic() < deadline:
            if self._task is None:
                if not await self._write_batch():
                    await asyncio.sleep(0.1)
            else:
                self._wake.set()
                await asyncio.sleep(0.02)
        return not self._queue

    async def close(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Write what is queued (up to ``timeout`` s), then stop; rows left are lost (logged)."""
        self._closing = True
        self._wake.set()
        task, self._task = self._task, None
        if task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout)
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        elif self._queue:
            self._task = None
            await self.flush(timeout)
        if self._queue:
            log.error("%d audit rows could not be written before shutdown", len(self._queue))
