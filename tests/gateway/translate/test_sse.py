"""SSE framing helpers shared by the translators."""

from __future__ import annotations

import pytest

from newapi_gateway.translate.sse import EventSplitter, named_event, parse_event, split_complete, split_events


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"data: {}\n\n", (None, b"{}")),
        (b'event: ping\ndata: {"type": "ping"}\n\n', (b"ping", b'{"type": "ping"}')),
        (b"data:no-space\n\n", (None, b"no-space")),
        (b"data:  two spaces\n\n", (None, b" two spaces")),
        (b": keep-alive comment\ndata: x\n\n", (None, b"x")),
        (b"data: line1\ndata: line2\n\n", (None, b"line1\nline2")),
        (b"data: a\r\ndata: b\r\n\r\n", (None, b"a\nb")),
        (b"event: e\rdata: c\r\r", (b"e", b"c")),
        (b"id: 7\nretry: 100\n\n", (None, None)),
        (b"data\n\n", (None, b"")),
        (b"\ndata: after stray newline\n\n", (None, b"after stray newline")),
    ],
)
def test_parse_event(raw: bytes, expected: tuple[bytes | None, bytes | None]) -> None:
    assert parse_event(raw) == expected


@pytest.mark.parametrize(
    ("buf", "ready", "rest"),
    [
        (b"data: a\n\ndata: b", b"data: a\n\n", b"data: b"),
        (b"data: a\n", b"", b"data: a\n"),
        (b"data: a\r\n\r\ndata: b\r\n", b"data: a\r\n\r\n", b"data: b\r\n"),
        (b"data: a\r\ndata: b\r\n", b"", b"data: a\r\ndata: b\r\n"),  # CRLF between data lines is no boundary
        (b"data: a\r", b"", b"data: a\r"),
        (b"data: a\r\r", b"data: a\r\r", b""),
        (b"data: a\n\r\n", b"data: a\n\r\n", b""),
    ],
)
def test_split_complete(buf: bytes, ready: bytes, rest: bytes) -> None:
    assert split_complete(buf) == (ready, rest)


def test_split_events_keeps_exact_bytes() -> None:
    ready = b"data: a\n\n\n\ndata: b\n\n"
    assert split_events(ready) == [b"data: a\n\n", b"\n\n", b"data: b\n\n"]
    crlf = b"event: x\r\ndata: 1\r\n\r\ndata: 2\r\n\r\n"
    assert b"".join(split_events(crlf)) == crlf
    assert split_events(crlf) == [b"event: x\r\ndata: 1\r\n\r\n", b"data: 2\r\n\r\n"]


def test_splitter_across_a_crlf_cut_between_cr_and_lf() -> None:
    splitter = EventSplitter()
    stream = b"data: 1\r\n\r\ndata: 2\r\ndata: 3\r\n\r\n"
    events: list[bytes] = []
    for i in range(len(stream)):
        events.extend(splitter.feed(stream[i : i + 1]))
    events_data = [parse_event(e)[1] for e in events]
    assert [d for d in events_data if d is not None] == [b"1", b"2\n3"]
    assert b"".join(events) + splitter.rest() == stream


def test_named_event() -> None:
    assert named_event("ping", {"type": "ping"}) == b'event: ping\ndata: {"type":"ping"}\n\n'
    assert named_event("x", {"t": "é"}) == 'event: x\ndata: {"t":"é"}\n\n'.encode()
