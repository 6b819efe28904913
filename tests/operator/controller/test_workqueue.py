"""The work queue: coalescing, one run per key at a time, retries with backoff, requeue."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from newapi_operator.controller.workqueue import Requeue, WorkQueue


async def _until(predicate: object, seconds: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not predicate():  # type: ignore[operator]
        if loop.time() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.01)


async def test_adds_while_waiting_coalesce_and_adds_while_running_rerun_once() -> None:
    calls: list[str] = []
    gate = asyncio.Event()
    running = 0
    peak = 0

    async def handler(key: str) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        calls.append(key)
        await gate.wait()
        running -= 1

    q: WorkQueue[str] = WorkQueue("t", handler, workers=4)
    q.start()
    try:
        q.add("a")
        await _until(lambda: calls == ["a"])
        for _ in range(10):
            q.add("a")  # while "a" runs: one more run afterwards, not ten, never in parallel
        q.add("b")
        await _until(lambda: sorted(calls) == ["a", "b"])
        gate.set()
        await _until(lambda: q.idle and calls.count("a") == 2)
        await asyncio.sleep(0.05)
        assert calls.count("a") == 2
        assert calls.count("b") == 1
        assert peak == 2  # "a" and "b" in parallel, never two "a"
    finally:
        await q.stop()


async def test_failures_retry_with_backoff_then_give_up() -> None:
    attempts: list[float] = []
    loop = asyncio.get_running_loop()

    async def handler(key: str) -> None:
        attempts.append(loop.time())
        raise RuntimeError("boom")

    q: WorkQueue[str] = WorkQueue("t", handler, max_retries=3, base_delay=0.05, max_delay=1.0)
    q.start()
    try:
        q.add("x")
        await _until(lambda: len(attempts) == 4)
        await asyncio.sleep(0.5)
        assert len(attempts) == 4  # 1 + 3 retries, then dropped until the next add
        gaps = [b - a for a, b in itertools.pairwise(attempts)]
        assert gaps[0] >= 0.05
        assert gaps[1] >= 0.1
        assert gaps[2] >= 0.2
        q.add("x")
        await _until(lambda: len(attempts) == 5)
    finally:
        await q.stop()


async def test_requeue_is_not_a_failure() -> None:
    calls = 0

    async def handler(key: str) -> None:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise Requeue(0.02)

    q: WorkQueue[str] = WorkQueue("t", handler, max_retries=0)
    q.start()
    try:
        q.add("x")
        await _until(lambda: calls == 3 and q.idle)
        assert q.failed == 0
    finally:
        await q.stop()


@pytest.mark.parametrize("delays", [(0.3, 0.05), (0.05, 0.3)])
async def test_delayed_adds_keep_the_earliest(delays: tuple[float, float]) -> None:
    seen: list[float] = []
    loop = asyncio.get_running_loop()

    async def handler(key: str) -> None:
        seen.append(loop.time())

    q: WorkQueue[str] = WorkQueue("t", handler)
    q.start()
    try:
        start = loop.time()
        for d in delays:
            q.add("k", d)
        await _until(lambda: len(seen) == 1)
        await asyncio.sleep(0.4)
        assert len(seen) == 1
        assert seen[0] - start < 0.25
    finally:
        await q.stop()
