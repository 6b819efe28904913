"""Group commit: concurrent callers share one database transaction, each resumes after it commits.

The first submission starts a flush at once (no timer, so an idle gateway adds no latency);
submissions that arrive while a flush is in flight are gathered and flushed together as soon as
it finishes. Under load one transaction (one round trip, one WAL flush) carries many requests;
alone, a request pays exactly one round trip.

A caller that is cancelled while waiting (client went away) does not cancel the flush: its item
is committed with the others. A flush that fails as a whole fails every caller of that batch
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
    """Batches concurrent ``submit`` calls into calls of ``flush`` (at most ``max_batch`` items each)."""

    def __init__(self, flush: Flush[ItemT, ResultT], *, max_batch: int = 256, name: str = "batch") -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        self._flush = flush
        self._max_batch = max_batch
        self.name = name
        self._pending: list[tuple[ItemT, asyncio.Future[ResultT]]] = []
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        self.items = 0

    async def submit(self, item: ItemT) -> ResultT:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[ResultT] = loop.create_future()
        self._pending.append((item, fut))
        if self._task is None:
            self._task = loop.create_task(self._run(), name=f"group-commit-{self.name}")
        return await fut

    async def _run(self) -> None:
        try:
            while self._pending:
                batch = self._pending[: self._max_batch]
                del self._pending[: self._max_batch]
                self.batches += 1
                self.items += len(batch)
                try:
                    results = await self._flush([item for item, _ in batch])
                except asyncio.CancelledError as exc:
                    self._fail(batch, exc)
                    self._fail(self._pending, exc)
                    self._pending = []
                    raise
                except BaseException as exc:  # handed to every caller of the batch
                    self._fail(batch, exc)
                    continue
                if len(results) != len(batch):
                    self._fail(batch, RuntimeError(f"{self.name}: flush returned {len(results)} results "
                                                   f"for {len(batch)} items"))
                    continue
                for (_, fut), result in zip(batch, results, strict=True):
                    if fut.done():
                        continue
                    if isinstance(result, BaseException):
                        fut.set_exception(result)
                    else:
                        fut.set_result(result)
        finally:
            self._task = None

    @staticmethod
    def _fail(batch: Sequence[tuple[ItemT, asyncio.Future[ResultT]]], exc: BaseException) -> None:
        for _, fut in batch:
            if not fut.done():
                if isinstance(exc, asyncio.CancelledError):
                    fut.cancel()
                else:
                    fut.set_exception(exc)

    async def drain(self) -> None:
        """Wait until every submitted item was flushed."""
        while self._task is not None:
            await asyncio.shield(self._task)
