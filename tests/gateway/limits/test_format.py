"""Pure pieces: OpenAI's reset duration format, the GCRA maths, the RESP codec."""

from __future__ import annotations

import pytest

from newapi_gateway.limits.base import format_duration, gcra
from newapi_gateway.limits.resp import RedisAddress, RespError, encode, parse


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
