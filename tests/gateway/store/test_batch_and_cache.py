"""Pure pieces of the store: group commit and the key cache."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from newapi_gateway.store.batch import GroupCommitter
from newapi_gateway.store.keycache import KeyCache
from newapi_gateway.store.models import KeyRecord, KeySettings


async def test_group_commit_batches_concurrent_submissions() -> None:
    batches: list[list[int]] = []
    gate = asyncio.Event()

    async def flush(items: Sequence[int]) -> list[int | BaseException]:
        batches.append(list(items))
        await gate.wait()
        return [i * 10 if i != 13 else ValueError("thirteen") for i in items]

    gc: GroupCommitter[int, int] = GroupCommitter(flush, max_batch=4)
    first = asyncio.ensure_future(gc.submit(1))
    await asyncio.sleep(0)  # the first item flushes alone and at once (no timer)
    rest = [asyncio.ensure_future(gc.submit(i)) for i in range(2, 15)]
    await asyncio.sleep(0)
    gate.set()
    assert await first == 10
    results = await asyncio.gather(*rest, return_exceptions=True)
    assert results[:11] == [i * 10 for i in range(2, 13)]
    assert isinstance(results[11], ValueError)
    assert results[12] == 140
    assert batches == [[1], [2, 3, 4, 5], [6, 7, 8, 9], [10, 11, 12, 13], [14]]
    assert (gc.batches, gc.items) == (5, 14)


async def test_a_failed_flush_fails_its_batch_only_and_a_cancelled_caller_does_not_cancel_it() -> None:
    calls: list[list[str]] = []

    async def flush(items: Sequence[str]) -> list[str | BaseException]:
        calls.append(list(items))
        await asyncio.sleep(0.01)
        if "boom" in items:
            raise ConnectionError("database went away")
        return [s.upper() for s in items]

    gc: GroupCommitter[str, str] = GroupCommitter(flush)
    a = asyncio.ensure_future(gc.submit("a"))
    await asyncio.sleep(0)
    b = asyncio.ensure_future(gc.submit("boom"))
    c = asyncio.ensure_future(gc.submit("c"))
    d = asyncio.ensure_future(gc.submit("d"))
    await asyncio.sleep(0)
    d.cancel()  # the client went away: its item is still committed with the batch
    assert await a == "A"
    with pytest.raises(ConnectionError):
        await b
    with pytest.raises(ConnectionError):
        await c
    assert calls == [["a"], ["boom", "c", "d"]]
    assert await gc.submit("e") == "E"  # the committer keeps working
    await gc.drain()


async def test_submit_many_rides_one_flush_with_one_result_per_item() -> None:
    batches: list[list[int]] = []
    gate = asyncio.Event()

    async def flush(items: Sequence[int]) -> list[int | BaseException]:
        batches.append(list(items))
        await gate.wait()
        return [ValueError(str(i)) if i % 5 == 0 else -i for i in items]

    gc: GroupCommitter[int, int] = GroupCommitter(flush, max_batch=4)
    first = asyncio.ensure_future(gc.submit(1))
    await asyncio.sleep(0)
    group = asyncio.ensure_future(gc.submit_many([2, 3, 5]))
    single = asyncio.ensure_future(gc.submit(6))
    big = asyncio.ensure_future(gc.submit_many(list(range(7, 13))))  # larger than max_batch: flushed whole
    tail = asyncio.ensure_future(gc.submit(13))
    await asyncio.sleep(0)
    gate.set()
    assert await first == -1
    got = await group
    assert got[:2] == [-2, -3]
    assert isinstance(got[2], ValueError)  # a failed item does not raise
    assert await single == -6
    assert [r if not isinstance(r, BaseException) else "err" for r in await big] == [-7, -8, -9, "err", -11, -12]
    assert await tail == -13
    assert batches == [[1], [2, 3, 5, 6], list(range(7, 13)), [13]]
    assert await gc.submit_many([]) == []


async def test_submit_many_raises_when_the_whole_flush_fails() -> None:
    async def flush(items: Sequence[int]) -> list[int | BaseException]:
        raise ConnectionError("database went away")

    gc: GroupCommitter[int, int] = GroupCommitter(flush)
    with pytest.raises(ConnectionError):
        await gc.submit_many([1, 2])


def _record(key_id: int) -> KeyRecord:
    return KeyRecord(key_id, 1, "c", "sk-x", "active", 0, KeySettings(tier="pro"))


def test_key_cache_ttl_and_invalidation() -> None:
    now = [0.0]
    cache = KeyCache(ttl=1.0, clock=lambda: now[0])
    gen = cache.generation
    cache.put(b"a", _record(1), gen)
    cache.put(b"n", None, gen)
    assert cache.get(b"a") == (True, _record(1))
    assert cache.get(b"n") == (True, None)
    now[0] = 1.5
    assert cache.get(b"a") == (False, None)  # expired
    cache.put(b"a", _record(1), cache.generation)
    cache.apply_message("k:1")
    assert cache.get(b"a") == (False, None)
    cache.put(b"n", None, cache.generation)
    cache.apply_message("neg")  # a key was issued: unknown hashes must be looked up again
    assert cache.get(b"n") == (False, None)
    cache.put(b"a", _record(1), cache.generation)
    cache.apply_message("all")
    assert len(cache) == 0


def test_key_cache_drops_a_lookup_that_raced_an_invalidation() -> None:
    cache = KeyCache(ttl=10)
    before = cache.generation  # a lookup starts...
    cache.invalidate_key(1)  # ...the key is revoked meanwhile...
    cache.put(b"a", _record(1), before)  # ...its (stale) answer must not be cached
    assert cache.get(b"a") == (False, None)
    before = cache.generation
    cache.invalidate_negative()
    cache.put(b"b", _record(2), before)  # a positive answer is unaffected by "new key issued"
    cache.put(b"c", None, before)  # a negative one is dropped
    assert cache.get(b"b")[0]
    assert not cache.get(b"c")[0]


def test_key_cache_evicts_when_full() -> None:
    cache = KeyCache(ttl=10, max_entries=10)
    for i in range(25):
        cache.put(bytes([i]), _record(i), cache.generation)
    assert len(cache) <= 10
    assert cache.get(bytes([24]))[0]
