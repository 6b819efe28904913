"""Server-sent events framing (WHATWG ``text/event-stream``): split raw bytes into events, parse, encode.

Upstream bytes arrive in arbitrary pieces: an event may be split anywhere (even between the CR and
LF of a CRLF) and one piece may hold several events. :class:`EventSplitter` buffers until an event's
terminating blank line and hands out complete events as the exact bytes received (terminator
included), so pass-through translators can forward them untouched. Lines end with LF, CRLF or CR.
"""

from __future__ import annotations

import json
import re
from typing import Any

#: A line terminator: CRLF, LF, or a CR not followed by LF.
_LINE_END = re.compile(rb"\r\n|\r|\n")
#: Two line terminators in a row end an event (the blank line). A CR at the very end of the buffer
#: counts as a terminator: if an LF follows in the next piece it parses as one more empty line, which
#: dispatches nothing, so the events seen are the same.
_BOUNDARY = re.compile(rb"(?:\r\n|\r(?!\n)|\n)(?:\r\n|\r(?!\n)|\n)")


def split_complete(buf: bytes) -> tuple[bytes, bytes]:
    """``buf`` -> (the complete events at its start, the incomplete rest). Exact bytes, nothing dropped."""
    if b"\r" not in buf:
        end = buf.rfind(b"\n\n")
        if end < 0:
            return b"", buf
        end += 2
        return buf[:end], buf[end:]
    last = None
    for last in _BOUNDARY.finditer(buf):  # noqa: B007 - only the last boundary matters
        pass
    if last is None:
        return b"", buf
    end = last.end()
    return buf[:end], buf[end:]


def split_events(ready: bytes) -> list[bytes]:
    """Complete events (as from :func:`split_complete`) -> one bytes per event, terminator included."""
    if b"\r" not in ready:
        parts = ready.split(b"\n\n")
        parts.pop()  # ``ready`` ends with a boundary: the last part is empty
        return [part + b"\n\n" for part in parts]
    events: list[bytes] = []
    start = 0
    for match in _BOUNDARY.finditer(ready):
        events.append(ready[start : match.end()])
        start = match.end()
    if start < len(ready):  # cannot happen for output of split_complete; kept for safety
        events.append(ready[start:])
    return events


def parse_event(raw: bytes) -> tuple[bytes | None, bytes | None]:
    """One event's bytes -> (``event`` field or None, ``data`` fields joined by LF or None if no data)."""
    lines = _LINE_END.split(raw) if b"\r" in raw else raw.split(b"\n")
    event: bytes | None = None
    data: list[bytes] = []
    for line in lines:
        if not line or line[0] == 0x3A:  # empty, or a ":" comment
            continue
        name, _, value = line.partition(b":")
        if value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            data.append(value)
        elif name == b"event":
            event = value
    return event, (b"\n".join(data) if data else None)


class EventSplitter:
    """Buffers raw stream bytes and returns complete events (exact bytes) as they become available."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> list[bytes]:
        """Add ``data``; return the events it completed."""
        buf = self._buf + data if self._buf else data
        ready, self._buf = split_complete(buf)
        return split_events(ready) if ready else []

    def feed_ready(self, data: bytes) -> bytes:
        """Add ``data``; return the complete events as one bytes (cheaper when no event is inspected)."""
        buf = self._buf + data if self._buf else data
        ready, self._buf = split_complete(buf)
        return ready

    def rest(self) -> bytes:
        """What is buffered (an event without its final blank line); clears the buffer."""
        rest, self._buf = self._buf, b""
        return rest


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON, as providers send it."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def data_event(obj: Any) -> bytes:
    """An OpenAI-style event: ``data: <json>`` and a blank line."""
    return b"data: " + dumps(obj) + b"\n\n"


def named_event(name: str, obj: Any) -> bytes:
    """An Anthropic-style event: ``event: <name>``, ``data: <json>`` and a blank line."""
    return b"event: " + name.encode() + b"\ndata: " + dumps(obj) + b"\n\n"


DONE = b"data: [DONE]\n\n"
