"""Pure pieces: OpenAI's reset duration format, the GCRA maths, the RESP codec."""

from __future__ import annotations

import asyncio
import math
import random
from typing import Any

import pytest

from newapi_gateway.limits.base import format_duration, gcra
from newapi_gateway.limits.resp import PipelinedRedis, RedisAddress, RespError, _Protocol, encode, parse


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"), (0.0004, "1ms"), (0.012, "12ms"), (0.999, "999ms"), (1, "1s"), (8.64, "8.64s"),
        (17.3105, "17.311s"), (59.9999, "1m0s"), (60, "1m0s"), (86.4, "1m26.4s"), (360, "6m0s"),
        (3600, "1h0m0s"), (3723.5, "1h2m3.5s"),
    ],
)
def test_format_duration_matches_openai(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def _format_duration_by_float(seconds: float) -> str:
    """The original implementation (float formatting), the reference for the integer one."""
    total_ms = max(0, math.ceil(seconds * 1000 - 1e-6))
    if total_ms < 1000:
        return f"{total_ms}ms" if total_ms else "0s"
    hours, rest = divmod(total_ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs = f"{rest / 1000:.3f}".rstrip("0").rstrip(".")
    out = ""
    if hours:
        out += f"{hours}h"
    if hours or minutes:
        out += f"{minutes}m"
    return f"{out}{secs}s"


def test_format_duration_equals_the_float_formatting_it_replaced() -> None:
    rng = random.Random(5)
    millis = [*range(0, 130_000), *(rng.randrange(0, 10 * 86_400_000) for _ in range(50_000))]
    for ms in millis:
        for seconds in (ms / 1000, ms / 1000 - 1e-9, ms / 1000 + 0.0004, -ms / 1000):
            assert format_duration(seconds) == _format_duration_by_float(seconds), seconds


def test_gcra_burst_refill_and_never_fitting_costs() -> None:
    now = 1_000_000.0
    tat = None
    for expected in (2, 1, 0):
        g = gcra(tat, now, limit=3, cost=1)
        assert g.allowed
        assert g.remaining == expected
        tat = g.new_tat
    refused = gcra(tat, now, limit=3, cost=1)
    assert (refused.allowed, refused.retry_ms, refused.remaining, refused.reset_ms) == (False, 20_000, 0, 60_000)
    assert gcra(None, now, limit=3, cost=4).retry_ms is None
    assert gcra(tat, now + 60_000, limit=3, cost=0).remaining == 3


def test_resp_encode_and_incremental_parse() -> None:
    assert encode("EVALSHA", b"ab", 2) == b"*3\r\n$7\r\nEVALSHA\r\n$2\r\nab\r\n$1\r\n2\r\n"
    wire = b"*3\r\n:1\r\n$3\r\nfoo\r\n*2\r\n+OK\r\n$-1\r\n-NOSCRIPT No matching script\r\n"
    value, pos = parse(wire, 0)
    assert value == [1, b"foo", ["OK", None]]
    err, end = parse(wire, pos)
    assert isinstance(err, RespError)
    assert str(err).startswith("NOSCRIPT")
    assert end == len(wire)
    for cut in range(1, pos):  # any prefix of a reply is "incomplete", never a wrong value
        partial, at = parse(wire[:cut], 0)
        assert at == 0
        assert not isinstance(partial, list)


def test_redis_url_parsing() -> None:
    a = RedisAddress.parse("rediss://user:p%40ss@cache.example:6380/4")
    assert (a.host, a.port, a.db, a.username, a.password, a.tls) == ("cache.example", 6380, 4, "user", "p@ss", True)
    assert RedisAddress.parse("redis://localhost").db == 0
    with pytest.raises(ValueError, match="scheme"):
        RedisAddress.parse("http://localhost")


class _Waiter:
    """A ReplyWaiter recording what it got."""

    def __init__(self) -> None:
        self.got: list[Any] = []

    def done(self) -> bool:
        return False

    def set_result(self, value: Any) -> None:
        self.got.append(value)

    def set_exception(self, exc: BaseException) -> None:
        self.got.append(exc)


async def test_replies_split_anywhere_reach_their_waiters_in_order() -> None:
    wire = (b"$11\r\n1,2,3,-1,45\r\n:7\r\n-NOSCRIPT No matching script\r\n*2\r\n+OK\r\n$-1\r\n"
            b"$0\r\n\r\n+PONG\r\n")
    expected: list[Any] = [b"1,2,3,-1,45", 7, "NOSCRIPT No matching script", ["OK", None], b"", "PONG"]
    rng = random.Random(11)
    for _ in range(300):
        proto = _Protocol(timeout=5.0)
        waiters = [_Waiter() for _ in expected]
        for w in waiters:
            proto.expect(w)
        cuts = sorted(rng.sample(range(1, len(wire)), rng.randrange(0, 8)))
        for start, end in zip([0, *cuts], [*cuts, len(wire)], strict=True):
            proto.data_received(wire[start:end])
        got = [w.got[0] if w.got else None for w in waiters]
        assert [str(g) if isinstance(g, RespError) else g for g in got] == expected, cuts
        assert not proto.waiters
        assert not proto.buf
        assert not proto.closed
        proto._fail(ConnectionError("test over"))


async def test_a_late_reply_fails_every_waiter_with_one_timer() -> None:
    proto = _Protocol(timeout=0.05)
    waiters = [_Waiter() for _ in range(3)]
    for w in waiters:
        proto.expect(w)
    proto.data_received(b"+OK\r\n")  # the first is answered in time
    await asyncio.sleep(0.2)
    assert waiters[0].got == ["OK"]
    for w in waiters[1:]:
        assert len(w.got) == 1
        assert isinstance(w.got[0], TimeoutError)
        assert "did not answer within 0.05 s" in str(w.got[0])
    assert proto.closed


async def test_send_now_needs_a_connection() -> None:
    client = PipelinedRedis("redis://127.0.0.1:1/0")
    waiter = _Waiter()
    assert not client.connected
    assert client.send_now([(encode("PING"), waiter)]) is False
    assert waiter.got == []
