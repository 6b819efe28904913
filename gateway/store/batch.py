"""Group commit: concurrent callers share one database transaction, each resumes after it commits.

The first submission starts a flush at once (no timer, so an idle gateway adds no latency);
submissions that arrive while a flush is in flight are gathered and flushed together as soon as
it finishes. Under load one transaction (one round trip, one WAL flush) carries many requests;
alone, a request pays exactly one round trip.

``submit_many`` hands in a whole group with ONE waiter (the meter's batched debits): the group
rides in one flush and its caller gets one result per item, exceptions included, without a future
per item.

A caller that is cancelled while waiting (client went away) does not cancel the flush: its items
are committed with the others. A flush that fails as a whole fails every caller of that batch
with the same exception; ``flush`` may also return an exception per item.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")

Flush = Callable[[Sequence[ItemT]], Awaitable[Sequence[ResultT | BaseException]]]


class GroupCommitter(Generic[ItemT, ResultT]):
    """Batches concurrent submissions into calls of ``flush`` (about ``max_batch`` items each; a
    single group larger than that is flushed whole)."""

    def __init__(self, flush: Flush[ItemT, ResultT], *, max_batch: int = 256, name: str = "batch") -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        self._flush = flush
        self._max_batch = max_batch
        self.name = name
        self._pending: list[tuple[Sequence[ItemT], asyncio.Future[list[ResultT | BaseException]]]] = []
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        self.items = 0

    async def submit(self, item: ItemT) -> ResultT:
        """Flush ``item`` with whatever else is pending; its result, or its exception raised."""
        (result,) = await self.submit_many((item,))
        if isinstance(result, BaseException):
            raise result
        return result

    async def submit_many(self, items: Sequence[ItemT]) -> list[ResultT | BaseException]:
        """Flush ``items`` together (and with whatever else is pending); one result per item, an
        exception instance for an item that failed. A flush failing as a whole raises."""
        if not items:
            return []
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[list[ResultT | BaseException]] = loop.create_future()
        self._pending.append((items, fut))
        if self._task is None:
            self._task = loop.create_task(self._run(), name=f"group-commit-{self.name}")
        return await fut

    def _take(self) -> list[tuple[Sequence[ItemT], asyncio.Future[list[ResultT | BaseException]]]]:
        """The next groups to flush: at least one, then more while they fit in ``max_batch``."""
        pending = self._pending
        size = len(pending[0][0])
        n = 1
        while n < len(pending) and size + len(pending[n][0]) <= self._max_batch:
            size += len(pending[n][0])
            n += 1
        batch = pending[:n]
        del pending[:n]
        return batch

    async def _run(self) -> None:
        try:
            while self._pending:
                groups = self._take()
                items = [item for group, _ in groups for item in group]
                self.batches += 1
                self.items += len(items)
                try:
                    results = await self._flush(items)
                except asyncio.CancelledError as exc:
                    self._fail(groups, exc)
                    self._fail(self._pending, exc)
                    self._pending = []
                    raise
                except BaseException as exc:  # handed to every caller of the batch
                    self._fail(groups, exc)
                    continue
                if len(results) != len(items):
                    self._fail(groups, RuntimeError(f"{self.name}: flush returned {len(results)} results "
                                                    f"for {len(items)} items"))
                    continue
                start = 0
                for group, fut in groups:
                    end = start + len(group)
                    if not fut.done():
                        fut.set_result(list(results[start:end]))
                    start = end
        finally:
            self._task = None

    @staticmethod
    def _fail(
        groups: Sequence[tuple[Sequence[ItemT], asyncio.Future[list[ResultT | BaseException]]]], exc: BaseException
    ) -> None:
        for _, fut in groups:
            if not fut.done():
                if isinstance(exc, asyncio.CancelledError):
                    fut.cancel()
                else:
                    fut.set_exception(exc)

    async def drain(self) -> None:
        """Wait until every submitted item was flushed."""
        while self._task is not None:
            await asyncio.shield(self._task)
