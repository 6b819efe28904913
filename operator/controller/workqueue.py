"""A per-object work queue: coalesces triggers, never runs one key twice at once, retries with backoff.

Watch events (Kopf handlers) only ``add`` keys; workers take them one at a time per key. A key
added while it is being processed is processed once more afterwards (the latest state wins); a
key added many times while waiting is processed once. A failing key is retried with exponential
backoff (``base_delay`` doubling up to ``max_delay``) up to ``max_retries`` times, then dropped
with an error log: the next watch event for it starts over. Nothing polls: an idle queue sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

log = logging.getLogger("newapi_operator.controller.workqueue")

K = TypeVar("K", bound=Hashable)


class Requeue(Exception):
    """Raised by a handler to be called again after ``delay`` seconds (not counted as a failure)."""

    def __init__(self, delay: float, why: str = "") -> None:
        self.delay = delay
        super().__init__(why or f"requeue in {delay}s")


class WorkQueue(Generic[K]):
    """See the module docstring. ``handler(key)`` does the work."""

    def __init__(
        self,
        name: str,
        handler: Callable[[K], Awaitable[None]],
        *,
        workers: int = 4,
        max_retries: int = 10,
        base_delay: float = 0.5,
        max_delay: float = 60.0,
    ) -> None:
        self.name = name
        self.handler = handler
        self.workers = workers
        self.max_retries = max_retries
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._queue: asyncio.Queue[K] = asyncio.Queue()
        self._queued: set[K] = set()
        self._active: set[K] = set()
        self._dirty: set[K] = set()
        self._failures: dict[K, int] = {}
        self._timers: dict[K, tuple[float, asyncio.TimerHandle]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.processed = 0
        self.failed = 0
        self.extra_stats: Callable[[], dict[str, int]] | None = None

    def add(self, key: K, delay: float = 0.0) -> None:
        """Schedule ``key`` (now, or after ``delay`` seconds; an earlier schedule wins)."""
        if delay > 0:
            loop = asyncio.get_running_loop()
            due = loop.time() + delay
            current = self._timers.get(key)
            if current is not None:
                if current[0] <= due:
                    return
                current[1].cancel()
            self._timers[key] = (due, loop.call_at(due, self._fire, key))
            return
        if key in self._active:
            self._dirty.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._queue.put_nowait(key)

    def _fire(self, key: K) -> None:
        self._timers.pop(key, None)
        self.add(key)

    def __len__(self) -> int:
        return len(self._queued) + len(self._active)

    @property
    def idle(self) -> bool:
        return not self._queued and not self._active

    def start(self) -> None:
        for i in range(self.workers):
            self._tasks.append(asyncio.create_task(self._worker(), name=f"{self.name}-worker-{i}"))

    async def stop(self) -> None:
        for _, handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    async def _worker(self) -> None:
        while True:
            key = await self._queue.get()
            self._queued.discard(key)
            self._active.add(key)
            try:
                await self.handler(key)
                self._failures.pop(key, None)
                self.processed += 1
            except asyncio.CancelledError:
                raise
            except Requeue as rq:
                self._failures.pop(key, None)
                self.add(key, rq.delay)
            except Exception as exc:
                if getattr(exc, "conflict", False) and self._failures.get(key, 0) < self.max_retries:
                    # Optimistic concurrency: someone wrote the object since we read it. Read it again.
                    self._failures[key] = self._failures.get(key, 0) + 1
                    log.debug("conflict; retrying", extra={"queue": self.name, "key": str(key)})
                    self.add(key, 0.05 * self._failures[key])
                else:
                    self._fail(key, exc)
            finally:
                self._active.discard(key)
                if key in self._dirty:
                    self._dirty.discard(key)
                    self.add(key)
                if self.idle:
                    log.info("queue drained", extra={"queue": self.name, "processed": self.processed,
                                                     "failed": self.failed, **self.stats()})

    def _fail(self, key: K, exc: Exception) -> None:
        self.failed += 1
        n = self._failures.get(key, 0) + 1
        if n > self.max_retries:
            self._failures.pop(key, None)
            log.error("giving up after %d attempts; the next change retries", n,
                      extra={"queue": self.name, "key": str(key), "error": f"{type(exc).__name__}: {exc}"})
            return
        self._failures[key] = n
        delay = min(self.base_delay * 2 ** (n - 1), self.max_delay) * (1 + random.random() * 0.2)
        log.warning("reconcile failed; retrying", exc_info=not _expected(exc),
                    extra={"queue": self.name, "key": str(key), "attempt": n, "retry_in_s": round(delay, 2),
                           "error": f"{type(exc).__name__}: {exc}"})
        self.add(key, delay)

    def stats(self) -> dict[str, int]:
        """Extra numbers for the drained log line (set by the owner, e.g. API writes so far)."""
        return self.extra_stats() if self.extra_stats is not None else {}


def _expected(exc: Exception) -> bool:
    """Errors worth one log line, not a traceback (API and network errors)."""
    from .kube import ApiError

    return isinstance(exc, (ApiError, OSError))
